"""The POST /predictions body: four accepted forms, checked field by field, into rows of floats.

Every problem is a ``PayloadError`` whose one-line message names the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from serving_lambdas.json_limits import JsonLimitError, check_json_limits

FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_SMALLEST_NORMAL = 1.1754943508222875e-38
REQUEST_ID = "request_id"
SAMPLE_ID = "sample_id"  # another name for request_id
ROW_IDS = (REQUEST_ID, SAMPLE_ID)
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID_RULE = "1 to 128 letters, digits, '.', '_', ':' or '-'"


class PayloadError(ValueError):
    """The body cannot be served; the message says which field and why."""


@dataclass(frozen=True)
class Payload:
    rows: list[list[float]]
    batch: bool  # answer {"predictions": [...]} rather than one prediction
    request_ids: list[str | None]  # the client's id of each row, if it gave one


def parse_payload(event: dict, features: tuple[str, ...], aliases: Mapping[str, str], max_rows: int) -> Payload:
    """The rows of a proxy event's body, in ``features`` order."""
    body = json_body(event)
    if not isinstance(body, dict):
        raise PayloadError(f"the body must be a JSON object, not {kind_of(body)}")
    if "input_data" in body:
        _only(body, "input_data")
        rows = _batch(body["input_data"], features, max_rows)
        return Payload(rows, batch=True, request_ids=[None] * len(rows))
    if "instances" in body:
        _only(body, "instances")
        rows, ids = [], []
        for index, instance in enumerate(_instances(body["instances"], max_rows)):
            field = f"instances[{index}]"
            ids.append(_request_id(instance, field))
            rows.append(_named({key: value for key, value in instance.items() if key not in ROW_IDS}, features,
                               aliases, field))
        return Payload(rows, batch=True, request_ids=ids)
    request_id = _request_id(body, "")
    if "features" in body:
        _only(body, "features", *ROW_IDS)
        return Payload([_named(body["features"], features, aliases, "features")], batch=False, request_ids=[request_id])
    unexpected = sorted(set(body) - set(features) - set(ROW_IDS))
    if unexpected:
        accepted = ", ".join(features)
        raise PayloadError(f"unexpected field {unexpected[0]!r}: send {accepted}, or input_data, instances or features")
    missing = [name for name in features if name not in body]
    if missing:
        raise PayloadError(f"{missing[0]} is missing")
    return Payload([[number(body[name], name) for name in features]], batch=False, request_ids=[request_id])


