"""The API Gateway REST API (v1) Lambda proxy event, and the Lambda context object handlers receive.

Field by field as API Gateway sends them: ``headers``/``queryStringParameters`` hold the last value of a
repeated name and the ``multiValue*`` fields every value; absent parts are ``null``, not empty objects;
a body that is not UTF-8 text arrives base64-encoded with ``isBase64Encoded`` true.
"""

from __future__ import annotations

import base64
import time
import uuid
import zlib
from urllib.parse import parse_qsl

LOCAL_ACCOUNT_ID = "123456789012"  # the placeholder account of AWS's documentation and moto
LOCAL_REGION = "us-east-1"
API_ID = "local"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class LambdaContext:
    """The attributes and method of the Python runtime's context object that handlers use."""

    function_version = "$LATEST"

    def __init__(self, function_name: str, memory_limit_in_mb: int, timeout_seconds: float) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = memory_limit_in_mb
        self.invoked_function_arn = f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + self.aws_request_id.replace("-", "")
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def multi_value(pairs: list[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    """(last value per name, every value per name), both ``None`` when there are no pairs."""
    if not pairs:
        return None, None
    single: dict[str, str] = {}
    multiple: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multiple.setdefault(name, []).append(value)
    return single, multiple


def request_time(epoch_seconds: float) -> str:
    """``$context.requestTime``: the CLF format, e.g. ``09/Apr/2015:12:34:56 +0000``."""
    t = time.gmtime(epoch_seconds)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def proxy_event(
    *,
    method: str,
    path: str,
    resource: str,
    path_parameters: dict[str, str],
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    request_id: str,
    stage: str,
    source_ip: str,
    api_key: str | None,
) -> dict:
    """The event a REST API sends to a Lambda proxy integration for one request."""
    now = time.time()
    single_headers, multi_headers = multi_value(headers)
    single_query, multi_query = multi_value(parse_qsl(query, keep_blank_values=True))
    lower = {name.lower(): value for name, value in headers}
    host = lower.get("host", "")
    if not body:
        text, is_base64 = None, False
    else:
        try:
            text, is_base64 = body.decode("utf-8"), False
        except UnicodeDecodeError:
            text, is_base64 = base64.b64encode(body).decode("ascii"), True
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "extendedRequestId": request_id,
            "httpMethod": method,
            "identity": {
                "accessKey": None,
                "accountId": None,
                "apiKey": api_key,
                "apiKeyId": None,
                "caller": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": source_ip,
                "user": None,
                "userAgent": lower.get("user-agent"),
                "userArn": None,
            },
            "path": f"/{stage}{path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": request_time(now),
            "requestTimeEpoch": int(now * 1000),
            "resourceId": f"{zlib.crc32(resource.encode()):08x}"[:6],
            "resourcePath": resource,
            "stage": stage,
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }
