"""The control-plane calls the inference handler makes to learn the served version, in SageMaker's JSON protocol.

One endpoint configuration per loaded version (``<endpoint>-v<version>``), tagged as the AWS endpoint stack tags them.
"""

from __future__ import annotations

import json
import time

from deploy.aws.names import MODEL_VERSION_TAG, PRODUCTION_VARIANT
from deploy.endpoint.model import ServingModel
from serving_lambdas.served_version import DATA_SCHEMA_TAG

TARGET_PREFIX = "SageMaker."
CONTENT_TYPE = "application/x-amz-json-1.1"
ARN_PREFIX = "arn:aws:sagemaker:local:000000000000"  # placeholder region and account, in the shape of SageMaker ARNs


class ControlPlane:
    """DescribeEndpoint, DescribeEndpointConfig and ListTags of the endpoint ``name`` serving ``model``."""

    def __init__(self, name: str, started: float | None = None) -> None:
        self.name = name
        self.started = time.time() if started is None else started

    def answer(self, target: str | None, body: bytes, model: ServingModel | None) -> tuple[int, bytes]:
        """Status and JSON body of the call ``target`` (the X-Amz-Target header) with request ``body``."""
        operation = (target or "").removeprefix(TARGET_PREFIX)
        handlers = {"DescribeEndpoint": self.describe_endpoint, "DescribeEndpointConfig": self.describe_config,
                    "ListTags": self.list_tags}
        if not (target or "").startswith(TARGET_PREFIX) or operation not in handlers:
            return _error(400, "UnknownOperationException",
                          f"the local endpoint answers {', '.join(sorted(handlers))} only, not {target!r}")
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "SerializationException", "the request body is not JSON")
        if not isinstance(request, dict):
            return _error(400, "SerializationException", "the request body is not a JSON object")
        if model is None:
            return _error(400, "ValidationException", f"Could not find endpoint \"{self.name}\": no model is loaded")
        return handlers[operation](request, model)

    def config_name(self, model: ServingModel) -> str:
        return f"{self.name}-v{model.version}" if model.version is not None else f"{self.name}-unversioned"

    def describe_endpoint(self, request: dict, model: ServingModel) -> tuple[int, bytes]:
        if request.get("EndpointName") != self.name:
            return _error(400, "ValidationException", f"Could not find endpoint \"{request.get('EndpointName')}\".")
        return 200, _json({
            "EndpointName": self.name,
            "EndpointArn": f"{ARN_PREFIX}:endpoint/{self.name.lower()}",
            "EndpointConfigName": self.config_name(model),
            "EndpointStatus": "InService",
            "CreationTime": self.started,
            "LastModifiedTime": self.started,
            "ProductionVariants": [{"VariantName": PRODUCTION_VARIANT, "CurrentWeight": 1.0, "DesiredWeight": 1.0,
                                    "CurrentInstanceCount": 1, "DesiredInstanceCount": 1}],
        })

    def describe_config(self, request: dict, model: ServingModel) -> tuple[int, bytes]:
        name = self.config_name(model)
        if request.get("EndpointConfigName") != name:
            return _error(400, "ValidationException",
                          f"Could not find endpoint configuration \"{request.get('EndpointConfigName')}\".")
        return 200, _json({
            "EndpointConfigName": name,
            "EndpointConfigArn": self._config_arn(model),
            "ProductionVariants": [{"VariantName": PRODUCTION_VARIANT, "ModelName": name,
                                    "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
                                    "InitialVariantWeight": 1.0}],
            "CreationTime": self.started,
        })

    def list_tags(self, request: dict, model: ServingModel) -> tuple[int, bytes]:
        if request.get("ResourceArn") != self._config_arn(model):
            return _error(400, "ValidationException", f"Could not find resource {request.get('ResourceArn')!r}.")
        tags = [] if model.version is None else [{"Key": MODEL_VERSION_TAG, "Value": str(model.version)}]
        if model.schema_uri is not None:
            tags.append({"Key": DATA_SCHEMA_TAG, "Value": model.schema_uri})
        return 200, _json({"Tags": tags})

    def _config_arn(self, model: ServingModel) -> str:
        return f"{ARN_PREFIX}:endpoint-config/{self.config_name(model).lower()}"


def _json(document: dict) -> bytes:
    return json.dumps(document).encode()


def _error(status: int, code: str, message: str) -> tuple[int, bytes]:
    """An error as the JSON protocol carries it: botocore reads the code from ``__type``."""
    return status, _json({"__type": code, "message": message})
