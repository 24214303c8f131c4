"""GET /model: what the live model takes and answers, the document API consumers (OpenAPI, Postman) learn it from.

Its configuration joined with the served version's data schema (``served_version``), read once per version.
"""

from __future__ import annotations

import json
import logging
import threading
from urllib.parse import unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from serving_lambdas.config import InferenceSettings
from serving_lambdas.endpoint import client
from serving_lambdas.served_version import served_model

logger = logging.getLogger(__name__)
_schemas: dict[str, dict] = {}  # URI -> its schema document (immutable: one per model version)
_schemas_lock = threading.Lock()


def read_schema(uri: str) -> dict | None:
    """The schema document at ``uri`` (``s3://BUCKET/KEY`` or ``file:///path``), read once; None, logged, when it
    cannot be read (the next call tries again)."""
    if uri in _schemas:
        return _schemas[uri]
    parts = urlsplit(uri)
    try:
        if parts.scheme == "s3":
            body = client("s3", None).get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))["Body"].read()
        elif parts.scheme == "file":
            with open(unquote(parts.path), "rb") as file:
                body = file.read()
        else:
            raise ValueError(f"not an s3:// or file:// URI: {uri!r}")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except (ClientError, BotoCoreError, OSError, ValueError) as error:
        logger.warning("cannot read the data schema %s (the model is described without ranges): %s", uri, error)
        return None
    with _schemas_lock:
        _schemas[uri] = document
    return document


def forget_schemas() -> None:
    """Forget every schema read (a test's moto session ends)."""
    with _schemas_lock:
        _schemas.clear()


def example_row(features: tuple[str, ...] | list[str], schema: dict | None) -> dict[str, float] | None:
    """A request body that works: the schema's own ``example`` (the local service writes the seed example or the
    training medians there), else each feature's ``median``, else the midpoint of its range; None when the schema
    has none of these for every feature."""
    schema = schema or {}
    given = schema.get("example")
    if isinstance(given, dict) and set(given) == set(features):
        return {name: float(given[name]) for name in features}
    described = {feature.get("name"): feature for feature in schema.get("features") or []}
    if all(isinstance(described.get(name, {}).get("median"), int | float) for name in features):
        return {name: float(described[name]["median"]) for name in features}
    if all(_has_range(described.get(name, {})) for name in features):
        return {name: round((described[name]["min"] + described[name]["max"]) / 2, 6) for name in features}
    return None


def _has_range(feature: dict) -> bool:
    return all(isinstance(feature.get(bound), int | float) for bound in ("min", "max"))


def describe(settings: InferenceSettings, version: int | None, schema: dict | None) -> dict:
    """The description of the model ``settings`` configure the API for, version ``version``, from its data schema
    (None: unknown, every range null)."""
    described = {feature.get("name"): feature for feature in (schema or {}).get("features") or []}
    aliases: dict[str, list[str]] = {}
    for alias, name in settings.aliases.items():
        aliases.setdefault(name, []).append(alias)
    features = []
    for name in settings.feature_names:
        known = described.get(name, {})
        feature = {"name": name, "type": known.get("type", "number"), "min": known.get("min"),
                   "max": known.get("max")}
        if known.get("description"):
            feature["description"] = known["description"]
        if name in aliases:
            feature["aliases"] = aliases[name]
        features.append(feature)
    document: dict = {"endpoint": settings.endpoint_name, "model_version": version, "task": settings.task,
                      "features": features}
    if settings.task == "regression":
        target = (schema or {}).get("target") or {}
        document["target"] = {key: target.get(key) for key in ("name", "min", "max", "mean")}
    else:
        document["classes"] = [{"index": index, "name": name} for index, name in enumerate(settings.class_names)]
    document["example"] = example_row(settings.feature_names, schema)
    return document


def live_description(settings: InferenceSettings) -> dict:
    """The description of the model the endpoint serves now, looked up as the inference handler looks up the
    version it records."""
    served = served_model(client("sagemaker", settings.runtime_url), settings.runtime_url, settings.endpoint_name,
                          settings.version_ttl_seconds)
    schema = read_schema(served.schema_uri) if served.schema_uri else None
    return describe(settings, served.version, schema)
