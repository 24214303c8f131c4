"""The OpenAPI document of a live model: the generic document (``deploy/openapi.json``) filled in from the
model's description (GET /model, ``serving_lambdas.model_description``).

The request forms name the model's features (with their ranges; by name, each once by its name or an alias and
nothing else), ``input_data`` rows have its number of values, the answer's class index and label are its classes
(or the prediction is a number, for regression), as is a feedback label, and every example is built from the
description's example row, so each one is answered as documented. The document is exact: what it allows, the
server accepts (tests/deploy/test_schemathesis.py), but for the rules between fields it states in words.
"""

from __future__ import annotations

import json
from pathlib import Path

GENERIC_DOCUMENT = Path(__file__).parent / "openapi.json"
SCHEMA_REF = "#/components/schemas/"
EXAMPLE_REQUEST_ID = "order-17"


def generic_document() -> dict:
    return json.loads(GENERIC_DOCUMENT.read_text(encoding="utf-8"))


def openapi_document(description: dict, max_batch_rows: int) -> dict:
    """The OpenAPI 3 document of the API serving the model ``description`` describes, taking batches of at most
    ``max_batch_rows`` rows (the inference function's ``MAX_BATCH_ROWS``)."""
    document = generic_document()
    schemas = document["components"]["schemas"]
    names = [feature["name"] for feature in description["features"]]
    task = description["task"]
    what = f"a {task} model (version {description.get('model_version')}) of features {', '.join(names)}"
    document["info"]["description"] = f"The API of {what}. " + document["info"]["description"]

    properties = {feature["name"]: _feature_schema(feature) for feature in description["features"]}
    single = schemas["SingleInput"]
    single["required"] = names
    single["properties"] = {**properties, **single["properties"]}
    for batch, field in (("BatchInput", "input_data"), ("InstancesInput", "instances")):
        schemas[batch]["properties"][field]["maxItems"] = max_batch_rows
        schemas[batch]["description"] = schemas[batch]["description"].replace(
            "at most MAX_BATCH_ROWS (default 100)", f"at most {max_batch_rows}")
    row = schemas["BatchInput"]["properties"]["input_data"]["items"]
    row["minItems"] = row["maxItems"] = len(names)
    row["description"] = f"[{', '.join(names)}]"
    _by_name(schemas["NamedInput"]["properties"]["features"], description["features"], properties)
    _by_name(schemas["InstancesInput"]["properties"]["instances"]["items"], description["features"], properties)

    if task == "regression":
        schemas["TrueLabel"] = {"$ref": SCHEMA_REF + "Feature", "description": "A regression model's true value."}
        target = description.get("target") or {}
        prediction = schemas["Prediction"]["properties"]
        prediction["prediction"] = {"type": "number", "description": f"The predicted {target.get('name') or 'value'}."}
        for key in ("label", "probability", "probabilities"):
            prediction.pop(key)
    else:
        classes = [item["name"] for item in description["classes"]]
        schemas["ClassIndex"]["enum"] = list(range(len(classes)))
        schemas["ClassIndex"]["description"] = ", ".join(f"{name} = {index}" for index, name in enumerate(classes))
        schemas["Label"]["enum"] = classes
        schemas["TrueLabel"] = {"anyOf": [{"$ref": SCHEMA_REF + "Label"}, {"$ref": SCHEMA_REF + "ClassIndex"}]}
        schemas["Prediction"]["properties"]["prediction"] = {"$ref": SCHEMA_REF + "ClassIndex"}

    example = description.get("example")
    operation = document["paths"]["/predictions"]["post"]
    if example is not None:
        operation["requestBody"]["content"]["application/json"]["examples"] = request_examples(example)
    operation["responses"]["200"]["content"]["application/json"]["example"] = answer_example(description)
    operation["responses"]["400"]["content"]["application/json"]["example"] = {"message": f"{names[-1]} is missing"}
    model = document["paths"]["/model"]["get"]["responses"]["200"]["content"]["application/json"]
    model["example"] = description
    _feedback_examples(document["paths"]["/predictions/{id}/feedback"]["post"], description)
    return document


