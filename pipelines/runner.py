"""The local pipeline runner: executes a declared pipeline on this machine.

Steps run in dependency order, each in its own folder under the run's folder; the condition and the Fail step
run in-process, the others (``pipelines.local_steps``) are looked up in the step cache first. A failed step is
retried per its retry policy when the failure was not the input's fault; a failed run can be resumed.
"""

from __future__ import annotations

import logging
import operator
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

from pipelines.cache import StepCache, cache_key, still_valid
from pipelines.dag import ConditionStep, FailStep, Pipeline, ProcessingStep, RegisterModelStep, Step, TrainingStep
from pipelines.errors import UserError
from pipelines.local_parameters import resolve_parameters
from pipelines.local_steps.processing import run_processing
from pipelines.local_steps.register import register
from pipelines.local_steps.scripts import StepFailed
from pipelines.local_steps.training import run_training
from pipelines.registry import ModelRegistry
from pipelines.run_values import inputs_of, resolve
from pipelines.runs import EXECUTING, FAILED, PENDING, SKIPPED, SUCCEEDED, RunRecord, RunStore, utc_now_text
from pipelines.state import StateHome

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq, "!=": operator.ne,
}


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
        """Validate parameters (and hyperparameters) up front, then create and execute a run; ``use_cache`` is
        recorded with it, so a resume executes the rest as the run began."""
        values = self.resolve_parameters(overrides or {})
        record = self.runs.create(self.pipeline.name, values, self.pipeline.order(), {"use_cache": use_cache})
        return self._execute(record)

    def resume(self, run_id: str, use_cache: bool | None = None) -> RunRecord:
        """Re-run every step of a failed run that did not succeed, reusing those that did, with the run's recorded
        options; ``use_cache`` given replaces the recorded choice (for this and later resumes)."""
        record = self.runs.load(run_id)
        if record.status == SUCCEEDED:
            raise UserError(f"run {run_id} succeeded; there is nothing to resume")
        if record.status == EXECUTING and record.runner_alive():
            raise UserError(f"run {run_id} is still executing (process {record.pid})")
        for parameter in self.pipeline.parameters:  # a run recorded before a parameter was renamed
            for alias in set(parameter.aliases) & set(record.parameters):
                record.parameters.setdefault(parameter.name, record.parameters.pop(alias))
        added = [p.name for p in self.pipeline.parameters if p.name not in record.parameters]
        if added:  # a run recorded before these parameters existed: their values as a new run of its data and
            # group takes
            fresh = self.resolve_parameters({name: str(record.parameters[name])
                                             for name in ("InputData", "ModelPackageGroupName")})
            record.parameters.update({name: fresh[name] for name in added})
        for name, step in record.steps.items():
            if step.status != SUCCEEDED or isinstance(self.pipeline.step(name), ConditionStep):
                step.status, step.failure_reason, step.properties = PENDING, None, {}
        if use_cache is not None:
            record.options["use_cache"] = use_cache
        record.status, record.failure_reason, record.ended_at = EXECUTING, None, None
        record.resumed += 1
        record.pid = os.getpid()
        record.save()
        return self._execute(record)

    def resolve_parameters(self, overrides: dict[str, str]) -> dict:
        """The run's parameter values: ``overrides`` applied and checked, file parameters as local paths."""
        return resolve_parameters(self.pipeline, overrides, self.home)

    # -- the run loop ---------------------------------------------------------------------

    def _execute(self, record: RunRecord) -> RunRecord:
        use_cache = record.uses_cache()
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
        state.inputs = inputs_of(step, record)
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
            raise StepFailed("".join(message_part(resolve(part, record)) for part in step.message))
        left, right = resolve(step.left, record), resolve(step.right, record)
        outcome = COMPARISONS[step.comparison](float(left), float(right))
        record.steps[step.name].properties = {
            "outcome": outcome, "left": left, "comparison": step.comparison, "right": right,
        }
        for skipped in step.else_steps if outcome else step.if_steps:
            record.steps[skipped].status = SKIPPED

    def _run_cacheable(self, record: RunRecord, step: Step, use_cache: bool) -> None:
        state = record.steps[step.name]
        state.cache_key = cache_key(step, record, self.pipeline.file_parameters(), self.repo_root)
        entry = self.cache.lookup(state.cache_key) if use_cache else None
        if entry and still_valid(step, entry, self.registry):
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

    def _perform(self, record: RunRecord, step: Step) -> tuple[dict, dict]:
        on_tick = partial(self.observer.run_changed, record)  # while a script runs
        match step:
            case ProcessingStep():
                return run_processing(record, step, self.repo_root, on_tick), {}
            case TrainingStep():
                return run_training(record, step, on_tick), {}
            case RegisterModelStep():
                return {}, register(record, step, self.registry, self.repo_root)
        raise TypeError(f"no executor for {type(step).__name__}")


def message_part(value: object) -> str:
    """A value as a person reads it in a failure message."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
