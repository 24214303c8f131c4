"""Which model version each local endpoint serves, and every change to it.

One JSON record per endpoint (``<state home>/deployments/<endpoint>.json``, replaced atomically)
says what should be live; ``<endpoint>.history.jsonl`` keeps every deployment, every refused one
and every smoke test of the live version through the stage's API, so an on-call engineer can tell
what served when, why a version did not go live, and whether it may be promoted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from deploy.aws.names import STAGES
from pipelines.registry import now  # deployed_at is compared with a package's updated_at: one clock, one format
from pipelines.state import write_json_atomic

SMOKE_TEST = "smoke-test"
HISTORY_SUFFIX = ".history.jsonl"


@dataclass(frozen=True)
class Deployment:
    endpoint: str
    group: str
    version: int
    model_data_url: str
    deployed_at: str
    reason: str
    stage: str = STAGES[0]  # records written before stages existed are dev's
    promoted_from: str | None = None  # the stage whose smoke-tested version this is (a promotion)

    def to_dict(self) -> dict:
        return asdict(self)


class DeploymentStore:
    """Deployment records under one folder of the state home."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _current_path(self, endpoint: str) -> Path:
        return self.folder / f"{endpoint}.json"

    def _history_path(self, endpoint: str) -> Path:
        return self.folder / f"{endpoint}{HISTORY_SUFFIX}"

    def current(self, endpoint: str) -> Deployment | None:
        path = self._current_path(endpoint)
        if not path.exists():
            return None
        return Deployment(**json.loads(path.read_text(encoding="utf-8")))

    def live(self) -> list[Deployment]:
        """The current record of every endpoint of the state home: what `cloudviz deployments` lists."""
        records = [record for endpoint in self.endpoints() if (record := self.current(endpoint)) is not None]
        return sorted(records, key=lambda record: (record.group, STAGES.index(record.stage)))

    def record(self, deployment: Deployment) -> None:
        """Make ``deployment`` the live one and add it to the history."""
        write_json_atomic(self._current_path(deployment.endpoint), deployment.to_dict())
        self._append(deployment.endpoint, {"event": "deployed", **deployment.to_dict()})

    def refused(self, endpoint: str, group: str, version: int, reason: str) -> None:
        """A version that failed to load or its smoke test: kept in the history, the live one unchanged."""
        self._append(endpoint, {"event": "refused", "endpoint": endpoint, "group": group, "version": version,
                                "at": now(), "reason": reason})

    def promoted_versions(self, endpoint: str) -> set[int]:
        """Every version ever promoted to ``endpoint``: the ones its stage may be deployed back to."""
        return {event["version"] for event in self.history(endpoint)
                if event["event"] == "deployed" and event.get("promoted_from")}

    def smoke_tested(self, endpoint: str, group: str, version: int, passed: bool, detail: str) -> None:
        """The result of a smoke test of ``version`` through the stage's API: what a promotion checks."""
        self._append(endpoint, {"event": SMOKE_TEST, "endpoint": endpoint, "group": group, "version": version,
                                "passed": passed, "detail": detail, "at": now()})

    def latest_smoke_test(self, endpoint: str, version: int) -> dict | None:
        """The newest smoke-test event of ``version`` on ``endpoint``; None if it was never smoke-tested."""
        tests = [event for event in self.history(endpoint)
                 if event["event"] == SMOKE_TEST and event["version"] == version]
        return tests[-1] if tests else None

    def endpoints(self) -> list[str]:
        """Every endpoint with a history: each one ever deployed (or refused) on this state home."""
        if not self.folder.is_dir():
            return []
        return sorted(path.name.removesuffix(HISTORY_SUFFIX) for path in self.folder.glob(f"*{HISTORY_SUFFIX}"))

    def deployments(self, endpoint: str) -> list[Deployment]:
        """Every deployment of ``endpoint``, oldest first: which version served it from when."""
        names = {field.name for field in fields(Deployment)}
        return [Deployment(**{key: value for key, value in event.items() if key in names})
                for event in self.history(endpoint) if event["event"] == "deployed"]

    def history(self, endpoint: str) -> list[dict]:
        path = self._history_path(endpoint)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def _append(self, endpoint: str, event: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._history_path(endpoint).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(event) + "\n")
