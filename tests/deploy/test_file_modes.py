"""The state home is its owner's only: the folder 0700, its databases, logs and key 0600 from the instant they
are created (whatever the umask), and a home an older version left open is closed on start."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudviz.api.prediction_api import PredictionApi
from deploy.api_key import api_key
from deploy.endpoint_state import EndpointFiles
from deploy.gateway.access_log import AccessLog
from deploy.monitoring.alarm_history import AlarmHistory
from pipelines.json_logs import log_to_file
from pipelines.registry import ModelRegistry
from pipelines.scheduling.history import ScheduleHistory
from pipelines.state import StateHome
from serving_lambdas.store.sqlite import SqliteStore

CLOUDVIZ = [sys.executable, "-m", "cloudviz"]
GROUP = "CloudVizIris"


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, which leaves new files readable by everyone unless the code says otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def open_to_others(root: Path) -> list[str]:
    """Every file and folder below ``root`` (and itself) that is not 0600 / 0700, with its mode."""
    found = []
    for path in [root, *root.rglob("*")]:
        expected = 0o700 if path.is_dir() else 0o600
        if not path.is_symlink() and mode(path) != expected:
            found.append(f"{path.relative_to(root)}: {mode(path):04o}")
    return found


def run(*argv: str) -> str:
    result = subprocess.run([*CLOUDVIZ, *argv], capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_run_a_deployment_and_a_served_prediction_leave_nothing_readable_by_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None):
    root = tmp_path / "home"
    monkeypatch.setenv("CLOUDVIZ_HOME", str(root))
    monkeypatch.delenv("CLOUDVIZ_API_KEY", raising=False)
    run("pipeline", "run", "--quiet")
    run("models", "approve", GROUP, "1")
    run("deploy", "local")
    serve = subprocess.Popen([*CLOUDVIZ, "serve", "--api-port", "0", "--endpoint-port", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    files = EndpointFiles.of(StateHome(root), GROUP, "dev")
    try:
        printed = serve.stdout.readline()  # serve.json is written before the first line
        assert files.serve_file.is_file(), printed + serve.stderr.read()
        api = PredictionApi(json.loads(files.serve_file.read_text())["api_url"],
                            (root / "api-key").read_text().strip())
        assert api.predict({"x1": 6.7, "x2": 3.3, "x3": 5.7, "x4": 2.5})["id"]
        assert files.predictions_db.with_name("predictions.db-wal").exists()  # open while serving: -wal, -shm too
        assert open_to_others(root) == []
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=60)
    assert {"predictions.db", "alarms.db", "serve.log", "api-access.log"} <= {p.name for p in files.folder.iterdir()}
    assert {"registry.db", "api-key", "runs", "cache"} <= {path.name for path in root.iterdir()}
    assert open_to_others(root) == []


def test_databases_logs_and_the_key_are_created_owner_only_whatever_the_umask(tmp_path: Path, umask_022: None,
                                                                            monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CLOUDVIZ_API_KEY", raising=False)
    home = StateHome(tmp_path / "home")
    assert mode(home.root) == 0o700
    ModelRegistry(home.registry_db)
    ScheduleHistory(home.schedules_db).last_due("nightly")
    AlarmHistory(home.root / "endpoints" / "e" / "alarms.db")
    store = SqliteStore(home.root / "endpoints" / "e" / "predictions.db")
    store.put([])  # a write makes the writers' lock file
    with sqlite3.connect(store.path) as reader:  # the store's own connection keeps -wal and -shm in place
        reader.execute("SELECT count(*) FROM predictions").fetchone()
        assert {mode(Path(f"{store.path}{suffix}")) for suffix in ("", "-wal", "-shm")} == {0o600}
    api_key(home.api_key_file)
    logger = logging.getLogger("tests.file_modes")
    handler = log_to_file(home.logs / "serve.log", logger.name, max_bytes=100)
    try:
        for number in range(3):  # each line rotates the file: the new files too are owner-only
            logger.info("line %d %s", number, "x" * 100)
    finally:
        logger.removeHandler(handler)
        handler.close()
    access = AccessLog(home.logs / "api-access.log")
    access.write({"status": 200})
    access.close()
    assert (home.logs / "serve.log.2").is_file()
    # The folders below the home keep the umask's 0755 here (only the `cloudviz` command sets the umask): the home's
    # 0700 already keeps others out of them.
    assert [found for found in open_to_others(home.root) if not (home.root / found.split(":")[0]).is_dir()] == []


def test_a_home_an_older_version_left_open_is_closed_once_and_it_is_said(tmp_path: Path, umask_022: None,
                                                                       caplog: pytest.LogCaptureFixture):
    root = tmp_path / "old"
    (root / "endpoints" / "e").mkdir(parents=True)
    (root / "endpoints" / "e" / "predictions.db").write_text("rows")
    (root / "registry.db").write_text("versions")
    os.chmod(root, 0o755)
    assert mode(root / "registry.db") == 0o644
    with caplog.at_level(logging.WARNING, logger="pipelines.state"):
        StateHome(root)
        StateHome(root)
    assert open_to_others(root) == []
    assert [record.getMessage() for record in caplog.records] == [
        f"the state home {root} was readable by other users (mode 0755): made it and everything in it readable by"
        " its owner only"]
