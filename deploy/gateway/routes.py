"""Routes declared as data, and the router that finds the one a request path and method select.

Two kinds of route: a ``LambdaRoute`` calls a Lambda handler with a proxy event (the API itself); a
``PlainRoute`` calls a function that answers ``(status, headers, body)`` directly, for the gateway's own
pages (``/openapi.json`` and later ``/metrics`` or a dashboard), which need no key by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

ProxyHandler = Callable[[dict, object], dict]
PlainResponse = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class PlainRequest:
    """What a plain route sees of an HTTP request (query values and headers keep every repeated value)."""

    method: str
    path: str
    path_parameters: dict[str, str]
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names, the last value of a repeated header
    body: bytes
    request_id: str
    source_ip: str


@dataclass(frozen=True)
class LambdaRoute:
    """One API method with a Lambda proxy integration: ``resource`` is a template such as ``/predictions/{id}``."""

    method: str
    resource: str
    handler: ProxyHandler
    function_name: str
    api_key_required: bool = True
    memory_limit_in_mb: int = 128
    timeout_seconds: float = 29.0  # API Gateway's integration timeout, the longest a handler can matter


@dataclass(frozen=True)
class PlainRoute:
    """A method answered by the gateway itself: ``respond(request) -> (status, headers, body)``."""

    method: str
    resource: str
    respond: Callable[[PlainRequest], PlainResponse]
    api_key_required: bool = False


Route = LambdaRoute | PlainRoute


@dataclass
class _Resource:
    template: str
    segments: tuple[str, ...]
    methods: dict[str, Route] = field(default_factory=dict)

    @property
    def literal_count(self) -> int:
        return sum(not is_parameter(segment) for segment in self.segments)


def is_parameter(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def split(path: str) -> tuple[str, ...]:
    return tuple(path.strip("/").split("/")) if path.strip("/") else ()


class Router:
    """Literal resources are looked up in a dict; templated ones are tried most literal segments first,
    as API Gateway prefers ``/predictions/latest`` over ``/predictions/{id}``."""

    def __init__(self, routes: Iterable[Route]) -> None:
        resources: dict[str, _Resource] = {}
        for route in routes:
            segments = split(route.resource)
            template = "/" + "/".join(segments)
            resource = resources.setdefault(template, _Resource(template, segments))
            method = route.method.upper()
            if method in resource.methods:
                raise ValueError(f"two routes for {method} {template}")
            resource.methods[method] = route
        self._literal = {t: r for t, r in resources.items() if r.literal_count == len(r.segments)}
        # The API's own resources (a Lambda route among their methods): the only ones CORS may apply to.
        self.lambda_templates = frozenset(
            t for t, r in resources.items() if any(isinstance(m, LambdaRoute) for m in r.methods.values())
        )
        self._templated = sorted(
            (r for r in resources.values() if r.literal_count < len(r.segments)), key=lambda r: -r.literal_count
        )

    def resource(self, path: str) -> tuple[_Resource, dict[str, str]] | None:
        """The resource serving a raw (still percent-encoded) path, and its decoded path parameters."""
        segments = split(path)
        literal = self._literal.get("/" + "/".join(unquote(s) for s in segments))
        if literal is not None:
            return literal, {}
        for resource in self._templated:
            if len(resource.segments) != len(segments):
                continue
            parameters = {}
            for pattern, segment in zip(resource.segments, segments, strict=True):
                if is_parameter(pattern):
                    if not segment:
                        break
                    parameters[pattern[1:-1]] = unquote(segment)
                elif pattern != unquote(segment):
                    break
            else:
                return resource, parameters
        return None
