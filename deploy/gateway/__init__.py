"""A local stand-in for API Gateway (REST API, Lambda proxy integration): HTTP in, proxy events to handlers in-process.

The handlers are the same functions AWS Lambda runs; the gateway builds the event API Gateway would send,
calls ``handler(event, context)`` in the serving thread and turns the proxy response back into HTTP.
"""

from deploy.gateway.events import LambdaContext
from deploy.gateway.routes import LambdaRoute, PlainRequest, PlainRoute
from deploy.gateway.server import DEFAULT_MAX_BODY_BYTES, ApiGateway

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ApiGateway", "LambdaContext", "LambdaRoute", "PlainRequest", "PlainRoute"]
