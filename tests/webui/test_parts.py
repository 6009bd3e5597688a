"""The web UI's parts without a browser: the database catalog, result tables and charts, the train
command built from the form, the run directory read while it trains, and the command itself."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sqltune.cli import main as cli
from sqltune.db import QueryResult
from sqltune.errors import ConfigError, DataError

pytest.importorskip("gradio")

from sqltune.webui.app import Workspace, free_port  # noqa: E402
from sqltune.webui.ask import Catalog, build_catalog, chart_columns, result_frame, unique_columns  # noqa: E402
from sqltune.webui.train import (  # noqa: E402
    check_command,
    command_argv,
    console_tail,
    last_error,
    loss_points,
    progress_line,
    recipes_dir,
    train_recipes,
)

ROOT = Path(__file__).resolve().parents[2]


def frame(columns, rows):
    return result_frame(QueryResult(rows=rows, columns=columns))


def test_a_result_with_labels_and_numbers_gets_a_chart():
    assert chart_columns(frame(["genre", "count(*)"], [("Rock", 3), ("Jazz", 1)])) == ("genre", "count(*)")
    assert chart_columns(frame(["year", "name", "n"], [(1990, "a", 2.5), (1991, None, 1)])) == (
        "name",
        "year",
    )
    assert chart_columns(frame(["n", "m"], [(1, 2)])) is None  # no labels
    assert chart_columns(frame(["name", "ok"], [("a", True)])) is None  # a flag is not a quantity
    assert chart_columns(frame(["name", "n"], [])) is None


def test_duplicate_column_names_become_distinct_headers():
    assert unique_columns(["count(*)", "count(*)", "", "x"]) == ["count(*)", "count(*) (2)", "?", "x"]
    table = frame(["a", "a"], [(1, b"\x00")])
    assert list(table.columns) == ["a", "a (2)"] and table.iloc[0].tolist() == [1, "<blob>"]


def test_the_catalog_offers_the_demo_databases_and_hides_passwords(tmp_path):
    catalog = build_catalog(tmp_path / "data", None)
    assert "demo/music" in catalog.labels() and len(catalog.labels()) == 6
    assert catalog.db_id("demo/music") == "music"
    url = "postgresql://reader:s3cret@127.0.0.1:1/shop"
    with pytest.raises(DataError) as err:  # nothing listens on port 1: refused, with the password hidden
        catalog.add_url(url)
    assert "s3cret" not in str(err.value) and "reader:***@127.0.0.1" in str(err.value)
    [label] = catalog.add_source(url)  # from databases=: offered, connected when first asked
    assert label == "postgresql://reader:***@127.0.0.1:1/shop" and catalog.get(label).target == url
    with pytest.raises(DataError, match="choose a database"):
        catalog.get("nope")


def test_an_upload_is_copied_into_a_folder_the_data_readers_read(tmp_path):
    shop = tmp_path / "my shop.db"
    conn = sqlite3.connect(shop)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    catalog = Catalog()
    label = catalog.add_upload(shop, tmp_path / "data" / "uploads")
    target = tmp_path / "data" / "uploads" / "my_shop" / "my_shop.sqlite"
    assert label == "uploads/my_shop" and catalog.get(label).target == str(target) and target.is_file()
    assert catalog.db_id(label) == "my_shop"
    assert catalog.add_upload(shop, tmp_path / "data" / "uploads") == label  # once, however often
    (tmp_path / "notes.db").write_text("not a database")
    with pytest.raises(DataError):
        catalog.add_upload(tmp_path / "notes.db", tmp_path / "data" / "uploads")
    assert not (tmp_path / "data" / "uploads" / "notes").exists()


def test_the_command_names_the_recipe_and_what_the_form_changed():
    recipe = str(recipes_dir() / "quickstart_lora.yaml")
    assert recipe in train_recipes(recipes_dir())
    assert not any(r.endswith(("quickstart.yaml", "own_database.yaml")) for r in train_recipes(recipes_dir()))
    form = {"model_name_or_path": "smollm2-135m", "dataset": "demo_train", "dataset_dir": "data"}
    form.update(stage="sft", finetuning_type="lora", max_steps=10, learning_rate=0.001, output_dir="saves/x")
    assert command_argv(recipe, form, "lora_rank=4 'seed=7'") == [
        recipe,
        "dataset=demo_train",
        "max_steps=10",
        "output_dir=saves/x",
        "lora_rank=4",
        "seed=7",
    ]
    assert command_argv(None, {**form, "learning_rate": 2e-5, "max_steps": -1.0}) == [
        "dataset=demo_train",
        "learning_rate=2e-05",
        "output_dir=saves/x",
    ]
    with pytest.raises(ConfigError, match="more options"):
        command_argv(None, form, "seed='7")


def test_a_bad_command_is_refused_before_any_process_starts(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="did you mean 'lora_rank'"):
        check_command(["dataset=demo_train", f"output_dir={out}", "lora_rnk=4"])
    with pytest.raises(ConfigError, match="dataset"):
        check_command([f"output_dir={out}"])
    assert check_command(["dataset=demo_train", f"output_dir={out}"]) == out
    out.mkdir()
    (out / "sqltune_run.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a run"):
        check_command(["dataset=demo_train", f"output_dir={out}"])


def test_the_run_directory_is_read_while_it_trains(tmp_path):
    (tmp_path / "train.log").write_text(
        '2025-01-01 12:00:00,000 INFO step 1: {"loss": 2.5, "learning_rate": 0.001}\n'
        '2025-01-01 12:00:01,000 INFO step 2: {"loss": 2.0}\n'
        '2025-01-01 12:00:02,000 INFO step 2: {"train_runtime": 3.0, "train_loss": 2.25}\n'
        "2025-01-01 12:00:02,000 INFO summary: {'train_loss': 2.25}\n"
    )
    assert loss_points(tmp_path) == [(1, 2.5), (2, 2.0)]
    (tmp_path / "webui_console.log").write_bytes(
        b" 50%|###  | 1/2\r100%|#####| 2/2\nsqltune train: error: boom\nbye\n"
    )
    assert console_tail(tmp_path).splitlines() == [
        " 50%|###  | 1/2",
        "100%|#####| 2/2",
        "sqltune train: error: boom",
        "bye",
    ]
    assert last_error(tmp_path) == "sqltune train: error: boom"
    progress = {"step": 3, "max_steps": 10, "elapsed_s": 6.0, "remaining_s": 14.0, "loss": 1.23456}
    line = progress_line(progress, "running")
    assert line == "step **3/10** · elapsed 6.0 s · remaining 14.0 s · loss 1.2346 · status **running**"
    assert progress_line(None, "running") == "status **running** (waiting for the first step)"


def test_the_workspace_offers_finished_runs_and_registered_datasets(tmp_path, monkeypatch):
    from sqltune.args import WebuiArguments

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SQLTUNE_CACHE", str(tmp_path / "cache"))  # no runs of other tests in the index
    for name in ("saves/a", "saves/b", "outputs/quickstart/final", "saves/unfinished"):
        (tmp_path / name).mkdir(parents=True)
    for name in ("saves/a", "saves/b", "outputs/quickstart/final"):
        (tmp_path / name / "sqltune_run.json").write_text("{}")
    workspace = Workspace(WebuiArguments(run_dir="saves/b"))
    assert workspace.runs()[0] == "saves/b"
    assert sorted(workspace.runs()) == ["outputs/quickstart/final", "saves/a", "saves/b"]
    assert workspace.datasets() == ["demo_train", "demo_dev"]  # built by the commands on first use


def test_webui_help_and_bad_options(capsys, tmp_path):
    assert cli(["webui", "--help"]) == 0
    assert "feedback" in capsys.readouterr().out
    assert cli(["webui", "port=70000"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "sqltune webui: error: port: must be between 0 and 65535, not 70000"
    )
    assert cli(["webui", f"run_dir={tmp_path}"]) == 2  # checked before the page is built
    assert "not a sqltune run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_sqltune_webui_serves_the_page_until_interrupted(tmp_path):
    import httpx

    port = free_port("127.0.0.1")
    process = subprocess.Popen(
        [sys.executable, "-m", "sqltune", "webui", f"port={port}", "data_dir=data"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, page = time.monotonic() + 120, None
        while page is None and time.monotonic() < deadline and process.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
            except httpx.TransportError:
                time.sleep(0.5)
        assert page is not None and page.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/config", timeout=5).json()["title"] == "sqltune"
        assert (tmp_path / "data" / "demo_databases" / "music" / "music.sqlite").is_file()
    finally:
        process.send_signal(signal.SIGTERM)  # stops it as Ctrl-C does
        output = process.communicate(timeout=60)[0]
    assert f"sqltune webui: http://127.0.0.1:{port}/" in output
    assert process.returncode == 0