def json_body(event: dict) -> object:
    """The proxy event's body as JSON, within the limits of ``check_json_limits`` and with no key given twice."""
    text = event.get("body")
    if not text:
        raise PayloadError("the body is empty: send a JSON object")
    try:
        if event.get("isBase64Encoded"):
            text = base64.b64decode(text, validate=True).decode("utf-8")
        check_json_limits(text)
        return json.loads(text, object_pairs_hook=_unique_keys)
    except JsonLimitError as error:
        raise PayloadError(str(error)) from None
    except (binascii.Error, UnicodeDecodeError):
        raise PayloadError("the body is not JSON: it is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise PayloadError(f"the body is not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = next(key for key in keys if keys.count(key) > 1)
        raise PayloadError(f"the body gives {twice!r} twice")
    return dict(pairs)


def _only(body: dict, field: str, *allowed: str) -> None:
    others = sorted(set(body) - {field, *allowed})
    if others and set(others) <= set(ROW_IDS):
        where = "inside each instance" if field == "instances" else "with instances, inside each one"
        raise PayloadError(f"unexpected field {others[0]!r} beside {field}: a {others[0]} names one row ({where})")
    if others:
        raise PayloadError(f"unexpected field {others[0]!r} beside {field}")


def _request_id(values: dict, prefix: str) -> str | None:
    """The row's ``request_id`` (or ``sample_id``) if given (a short id safe in URLs, logs and CSV alike), else
    None; both given must agree."""
    given = [name for name in ROW_IDS if name in values]
    if not given:
        return None
    fields = {name: f"{prefix}.{name}" if prefix else name for name in given}
    if len(given) == 2 and values[REQUEST_ID] != values[SAMPLE_ID]:
        raise PayloadError(
            f"{fields[REQUEST_ID]} and {fields[SAMPLE_ID]} differ ({values[REQUEST_ID]!r}, {values[SAMPLE_ID]!r}): "
            f"{SAMPLE_ID} is another name for {REQUEST_ID}; send one"
        )
    value, field = values[given[0]], fields[given[0]]
    if not isinstance(value, str):
        raise PayloadError(f"{field} must be a string of {REQUEST_ID_RULE}, not {kind_of(value)}")
    if REQUEST_ID_PATTERN.fullmatch(value) is None:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise PayloadError(f"{field} must be {REQUEST_ID_RULE}, not {shown!r} ({len(value)} characters)")
    return value


def _batch(rows: object, features: tuple[str, ...], max_rows: int) -> list[list[float]]:
    expected = f"{len(features)} numbers ({', '.join(features)})"
    rows = _batch_of(rows, "input_data", list, f"rows of {expected}", f"an array of {expected}", max_rows)
    for index, row in enumerate(rows):
        if len(row) != len(features):
            raise PayloadError(f"input_data[{index}] has {len(row)} values, expected {expected}")
    return [
        [number(value, f"input_data[{index}][{column}] ({features[column]})") for column, value in enumerate(row)]
        for index, row in enumerate(rows)
    ]


def _instances(instances: object, max_rows: int) -> list[dict]:
    return _batch_of(instances, "instances", dict, "objects of feature values", "an object of feature values",
                     max_rows)


def _batch_of(value: object, field: str, item_type: type, items: str, item: str, max_rows: int) -> list:
    """The array ``field`` of 1 to ``max_rows`` ``item_type`` values, checked as a batch before any row is read."""
    if not isinstance(value, list):
        raise PayloadError(f"{field} must be an array of {items}, not {kind_of(value)}")
    if not 1 <= len(value) <= max_rows:
        raise PayloadError(f"{field} has {len(value)} rows: send 1 to {max_rows}")
    for index, entry in enumerate(value):
        if not isinstance(entry, item_type):
            raise PayloadError(f"{field}[{index}] must be {item}, not {kind_of(entry)}")
    return value


def _named(values: object, features: tuple[str, ...], aliases: Mapping[str, str], field: str) -> list[float]:
    """One row by name from the object ``field`` (``features``, or an instance without its request_id)."""
    if not isinstance(values, dict):
        raise PayloadError(f"{field} must be an object of feature values, not {kind_of(values)}")
    given: dict[str, str] = {}  # feature -> the key it was given as
    for key in values:
        name = key if key in features else aliases.get(key)
        if name is None:
            accepted = ", ".join([*features, *aliases])
            raise PayloadError(f"{field}.{key} is not a feature: use {accepted}")
        if name in given:
            raise PayloadError(f"{field}.{name} is given twice (as {given[name]} and {key})")
        given[name] = key
    also = {name: alias for alias, name in aliases.items()}
    for name in features:
        if name not in given:
            raise PayloadError(f"{field}.{name} is missing" + (f" (or {also[name]})" if name in also else ""))
    return [number(values[given[name]], f"{field}.{given[name]}") for name in features]


def number(value: object, field: str) -> float:
    """A JSON number (not a boolean) XGBoost can read as float32: one beyond its range is refused rather than
    silently turned into infinity or zero."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{field} must be a number, not {kind_of(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"{field} must be a finite number")
    if value != 0 and not FLOAT32_SMALLEST_NORMAL <= abs(value) <= FLOAT32_MAX:  # exact for big integers too
        raise PayloadError(f"{field} is outside the model's float32 range (0, or 1.2e-38 to 3.4e38 in magnitude)")
    return float(value)


def kind_of(value: object) -> str:
    """A JSON value's type as a message names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), "a number")
