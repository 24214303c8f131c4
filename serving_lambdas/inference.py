"""POST /predictions: validate the body, ask the endpoint, store every prediction, then answer. GET /model: the
live model's description (``serving_lambdas.model_description``), and POST /predictions/{id}/feedback (a true
label, ``serving_lambdas.feedback``), from the same function, which knows the model.

The store is written before the answer is returned, and only when the endpoint answered: a 400 or a 503
leaves nothing behind, and a batch is stored whole or not at all. A request with an ``Idempotency-Key`` is served
once: its retries get the stored answer (``serving_lambdas.idempotency``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from serving_lambdas import feedback, idempotency, metrics
from serving_lambdas.config import InferenceSettings, inference_settings
from serving_lambdas.endpoint import EndpointAnswer, EndpointUnavailable, invoke
from serving_lambdas.model_description import live_description
from serving_lambdas.payload import Payload, PayloadError, parse_payload
from serving_lambdas.records import PredictionRecord, new_ids, timestamp_text, utc_now
from serving_lambdas.responses import answers_cors, error_response, json_response
from serving_lambdas.store import ClaimLost, IdempotentRequest, open_store

logger = logging.getLogger(__name__)
UNAVAILABLE = "the model endpoint is unavailable; nothing was stored, retry later"
STORE_UNAVAILABLE = "the prediction store is unavailable; the prediction was not stored or answered, retry later"
MODEL_RESOURCE = "/model"


@answers_cors
def handler(event: dict, context: object) -> dict:
    settings = inference_settings()
    if event.get("resource") == MODEL_RESOURCE:
        return json_response(200, live_description(settings))
    if event.get("resource") == feedback.RESOURCE:
        return feedback.handle(event, settings)
    try:
        key = idempotency.requested_key(event)
        payload = parse_payload(event, settings.feature_names, settings.aliases, settings.max_batch_rows)
    except (PayloadError, idempotency.IdempotencyKeyError) as error:
        return error_response(400, str(error))
    if key is None:
        return predict(payload, settings)
    return idempotency.serve_once(key, event, payload, open_store(settings.store),
                                  lambda request: predict(payload, settings, request))


def predict(payload: Payload, settings: InferenceSettings, request: IdempotentRequest | None = None) -> dict:
    """Ask the endpoint, store the predictions (with the answer, for an idempotent ``request``), answer."""
    try:
        answer = invoke(settings.endpoint_name, settings.runtime_url, payload.rows, settings.version_ttl_seconds,
                        settings.task)
    except EndpointUnavailable:
        return error_response(503, UNAVAILABLE)
    records = make_records(payload.rows, answer, settings, payload.request_ids)
    if payload.batch:
        body: dict = {"predictions": [record.answer() for record in records]}
    else:
        body = records[0].answer()
    try:
        store(records, settings, None if request is None else idempotency.answered(request, 200, body))
    except ClaimLost:
        return idempotency.in_progress()
    except Exception:  # the store's own error (SQLite, DynamoDB, the disk): logged, nothing was written
        logger.exception("prediction store %s failed", settings.store.target)
        return error_response(503, STORE_UNAVAILABLE)
    report(records, answer, settings.endpoint_name)
    return json_response(200, body)


def store(records: list[PredictionRecord], settings: InferenceSettings,
          answered: IdempotentRequest | None = None) -> None:
    """Write the predictions (all or none; with an idempotent request's answer), timing the write; a failure is
    counted and raised."""
    started = time.perf_counter()
    try:
        open_store(settings.store).put(records, answered)
    except ClaimLost:
        raise  # not the store's failure: another request holds the key
    except Exception:
        metrics.emit({"StoreErrors": (1, "Count")}, Endpoint=settings.endpoint_name)
        raise
    latency_ms = (time.perf_counter() - started) * 1000
    metrics.emit({"StoreWriteLatency": (latency_ms, "Milliseconds")}, Endpoint=settings.endpoint_name)


def report(records: list[PredictionRecord], answer: EndpointAnswer, endpoint: str) -> None:
    """The request's metrics: the endpoint call's latency, and the predictions by label (a regression model's
    predictions have no label: they are counted by endpoint alone)."""
    metrics.emit({"ModelLatency": (answer.latency_ms, "Milliseconds")}, Endpoint=endpoint)
    for label, count in Counter(record.label for record in records).items():
        by_label = {} if label is None else {"Label": label}
        metrics.emit({"Predictions": (count, "Count")}, Endpoint=endpoint, **by_label)
    logger.debug("stored %d prediction(s) of model version %s", len(records), answer.model_version)


def make_records(
    rows: list[list[float]], answer: EndpointAnswer, settings: InferenceSettings, request_ids: list[str | None]
) -> list[PredictionRecord]:
    """One record per row, all made now, with the client's id of the row; a classifier's probabilities keyed by
    class name."""
    moment = utc_now()
    timestamp = timestamp_text(moment)
    classes = settings.class_names
    records = []
    rows_made = zip(new_ids(moment, len(rows)), rows, answer.scores, request_ids, strict=True)
    for prediction_id, row, score, request_id in rows_made:
        probabilities = score.probabilities
        label = None
        if settings.task != "regression":
            if not 0 <= score.prediction < len(classes) or (probabilities and len(probabilities) != len(classes)):
                raise ValueError(f"the endpoint's classes do not match CLASS_NAMES {list(classes)}")
            label = classes[int(score.prediction)]
        records.append(
            PredictionRecord(
                id=prediction_id,
                request_id=request_id,
                timestamp=timestamp,
                features=dict(zip(settings.feature_names, row, strict=True)),
                prediction=score.prediction,
                label=label,
                probabilities=None if probabilities is None else dict(zip(classes, probabilities, strict=True)),
                model_version=answer.model_version,
                latency_ms=round(answer.latency_ms, 3),
            )
        )
    return records
