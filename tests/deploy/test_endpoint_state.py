"""Each local endpoint keeps its serving state in its own folder of the state home.

Two groups (iris, and a generated five-class data set with other column names, each trained by the pipeline) are
served from one state home by two `cloudviz serve` processes at once: each one's predictions, dashboard panels,
drift, metrics and alarms show its own rows only. (Two serves, not two ``LocalService`` in one process: the prediction
API sets its handlers' configuration in ``os.environ``, so one process serves one API at a time.) Then the files a
state home of before kept per stage are migrated: moved whole when one endpoint served the stage, split row by
row between the endpoints whose deployments explain them when several did, and a second run changes nothing.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import logging
import shutil
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from generated_data import five_classes
from polling import wait_for
from prometheus_client.parser import text_string_to_metric_families

from deploy.dashboard.serve_file import ServeRecord, record_serve
from deploy.deployments import DeploymentStore
from deploy.endpoint_state import EndpointFiles, migrate_stage_files, stage_file, unassigned
from deploy.monitoring.alarm_history import AlarmHistory
from deploy.release import deploy_local
from pipelines.definition import DEFAULT_GROUP, build_pipeline
from pipelines.registry import ModelRegistry
from pipelines.runner import LocalRunner
from pipelines.state import StateHome
from serving_lambdas.records import PredictionRecord, new_ids, timestamp_text
from serving_lambdas.store.sqlite import COLUMNS, SqliteStore

KEY = "e" * 32
TREES = "Trees"
CLOUDVIZ = [sys.executable, "-m", "cloudviz"]
DRIFT_ALARM = "cloudviz-prediction-class-drift"
IRIS_ROW = {"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5}
ALDER_ROW = {"leaf_mm": 0.2, "bark_mm": 12.1, "height_m": 9.0}  # the first class: every row of its batches


@pytest.fixture(scope="module")
def two_groups(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state home holding version 1 of iris and of Trees, each trained by the pipeline and Approved."""
    root = tmp_path_factory.mktemp("two-groups")
    home = StateHome(root / "home")
    runner = LocalRunner(home, build_pipeline())
    assert runner.start({}).status == "Succeeded"
    assert runner.start(five_classes(root / "data").parameters(ModelPackageGroupName=TREES)).status == "Succeeded"
    registry = ModelRegistry(home.registry_db)
    for group in (DEFAULT_GROUP, TREES):
        registry.update_approval(group, 1, "Approved")
    return home.root


