"""The local endpoint as the SageMaker Runtime API, called by a stock boto3 client: invocations, model and
validation errors, no model, and the served version read by a stock SageMaker client."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters
from endpoint_calls import CONTRACT_EXAMPLE

from deploy.aws.names import MODEL_VERSION_TAG, PRODUCTION_VARIANT
from deploy.endpoint import EndpointServer, ServingModel
from serving_lambdas.served_version import DATA_SCHEMA_TAG

# -- the SageMaker Runtime API, with a stock boto3 client -----------------------------------------------


@pytest.fixture
def runtime_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A sagemaker-runtime client for a local endpoint; no AWS configuration or network is used."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    def client(server: EndpointServer):
        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 1}),
        )

    return client


def test_boto3_invoke_endpoint_works_unchanged(serve, runtime_client):
    server = serve("softprob", version=2, name="CloudVizIris-endpoint")
    client = runtime_client(server)
    response = client.invoke_endpoint(
        EndpointName="CloudVizIris-endpoint", ContentType="text/csv", Accept="application/json", Body=CONTRACT_EXAMPLE
    )
    assert (response["ContentType"], response["InvokedProductionVariant"]) == ("application/json", PRODUCTION_VARIANT)
    assert int(np.argmax(json.loads(response["Body"].read())["predictions"][0]["score"])) == 1
    response = client.invoke_endpoint(EndpointName="CloudVizIris-endpoint", ContentType="text/csv", Body=b"1,2,3,4")
    assert response["ContentType"] == "text/csv" and len(json.loads(response["Body"].read())) == 3


def test_boto3_sees_a_model_error_with_the_original_message(serve, runtime_client):
    server = serve("softprob", name="CloudVizIris-endpoint")
    with pytest.raises(ClientError) as caught:
        runtime_client(server).invoke_endpoint(
            EndpointName="CloudVizIris-endpoint", ContentType="text/csv", Body="6.7,3.3,oops,2.5"
        )
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError" and error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400
    assert error["OriginalMessage"] == 'row 1, column 3: "oops" is not a number'
    assert error["Error"]["Message"] == (
        f'Received client error (400) from {PRODUCTION_VARIANT} with message "row 1, column 3: "oops" is not a number".'
    )


def test_boto3_sees_validation_errors_for_another_endpoint_and_an_oversized_body(serve, runtime_client):
    server = serve("softprob", name="CloudVizIris-endpoint", max_body_bytes=100)
    client = runtime_client(server)
    with pytest.raises(ClientError) as caught:
        client.invoke_endpoint(EndpointName="Other-endpoint", ContentType="text/csv", Body=CONTRACT_EXAMPLE)
    assert caught.value.response["Error"] == {
        "Code": "ValidationError",
        "Message": "Endpoint Other-endpoint of account local not found (this endpoint is CloudVizIris-endpoint).",
    }
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400  # as the real service answers
    with pytest.raises(ClientError) as caught:
        client.invoke_endpoint(EndpointName="CloudVizIris-endpoint", ContentType="text/csv", Body="1," * 100)
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_boto3_sees_service_unavailable_without_a_model(serve, runtime_client):
    server = serve(None)
    with pytest.raises(ClientError) as caught:
        runtime_client(server).invoke_endpoint(EndpointName="cloudviz-local", ContentType="text/csv", Body=b"1,2,3,4")
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailable"


def test_a_stock_boto3_sagemaker_client_reads_the_served_version(serve, runtime_client, artifacts):
    """The control-plane calls the inference handler makes (serving_lambdas/served_version.py), answered from
    what the endpoint serves, each response valid against SageMaker's service model."""
    server = serve("softprob", version=2, name="CloudVizIris-endpoint")
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="x")
    client = session.client("sagemaker", endpoint_url=server.url, config=Config(retries={"max_attempts": 1}))

    def checked(operation: str, **request) -> dict:
        response = getattr(client, xform_name(operation))(**request)
        shape = client.meta.service_model.operation_model(operation).output_shape
        validate_parameters({k: v for k, v in response.items() if k != "ResponseMetadata"}, shape)
        return response

    def version_tags() -> list[dict]:
        config = checked("DescribeEndpoint", EndpointName="CloudVizIris-endpoint")
        assert config["ProductionVariants"][0]["VariantName"] == PRODUCTION_VARIANT
        described = checked("DescribeEndpointConfig", EndpointConfigName=config["EndpointConfigName"])
        assert [v["VariantName"] for v in described["ProductionVariants"]] == [PRODUCTION_VARIANT]
        return checked("ListTags", ResourceArn=described["EndpointConfigArn"])["Tags"]

    assert version_tags() == [{"Key": MODEL_VERSION_TAG, "Value": "2"}]
    swapped = ServingModel.load(artifacts["softprob-short"], version=5)
    swapped.schema_uri = "file:///state/endpoints/CloudVizIris-endpoint/schema-v5.json"  # as the service sets it
    server.slot.swap(swapped)
    assert version_tags() == [{"Key": MODEL_VERSION_TAG, "Value": "5"},
                              {"Key": DATA_SCHEMA_TAG, "Value": swapped.schema_uri}]
    with pytest.raises(ClientError) as caught:
        client.describe_endpoint(EndpointName="Other-endpoint")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        client.list_endpoints()
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"
