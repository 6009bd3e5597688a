"""The web UI in a real headless browser (Debian chromium driven by Playwright), as a user uses it:
ask a demo database, edit and rerun the SQL, record verdicts, train, stop, evaluate and export.

The tests share one page and run in file order. With SQLTUNE_WEBUI_SCREENSHOTS=<folder> they also
save a screenshot of each tab there (how docs/images/ is made, see docs/webui.md).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.webui.conftest import CHROMIUM, QUESTION, SQL

pytest.importorskip("gradio", reason="gradio is not installed (pip install -e '.[dev]')")
pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no browser at {CHROMIUM} (apt-get install chromium)"),
]


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=60_000)  # the 2-core CI machine is shared and slow
    return playwright_expect(locator)


def choose(page, elem_id: str, option: str) -> None:
    """Pick `option` in a Gradio dropdown: type it, then click it in the list."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=True).click()


def fill(page, elem_id: str, text: str) -> None:
    """Type into a Gradio textbox or number field, then leave it (Gradio reads it on change)."""
    field = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    field.fill(text)
    field.press("Tab")


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def screenshot(page, name: str) -> None:
    """With SQLTUNE_WEBUI_SCREENSHOTS set, the whole page as `<folder>/webui_<name>.png`, in 128
    colours (a page of text and flat colours loses nothing visible, and the file a third)."""
    folder = os.environ.get("SQLTUNE_WEBUI_SCREENSHOTS")
    if folder:
        from PIL import Image

        path = Path(folder) / f"webui_{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)


def test_ask_shows_sql_rows_and_chart_and_records_verdicts(site, page):
    choose(page, "ask-db", "demo/music")
    fill(page, "ask-question", QUESTION)
    page.locator("#ask-button").click()
    expect(page.locator("#ask-status")).to_contain_text("6 row(s)")
    expect(page.locator("#ask-sql .cm-content")).to_have_text(SQL)
    expect(page.locator("#ask-result")).to_contain_text("Electronic")
    expect(page.locator("#ask-chart")).to_be_visible()  # a label column and a count: a bar chart

    page.locator("#ask-correct").click()
    expect(page.locator("#ask-status")).to_contain_text("Recorded as correct")
    records = [json.loads(line) for line in (site.root / "data" / "feedback.jsonl").read_text().splitlines()]
    assert records[-1]["question"] == QUESTION and records[-1]["sql"] == SQL
    assert records[-1]["db_id"] == "music" and records[-1]["verdict"] == "correct"
    screenshot(page, "ask")

    edited = "SELECT name, formed_year FROM artists ORDER BY formed_year LIMIT 3"
    page.locator("#ask-sql .cm-content").fill(edited)
    page.locator("#ask-run").click()
    expect(page.locator("#ask-status")).to_contain_text("3 row(s)")
    expect(page.locator("#ask-result")).to_contain_text("formed_year")
    expect(page.locator("#ask-chart")).to_be_visible()

    page.locator("#ask-sql .cm-content").fill("DELETE FROM artists")  # read-only: refused, not run
    page.locator("#ask-run").click()
    expect(page.locator("#ask-status")).to_contain_text("The query failed")
    page.locator("#ask-correct").click()
    expect(page.locator("#ask-status")).to_contain_text("Not recorded: the SQL fails")
    page.locator("#ask-wrong").click()
    expect(page.locator("#ask-status")).to_contain_text("Recorded as wrong")
    records = [json.loads(line) for line in (site.root / "data" / "feedback.jsonl").read_text().splitlines()]
    assert [r["verdict"] for r in records] == ["correct", "wrong"]


def test_ask_an_uploaded_file_and_a_folder_of_databases(site, page, tmp_path):
    shop = tmp_path / "shop.db"
    conn = sqlite3.connect(shop)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, city TEXT, total REAL)")
    conn.executemany(
        "INSERT INTO orders VALUES (?, ?, ?)", [(1, "Oslo", 10.5), (2, "Rome", 3.0), (3, "Oslo", 1.5)]
    )
    conn.commit()
    conn.close()
    page.get_by_text("Add a database").click()
    page.locator("#ask-upload input[type=file]").set_input_files(str(shop))
    expect(page.locator("#ask-status")).to_contain_text("Added uploads/shop")
    expect(page.locator("#ask-db input")).to_have_value("uploads/shop")
    assert (site.root / "data" / "uploads" / "shop" / "shop.sqlite").is_file()  # where source=jsonl reads it
    page.locator("#ask-sql .cm-content").fill("SELECT city, sum(total) FROM orders GROUP BY city")
    page.locator("#ask-run").click()
    expect(page.locator("#ask-status")).to_contain_text("2 row(s)")
    expect(page.locator("#ask-result")).to_contain_text("Oslo")

    folder = tmp_path / "spider_like"
    (folder / "shop").mkdir(parents=True)
    shutil.copyfile(shop, folder / "shop" / "shop.sqlite")
    fill(page, "ask-folder", str(folder))
    page.locator("#ask-open-folder").click()
    expect(page.locator("#ask-status")).to_contain_text("1 database(s) added")
    expect(page.locator("#ask-db input")).to_have_value("spider_like/shop")


