"""The prediction store: one interface, two implementations, chosen by ``PREDICTION_STORE``.

``sqlite:/abs/path/predictions.db`` is the embedded default (``SqliteStore``); ``dynamodb:TABLE`` is the
AWS one (``DynamoDbStore``). Both order predictions by id, which starts with the time it was made.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from serving_lambdas.store.base import (
    ClaimLost,
    DuplicateId,
    FeedbackConflict,
    IdempotentRequest,
    PredictionStore,
    StorePage,
)
from serving_lambdas.store.dynamodb import DEFAULT_RETENTION_DAYS, DynamoDbStore
from serving_lambdas.store.sqlite import SqliteStore

STORES: dict[str, type[SqliteStore] | type[DynamoDbStore]] = {"sqlite": SqliteStore, "dynamodb": DynamoDbStore}


@dataclass(frozen=True)
class StoreSpec:
    """A parsed ``PREDICTION_STORE``: the kind of store and its file path or table name; and how long DynamoDB
    keeps a prediction (``PREDICTION_RETENTION_DAYS``; the local SQLite store keeps everything)."""

    kind: str
    target: str
    retention_days: int = DEFAULT_RETENTION_DAYS

    @classmethod
    def parse(cls, text: str) -> StoreSpec:
        kind, _, target = text.partition(":")
        if kind not in STORES or not target:
            raise ValueError(f"PREDICTION_STORE must be sqlite:/absolute/path.db or dynamodb:TABLE_NAME, not {text!r}")
        if kind == "sqlite" and not Path(target).is_absolute():
            raise ValueError(f"PREDICTION_STORE needs an absolute SQLite path, not {target!r}")
        return cls(kind, target)

    @property
    def max_rows_per_put(self) -> int:
        return STORES[self.kind].max_rows_per_put


def open_store(spec: StoreSpec) -> PredictionStore:
    """The store of ``spec``, opened once per process and shared by every call and thread. Under a lock: the
    first concurrent requests would each open the SQLite file and switch it to WAL at once, and all but one
    of them fail with "database is locked"."""
    with _open_lock:
        return _open(spec)


_open_lock = threading.Lock()


@lru_cache(maxsize=16)
def _open(spec: StoreSpec) -> PredictionStore:
    if spec.kind == "dynamodb":
        return DynamoDbStore(spec.target, retention_days=spec.retention_days)
    return STORES[spec.kind](spec.target)


def forget_opened_stores() -> None:
    """Drop the stores opened so far, so the next ``open_store`` opens afresh (a test's moto session ends)."""
    with _open_lock:
        _open.cache_clear()


__all__ = [
    "ClaimLost",
    "DuplicateId",
    "DynamoDbStore",
    "FeedbackConflict",
    "IdempotentRequest",
    "PredictionStore",
    "SqliteStore",
    "StorePage",
    "StoreSpec",
    "forget_opened_stores",
    "open_store",
]
