"""Fixtures of the web UI tests: a workspace with the demo databases, a tiny model, a tiny run that
answers one demo question with real SQL, and the page served on a free loopback port."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from sqltune.args import PromptArguments
from sqltune.data.example import Example
from sqltune.data.records import build_records, write_dataset
from sqltune.data.sources import SourceData

CHROMIUM = Path("/usr/bin/chromium")
# The tiny tokenizer spells the demo schema byte by byte: a short schema keeps prompts short.
PROMPT = PromptArguments(prompt_format="compact", include_types=False, max_schema_chars=120)
QUESTION = "How many artists are there per genre?"
SQL = "SELECT genre, count(*) FROM artists GROUP BY genre"
DEV_PAIRS = [
    (QUESTION, SQL),
    ("How many artists are there?", "SELECT count(*) FROM artists"),
    ("List the names of all artists.", "SELECT name FROM artists"),
    ("How many albums are there?", "SELECT count(*) FROM albums"),
]


def music_dataset(data_dir: Path, demo_dir: Path, name: str, pairs: list[tuple[str, str]]) -> None:
    """Register a dataset of question/SQL pairs over the demo music database."""
    from sqltune.data.introspect import schema_from_sqlite

    schema = schema_from_sqlite(demo_dir / "music" / "music.sqlite")
    examples = [Example(f"{name}_{i}", "music", q, s, source="test") for i, (q, s) in enumerate(pairs)]
    result = build_records(SourceData(examples, {"music": schema}, read=len(examples)), PROMPT)
    info = {
        "source": "test",
        "split": "train",
        "prompt": PROMPT.__dict__.copy(),
        "tables": str(demo_dir / "tables.json"),
        "db_dir": str(demo_dir),
    }
    write_dataset(data_dir, name, result, info)


@dataclass
class Site:
    """A workspace folder (the page's working directory) and what was built in it."""

    root: Path
    model: str  # the tiny random model, relative to root
    run: str  # a tiny run that answers QUESTION with SQL
    url: str = ""
    workspace: object = None


@pytest.fixture(scope="session")
def site_files(tmp_path_factory) -> Site:
    """The workspace: data/ (demo databases, music_train, music_dev), models/tiny and saves/sql_run,
    a tiny model fully fine-tuned until it writes SQL for QUESTION (70 steps: 2 to 3 s on an idle
    2-core machine)."""
    from sqltune.cli import main as cli
    from sqltune.webui.ask import demo_folder
    from tests.tiny import build_model_dir

    root = tmp_path_factory.mktemp("webui")
    data, demo = root / "data", demo_folder(root / "data")
    music_dataset(data, demo, "music_train", [(QUESTION, SQL)] * 8)
    music_dataset(data, demo, "music_dev", DEV_PAIRS)
    build_model_dir(root / "models" / "tiny")
    argv = [
        "train",
        f"model_name_or_path={root / 'models' / 'tiny'}",
        f"dataset_dir={data}",
        "dataset=music_train",
        f"output_dir={root / 'saves' / 'sql_run'}",
        "finetuning_type=full",
        "max_steps=70",
        "per_device_train_batch_size=1",  # eight copies of one pair: a batch of one is the same step
        "learning_rate=2e-2",
        "cutoff_len=320",
        "save_strategy=no",
        "logging_steps=20",
    ]
    assert cli(argv) == 0
    return Site(root, "models/tiny", "saves/sql_run")


@pytest.fixture(scope="module")
def site(site_files):
    """The page served on a free loopback port, from the workspace folder with relative paths (as
    a user starts it: `cd project && sqltune webui run_dir=saves/sql_run`); stopped afterwards."""
    from sqltune.args import WebuiArguments
    from sqltune.webui.app import Workspace, build_app, launch

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(site_files.root)
        patch.setenv("SQLTUNE_CACHE", str(site_files.root / "cache"))  # no run index but this one's
        args = WebuiArguments(port=0, run_dir=site_files.run, data_dir="data", feedback="data/feedback.jsonl")
        workspace = Workspace(args)
        app = build_app(workspace)
        try:
            site_files.url = launch(app, args)
            site_files.workspace = workspace
            yield site_files
        finally:
            app.close()
            workspace.close()


@pytest.fixture(scope="module")
def page(site):
    """A headless Debian chromium page on the site (Playwright's own browser download cannot work
    here; .ci/run installs the chromium package)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 1200, "height": 900})
            tab.set_default_timeout(60_000)
            tab.goto(site.url)
            yield tab
        finally:
            browser.close()