def test_train_runs_the_previewed_command_to_the_end(site, page):
    open_tab(page, "Train")
    choose(page, "train-recipe", "(none: the form alone)")
    expect(page.locator("#train-command .cm-content")).not_to_contain_text(".yaml")  # the form is refilled
    fill(page, "train-model", site.model)
    choose(page, "train-dataset", "music_train")
    fill(page, "train-max-steps", "2")
    fill(page, "train-lr", "0.001")
    fill(page, "train-output-dir", "saves/ui_run")
    fill(page, "train-extra", "per_device_train_batch_size=2 logging_steps=1 save_strategy=no cutoff_len=320")
    command = (
        "sqltune train model_name_or_path=models/tiny dataset=music_train max_steps=2 learning_rate=0.001 "
        "output_dir=saves/ui_run per_device_train_batch_size=2 logging_steps=1 save_strategy=no cutoff_len=320"
    )
    expect(page.locator("#train-command .cm-content")).to_have_text(command)
    page.locator("#train-start").click()
    expect(page.locator("#train-progress")).to_contain_text("status finished", timeout=120_000)
    expect(page.locator("#train-progress")).to_contain_text("step 2/2")
    expect(page.locator("#train-status")).to_contain_text("Finished: the run is in saves/ui_run")
    progress = json.loads((site.root / "saves" / "ui_run" / "progress.json").read_text())
    assert progress["status"] == "finished" and progress["step"] == progress["max_steps"] == 2
    assert (site.root / "saves" / "ui_run" / "sqltune_run.json").is_file()
    screenshot(page, "train")


def test_stop_ends_a_running_training(site, page):
    fill(page, "train-max-steps", "100000")
    fill(page, "train-output-dir", "saves/ui_stopped")
    page.locator("#train-start").click()
    expect(page.locator("#train-progress")).to_contain_text("/100000 ", timeout=120_000)  # stepping
    process = site.workspace.train_job.process
    page.locator("#train-stop").click()
    expect(page.locator("#train-status")).to_contain_text("Stopped")
    assert process.poll() is not None  # the process is gone, not left training
    assert not (site.root / "saves" / "ui_stopped" / "sqltune_run.json").exists()


def test_evaluate_shows_the_table_and_the_wrong_answers(site, page):
    open_tab(page, "Evaluate & predict")
    choose(page, "eval-run", site.run)
    choose(page, "eval-dataset", "music_dev")
    fill(page, "eval-max-new-tokens", "48")
    page.locator("#eval-run-button").click()
    expect(page.locator("#eval-status")).to_contain_text("Done", timeout=120_000)
    report = json.loads((site.root / "saves" / "sql_run" / "eval" / "music_dev.json").read_text())
    ex = report["summary"]["levels"]["all"]["exec"]
    assert ex["count"] == 4 and 1 <= ex["correct"] < 4  # the question it learned, and misses
    expect(page.locator("#eval-levels")).to_contain_text(f"({ex['correct']}/4)")
    wrong = [row for row in report["examples"] if row["exec"] == 0]
    expect(page.locator("#eval-wrong")).to_contain_text(wrong[0]["gold"])

    page.locator("#eval-pick input").click()
    page.get_by_role("option").filter(has_text=f"#{wrong[0]['index']}:").first.click()
    expect(page.locator("#eval-detail")).to_contain_text(wrong[0]["gold"])
    expect(page.locator("#eval-gold-rows")).not_to_contain_text("error")  # the gold's own rows
    screenshot(page, "evaluate")


def test_export_writes_the_model_directory(site, page):
    open_tab(page, "Export")
    choose(page, "export-run", site.run)
    fill(page, "export-dir", "exports/sql_run")
    page.locator("#export-button").click()
    expect(page.locator("#export-status")).to_contain_text("Exported to")
    out = site.root / "exports" / "sql_run"
    assert (out / "sqltune_run.json").is_file() and list(out.glob("*.safetensors"))
    expect(page.locator("#export-status")).to_contain_text("Exported to exports/sql_run (")
    expect(page.locator("#export-files")).to_contain_text("model.safetensors")
    screenshot(page, "export")
