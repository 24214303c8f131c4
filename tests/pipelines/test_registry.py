"""The SQLite model registry: versions, approval, listing, and concurrent registration."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from pipelines.errors import NotFoundError, UserError
from pipelines.registry import ModelRegistry


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry.db")


def test_versions_count_up_per_group(registry: ModelRegistry):
    first = registry.register("Iris", "file:///a/model.tar.gz", metrics={"accuracy": 0.9})
    second = registry.register("Iris", "file:///b/model.tar.gz")
    other = registry.register("Other-Group", "file:///c/model.tar.gz")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.approval_status == "PendingManualApproval"
    assert first.metrics == {"accuracy": 0.9}
    assert first.arn == "arn:cloudviz:local:model-package/iris/1"


def test_registry_survives_reopening(tmp_path: Path):
    ModelRegistry(tmp_path / "r.db").register("Iris", "file:///m.tar.gz", lineage={"run_id": "r1"})
    package = ModelRegistry(tmp_path / "r.db").get("Iris", 1)
    assert package.lineage == {"run_id": "r1"}
    assert package.model_data_url == "file:///m.tar.gz"


def test_approve_and_reject(registry: ModelRegistry):
    registry.register("Iris", "file:///a")
    registry.register("Iris", "file:///b")
    approved = registry.update_approval("Iris", 1, "Approved")
    assert approved.approval_status == "Approved"
    assert approved.updated_at >= approved.created_at
    rejected = registry.update_approval("Iris", 2, "Rejected", "drifted")
    assert (rejected.approval_status, rejected.status_reason) == ("Rejected", "drifted")
    assert registry.latest_approved("Iris").version == 1


def test_latest_approved_is_the_highest_approved_version(registry: ModelRegistry):
    for _ in range(3):
        registry.register("Iris", "file:///m")
    assert registry.latest_approved("Iris") is None
    registry.update_approval("Iris", 1, "Approved")
    registry.update_approval("Iris", 3, "Approved")
    assert registry.latest_approved("Iris").version == 3


def test_list_is_newest_first_and_filters(registry: ModelRegistry):
    for _ in range(3):
        registry.register("Iris", "file:///m")
    registry.update_approval("Iris", 2, "Approved")
    assert [p.version for p in registry.list_packages("Iris")] == [3, 2, 1]
    assert [p.version for p in registry.list_packages("Iris", "Approved")] == [2]
    assert registry.list_packages("Nope") == []
    groups = registry.list_groups()
    assert groups == [{"name": "Iris", "created_at": groups[0]["created_at"], "versions": 3, "latest_approved": 2}]


def test_unknown_version_is_not_found(registry: ModelRegistry):
    registry.register("Iris", "file:///m")
    with pytest.raises(NotFoundError, match="no model package Iris version 7"):
        registry.get("Iris", 7)
    with pytest.raises(NotFoundError, match="no model package Iris version 7"):
        registry.update_approval("Iris", 7, "Approved")


@pytest.mark.parametrize("status", ["approved", "Deployed", ""])
def test_bad_approval_status_is_rejected(registry: ModelRegistry, status: str):
    with pytest.raises(UserError, match="is not one of PendingManualApproval, Approved, Rejected"):
        registry.register("Iris", "file:///m", approval_status=status)


@pytest.mark.parametrize("name", ["", "-leading", "has space", "under_score", "x" * 64])
def test_bad_group_name_is_rejected(registry: ModelRegistry, name: str):
    with pytest.raises(UserError, match="model package group name"):
        registry.register(name, "file:///m")
    assert registry.list_packages() == []


def register_many(path: str, count: int) -> list[int]:
    registry = ModelRegistry(Path(path))
    return [registry.register("Iris", f"file:///{i}").version for i in range(count)]


def test_concurrent_registrations_never_share_a_version(tmp_path: Path):
    path = str(tmp_path / "registry.db")
    ModelRegistry(Path(path))
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(register_many, [(path, 25)] * 4)
    versions = sorted(v for batch in results for v in batch)
    assert versions == list(range(1, 101))
    assert len(ModelRegistry(Path(path)).list_packages("Iris")) == 100
