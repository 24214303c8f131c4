"""One /invocations request, independent of HTTP: body and headers in, status and body out."""

from __future__ import annotations

from dataclasses import dataclass

import xgboost as xgb

from deploy.endpoint.decoding import decode, media_type
from deploy.endpoint.encoding import encode, negotiate
from deploy.endpoint.errors import InvocationError
from deploy.endpoint.model import ServingModel


@dataclass(frozen=True)
class Answer:
    body: bytes
    content_type: str
    status: int = 200


NO_CONTENT = Answer(b"", "text/plain", 204)


def invoke(
    model: ServingModel | None,
    body: bytes,
    content_type: str | None,
    accept: str | None,
    keys: tuple[str, ...] | None = None,
) -> Answer:
    """Predict with ``model`` (the one reference the request holds); InvocationError for a 4xx/5xx answer."""
    if model is None:
        raise InvocationError(503, "no model is loaded on this endpoint yet")
    if not body:
        return NO_CONTENT  # the container answers an empty payload with 204
    kind = media_type(content_type)
    response_type = negotiate(accept)
    features = decode(body, kind, model.num_features)
    try:
        predictions = model.predict(features)
    except xgb.core.XGBoostError as error:
        reason = str(error).strip().splitlines()[0]
        raise InvocationError(400, f"Unable to evaluate payload provided: {reason}") from None
    return Answer(encode(predictions, response_type, model.objective, model.num_class, keys), response_type)
