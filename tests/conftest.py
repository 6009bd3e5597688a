"""Shared fixtures: where ../shared lives, and skipping cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["tests.servers"]  # the PostgreSQL and MariaDB server fixtures

SHARED = Path(os.environ.get("SQLTUNE_SHARED", ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data absent: {path} (tests on real benchmark data need ../shared)")
    return path


@pytest.fixture(scope="session")
def spider_dir() -> Path:
    return shared_path("data", "spider")


@pytest.fixture(scope="session")
def bird_dir() -> Path:
    return shared_path("data", "bird")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return shared_path("reference")


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch, tmp_path_factory):
    """Keep sqltune's model cache out of the user's home unless a test opts in; the converted
    default model is shared across tests through one session folder."""
    cache = os.environ.get("SQLTUNE_CACHE") or str(tmp_path_factory.getbasetemp() / "sqltune-cache")
    monkeypatch.setenv("SQLTUNE_CACHE", cache)
