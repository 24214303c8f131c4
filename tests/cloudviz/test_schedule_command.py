import json

import pytest

from cloudviz.cli import main


@pytest.fixture
def project(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_add_list_pause_resume_remove(project, capsys):
    added = run_json(capsys, "schedule", "add", "nightly", "--cron", "0 3 * * *", "--param", "Eta=0.2",
                     "--stage", "dev", "--stage", "prod")
    assert added == {"name": "nightly", "cron": "0 3 * * *", "dataset": "iris", "parameters": {"Eta": "0.2"},
                     "paused": False, "stages": ["dev", "prod"]}
    stored = json.loads((project / "cloudviz.schedules.json").read_text())
    assert stored["schedules"]["nightly"]["parameters"] == {"Eta": "0.2"}
    assert run_json(capsys, "schedule", "pause", "nightly")["paused"] is True
    assert run_json(capsys, "schedule", "list")[0]["paused"] is True
    assert run_json(capsys, "schedule", "resume", "nightly")["paused"] is False
    run_json(capsys, "schedule", "remove", "nightly")
    assert run_json(capsys, "schedule", "list") == []
    assert run_json(capsys, "schedule", "history") == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--cron", "0 25 * * *"], "schedule 'nightly': cron: cron '0 25 * * *': hour '25' is not 0-23"),
    (["--cron", "0 3 * * *", "--param", "Nope=1"], "unknown parameter 'Nope'"),
    (["--cron", "0 3 * * *", "--param", "DataSetVersion=iris@1"], "parameters.DataSetVersion"),
    (["--cron", "0 3 * * *", "--dataset", "Bad Name"], "dataset"),
])
def test_bad_input_is_one_line_naming_the_field(project, capsys, argv, message):
    assert main(["schedule", "add", "nightly", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_broken_file_is_named_with_the_schedule_and_field(project, capsys):
    (project / "cloudviz.schedules.json").write_text(json.dumps({"schedules": {"x": {"cron": "0 3 * *"}}}))
    assert main(["schedule", "list"]) == 2
    assert "cloudviz.schedules.json: schedule 'x': cron:" in capsys.readouterr().err


def test_scheduler_once_with_nothing_due(project, capsys):
    run_json(capsys, "schedule", "add", "nightly", "--cron", "0 3 * * *")
    assert run_json(capsys, "scheduler", "--once") == []
    assert main(["schedule", "remove", "missing"]) == 2
    assert "no schedule 'missing'" in capsys.readouterr().err
