"""POST /predictions/{id}/feedback: record the true label of a stored prediction, for live accuracy and retraining.

The body is ``{"label": ...}``: for a classifier one of the API model's class names, or its class index (recorded
as the name); for a regression model the true value, a number. Served by the inference function, which knows the
model's classes (``CLASS_NAMES``, ``MODEL_TASK``). 404: no such prediction; 409: another label is already recorded
(the same label again answers the stored prediction, unchanged).
"""

from __future__ import annotations

from serving_lambdas.config import InferenceSettings
from serving_lambdas.payload import PayloadError, json_body, kind_of, number
from serving_lambdas.records import Feedback, timestamp_text, utc_now
from serving_lambdas.responses import error_response, json_response
from serving_lambdas.store import FeedbackConflict, open_store

RESOURCE = "/predictions/{id}/feedback"
FIELD = "label"


def handle(event: dict, settings: InferenceSettings) -> dict:
    prediction_id = (event.get("pathParameters") or {}).get("id", "")
    try:
        label = true_label(json_body(event), settings)
    except PayloadError as error:
        return error_response(400, str(error))
    feedback = Feedback(label, timestamp_text(utc_now()))
    try:
        record = open_store(settings.store).record_feedback(prediction_id, feedback)
    except FeedbackConflict as conflict:
        recorded = conflict.record.feedback.label if conflict.record.feedback else None
        return error_response(409, f"prediction {prediction_id} already has label {recorded!r} recorded, "
                                   f"not {label!r}: a recorded label is never changed")
    if record is None:
        return error_response(404, f"no prediction with id {prediction_id}")
    return json_response(200, record.document())


def true_label(body: object, settings: InferenceSettings) -> str | float:
    """The label of a feedback body, as stored: a class name, or a regression model's value."""
    if not isinstance(body, dict):
        raise PayloadError(f"the body must be a JSON object, not {kind_of(body)}")
    unexpected = sorted(set(body) - {FIELD})
    if unexpected:
        raise PayloadError(f"unexpected field {unexpected[0]!r}: send {{\"{FIELD}\": ...}}")
    if FIELD not in body:
        raise PayloadError(f"{FIELD} is missing: {_expected(settings)}")
    value = body[FIELD]
    if settings.task == "regression":
        return number(value, FIELD)
    classes = settings.class_names
    if isinstance(value, str) and value in classes:
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 2.0 is the integer 2 to JSON Schema, so the OpenAPI document's ClassIndex allows it
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
        return classes[value]
    raise PayloadError(f"{FIELD} {value!r} is not a class of the model: {_expected(settings)}")


def _expected(settings: InferenceSettings) -> str:
    if settings.task == "regression":
        return "send the true value, a number"
    named = ", ".join(f"{name} ({index})" for index, name in enumerate(settings.class_names))
    return f"send a class name or index: {named}"
