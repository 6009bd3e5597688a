"""The index of finished runs: the own-database run for a database, else the quickstart's run."""

from pathlib import Path

import pytest

from sqltune.errors import DataError, SqltuneError
from sqltune.run_index import find_run, fine_tuned_run, index_path, record_run
from sqltune.runcard import RUN_CARD


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SQLTUNE_CACHE", str(tmp_path / "cache"))


def fake_run(folder: Path) -> Path:
    """A directory the index accepts as a run (it only checks for the run card)."""
    folder.mkdir(parents=True)
    (folder / RUN_CARD).write_text("{}")
    return folder


def test_the_own_database_run_comes_first_then_the_quickstart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shop, crm = tmp_path / "shop.sqlite", tmp_path / "crm.sqlite"
    assert find_run(str(shop)) is None
    quickstart = fake_run(tmp_path / "quickstart")
    record_run(quickstart, "demo")
    own = fake_run(tmp_path / "own_shop")
    record_run(own, "synth", str(shop))
    record_run(fake_run(tmp_path / "spider"), "spider")
    assert find_run("shop.sqlite") == own  # relative or absolute, the same file
    assert find_run(str(crm)) == quickstart and find_run("sqlite:///shop.sqlite") == quickstart
    newer = fake_run(tmp_path / "quickstart2")
    record_run(newer, "demo")
    assert find_run(str(crm)) == newer


def test_a_rerun_replaces_its_entry_and_removed_runs_are_skipped(tmp_path):
    run = fake_run(tmp_path / "run")
    record_run(run, "demo")
    record_run(run, "demo")
    assert index_path().read_text().count(str(run)) == 1
    (run / RUN_CARD).unlink()
    assert find_run(None) is None


def test_without_a_run_one_line_gives_the_commands(tmp_path):
    with pytest.raises(SqltuneError) as caught:
        fine_tuned_run(str(tmp_path / "my shop.sqlite"))
    message = str(caught.value)
    assert "\n" not in message and "cannot write SQL until it is fine-tuned" in message
    assert "own_database.yaml db='" in message and "quickstart.yaml" in message
    with pytest.raises(SqltuneError, match="make one with `sqltune run .*quickstart.yaml`"):
        fine_tuned_run("postgresql://localhost/shop")


def test_a_malformed_index_is_named(tmp_path):
    index_path().parent.mkdir(parents=True)
    index_path().write_text("[1, 2]")
    with pytest.raises(DataError, match="malformed run index"):
        find_run(None)
