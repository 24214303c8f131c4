"""Scale-out: Preprocess writes each split as one part file per training instance, the train channel is dealt
out by file over the instances (SageMaker's ShardedByS3Key) and the training emulation trains on N hosts as the
built-in container's distributed mode does (each host its shard, XGBoost's collective summing their statistics),
so N instances train the model one instance trains, on 1/N of the data each."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from sagemaker_definition import offline_definition

from cloudviz.cli import main as cloudviz
from pipelines import executor
from pipelines.builtin_xgboost import train
from pipelines.builtin_xgboost.hyperparameters import DEFAULT_HYPERPARAMETERS
from pipelines.datasets import IRIS_PARAMETERS, iris_csv
from pipelines.definition import build_pipeline
from pipelines.errors import UserError
from pipelines.runner import LocalRunner
from pipelines.sagemaker.deployment import start as start_on_aws
from pipelines.state import StateHome
from preprocessing import preprocess

TRAINER = Path(train.__file__)
SPLITS = ("train", "validation", "test")
# Probabilities of N hosts on N shards against one host on the whole data. On a data set with fewer distinct
# values per feature than max_bin (256), the merged sketch of the shards has the whole data's cuts, and the
# summed gradient histograms are the whole data's up to the order of float additions: the models may differ
# only by rounding (float32 predictions: eps 1.2e-7). 1e-5 leaves room for that and is ~10^4 times smaller
# than what the defect (every host on the whole data) changes.
SAME_MODEL = 1e-5
DEFECT_AT_LEAST = 0.01


@pytest.fixture(scope="module")
def iris_parts(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Iris preprocessed with the contract's classes into 1, 2 and 3 parts per split (the same split)."""
    root = tmp_path_factory.mktemp("iris-parts")
    source = iris_csv(root)
    out = {}
    for parts in (1, 2, 3):
        out[parts] = root / f"parts-{parts}"
        assert preprocess_iris(out[parts], source, "--parts", str(parts)) == 0
    return out


def preprocess_iris(base: Path, source: Path, *extra: str) -> int:
    return preprocess.main([
        "--base-dir", str(base), "--input", str(source), "--label-column", "species",
        "--feature-columns", "x1,x2,x3,x4", "--class-names", IRIS_PARAMETERS["ClassNames"],
        *extra,
    ])


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def rows(files: list[Path]) -> np.ndarray:
    return np.vstack([np.loadtxt(path, delimiter=",", ndmin=2) for path in files])


# -- Preprocess: K part files ---------------------------------------------------------------------------------


def test_one_part_keeps_todays_file_names(iris_parts):
    base = iris_parts[1]
    assert {split: sorted(p.name for p in (base / split).iterdir()) for split in SPLITS} == {
        split: [f"{split}.csv"] for split in SPLITS
    }


def test_k_parts_together_are_the_one_part_output(iris_parts):
    one, three = iris_parts[1], iris_parts[3]
    for split in SPLITS:
        whole = lines(one / split / f"{split}.csv")
        parts = sorted((three / split).iterdir())
        assert [p.name for p in parts] == [f"{split}-part-{k:05d}.csv" for k in range(3)]
        contents = [lines(p) for p in parts]
        assert sorted(line for part in contents for line in part) == sorted(whole), split
        sizes = [len(part) for part in contents]
        assert max(sizes) - min(sizes) <= 1, (split, sizes)
        for part in contents:
            # A fair sample: every class (each has at least 3 rows per split), in the split's shuffled order.
            assert {line.split(",")[0] for line in part} == {"0", "1", "2"}, split
            remaining = iter(whole)
            assert all(line in remaining for line in part), split  # a subsequence of the one file
    # The rest of the output does not depend on the number of parts.
    assert json.loads((three / "baseline" / "statistics.json").read_text()) == json.loads(
        (one / "baseline" / "statistics.json").read_text()
    )
    schema_one, schema_three = (json.loads((b / "schema" / "schema.json").read_text()) for b in (one, three))
    assert (schema_one.pop("parts"), schema_three.pop("parts")) == (1, 3)
    assert schema_one == schema_three


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ("0", "--parts must be at least 1, got 0"),
        ("-2", "--parts must be at least 1, got -2"),
        ("25", "--parts 25: more parts than rows in the test split (24); use fewer training instances "
               "or more data"),
    ],
)
def test_bad_parts_is_a_one_line_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], parts, message):
    source = iris_csv(tmp_path)
    assert preprocess_iris(tmp_path / "out", source, "--parts", parts) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "out" / "train").exists()


# -- the training emulation on several hosts ----------------------------------------------------------------


