"""The SageMaker Runtime face of the endpoint (``POST /endpoints/{EndpointName}/invocations``).

Successful answers are the container's, as InvokeEndpoint passes them through. Errors take the service's
rest-json shape, which botocore turns into ``ClientError``: the code in ``x-amzn-ErrorType``, the message
in ``Message``. An error of the model (a 4xx/5xx from /invocations) becomes ``ModelError`` (424) carrying
``OriginalStatusCode`` and ``OriginalMessage``, as a real endpoint reports a container's error.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

INVOCATIONS_PATH = re.compile(r"^/endpoints/([^/]+)/invocations$")


def invoked_endpoint_name(path: str) -> str | None:
    """The EndpointName of an InvokeEndpoint path, or None for another path."""
    match = INVOCATIONS_PATH.match(path)
    return unquote(match.group(1)) if match else None


def unknown_endpoint(name: str, served: str) -> tuple[int, dict[str, str], bytes]:
    return error(400, f"Endpoint {name} of account local not found (this endpoint is {served}).", from_model=False)


def error(
    status: int, message: str, variant: str | None = None, from_model: bool = True
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and JSON body of the InvokeEndpoint error for an error of the model or of the endpoint."""
    if not from_model:
        code = "ServiceUnavailable" if status == 503 else "ValidationError"
        return status, {"x-amzn-ErrorType": code}, json.dumps({"Message": message}).encode()
    side = "client" if status < 500 else "server"
    document = {
        "ErrorCode": f"{side.upper()}_ERROR_FROM_MODEL",
        "Message": f'Received {side} error ({status}) from {variant or "primary"} with message "{message}".',
        "OriginalStatusCode": status,
        "OriginalMessage": message,
    }
    return 424, {"x-amzn-ErrorType": "ModelError"}, json.dumps(document).encode()
