"""The endpoint's CSV content type as the built-in XGBoost container reads it: ``label_size``, the one parameter
it checks, must be 1 (the CSV holds no label at inference); any other value is answered 415, as
``sagemaker_xgboost_container.data_utils.get_content_type`` refuses it and the container turns that into 415."""

from __future__ import annotations

import pytest
from endpoint_calls import CONTRACT_EXAMPLE, invoke


@pytest.mark.parametrize("content_type", [
    "text/csv; label_size=2", "text/csv;label_size=0", "TEXT/CSV; LABEL_SIZE=2", 'text/csv; label_size="2"',
    "csv; label_size=10", "text/csv; charset=utf-8; label_size=", "text/csv; label_size=01",
])
def test_a_label_size_other_than_1_is_415(serve, content_type: str):
    server = serve("softmax")
    status, headers, body = invoke(server, CONTRACT_EXAMPLE, content_type=content_type)
    assert (status, headers["Content-Type"]) == (415, "text/plain; charset=utf-8")
    assert body == f"{content_type} is not an accepted csv ContentType. Optional parameter label_size must be " \
                   "equal to 1\n"
    assert invoke(server, CONTRACT_EXAMPLE)[0] == 200


@pytest.mark.parametrize("content_type", [
    "text/csv; label_size=1", 'text/csv;label_size="1"', "text/csv; charset=utf-8", "text/csv; LABEL_SIZE=1",
])
def test_label_size_1_and_other_parameters_are_served(serve, content_type: str):
    assert invoke(serve("softmax"), CONTRACT_EXAMPLE, content_type=content_type)[:3:2] == (200, "1.0")


def test_label_size_is_a_csv_parameter_only(serve):
    """The container's check is on CSV; JSON (which it does not take) and libsvm ignore the parameter."""
    server = serve("softmax")
    assert invoke(server, "[6.7, 3.3, 5.7, 2.5]", content_type="application/json; label_size=2")[0] == 200
    assert invoke(server, "0:6.7 1:3.3 2:5.7 3:2.5", content_type="text/libsvm; label_size=2")[0] == 200
