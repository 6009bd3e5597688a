"""`sqltune run configs/own_database.yaml db=...` end to end on a small Spider-like SQLite database,
with the tiny model and tiny sizes; then `sqltune ask` on that database finds the run by itself."""

import json
from pathlib import Path

import pytest

from sqltune.cli import main as cli
from sqltune.data.records import load_dataset
from sqltune.run_index import find_run
from tests.infer.conftest import write_concert_db
from tests.tiny import tiny_model_dir  # noqa: F401

RECIPE = str(Path(__file__).resolve().parents[2] / "configs" / "own_database.yaml")


@pytest.fixture
def tiny_sizes(tiny_model_dir, tmp_path, monkeypatch) -> list[str]:  # noqa: F811
    monkeypatch.setenv("SQLTUNE_CACHE", str(tmp_path / "cache"))
    return [
        f"model_name_or_path={tiny_model_dir}",
        "synth_pairs=30",
        "holdout=6",
        "max_steps=2",
        "per_device_train_batch_size=4",
        "max_new_tokens=8",
    ]


def test_own_database_run_holds_out_scores_and_is_found_by_ask(tiny_sizes, tmp_path, capsys):
    db = write_concert_db(tmp_path / "shop.sqlite")
    out = tmp_path / "own_shop"
    assert cli(["run", RECIPE, f"db={db}", f"output_dir={out}", *tiny_sizes]) == 0
    assert "before (base model)" in capsys.readouterr().out

    train, dev = (load_dataset(out / "data", name) for name in ("synth_train", "synth_dev"))
    assert (len(train.examples), len(dev.examples)) == (24, 6)
    assert not {e.question for e in train.examples} & {e.question for e in dev.examples}
    assert not {e.sql for e in train.examples} & {e.sql for e in dev.examples}
    report = json.loads((out / "report.json").read_text())
    assert report["before"]["n"] == report["after"]["n"] == 6
    assert report["run"]["datasets"] == ["synth_train"] and "| gain |" in (out / "report.md").read_text()

    assert find_run(str(db)) == out.resolve()
    assert cli(["ask", "--db", str(db), "How many singers are there?", "max_new_tokens=4"]) == 1
    assert f"using the fine-tuned run {out.resolve()} " in capsys.readouterr().err


def test_a_run_directory_holds_one_database(tiny_sizes, tmp_path, capsys):
    out = tmp_path / "own"
    shop, crm = (write_concert_db(tmp_path / name) for name in ("shop.sqlite", "crm.sqlite"))
    assert cli(["run", RECIPE, f"db={shop}", f"output_dir={out}", *tiny_sizes, "before=false"]) == 0
    capsys.readouterr()
    assert cli(["run", RECIPE, f"db={crm}", f"output_dir={out}", *tiny_sizes]) == 2
    assert f"holds the run made for {shop}" in capsys.readouterr().err