def cluster(root: Path, shards: list[list[Path]], validation: list[Path]) -> tuple[list[int], dict[str, Path]]:
    """One trainer process per host, as SageMaker starts the container on each instance: its own /opt/ml with
    resourceconfig.json, its shard of train, all of validation, its own CPUs. Exit codes and the hosts' roots."""
    hosts = [f"algo-{i}" for i in range(1, len(shards) + 1)]
    roots = {host: root / host for host in hosts}
    hyperparameters = {**DEFAULT_HYPERPARAMETERS, "objective": "multi:softprob"}
    channels = {"train": {"ContentType": "text/csv", "S3DistributionType": "ShardedByS3Key"},
                "validation": {"ContentType": "text/csv", "S3DistributionType": "FullyReplicated"}}
    processes = []
    for (host, ml), shard, cpus in zip(roots.items(), shards, executor.cpu_shares(len(hosts)), strict=True):
        config = ml / "input" / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
        (config / "inputdataconfig.json").write_text(json.dumps(channels))
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": host, "hosts": hosts}))
        for channel, files in (("train", shard), ("validation", validation)):
            (ml / "input" / "data" / channel).mkdir(parents=True)
            for path in files:
                (ml / "input" / "data" / channel / path.name).symlink_to(path)
        argv = [sys.executable, str(TRAINER), "--ml-root", str(ml), "--tracker-dir", str(root / "tracker")]
        log = (root / f"{host}.log").open("w")
        pin = (lambda cpus=cpus: os.sched_setaffinity(0, cpus)) if cpus else None
        processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin))
    try:
        codes = [process.wait(timeout=120) for process in processes]
    finally:
        for process in processes:
            process.kill()
    return codes, roots


def booster(path: Path) -> xgb.Booster:
    model = xgb.Booster()
    model.load_model(path)
    return model


def probabilities(model: xgb.Booster, base: Path) -> np.ndarray:
    """On the test split of a preprocessing output, its files in name order."""
    test = rows(sorted((base / "test").iterdir()))
    return model.predict(xgb.DMatrix(test[:, 1:]))


