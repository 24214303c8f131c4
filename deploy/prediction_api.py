"""The prediction API on the local gateway: the routes the API stack declares on AWS, wired to the same handlers.

The serving Lambdas read their configuration from environment variables, as on AWS; here they run in this
process, so the gateway sets that configuration in ``os.environ`` while it serves and restores it when it
closes. One process therefore serves one prediction API's configuration at a time. GET /openapi.json is generated
from the live model's description (``deploy.openapi``), once per description.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from deploy.gateway import DEFAULT_MAX_BODY_BYTES, ApiGateway, LambdaRoute, PlainRoute
from deploy.gateway.routes import PlainRequest, PlainResponse
from deploy.openapi import openapi_document
from serving_lambdas import feedback, inference, retrieve
from serving_lambdas.config import inference_settings
from serving_lambdas.model_description import live_description

INFERENCE_FUNCTION = "cloudviz-inference"
RETRIEVE_FUNCTION = "cloudviz-retrieve"


def prediction_routes() -> list[LambdaRoute]:
    """POST /predictions, GET /model and POST /predictions/{id}/feedback -> inference; GET /predictions and
    /predictions/{id} -> retrieve; all need the key."""
    return [
        LambdaRoute("POST", "/predictions", inference.handler, INFERENCE_FUNCTION),
        LambdaRoute("GET", "/model", inference.handler, INFERENCE_FUNCTION),
        LambdaRoute("POST", feedback.RESOURCE, inference.handler, INFERENCE_FUNCTION),
        LambdaRoute("GET", "/predictions", retrieve.handler, RETRIEVE_FUNCTION),
        LambdaRoute("GET", "/predictions/{id}", retrieve.handler, RETRIEVE_FUNCTION),
    ]


def build_prediction_api(
    environment: Mapping[str, str],
    api_key: str,
    host: str = "127.0.0.1",
    port: int = 0,
    access_log: Path | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    extra_routes: Sequence[LambdaRoute | PlainRoute] = (),
    observers: Sequence[Callable[[dict], None]] = (),
    cors_origins: Sequence[str] = (),
    lambda_workers: int = 0,
) -> ApiGateway:
    """The API, not yet started. ``environment`` is the handlers' configuration (ENDPOINT_NAME,
    SAGEMAKER_RUNTIME_URL, PREDICTION_STORE, FEATURE_NAMES, ...), set in ``os.environ`` while the API serves;
    ``extra_routes`` adds the gateway's own pages (metrics, a dashboard) beside GET /openapi.json; ``observers``
    receive every access-log entry; ``cors_origins`` the web origins allowed to call the API (none: no CORS);
    ``lambda_workers`` the processes the handlers run in (0: this one)."""
    return ApiGateway(
        [*prediction_routes(), PlainRoute("GET", "/openapi.json", served_openapi), *extra_routes],
        api_key,
        host=host,
        port=port,
        max_body_bytes=max_body_bytes,
        access_log=access_log,
        observers=observers,
        environment=environment,
        cors_origins=cors_origins,
        lambda_workers=lambda_workers,
    )


def served_openapi(request: PlainRequest) -> PlainResponse:
    """GET /openapi.json: the document of the model the endpoint serves now (no key needed)."""
    settings = inference_settings()
    description = json.dumps(live_description(settings), sort_keys=True)
    return 200, {"Content-Type": "application/json"}, _generated(description, settings.max_batch_rows)


@lru_cache(maxsize=8)
def _generated(description: str, max_batch_rows: int) -> bytes:
    return json.dumps(openapi_document(json.loads(description), max_batch_rows), indent=2).encode()
