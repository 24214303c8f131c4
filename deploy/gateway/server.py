"""``ApiGateway``: what API Gateway does with a request, and the threaded HTTP/1.1 server in front of it.

Lean on purpose, since every API call passes through it: the keep-alive server of ``deploy.http11``, literal
routes found by one dict lookup.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import parse_qs, unquote

from deploy.gateway import responses
from deploy.gateway.access_log import AccessLog
from deploy.gateway.events import LambdaContext, proxy_event
from deploy.gateway.lambda_pool import LambdaPool
from deploy.gateway.policy import CorsPolicy, is_loopback_host, key_matches
from deploy.gateway.responses import MalformedProxyResponse, Response
from deploy.gateway.routes import LambdaRoute, PlainRequest, PlainRoute, Route, Router
from deploy.http11 import HTTPError, Request, Service

# The largest legitimate call is a batch of MAX_BATCH_ROWS (100, at most 1000) rows of four numbers: well under
# 100 KB. 1 MiB leaves ten times that headroom while bounding what one connection can make the process buffer
# (API Gateway's own limit is 10 MB, Lambda's 6 MB); it is a parameter for APIs that need more.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

logger = logging.getLogger(__name__)


def static_route(path: str, file: Path) -> PlainRoute:
    """A GET route serving a file read once, now: what is served is what was there at start."""
    body = file.read_bytes()
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return PlainRoute("GET", path, lambda request: (200, {"Content-Type": content_type}, body))


class ApiGateway(Service):
    """API Gateway's REST API front door for in-process handlers: routing, ``x-api-key``, CORS on the Lambda
    routes for ``cors_origins`` (none: no CORS), a body-size limit (413), an access log, and API Gateway's answers
    to unknown routes (403), refused keys (403) and failing handlers (502, the traceback to the log, never to the
    client). The gateway's own pages (plain routes) answer only to a loopback ``Host`` (421 otherwise).

    ``environment`` is the handlers' configuration, read from environment variables as on AWS Lambda: the
    handlers run in this process, so it is set in ``os.environ`` from ``start`` and the previous values come
    back at ``close``. One process therefore serves one such configuration at a time. With ``lambda_workers``,
    the Lambda routes' handlers run in that many worker processes instead (``deploy.gateway.lambda_pool``),
    started with that configuration."""

    def __init__(
        self,
        routes: Iterable[Route],
        api_key: str,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        access_log: Path | None = None,
        stage: str = "local",
        static: Mapping[str, Path] | None = None,
        cors_origins: Sequence[str] = (),
        observers: Sequence[Callable[[dict], None]] = (),
        environment: Mapping[str, str] | None = None,
        lambda_workers: int = 0,
    ) -> None:
        self.router = Router([*routes, *(static_route(path, file) for path, file in (static or {}).items())])
        super().__init__(host, port, max_body_bytes, thread_name="api-gateway")
        self.api_key = api_key
        self.access_log_path = access_log
        self.stage = stage
        self.cors = CorsPolicy(cors_origins)
        self.observers = tuple(observers)  # each gets every access-log entry (metrics)
        self.environment = dict(environment or {})
        self._log: AccessLog | None = None
        self._replaced: dict[str, str | None] = {}  # the environment variables set at start, as they were
        self.lambda_workers = lambda_workers
        self.lambda_pool: LambdaPool | None = None

    def start(self) -> ApiGateway:
        self._log = AccessLog(self.access_log_path) if self.access_log_path is not None else None
        self._replaced = {name: os.environ.get(name) for name in self.environment}
        os.environ.update(self.environment)
        if self.lambda_workers:
            self.lambda_pool = LambdaPool(self.lambda_workers, self.environment).start()
        return super().start()

    def close(self) -> None:
        """Stop serving, then stop the Lambda workers, close the access log and give the environment back its
        previous values."""
        super().close()
        if self.lambda_pool is not None:
            self.lambda_pool.close()
            self.lambda_pool = None
        if self._log is not None:
            self._log.close()
            self._log = None
        for name, value in self._replaced.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._replaced = {}

    def respond(self, request: Request, body: bytes) -> Response:
        request_id = str(uuid.uuid4())
        response, resource, error = self.answer(request, body, request_id)
        cors = resource in self.router.lambda_templates
        return self.finish(request, request_id, response, resource, error, len(body), cors)

    def error_page(self, request: Request | None, error: HTTPError) -> Response:
        """A request refused before routing (unreadable, too large, no Content-Length), in API Gateway's shape."""
        status, headers, payload = responses.refused(error.status, error.message)
        if request is None:  # nothing to log: not even the method and path could be read
            return status, headers, payload
        found = self.router.resource(request.path)
        cors = found is not None and found[0].template in self.router.lambda_templates
        return self.finish(request, str(uuid.uuid4()), (status, headers, payload), None, None, 0, cors)

    def finish(
        self,
        request: Request,
        request_id: str,
        response: Response,
        resource: str | None,
        error: str | None,
        request_bytes: int,
        cors: bool,
    ) -> Response:
        """The response with the request id (and CORS headers on a Lambda route), its access log line written
        first, so a client that has its answer finds the line."""
        status, headers, payload = response
        entry = {
            "request_id": request_id,
            "method": request.method,
            "path": request.path,
            "resource": resource,
            "status": status,
            "latency_ms": round((time.perf_counter() - request.received) * 1000, 3),
            "source_ip": request.client,
            "request_bytes": request_bytes,
            "bytes": len(payload),
        }
        if error is not None:
            entry["error"] = error
        if self._log is not None:
            self._log.write(entry)
        for observe in self.observers:
            observe(entry)
        if cors:
            headers = self.cors.apply(headers, request.lower.get("origin"))
        headers.append(("x-amzn-RequestId", request_id))
        return status, headers, payload

    def answer(self, request: Request, body: bytes, request_id: str) -> tuple[Response, str | None, str | None]:
        """(response, resource template or None, error text for the log or None) for one request."""
        method, raw_path, headers, source_ip = request.method, request.path, request.headers, request.client
        found = self.router.resource(raw_path)
        if found is None:
            return responses.missing_authentication_token(), None, None
        resource, path_parameters = found
        route = resource.methods.get(method)
        if route is None:
            if method == "OPTIONS" and resource.template in self.router.lambda_templates:
                preflight = self.cors.preflight(request.lower.get("origin"), resource.methods)
                if preflight is not None:
                    return (204, preflight, b""), resource.template, None
            return responses.missing_authentication_token(), resource.template, None
        if isinstance(route, PlainRoute) and not is_loopback_host(request.lower.get("host")):
            return responses.misdirected(), resource.template, None
        supplied_key = next((value for name, value in headers if name.lower() == "x-api-key"), None)
        if route.api_key_required and not key_matches(supplied_key, self.api_key):
            return responses.forbidden(), resource.template, None
        try:
            if isinstance(route, LambdaRoute):
                event = proxy_event(
                    method=method,
                    path=unquote(raw_path),
                    resource=resource.template,
                    path_parameters=path_parameters,
                    query=request.query,
                    headers=headers,
                    body=body,
                    request_id=request_id,
                    stage=self.stage,
                    source_ip=source_ip,
                    api_key=supplied_key if route.api_key_required else None,
                )
                context = LambdaContext(route.function_name, route.memory_limit_in_mb, route.timeout_seconds)
                if self.lambda_pool is None:
                    result = route.handler(event, context)
                else:
                    result = self.lambda_pool.invoke(route.handler, event, context)
                return responses.from_proxy_result(result), resource.template, None
            plain = PlainRequest(
                method=method,
                path=unquote(raw_path),
                path_parameters=path_parameters,
                query=parse_qs(request.query, keep_blank_values=True),
                headers={name.lower(): value for name, value in headers},
                body=body,
                request_id=request_id,
                source_ip=source_ip,
            )
            status, plain_headers, plain_body = route.respond(plain)
            return (status, list(plain_headers.items()), plain_body), resource.template, None
        except MalformedProxyResponse as error:
            problem = f"Execution failed due to configuration error: Malformed Lambda proxy response: {error}"
        except Exception:  # a failing handler is the API's 502, whatever it raised; the service stays up
            problem = traceback.format_exc()
        logger.error("request %s %s %s failed: %s", request_id, method, raw_path, problem)
        return responses.internal_server_error(), resource.template, problem