@pytest.fixture(scope="module")
def single_host(iris_parts, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """Test-split probabilities of one host trained on the whole train split (one file)."""
    one = iris_parts[1]
    root = tmp_path_factory.mktemp("single-host")
    codes, roots = cluster(root, [[one / "train" / "train.csv"]], [one / "validation" / "validation.csv"])
    assert codes == [0]
    return probabilities(booster(roots["algo-1"] / "model" / train.MODEL_FILE), one)


def test_two_hosts_each_read_their_shard_and_train_the_one_host_model(iris_parts, single_host, tmp_path: Path):
    two = iris_parts[2]
    shards = [[path] for path in sorted((two / "train").iterdir())]
    codes, roots = cluster(tmp_path, shards, sorted((two / "validation").iterdir()))
    assert codes == [0, 0]
    for host, shard in zip(roots, shards, strict=True):
        log = (tmp_path / f"{host}.log").read_text()
        assert "Distributed node training with 2 hosts: algo-1, algo-2" in log
        assert f"Train matrix has {len(lines(shard[0]))} rows and 4 features" in log
    # The first host stores the model, the other none (SageMaker keeps the first host's).
    assert not (roots["algo-2"] / "model").exists()
    sharded = probabilities(booster(roots["algo-1"] / "model" / train.MODEL_FILE), iris_parts[1])
    assert np.abs(sharded - single_host).max() < SAME_MODEL


def test_two_hosts_each_on_the_whole_data_train_another_model(iris_parts, single_host, tmp_path: Path):
    """The defect: with the data replicated, every row counts twice in the summed gradients, so
    min_child_weight and gamma weigh half as much and the model changes."""
    one = iris_parts[1]
    whole = [one / "train" / "train.csv"]
    codes, roots = cluster(tmp_path, [whole, whole], [one / "validation" / "validation.csv"])
    assert codes == [0, 0]
    replicated = probabilities(booster(roots["algo-1"] / "model" / train.MODEL_FILE), one)
    assert np.abs(replicated - single_host).max() > DEFECT_AT_LEAST


def test_a_host_without_data_leaves_and_the_others_train(iris_parts, single_host, tmp_path: Path):
    """Three instances, two files: as in the container, the host that got no file warns, exits 0 and is left
    out of the training group."""
    two = iris_parts[2]
    shards = [[path] for path in sorted((two / "train").iterdir())] + [[]]
    codes, roots = cluster(tmp_path, shards, sorted((two / "validation").iterdir()))
    assert codes == [0, 0, 0]
    assert "Host algo-3 has no training or validation data: it is not used in training" in (
        tmp_path / "algo-3.log").read_text()
    sharded = probabilities(booster(roots["algo-1"] / "model" / train.MODEL_FILE), iris_parts[1])
    assert np.abs(sharded - single_host).max() < SAME_MODEL


def test_no_host_with_data_fails_the_job(iris_parts, tmp_path: Path):
    codes, roots = cluster(tmp_path, [[], []], sorted((iris_parts[2] / "validation").iterdir()))
    assert codes == [2, 2]
    for root in roots.values():
        assert (root / "output" / "failure").read_text() == "ClientError: No hosts received training data\n"


def test_a_failing_host_stops_the_others(tmp_path: Path, write_script):
    """Hosts wait for each other: when one fails the executor stops the rest instead of waiting forever."""
    waits = write_script("waits.py", "import time\ntime.sleep(600)\n")
    fails = write_script("fails.py", textwrap.dedent("""\
        import sys
        print("error: bad shard", file=sys.stderr)
        sys.exit(2)
    """))
    codes = executor.run_scripts([(waits, [], tmp_path / "a.log"), (fails, [], tmp_path / "b.log")])
    assert codes == [None, 2]
    assert (tmp_path / "b.log").read_text() == "error: bad shard\n"


# -- the pipeline ---------------------------------------------------------------------------------------------


def test_the_local_pipeline_on_two_training_instances(home: StateHome, model_tarball: Path, tmp_path: Path):
    record = LocalRunner(home, build_pipeline()).start({"TrainingInstanceCount": "2"})
    assert record.status == "Succeeded", record.failure_reason
    preprocess_out = Path(record.steps["Preprocess"].outputs["train"]).parent
    assert sorted(p.name for p in (preprocess_out / "train").iterdir()) == [
        "train-part-00000.csv", "train-part-00001.csv"
    ]
    ml = record.folder / "steps" / "Train" / "ml"
    for i in (0, 1):
        host = ml / f"algo-{i + 1}"
        assert [p.name for p in (host / "input" / "data" / "train").iterdir()] == [f"train-part-{i:05d}.csv"]
        assert sorted(p.name for p in (host / "input" / "data" / "validation").iterdir()) == [
            "validation-part-00000.csv", "validation-part-00001.csv"
        ]
        config = json.loads((host / "input" / "config" / "resourceconfig.json").read_text())
        assert config == {"current_host": f"algo-{i + 1}", "hosts": ["algo-1", "algo-2"]}
    logs = record.folder / "steps" / "Train" / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["attempt-1-algo-1.log", "attempt-1-algo-2.log"]
    assert record.steps["Train"].log == str(logs / "attempt-1-algo-1.log")
    # The same model as the default run's single instance.
    two_hosts, one_host = tmp_path / "two", tmp_path / "one"
    for tarball, folder in ((Path(record.steps["Train"].outputs["model"]) / "model.tar.gz", two_hosts),
                            (model_tarball, one_host)):
        subprocess.run(["tar", "-xzf", str(tarball), "-C", str(folder.mkdir() or folder)], check=True)
    difference = probabilities(booster(two_hosts / train.MODEL_FILE), preprocess_out) - probabilities(
        booster(one_host / train.MODEL_FILE), preprocess_out)
    assert np.abs(difference).max() < SAME_MODEL


def test_fewer_than_one_training_instance_is_refused(home: StateHome, capsys: pytest.CaptureFixture[str]):
    assert cloudviz(["pipeline", "run", "--param", "TrainingInstanceCount=0"]) == 2
    assert capsys.readouterr().err.strip().endswith("parameter TrainingInstanceCount: 0 is less than the minimum 1")
    with pytest.raises(UserError, match="TrainingInstanceCount: 0 is less than the minimum 1"):
        start_on_aws(object(), build_pipeline(), {"TrainingInstanceCount": "0"})


def test_the_sagemaker_definition_scales_training_with_one_parameter():
    """One parameter sets both the training job's instance count and Preprocess's part count, and the train
    channel is sharded by S3 key while validation is replicated."""
    steps = {step["Name"]: step for step in offline_definition()["Steps"]}
    arguments = steps["Preprocess"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    parts = json.dumps(arguments[arguments.index("--parts") + 1])  # an Integer parameter as text (a Std:Join)
    assert re.findall(r'"Get": "Parameters\.(\w+)"', parts) == ["TrainingInstanceCount"]
    training = steps["Train"]["Arguments"]
    assert training["ResourceConfig"]["InstanceCount"] == {"Get": "Parameters.TrainingInstanceCount"}
    distribution = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3DataDistributionType"]
                    for c in training["InputDataConfig"]}
    assert distribution == {"train": "ShardedByS3Key", "validation": "FullyReplicated"}
