"""A schemathesis run against the OpenAPI document the local API serves (the real endpoint, handlers, gateway and
SQLite store on 127.0.0.1): every phase (examples, coverage, fuzzing, stateful), every check, a fixed seed and a
bounded number of examples, and no failure. The document is exact: what it allows is served (no "schema-valid
request rejected"), nothing answers 5xx, and every status and body is documented.

The only rejections allowed of schema-valid requests are the rules JSON Schema cannot say, each matched by its
message (``CROSS_FIELD_RULES``)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status
from schemathesis.engine import events as engine_events
from schemathesis.openapi.checks import RejectedPositiveData
from test_feedback_api import houses  # noqa: F401 (a fixture)
from test_postman import KEY, api, call, spec_of  # noqa: F401 (api: a fixture)

from deploy.local_service import LocalService
from pipelines.state import StateHome
from serving_lambdas.config import DEFAULT_MAX_BATCH_ROWS
from serving_lambdas.listing import TOKEN_PATTERN

SEED = 20261205
MAX_EXAMPLES = 40  # per operation and phase: 10 to 20 s a run on this machine
# (operation, status) -> the messages of the rules between fields or requests that the document states in words
CROSS_FIELD_RULES = {
    ("GET /predictions", 400): ("since must be before until", "next_token belongs to a query with another "),
    ("POST /predictions", 400): (" differ (",),  # request_id and sample_id, both given, must agree
    ("POST /predictions", 422): ("this Idempotency-Key was used with another request body",),
}


def config(port: int, directory: str) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "base-url": f"http://127.0.0.1:{port}",
        "headers": {"x-api-key": KEY},
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"max-steps": 10}},
        "cache": {"enabled": False, "directory": directory},
        "request-timeout": 10,
    })


def schema_of(api, directory: str):  # noqa: F811
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{api.port}/openapi.json",
                                           config=config(api.port, directory))

    @schema.hook
    def filter_failure(context, failure, case, response) -> bool:  # noqa: ANN001
        """Keep every failure but a schema-valid request refused by a rule the schema cannot express."""
        rules = CROSS_FIELD_RULES.get((f"{case.method.upper()} {case.path}", response.status_code), ())
        return not (isinstance(failure, RejectedPositiveData) and any(rule in response.text for rule in rules))

    return schema


def run(schema) -> tuple[int, list[str]]:
    """The number of requests a run sent, and every failed check (the operation, the check, the request as curl and
    the answer) and every error, one entry each."""
    requests, found = 0, set()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, engine_events.ScenarioFinished):
            recorder = event.recorder
            requests += len(recorder.interactions)
            for case_id, checks in recorder.checks.items():
                response = recorder.interactions[case_id].response if case_id in recorder.interactions else None
                answer = f"{response.status_code} {response.content[:300]!r}" if response is not None else "none"
                for check in checks:
                    if check.status == Status.FAILURE:
                        info = check.failure_info
                        found.add(f"{info.failure.operation}: {check.name}: {info.failure.title}\n"
                                  f"    {info.code_sample}\n    -> {answer}")
        elif isinstance(event, engine_events.NonFatalError):
            found.add(f"error in {event.label}: {event.value!r}")
        elif isinstance(event, engine_events.FatalError):
            found.add(f"fatal error: {event.exception!r}")
    return requests, sorted(found)


@pytest.fixture
def houses_api(houses: StateHome, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """The API of a regression model (generated data), as `cloudviz serve` runs it."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with LocalService(houses, "Houses", KEY).start(poll_seconds=3600) as service:
        yield service.api


@pytest.fixture
def hypothesis_home(tmp_path):
    """Hypothesis keeps what it learns (constants of the sources) in the test's folder, not the repository's."""
    set_hypothesis_home_dir(tmp_path / "hypothesis")
    yield
    set_hypothesis_home_dir(None)


def test_the_documents_next_token_is_the_pattern_the_server_accepts(api):  # noqa: F811
    (parameter,) = [parameter for parameter in spec_of(api)["paths"]["/predictions"]["get"]["parameters"]
                    if parameter["name"] == "next_token"]
    assert parameter["schema"]["pattern"] == f"^{TOKEN_PATTERN}$"


def test_the_documents_batch_limit_is_the_servers(api):  # noqa: F811
    """A batch the document allows is served; one row more, which it forbids, is the server's 400."""
    schemas = spec_of(api)["components"]["schemas"]
    limit = schemas["InstancesInput"]["properties"]["instances"]["maxItems"]
    assert schemas["BatchInput"]["properties"]["input_data"]["maxItems"] == limit == DEFAULT_MAX_BATCH_ROWS
    assert f"at most {limit}" in schemas["BatchInput"]["description"]
    row = [6.7, 3.3, 5.7, 2.5]
    assert call(api, "POST", "/predictions", {"input_data": [row] * limit})[0] == 200
    status, _, answer = call(api, "POST", "/predictions", {"input_data": [row] * (limit + 1)})
    assert status == 400 and str(limit) in answer["message"], answer


@pytest.mark.parametrize("served", ["api", "houses_api"], ids=["iris", "regression"])
def test_the_served_document_holds_under_a_schemathesis_run(served: str, request: pytest.FixtureRequest, tmp_path,
                                                            hypothesis_home):
    schema = schema_of(request.getfixturevalue(served), str(tmp_path / "schemathesis"))
    assert len(schema) == 5
    requests, failures = run(schema)
    assert failures == [], "\n".join(failures)
    assert requests >= 5 * MAX_EXAMPLES  # every operation was exercised, none skipped
