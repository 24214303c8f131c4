"""The local pipeline runner: executes a declared pipeline on this machine.

Steps run in dependency order, each in its own folder under the run's folder. Processing and
training steps run their scripts with the container contract (``/opt/ml/processing`` and
``/opt/ml`` layouts rooted in the step folder); Register, the condition and the Fail step run
in-process, as SageMaker runs them in its service. Cacheable steps are looked up in the step
cache first; a failed step is retried per its retry policy when the failure was not the
input's fault (exit status 2); a failed run can be resumed from the step that failed.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Protocol

from pipelines import executor
from pipelines.builtin_xgboost.hyperparameters import HyperparameterError, stand_in
from pipelines.builtin_xgboost.hyperparameters import validate as validate_hyperparameters
from pipelines.cache import StepCache, code_digest, digest, file_sha256
from pipelines.dag import (
    ConditionStep,
    FailStep,
    JsonGet,
    Param,
    Pipeline,
    ProcessingStep,
    RegisterModelStep,
    Step,
    StepOutput,
    TrainingStep,
    Value,
    references,
    sent,
)
from pipelines.datasets import iris_csv
from pipelines.definition import data_parameters
from pipelines.errors import UserError
from pipelines.registry import ModelRegistry
from pipelines.runs import EXECUTING, FAILED, PENDING, SKIPPED, SUCCEEDED, RunRecord, RunStore, utc_now_text
from pipelines.state import StateHome

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINER = Path(__file__).resolve().parent / "builtin_xgboost" / "train.py"
PROCESSING_ROOT = PurePosixPath("/opt/ml/processing")
USER_ERROR_EXIT = 2
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}


class StepFailed(Exception):
    """A step ended without success; ``retryable`` says whether its retry policy applies."""

    def __init__(self, reason: str, retryable: bool = False) -> None:
        super().__init__(reason)
        self.retryable = retryable


class RunObserver(Protocol):
    """What the runner reports as it goes (the progress display implements it)."""

    def run_changed(self, record: RunRecord) -> None: ...


class SilentObserver:
    def run_changed(self, record: RunRecord) -> None:
        pass


class LocalRunner:
    """Runs ``pipeline`` with state under ``home``: ``start`` a new run or ``resume`` a failed one."""

    def __init__(
        self,
        home: StateHome,
        pipeline: Pipeline,
        observer: RunObserver | None = None,
        repo_root: Path = REPO_ROOT,
    ) -> None:
        self.home = home
        self.pipeline = pipeline
        self.observer = observer or SilentObserver()
        self.repo_root = repo_root
        self.runs = RunStore(home.runs)
        self.cache = StepCache(home.cache)
        self.registry = ModelRegistry(home.registry_db)

    # -- entry points ---------------------------------------------------------------------

    def start(self, overrides: dict[str, str] | None = None, use_cache: bool = True) -> RunRecord:
        """Validate parameters (and hyperparameters) up front, then create and execute a run."""
        values = self.resolve_parameters(overrides or {})
        record = self.runs.create(self.pipeline.name, values, self.pipeline.order())
        return self._execute(record, use_cache)

    def resume(self, run_id: str, use_cache: bool = True) -> RunRecord:
        """Re-run every step of a failed run that did not succeed, reusing those that did."""
        record = self.runs.load(run_id)
        if record.status == SUCCEEDED:
            raise UserError(f"run {run_id} succeeded; there is nothing to resume")
        if record.status == EXECUTING and record.runner_alive():
            raise UserError(f"run {run_id} is still executing (process {record.pid})")
        for parameter in self.pipeline.parameters:  # a run recorded before a parameter was renamed or added
            for alias in set(parameter.aliases) & set(record.parameters):
                record.parameters.setdefault(parameter.name, record.parameters.pop(alias))
            record.parameters.setdefault(parameter.name, parameter.default)
        for name, step in record.steps.items():
            if step.status != SUCCEEDED or isinstance(self.pipeline.step(name), ConditionStep):
                step.status, step.failure_reason, step.properties = PENDING, None, {}
        record.status, record.failure_reason, record.ended_at = EXECUTING, None, None
        record.resumed += 1
        record.pid = os.getpid()
        record.save()
        return self._execute(record, use_cache)

    def resolve_parameters(self, overrides: dict[str, str]) -> dict:
        values = self.pipeline.defaults()
        for name, text in overrides.items():
            parameter = self.pipeline.parameter(name)
            values[parameter.name] = parameter.parse(text, name)
        self.pipeline.validate(values)
        as_given = dict(values)
        for step in self.pipeline.steps:
            if isinstance(step, ProcessingStep):
                for source in (i.source for i in step.inputs if isinstance(i.source, Param)):
                    values[source.name] = str(self._input_path(source.name, values[source.name]))
            if isinstance(step, TrainingStep):
                self._check_hyperparameters(step, values)
        # The bundled iris data's label, features and classes; the user's own file needs its own group.
        values.update(data_parameters(as_given, {self.pipeline.parameter(name).name for name in overrides}))
        return values

    # -- the run loop ---------------------------------------------------------------------

    def _execute(self, record: RunRecord, use_cache: bool) -> RunRecord:
        self.observer.run_changed(record)
        try:
            for name in self.pipeline.order():
                state = record.steps[name]
                if state.status in (SUCCEEDED, SKIPPED):
                    continue
                if any(record.steps[d].status == SKIPPED for d in self.pipeline.dependencies(name)):
                    state.status = SKIPPED
                    continue
                self._run_step(record, self.pipeline.step(name), use_cache)
                if state.status == FAILED:
                    record.status = FAILED
                    record.failure_reason = f"{name}: {state.failure_reason}"
                    break
            else:
                record.status = SUCCEEDED
        except KeyboardInterrupt:
            for state in record.steps.values():
                if state.status == EXECUTING:
                    state.status, state.failure_reason = FAILED, "interrupted"
            record.status, record.failure_reason = FAILED, "interrupted; resume it with: cloudviz pipeline resume"
            raise
        finally:
            record.ended_at = utc_now_text()
            record.save()
            self.observer.run_changed(record)
            logger.info("run %s %s", record.run_id, record.status, extra={
                "run_id": record.run_id, "status": record.status, "failure_reason": record.failure_reason,
            })
        return record

    def _run_step(self, record: RunRecord, step: Step, use_cache: bool) -> None:
        state = record.steps[step.name]
        state.status, state.started_at, state.ended_at = EXECUTING, utc_now_text(), None
        state.cached_from, state.failure_reason = None, None
        state.inputs = self._inputs_of(step, record)
        record.save()
        self.observer.run_changed(record)
        started = time.monotonic()
        try:
            if isinstance(step, ConditionStep | FailStep):
                self._run_control(record, step)
            else:
                self._run_cacheable(record, step, use_cache)
            state.status = SUCCEEDED
        except StepFailed as failure:
            state.status, state.failure_reason = FAILED, str(failure)
        except UserError as error:
            state.status, state.failure_reason = FAILED, str(error)
        state.ended_at = utc_now_text()
        state.duration_seconds = round(time.monotonic() - started, 3)
        record.save()
        self.observer.run_changed(record)
        logger.info(
            "step %s %s", step.name, state.status,
            extra={"run_id": record.run_id, "step": step.name, "status": state.status, "attempts": state.attempts,
                   "duration_seconds": state.duration_seconds, "cached_from": state.cached_from,
                   "failure_reason": state.failure_reason},
        )

    def _run_control(self, record: RunRecord, step: ConditionStep | FailStep) -> None:
        if isinstance(step, FailStep):
            raise StepFailed("".join(message_part(self.resolve(part, record)) for part in step.message))
        left, right = self.resolve(step.left, record), self.resolve(step.right, record)
        outcome = COMPARISONS[step.comparison](float(left), float(right))
        record.steps[step.name].properties = {
            "outcome": outcome, "left": left, "comparison": step.comparison, "right": right,
        }
        for skipped in step.else_steps if outcome else step.if_steps:
            record.steps[skipped].status = SKIPPED

    def _run_cacheable(self, record: RunRecord, step: Step, use_cache: bool) -> None:
        state = record.steps[step.name]
        state.cache_key = self._cache_key(step, record)
        entry = self.cache.lookup(state.cache_key) if use_cache else None
        if entry and self._still_valid(step, entry):
            state.outputs, state.properties, state.cached_from = entry["outputs"], entry["properties"], entry["run_id"]
            state.log = entry.get("log")
            return
        policy = step.retry
        for attempt in range(1, policy.max_attempts + 1):
            state.attempts += 1
            try:
                state.outputs, state.properties = self._perform(record, step)
                break
            except StepFailed as failure:
                if not failure.retryable or attempt == policy.max_attempts:
                    raise
                time.sleep(policy.interval_seconds * policy.backoff_rate ** (attempt - 1))
        self.cache.store(
            state.cache_key,
            {"run_id": record.run_id, "step": step.name, "outputs": state.outputs,
             "properties": state.properties, "log": state.log},
        )

    def _still_valid(self, step: Step, entry: dict) -> bool:
        """A cached registration counts only while the registry still holds that version."""
        if not isinstance(step, RegisterModelStep):
            return True
        properties = entry["properties"]
        return any(
            p.version == properties["version"] and p.model_data_url == properties["model_data_url"]
            for p in self.registry.list_packages(properties["model_package_group"])
        )

    def _perform(self, record: RunRecord, step: Step) -> tuple[dict, dict]:
        match step:
            case ProcessingStep():
                return self._run_processing(record, step), {}
            case TrainingStep():
                return self._run_training(record, step), {}
            case RegisterModelStep():
                return {}, self._register(record, step)
        raise TypeError(f"no executor for {type(step).__name__}")

    # -- step kinds -------------------------------------------------------------------------

    def _run_processing(self, record: RunRecord, step: ProcessingStep) -> dict[str, str]:
        folder = self._fresh_step_folder(record, step.name)
        base = folder / "processing"
        for item in step.inputs:
            link(Path(self.resolve(item.source, record)), base / container_relative(item.destination))
        arguments = [format_value(self.resolve(a, record)) for a in step.arguments]
        self._run_script(record, step.name, self.repo_root / step.code, [*arguments, "--base-dir", str(base)])
        outputs = {o.name: str(base / container_relative(o.source)) for o in step.outputs}
        missing = [name for name, path in outputs.items() if not Path(path).exists()]
        if missing:
            raise StepFailed(f"the script wrote no output for {', '.join(missing)}")
        return outputs

    def _run_training(self, record: RunRecord, step: TrainingStep) -> dict[str, str]:
        """One trainer process per instance, each in its own ``/opt/ml`` root (``ml/`` on one instance,
        ``ml/algo-<i>`` on several) with the files SageMaker gives that host."""
        folder = self._fresh_step_folder(record, step.name)
        ml = folder / "ml"
        hosts = [f"algo-{i}" for i in range(1, int(self.resolve(step.instance_count, record)) + 1)]
        roots = {host: ml if len(hosts) == 1 else ml / host for host in hosts}
        hyperparameters = {k: format_value(self.resolve(v, record)) for k, v in step.hyperparameters.items()
                           if sent(step, k, record.parameters)}
        channels = {
            c: {"ContentType": step.content_type, "TrainingInputMode": "File",
                "S3DistributionType": "ShardedByS3Key" if c in step.sharded_channels else "FullyReplicated"}
            for c in step.channels
        }
        for host, root in roots.items():
            config = root / "input" / "config"
            config.mkdir(parents=True)
            for name, document in (("hyperparameters", hyperparameters), ("inputdataconfig", channels),
                                   ("resourceconfig", {"current_host": host, "hosts": hosts})):
                (config / f"{name}.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
        for channel, source in step.channels.items():
            source_path = Path(self.resolve(source, record))
            if len(hosts) > 1 and channel in step.sharded_channels:
                for root, files in zip(roots.values(), deal_files(source_path, len(hosts)), strict=True):
                    (root / "input" / "data" / channel).mkdir(parents=True)  # SageMaker's, even when empty
                    for path in files:
                        link(path, root / "input" / "data" / channel / path.parent.relative_to(source_path))
            else:
                for root in roots.values():
                    link(source_path, root / "input" / "data" / channel)
        argv = {host: ["--ml-root", str(root)] + (["--tracker-dir", str(ml / "tracker")] if len(hosts) > 1 else [])
                for host, root in roots.items()}
        self._run_scripts(record, step.name, TRAINER, argv)
        stored = [root / "model" for root in roots.values() if (root / "model").is_dir()]
        if not stored:
            raise StepFailed("no host stored a model")
        output = folder / "output" / "model"
        output.mkdir(parents=True)
        with tarfile.open(output / "model.tar.gz", "w:gz") as archive:
            for path in sorted(stored[0].iterdir()):
                archive.add(path, arcname=path.name)
        return {"model": str(output)}

    def _register(self, record: RunRecord, step: RegisterModelStep) -> dict:
        evaluation = self.resolve(step.metrics, record)
        schema = json.loads((Path(self.resolve(step.data, record)) / "schema.json").read_text(encoding="utf-8"))
        model_url = (Path(self.resolve(step.model, record)) / "model.tar.gz").as_uri()
        lineage = {
            "pipeline": record.pipeline,
            "run_id": record.run_id,
            "data": {**schema["source"], "rows": schema["rows"], "classes": schema["classes"],
                     "feature_columns": schema["feature_columns"]},
            "schema": schema,  # the model's contract (task, features and their ranges, classes or target)
            "parameters": record.parameters,
            "code_version": self.code_version(),
            "step_cache_keys": {n: s.cache_key for n, s in record.steps.items() if s.cache_key},
        }
        package = self.registry.register(
            str(self.resolve(step.model_package_group, record)),
            model_url,
            str(self.resolve(step.approval_status, record)),
            metrics=evaluation,
            lineage=lineage,
            description=f"trained by {record.pipeline} run {record.run_id}",
        )
        return {
            "model_package_group": package.group,
            "version": package.version,
            "arn": package.arn,
            "approval_status": package.approval_status,
            "model_data_url": package.model_data_url,
        }

    def _run_script(self, record: RunRecord, name: str, script: Path, argv: list[str]) -> None:
        self._run_scripts(record, name, script, {"algo-1": argv})

    def _run_scripts(self, record: RunRecord, name: str, script: Path, argv: dict[str, list[str]]) -> None:
        """The script once per host, side by side, each with its own log (``attempt-<n>-<host>.log``; one host:
        ``attempt-<n>.log``); the step's log is the first host's."""
        state = record.steps[name]
        attempt = record.folder / "steps" / name / "logs" / f"attempt-{state.attempts}"
        logs = {host: Path(f"{attempt}-{host}.log" if len(argv) > 1 else f"{attempt}.log") for host in argv}
        state.log = str(next(iter(logs.values())))
        record.save()
        codes = executor.run_scripts(
            [(script, args, logs[host]) for host, args in argv.items()],
            on_tick=lambda: self.observer.run_changed(record),
        )
        for log, code in zip(logs.values(), codes, strict=True):
            if code:
                raise StepFailed(failure_reason(log, code), retryable=code != USER_ERROR_EXIT)

    def _fresh_step_folder(self, record: RunRecord, name: str) -> Path:
        """The step's working folder, emptied of any earlier attempt (its logs are kept)."""
        folder = record.folder / "steps" / name
        for child in ("processing", "ml", "output"):
            shutil.rmtree(folder / child, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- values, keys and lineage ------------------------------------------------------------

    def resolve(self, value: Value, record: RunRecord) -> object:
        """The concrete value of a parameter, step output (a path) or JSON property."""
        match value:
            case Param(name):
                return record.parameters[name]
            case StepOutput(step, output):
                return record.steps[step].outputs[output]
            case JsonGet(step, output, file, json_path):
                document = json.loads((Path(record.steps[step].outputs[output]) / file).read_text("utf-8"))
                for key in filter(None, json_path.split(".")):
                    document = document[key]
                return document
        return value

    def _inputs_of(self, step: Step, record: RunRecord) -> dict:
        """What the step reads, for the run record: parameter values and upstream paths."""
        inputs: dict = {}
        for ref in references(step):
            match ref:
                case Param(name):
                    inputs[name] = record.parameters[name]
                case StepOutput(name, output):
                    inputs[f"{name}.{output}"] = record.steps[name].outputs[output]
                case JsonGet(name, output, file, json_path):
                    source = str(Path(record.steps[name].outputs[output]) / file)
                    inputs[f"{name}.{output}/{file}"] = f"{source}#{json_path}" if json_path else source
        return inputs

    def _cache_key(self, step: Step, record: RunRecord) -> str:
        inputs = {}
        for ref in references(step):
            match ref:
                case StepOutput(name, output) | JsonGet(name, output, _, _):
                    inputs[f"{name}.{output}"] = record.steps[name].cache_key
                case Param(name) if is_path_input(step, ref):
                    inputs[name] = self._file_key(Path(record.parameters[name]))
                case Param(name):
                    inputs[name] = record.parameters[name]
        return digest(type(step).__name__, repr(step), self._code_of(step), inputs)

    def _file_key(self, path: Path) -> str:
        if path.is_file():
            return file_sha256(path)
        return digest(sorted((str(p.relative_to(path)), file_sha256(p)) for p in path.rglob("*") if p.is_file()))

    def _code_of(self, step: Step) -> str:
        if isinstance(step, ProcessingStep):
            return code_digest((self.repo_root / step.code).parent)
        if isinstance(step, TrainingStep):
            return code_digest(TRAINER.parent)
        return code_digest(Path(__file__).parent)

    def code_version(self) -> dict:
        try:
            version = metadata.version("cloudviz")
        except metadata.PackageNotFoundError:
            version = "unknown"
        commit = subprocess.run(
            ["git", "-C", str(self.repo_root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        return {"cloudviz": version, "git_commit": commit or None}

    def _input_path(self, name: str, value: object) -> Path:
        """A data parameter as an absolute local path; empty means the bundled iris data."""
        text = str(value).strip()
        if not text:
            return iris_csv(self.home.data)
        if "://" in text:
            raise UserError(f"parameter {name}: {text!r} is a URI; the local target reads local files")
        path = Path(text).expanduser().resolve()
        if not path.exists():
            raise UserError(f"parameter {name}: no such file {text!r}")
        return path

    def _check_hyperparameters(self, step: TrainingStep, values: dict) -> None:
        """The hyperparameters as the container will check them; one the data decides (a JsonGet) stands in as
        a valid value until Train checks the real one."""
        resolved = {
            k: stand_in(k) if isinstance(v, JsonGet) else format_value(values[v.name] if isinstance(v, Param) else v)
            for k, v in step.hyperparameters.items()
            if sent(step, k, values)
        }
        try:
            validate_hyperparameters(resolved)
        except HyperparameterError as error:
            raise UserError(f"{step.name}: {error}") from None


def is_path_input(step: Step, param: Param) -> bool:
    return isinstance(step, ProcessingStep) and any(i.source == param for i in step.inputs)


def container_relative(destination: str) -> Path:
    return Path(PurePosixPath(destination).relative_to(PROCESSING_ROOT))


def link(source: Path, target: Path) -> None:
    """Make ``source`` visible at ``target`` without copying: a file goes inside the folder."""
    if source.is_file():
        target.mkdir(parents=True, exist_ok=True)
        (target / source.name).symlink_to(source)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source, target_is_directory=True)


def deal_files(folder: Path, hosts: int) -> list[list[Path]]:
    """A folder's files dealt to ``hosts`` hosts in key order, as a ShardedByS3Key channel deals a prefix's
    objects: host i gets files i, i + hosts, ... (fewer files than hosts: some hosts get none)."""
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())
    return [files[i::hosts] for i in range(hosts)]


def format_value(value: object) -> str:
    """A value as a script argument or hyperparameter string: exact, as SageMaker passes it."""
    return str(value)


def message_part(value: object) -> str:
    """A value as a person reads it in a failure message."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def failure_reason(log: Path, code: int) -> str:
    """The script's own ``error:`` line when it gave one; otherwise how it ended, and where to look."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
    last = lines[-1].strip() if lines else "no output"
    return f"{how} ({last}); log: {log}"
