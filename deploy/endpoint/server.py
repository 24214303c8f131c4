"""``EndpointServer``: SageMaker's hosting contract (``/ping``, ``/execution-parameters``, ``/invocations``),
the SageMaker Runtime path (``/endpoints/{EndpointName}/invocations``) and the control-plane calls that say
which model version it serves (``POST /``, ``deploy.endpoint.control``) over HTTP/1.1 keep-alive.

A thread per connection; a request holds the GIL only to parse and encode, and predicts in XGBoost's C
code, which releases it.
"""

from __future__ import annotations

import json
import logging
import os
import time

from deploy.aws.names import PRODUCTION_VARIANT
from deploy.endpoint import runtime
from deploy.endpoint.control import CONTENT_TYPE, ControlPlane
from deploy.endpoint.encoding import selected_keys
from deploy.endpoint.errors import InvocationError
from deploy.endpoint.invocation import invoke
from deploy.endpoint.model import ServingModel
from deploy.endpoint.slot import ModelSlot
from deploy.http11 import MIB, HTTPError, Request, Response, Service
from deploy.monitoring.metrics import EndpointMetrics

logger = logging.getLogger(__name__)
VARIANT_HEADER = "x-Amzn-Invoked-Production-Variant"
METHODS = {"/ping": "GET", "/execution-parameters": "GET", "/invocations": "POST"}
TEXT = "text/plain; charset=utf-8"


class EndpointServer(Service):
    """Serves the model in ``slot`` on ``host:port`` (port 0: a free one) from background threads.

    ``inference_output`` is the container's ``SAGEMAKER_INFERENCE_OUTPUT`` (e.g. ``"predicted_label,probabilities"``).
    """

    def __init__(
        self,
        slot: ModelSlot,
        name: str = "cloudviz-local",
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = 6 * MIB,
        inference_output: str | None = None,
        metrics: EndpointMetrics | None = None,
    ) -> None:
        super().__init__(host, port, max_body_bytes, thread_name=f"endpoint-{name}")
        self.slot = slot
        self.name = name
        self.keys = selected_keys(inference_output)
        self.metrics = metrics  # when given: counted invocations, and GET /metrics
        self.control = ControlPlane(name)

    # -- routes -----------------------------------------------------------------------------------

    def respond(self, request: Request, body: bytes) -> Response:
        route = (request.method, request.path)
        if request.path in METHODS and request.method != METHODS[request.path]:
            raise InvocationError(405, f"{request.path} takes {METHODS[request.path]}")
        if route == ("GET", "/ping"):
            if self.slot.current is None:
                return response(503, b"no model is loaded on this endpoint yet\n")
            return response(200)
        if route == ("GET", "/metrics") and self.metrics is not None:
            return self.metrics.response()
        if route == ("GET", "/execution-parameters"):
            return response(200, json.dumps(self.execution_parameters()).encode(), "application/json")
        if route == ("POST", "/invocations"):
            return self.invocation(request, body, runtime_api=False)
        if route == ("POST", "/"):
            status, document = self.control.answer(request.lower.get("x-amz-target"), body, self.slot.current)
            return response(status, document, CONTENT_TYPE)
        name = runtime.invoked_endpoint_name(request.path)
        if name is None:
            raise InvocationError(404, f"no such resource: {request.method} {request.path}")
        if request.method != "POST":
            raise InvocationError(405, f"{request.path} takes POST")
        if name != self.name:
            status, headers, document = runtime.unknown_endpoint(name, self.name)
            return response(status, document, "application/json", headers)
        return self.invocation(request, body, runtime_api=True)

    def invocation(self, request: Request, body: bytes, runtime_api: bool) -> Response:
        started = time.perf_counter()
        answer = self._invoke(request, body, runtime_api)
        if self.metrics is not None:
            self.metrics.observe_invocation(answer[0], time.perf_counter() - started)
        return answer

    def _invoke(self, request: Request, body: bytes, runtime_api: bool) -> Response:
        model = self.slot.current  # the request's one reference: a swap from here on does not touch it
        try:
            headers = request.lower
            answer = invoke(model, body, headers.get("content-type"), headers.get("accept"), self.keys)
            return response(answer.status, answer.body, answer.content_type, variant(model))
        except InvocationError as error:
            return self.failure(error, model, runtime_api)
        except Exception as error:  # a bug costs one request a 500, never the server, never a traceback to clients
            logger.exception("endpoint %s: unexpected error", self.name)
            return self.failure(InvocationError(500, f"internal error ({type(error).__name__})"), model, runtime_api)

    def failure(self, error: HTTPError, model: ServingModel | None, runtime_api: bool) -> Response:
        """The error as /invocations answers it; on the Runtime path, as InvokeEndpoint reports it (an error
        of the model is a ModelError; no model loaded means the endpoint is unavailable)."""
        if not runtime_api:
            return response(error.status, f"{error.message}\n".encode(), headers=variant(model))
        from_model = model is not None
        status, headers, document = runtime.error(error.status, error.message, PRODUCTION_VARIANT, from_model)
        return response(status, document, "application/json", {**variant(model), **headers})

    def error_page(self, request: Request | None, error: HTTPError) -> Response:
        """A request refused before routing (malformed, too large): in the Runtime API's shape on its path."""
        runtime_api = request is not None and runtime.invoked_endpoint_name(request.path) is not None
        return self.failure(error, None, runtime_api)

    def execution_parameters(self) -> dict:
        return {
            "MaxConcurrentTransforms": os.cpu_count() or 1,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": max(1, self.max_body_bytes // MIB),
        }


def response(
    status: int, body: bytes = b"", content_type: str = TEXT, headers: dict[str, str] | None = None
) -> Response:
    """A response as the container sends it: always with a Content-Type, plain text unless said."""
    return status, [("Content-Type", content_type), *(headers or {}).items()], body


def variant(model: ServingModel | None) -> dict[str, str]:
    return {VARIANT_HEADER: PRODUCTION_VARIANT} if model is not None else {}
