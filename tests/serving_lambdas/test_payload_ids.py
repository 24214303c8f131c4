"""serving_lambdas/payload.py: a client's row ids, ``request_id`` or its other name ``sample_id``, in every body form
that names rows (stored and answered as ``request_id`` by the handlers, end to end in test_readme_examples)."""

from __future__ import annotations

import json

import pytest

from serving_lambdas.payload import PayloadError, parse_payload

FEATURES = ("x1", "x2")
ALIASES = {"width": "x1"}


def parsed(body: dict):
    return parse_payload({"body": json.dumps(body)}, FEATURES, ALIASES, max_rows=10)


@pytest.mark.parametrize("body", [
    {"x1": 1.0, "x2": 2.0, "sample_id": "s-1"},
    {"features": {"width": 1.0, "x2": 2.0}, "sample_id": "s-1"},
    {"x1": 1.0, "x2": 2.0, "sample_id": "s-1", "request_id": "s-1"},  # both, agreeing
])
def test_a_single_rows_sample_id_is_its_request_id(body: dict):
    payload = parsed(body)
    assert (payload.rows, payload.request_ids) == ([[1.0, 2.0]], ["s-1"])


def test_each_instance_may_carry_a_sample_id_or_a_request_id():
    payload = parsed({"instances": [{"x1": 1, "x2": 2, "sample_id": "a"}, {"x1": 3, "x2": 4},
                                    {"x1": 5, "x2": 6, "request_id": "c"}]})
    assert payload.rows == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]] and payload.request_ids == ["a", None, "c"]


@pytest.mark.parametrize(("body", "message"), [
    ({"x1": 1, "x2": 2, "request_id": "a", "sample_id": "b"},
     "request_id and sample_id differ ('a', 'b'): sample_id is another name for request_id; send one"),
    ({"instances": [{"x1": 1, "x2": 2}, {"x1": 1, "x2": 2, "request_id": "a", "sample_id": "b"}]},
     "instances[1].request_id and instances[1].sample_id differ ('a', 'b'): sample_id is another name for "
     "request_id; send one"),
    ({"x1": 1, "x2": 2, "sample_id": 7}, "sample_id must be a string of 1 to 128 letters"),
    ({"instances": [{"x1": 1, "x2": 2}], "sample_id": "a"},
     "unexpected field 'sample_id' beside instances: a sample_id names one row (inside each instance)"),
])
def test_bad_or_conflicting_ids_are_refused_naming_the_fields(body: dict, message: str):
    with pytest.raises(PayloadError) as error:
        parsed(body)
    assert str(error.value).startswith(message)
