"""Request bodies -> feature matrices, with the container's content types and a clear 4xx for bad input.

``text/csv`` and ``text/libsvm`` as the built-in container reads them; ``application/json`` (which it does not
offer) in SageMaker's common inference format or as plain arrays. Every row must have exactly the model's number of
features; errors name the row (and column), 1-based.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np

from deploy.endpoint.errors import InvocationError
from serving_lambdas.json_limits import JsonLimitError, check_json_limits

CSV = "text/csv"
LIBSVM = "text/libsvm"
JSON = "application/json"
CONTENT_TYPES = {
    "text/csv": CSV,
    "csv": CSV,
    "text/libsvm": LIBSVM,
    "text/x-libsvm": LIBSVM,
    "libsvm": LIBSVM,
    "application/json": JSON,
    "json": JSON,
}
SNIFFED_DELIMITERS = ",;\t| "
MAX_SHOWN = 40  # characters of a bad value quoted back in a message


def media_type(header: str | None) -> str:
    """The canonical content type of a Content-Type header; no header means CSV (SageMaker's common default).

    CSV takes the container's optional ``label_size`` parameter, which must be 1 (415 otherwise, as the container
    answers)."""
    if not header:
        return CSV
    name, *parameters = header.lower().split(";")
    name = name.strip()
    if name not in CONTENT_TYPES:
        raise InvocationError(
            415, f"Content-type {name} not supported. Supported content-type is text/csv, text/libsvm, application/json"
        )
    if CONTENT_TYPES[name] == CSV and media_parameters(parameters).get("label_size", "1") != "1":
        raise InvocationError(
            415, f"{header} is not an accepted csv ContentType. Optional parameter label_size must be equal to 1"
        )
    return CONTENT_TYPES[name]


def media_parameters(parameters: list[str]) -> dict[str, str]:
    """``key=value`` parameters of a media type, values unquoted (as ``cgi.parse_header``, which the container
    uses, reads them)."""
    pairs = (parameter.partition("=") for parameter in parameters)
    return {key.strip(): value.strip().strip('"') for key, _, value in pairs if key.strip()}


def decode(body: bytes, content_type: str, num_features: int) -> np.ndarray:
    """A float32 matrix of shape (rows, num_features), NaN for missing values."""
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError as error:
        raise InvocationError(400, f"the body is not UTF-8 text (byte {error.start})") from None
    if not text:
        raise InvocationError(400, "the body holds no rows")
    if content_type == CSV:
        rows = csv_rows(text, num_features)
    elif content_type == LIBSVM:
        rows = libsvm_rows(text, num_features)
    else:
        rows = json_rows(text, num_features)
    if not rows:
        raise InvocationError(400, "the body holds no rows")
    return np.array(rows, dtype=np.float32)


def shortened(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def check_width(row: int, count: int, num_features: int) -> None:
    if count != num_features:
        raise InvocationError(400, f"row {row}: expected {num_features} values (the model's features), got {count}")


def sniff_delimiter(line: str) -> str:
    """The container sniffs each payload's first line; a comma needs no sniffing, which keeps one row cheap."""
    if "," in line:
        return ","
    try:
        return csv.Sniffer().sniff(line[:512], delimiters=SNIFFED_DELIMITERS).delimiter
    except csv.Error:
        return ","  # one value per row: there is no delimiter to find


def csv_rows(text: str, num_features: int) -> list[list[float]]:
    delimiter = sniff_delimiter(text.split("\n", 1)[0])
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        fields = line.split(delimiter)
        check_width(number, len(fields), num_features)
        try:
            rows.append([float(v) if v.strip() else math.nan for v in fields])
        except ValueError:
            column, value = next((i, v.strip()) for i, v in enumerate(fields, 1) if not is_number(v))
            message = f"row {number}, column {column}: {json.dumps(shortened(value))} is not a number"
            raise InvocationError(400, message) from None
    return rows


def is_number(text: str) -> bool:
    try:
        float(text or "nan")
    except ValueError:
        return False
    return True


def libsvm_rows(text: str, num_features: int) -> list[list[float]]:
    rows = []
    for row_number, line in enumerate(text.split("\n"), start=1):
        row = [math.nan] * num_features
        tokens = line.split()
        if tokens and ":" not in tokens[0]:
            tokens = tokens[1:]  # the label, which inference ignores
        for token in tokens:
            index, _, value = token.partition(":")
            try:
                column, number = int(index), float(value)
            except ValueError:
                message = f"row {row_number}: {json.dumps(shortened(token))} is not index:value"
                raise InvocationError(400, message) from None
            if not 0 <= column < num_features:
                raise InvocationError(
                    400,
                    f"row {row_number}: feature index {column} is out of range; the model has {num_features} "
                    f"features (indices 0 to {num_features - 1})",
                )
            row[column] = number
        rows.append(row)
    return rows


def json_rows(text: str, num_features: int) -> list[list[float]]:
    try:
        check_json_limits(text)
        document = json.loads(text)
    except JsonLimitError as error:
        raise InvocationError(400, str(error)) from None
    except json.JSONDecodeError as error:
        raise InvocationError(400, f"the body is not valid JSON: {error}") from None
    if isinstance(document, dict):
        records = document.get("instances", [document])  # {"features": [...]} is one record
    elif isinstance(document, list) and document and not isinstance(document[0], list | dict):
        records = [document]  # one row as a flat array
    else:
        records = document
    if not isinstance(records, list):
        raise InvocationError(
            400, 'expected {"instances": [{"features": [...]}, ...]}, {"features": [...]} or an array of rows'
        )
    return [json_row(number, record, num_features) for number, record in enumerate(records, start=1)]


def json_row(number: int, record: object, num_features: int) -> list[float]:
    values = record.get("features") if isinstance(record, dict) else record
    if not isinstance(values, list):
        raise InvocationError(400, f'row {number}: expected an array of numbers or {{"features": [...]}}')
    check_width(number, len(values), num_features)
    row = []
    for column, value in enumerate(values, start=1):
        if value is None:
            row.append(math.nan)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            row.append(float(value))
        else:
            raise InvocationError(400, f"row {number}, column {column}: {shortened(json.dumps(value))} is not a number")
    return row