def _feedback_examples(operation: dict, description: dict) -> None:
    """The feedback route's examples in the model's terms: its first class's name (or its target's mean)."""
    answer = answer_example(description)
    if description["task"] == "regression":
        label, other, expected = answer["prediction"], answer["prediction"] + 1, "send the true value, a number"
        message = "label must be a number, not a string"
    else:
        classes = [item["name"] for item in description["classes"]]
        label, other = classes[0], classes[-1]
        expected = "send a class name or index: " + ", ".join(f"{name} ({k})" for k, name in enumerate(classes))
        message = f"label 'unknown' is not a class of the model: {expected}"
    operation["requestBody"]["content"]["application/json"]["example"] = {"label": label}
    stored = {**answer, "feedback": {"label": label, "recorded_at": "2026-11-29T04:10:00.000000Z"}}
    operation["responses"]["200"]["content"]["application/json"]["example"] = stored
    operation["responses"]["400"]["content"]["application/json"]["example"] = {"message": message}
    operation["responses"]["409"]["content"]["application/json"]["example"] = {"message": (
        f"prediction {answer['id']} already has label {label!r} recorded, not {other!r}: a recorded label is never "
        "changed")}
    operation["description"] += f" For this model: {expected}."


def _by_name(row: dict, features: list[dict], properties: dict) -> None:
    """A row by name, as the server reads one: every feature once, by its name or one of its aliases, and no other
    key (beside the ones ``row`` already declares, such as request_id)."""
    row["properties"] = {**row.get("properties", {}), **properties}
    row["additionalProperties"] = False
    required, once = [], []
    for feature in features:
        names = [feature["name"], *feature.get("aliases", [])]
        row["properties"].update({alias: properties[feature["name"]] for alias in names[1:]})
        if len(names) == 1:
            required.append(feature["name"])
        else:
            once.append({"oneOf": [{"required": [name]} for name in names]})
    if required:
        row["required"] = required
    if once:
        row["allOf"] = once


def _feature_schema(feature: dict) -> dict:
    schema: dict = {"$ref": SCHEMA_REF + "Feature"}
    bounds = [f"{bound} {feature[bound]:g}" for bound in ("min", "max") if feature.get(bound) is not None]
    if bounds or feature.get("description"):
        # In OpenAPI 3.0 a $ref's siblings are ignored: a description goes beside it in an allOf.
        text = feature.get("description") or feature["name"]
        schema = {"allOf": [schema], "description": f"{text} (training data: {', '.join(bounds)})" if bounds else text}
    return schema


def request_examples(example: dict[str, float]) -> dict:
    """One example of each request form, all built from the model's example row."""
    values = list(example.values())
    return {
        "single": {"summary": "One row, the model's example", "value": dict(example)},
        "batch": {"summary": "Rows of values in model order", "value": {"input_data": [values, values]}},
        "named": {"summary": "Features by name", "value": {"features": dict(example)}},
        "single_with_request_id": {"summary": "One row with your own request_id, to join its label later",
                                   "value": {**example, "request_id": EXAMPLE_REQUEST_ID}},
        "instances": {"summary": "Rows by name, each with an optional request_id",
                      "value": {"instances": [{"request_id": f"{EXAMPLE_REQUEST_ID}:a", **example}, dict(example)]}},
    }


def answer_example(description: dict) -> dict:
    """An answer in the model's shape: its first class (with probabilities), or its target's mean."""
    stamp = {"id": "20261129T032001123456Z-3f9a2c7e1b5d0000", "timestamp": "2026-11-29T03:20:01.123456Z",
             "model_version": description.get("model_version") or 1}
    if description["task"] == "regression":
        mean = (description.get("target") or {}).get("mean")
        return {"prediction": round(mean, 3) if mean is not None else 0.0, **stamp}
    classes = [item["name"] for item in description["classes"]]
    rest = round(0.1 / max(len(classes) - 1, 1), 4)
    probabilities = {name: (0.9 if index == 0 else rest) for index, name in enumerate(classes)}
    answer: dict = {"prediction": 0, "label": classes[0], "probabilities": probabilities}
    if len(classes) == 2:
        answer["probability"] = 0.9
    return {**answer, **stamp}
