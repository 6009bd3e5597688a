"""Fixtures of the data tests: the demo databases, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqltune.data.demo import build_demo_databases
from tests.conftest import shared_path


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A folder with the six demo databases (`<db>/<db>.sqlite`) and their tables.json."""
    folder = tmp_path_factory.mktemp("demo_databases")
    build_demo_databases(folder)
    return folder


@pytest.fixture(scope="session")
def sparc_dir() -> Path:
    return shared_path("data", "sparc")


@pytest.fixture(scope="session")
def cosql_dir() -> Path:
    return shared_path("data", "cosql")