@pytest.fixture
def home(two_groups: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateHome:
    root = tmp_path / "home"
    shutil.copytree(two_groups, root, symlinks=True)
    monkeypatch.setenv("CLOUDVIZ_HOME", str(root))
    monkeypatch.setenv("CLOUDVIZ_API_KEY", KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return StateHome(root)


def call(url: str, method: str, path: str, body: object = None) -> tuple[int, object]:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    connection.request(method, path, None if body is None else json.dumps(body),
                       {"x-api-key": KEY, "Content-Type": "application/json"})
    response = connection.getresponse()
    text = response.read()
    return response.status, json.loads(text) if response.headers.get_content_type() == "application/json" else text


def cloudviz(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLOUDVIZ, *argv], capture_output=True, text=True, check=False)


def serve(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([*CLOUDVIZ, "serve", "--api-port", "0", "--endpoint-port", "0", "--alarm-period", "0.2",
                             *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def served(process: subprocess.Popen, files: EndpointFiles) -> ServeRecord:
    printed = process.stdout.readline()  # serve.json is written before the first line
    assert files.serve_file.is_file(), printed + process.stderr.read()
    return ServeRecord(**json.loads(files.serve_file.read_text()))


def predicted_labels(url: str) -> dict[str, float]:
    _, exposition = call(url, "GET", "/metrics")
    return {sample.labels["label"]: sample.value for family in text_string_to_metric_families(exposition.decode())
            if family.name == "cloudviz_predictions" for sample in family.samples
            if sample.name == "cloudviz_predictions_total"}


def test_two_groups_served_from_one_state_home_keep_their_state_apart(home: StateHome):
    iris_files, trees_files = (EndpointFiles.of(home, group, "dev") for group in (DEFAULT_GROUP, TREES))
    iris_serve, trees_serve = serve(), serve("--group", TREES)
    try:
        iris, trees = served(iris_serve, iris_files), served(trees_serve, trees_files)
        banner = "".join(trees_serve.stdout.readline() for _ in range(7))  # each command it names chooses Trees
        assert f"`cloudviz dashboard --group {TREES}` opens it" in banner, banner
        assert f"(cloudviz alarms list --group {TREES})" in banner
        assert f"cloudviz promote local --group {TREES} --from dev --to prod" in banner
        iris_ids = [call(iris.api_url, "POST", "/predictions", IRIS_ROW)[1]["id"] for _ in range(3)]
        trees_ids = []
        for _ in range(3):  # 240 rows of one class: past the drift monitor's minimum, and far from training's shares
            status, answer = call(trees.api_url, "POST", "/predictions", {"instances": [ALDER_ROW] * 80})
            assert status == 200, answer
            trees_ids += [prediction["id"] for prediction in answer["predictions"]]

        # Each API lists its own predictions only (the smoke test at start stored one more on each).
        for api, ids in ((iris.api_url, iris_ids), (trees.api_url, trees_ids)):
            status, listed = call(api, "GET", "/predictions?limit=1000")
            assert status == 200 and set(ids) < {item["id"] for item in listed} and len(listed) == len(ids) + 1
        # Its metrics count its own classes, its drift alarm fires on its own rows only.
        assert set(predicted_labels(iris.api_url)) <= {"setosa", "virginica", "versicolor"}
        assert predicted_labels(trees.api_url)["alder"] >= 240
        wait_for(lambda: any(t.new_state == "ALARM" for t in AlarmHistory(trees_files.alarms_db).transitions(
            DRIFT_ALARM, 10)), "Trees' class drift alarm")
        # Its dashboard: the predictions panel and the drift panel of its own rows and features.
        _, iris_panels = call(iris.api_url, "GET", "/dashboard/data")
        _, trees_panels = call(trees.api_url, "GET", "/dashboard/data")
        assert iris_panels["predictions"]["rows"] == 4 and trees_panels["predictions"]["rows"] == 241
        assert set(iris_panels["predictions"]["class_counts"]) <= {"setosa", "virginica", "versicolor"}
        assert iris_panels["drift"]["stored_rows"] == 4 and iris_panels["drift"]["features"] == {}
        assert set(trees_panels["drift"]["features"]) == {"leaf_mm", "bark_mm", "height_m"}

        # Each serve of the state home is refused a second time, and a taken port is named with its holder.
        again = cloudviz("serve", "--group", TREES, "--api-port", "0", "--endpoint-port", "0")
        assert (again.returncode, again.stderr) == (2, f"cloudviz: error: {TREES}-endpoint is served already, by"
                                                    f" process {trees_serve.pid} at {trees.api_url}: stop that"
                                                    " `cloudviz serve` first\n")
        port = iris.endpoint_url.rsplit(":", 1)[1]
        taken = cloudviz("serve", "--stage", "prod", "--endpoint-port", port, "--api-port", "0")
        assert taken.returncode == 2 and taken.stderr.startswith(
            f"cloudviz: error: cannot listen on 127.0.0.1:{port} (the endpoint port): Address already in use, by the"
            f" serve of {DEFAULT_GROUP}-endpoint (process {iris_serve.pid}); serve {DEFAULT_GROUP} on other ports"
            " with --api-port N --endpoint-port M (0: any free port)")
        listed = json.loads(cloudviz("alarms", "list", "--group", TREES, "--json").stdout)
        assert {alarm["rule"]: alarm["state"]["state"] for alarm in listed}[DRIFT_ALARM] == "ALARM"
    finally:
        for process in (iris_serve, trees_serve):
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)
    # The alarm histories, read by `cloudviz alarms` once the serves stopped: iris's never went to ALARM.
    iris_history = json.loads(cloudviz("alarms", "history", "--json").stdout)
    trees_history = json.loads(cloudviz("alarms", "history", "--group", TREES, "--json").stdout)
    assert iris_history and not any(t["new_state"] == "ALARM" for t in iris_history if t["alarm"] == DRIFT_ALARM)
    assert any(t["new_state"] == "ALARM" for t in trees_history if t["alarm"] == DRIFT_ALARM)
    assert [path.name for path in home.root.glob("*.db")] == ["registry.db"], "serving state: in endpoints/ only"
    assert not iris_files.serve_file.exists() and not trees_files.serve_file.exists()


# -- the migration of a state home of before ---------------------------------------------------------------


REQUEST_ID = [name.strip() for name in COLUMNS.split(",")].index("request_id")  # its place in a row of rows()


def rows(path: Path) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return sorted(db.execute("SELECT * FROM predictions"))


def store_of_before(path: Path, records: list[PredictionRecord]) -> None:
    """``records`` in a prediction store at ``path``, closed as when the serve that wrote them stopped."""
    SqliteStore(path).put(records)
    gc.collect()  # the store's connections close when it is collected


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` with its bytes (the lock file aside)."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != ".endpoints.lock"}


def predictions(at: datetime, features: dict[str, float], version: int, count: int = 1) -> list[PredictionRecord]:
    return [PredictionRecord(prediction_id, timestamp_text(at), features, 0, "setosa", None, version, 0.4)
            for prediction_id in new_ids(at, count)]


def deployed_at(home: StateHome, group: str) -> datetime:
    return datetime.fromisoformat(DeploymentStore(home.deployments).current(f"{group}-endpoint").deployed_at)


def deploy(home: StateHome, group: str, stage: str = "dev") -> None:
    deploy_local(ModelRegistry(home.registry_db), DeploymentStore(home.deployments), group, 1, True, "test", stage)


def test_the_files_of_a_stage_one_endpoint_served_move_to_its_folder_whole(home: StateHome):
    deploy(home, DEFAULT_GROUP)
    deploy(home, DEFAULT_GROUP, "prod")
    after = deployed_at(home, DEFAULT_GROUP) + timedelta(seconds=1)
    store_of_before(stage_file(home, "predictions_db", "dev"), predictions(after, IRIS_ROW, 1, count=5))
    store_of_before(stage_file(home, "predictions_db", "prod"), predictions(after, IRIS_ROW, 1, count=2))
    before = {stage: rows(stage_file(home, "predictions_db", stage)) for stage in ("dev", "prod")}
    AlarmHistory(stage_file(home, "alarms_db", "dev"))
    for name, text in (("access_log", '{"status": 200}\n'), ("serve_log", '{"message": "served"}\n')):
        stage_file(home, name, "dev").parent.mkdir(parents=True, exist_ok=True)
        stage_file(home, name, "dev").write_text(text)
    stage_file(home, "serve_log", "dev").with_name("serve.log.1").write_text('{"message": "rotated"}\n')
    record_serve(stage_file(home, "serve_file", "dev"), ServeRecord("http://127.0.0.1:9", "http://127.0.0.1:9", 1,
                                                                    DEFAULT_GROUP))

    dev, prod = EndpointFiles.of(home, DEFAULT_GROUP, "dev"), EndpointFiles.of(home, DEFAULT_GROUP, "prod")
    assert dev.folder == home.root / "endpoints" / f"{DEFAULT_GROUP}-endpoint"
    assert rows(dev.predictions_db) == before["dev"] and rows(prod.predictions_db) == before["prod"]
    assert dev.access_log.read_text() == '{"status": 200}\n' and dev.serve_log.read_text() == '{"message": "served"}\n'
    assert dev.serve_log.with_name("serve.log.1").read_text() == '{"message": "rotated"}\n'
    assert dev.alarms_db.is_file() and json.loads(dev.serve_file.read_text())["group"] == DEFAULT_GROUP
    for stage in ("dev", "prod"):
        assert not [name for name in ("predictions_db", "alarms_db", "access_log", "serve_log", "serve_file")
                    if stage_file(home, name, stage).exists()]
    assert not list(home.root.glob("predictions*")) and not list(home.root.glob("*-wal"))

    moved = tree(home.root)
    migrate_stage_files(home)
    assert tree(home.root) == moved


def test_predictions_of_several_endpoints_are_split_by_the_deployments_that_explain_them(
    home: StateHome, caplog: pytest.LogCaptureFixture
):
    registry = ModelRegistry(home.registry_db)
    iris = registry.get(DEFAULT_GROUP, 1)
    registry.register("IrisCopy", iris.model_data_url, "Approved", lineage=iris.lineage)  # iris's features too
    deploy(home, DEFAULT_GROUP)
    deploy(home, TREES)
    deploy(home, "IrisCopy")
    iris_at, copy_at = deployed_at(home, DEFAULT_GROUP), deployed_at(home, "IrisCopy")
    trees_row = {"leaf_mm": 1.0, "bark_mm": 11.0, "height_m": 4.0}
    between = iris_at + (copy_at - iris_at) / 2
    expected = {
        f"{DEFAULT_GROUP}-endpoint": predictions(between, IRIS_ROW, 1, count=3),  # before IrisCopy was deployed
        f"{TREES}-endpoint": predictions(copy_at + timedelta(seconds=1), trees_row, 1, count=4),
        "IrisCopy-endpoint": predictions(copy_at + timedelta(seconds=2), IRIS_ROW, 1, count=2),  # deployed last
        "unassigned": [*predictions(iris_at - timedelta(hours=1), IRIS_ROW, 1),  # before any deployment
                       *predictions(copy_at + timedelta(seconds=3), {"x1": 1.0}, 1),  # no version has its features
                       *predictions(copy_at + timedelta(seconds=4), trees_row, 2)],  # a version never deployed
    }
    legacy = stage_file(home, "predictions_db", "dev")
    store_of_before(legacy, [record for records in expected.values() for record in records])
    all_rows = rows(legacy)
    AlarmHistory(stage_file(home, "alarms_db", "dev"))

    with caplog.at_level(logging.INFO, logger="deploy.endpoint_state"):
        migrate_stage_files(home)
    for endpoint, records in expected.items():
        path = unassigned(legacy) if endpoint == "unassigned" else EndpointFiles.named(home, endpoint).predictions_db
        assert {row[0] for row in rows(path)} == {record.id for record in records}, endpoint
    split = [row for endpoint in expected for row in rows(
        unassigned(legacy) if endpoint == "unassigned" else EndpointFiles.named(home, endpoint).predictions_db)]
    assert sorted(split) == all_rows, "every row kept, once, as it was"
    assert not legacy.exists() and home.root.joinpath("alarms.unassigned.db").is_file()
    assert (f"3 predictions of {legacy} match no endpoint's deployments (its model version deployed at or before the"
            f" prediction, with the prediction's features): kept in {unassigned(legacy)}") in caplog.messages
    assert (f"{stage_file(home, 'alarms_db', 'dev')}: 3 endpoints were deployed on dev, so it cannot be given to one:"
            f" kept as {home.root / 'alarms.unassigned.db'} (serving starts it anew per endpoint)") in caplog.messages

    migrated = tree(home.root)
    migrate_stage_files(home)
    assert tree(home.root) == migrated


def test_a_split_reads_files_of_any_age_and_copies_no_row_twice(home: StateHome):
    """A file from before request ids is split all the same; rows already copied when a migration stopped (the
    file of before still there) are not copied again."""
    deploy(home, DEFAULT_GROUP)
    deploy(home, TREES)
    at = deployed_at(home, TREES) + timedelta(seconds=1)
    legacy = stage_file(home, "predictions_db", "dev")
    store_of_before(legacy, predictions(at, IRIS_ROW, 1, count=4))
    with contextlib.closing(sqlite3.connect(legacy)) as db:
        db.execute("ALTER TABLE predictions DROP COLUMN request_id")
    target = EndpointFiles.named(home, f"{DEFAULT_GROUP}-endpoint").predictions_db  # migrates: legacy is gone
    copied = rows(target)
    assert len(copied) == 4 and {row[REQUEST_ID] for row in copied} == {None}
    store_of_before(legacy, predictions(at, IRIS_ROW, 1, count=2))
    with contextlib.closing(sqlite3.connect(legacy)) as db, db:  # as a run stopped after its first copies left it
        db.executemany(f"INSERT INTO predictions VALUES ({', '.join('?' * len(copied[0]))})", copied)
    migrate_stage_files(home)
    assert len(rows(target)) == 6 and len({row[0] for row in rows(target)}) == 6 and not legacy.exists()


def test_alarms_commands_read_the_group_they_are_given(home: StateHome):
    for group in (DEFAULT_GROUP, TREES):
        assert cloudviz("alarms", "history", "--group", group).stdout.startswith("No alarm state changes")
    listed = cloudviz("alarms", "list", "--group", TREES)
    assert listed.returncode == 0 and listed.stdout.splitlines()[-1] == (
        f"`cloudviz serve --group {TREES}` is not running on this state home: start it to evaluate the alarms.")
    assert not (home.endpoints / f"{TREES}-endpoint").exists(), "reading alarms creates no endpoint's files"
