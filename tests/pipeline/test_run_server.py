"""`sqltune run ... dialect=postgres|mysql db_url=...` on real PostgreSQL and MariaDB servers, with the
tiny model: the run loads its databases there (demo; Spider's and synth's loads too), builds its data
in the server's dialect (gold SQL checked there), trains, predicts and scores EX on the server (no
EM), runs its GRPO reward, DPO execution pairs and execution-guided candidates there, and never shows
or saves the URL's password. Bad combinations of dialect and db_url, and a server that does not
answer, are one line, exit 2; training on datasets of two dialects is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sqltune.args import RunArguments
from sqltune.cli import main as cli
from sqltune.data.records import load_dataset
from sqltune.db import execute
from sqltune.errors import ConfigError
from sqltune.files import read_jsonl, write_jsonl
from sqltune.pipeline.command import load_into_server, score
from sqltune.runcard import RunCard
from sqltune.train.data import prompt_settings
from tests.infer.conftest import write_concert_db
from tests.tiny import make_dataset, tiny_model_dir  # noqa: F401

QUICKSTART = str(Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml")
SECRET = "pw-never-shown"
GRPO = {
    "stage": "grpo",
    "max_steps": 1,
    "num_generations": 2,
    "per_device_train_batch_size": 2,
    "max_completion_length": 8,
}
DPO = {"stage": "dpo", "pairs": {"num_candidates": 2, "max_new_tokens": 8, "limit": 4}, "max_steps": 1}


def tiny(model: Path, out: Path) -> list[str]:
    return [
        f"model_name_or_path={model}",
        f"output_dir={out}",
        "train_limit=8",
        "eval_limit=4",
        "max_steps=1",
        "per_device_train_batch_size=4",
        "max_new_tokens=8",
        "infer_batch_size=4",
        "cutoff_len=2048",  # the tiny tokenizer (320 tokens) writes long prompts; DPO cuts nothing
    ]


def quickstart_with_stages(folder: Path) -> str:
    """configs/quickstart.yaml with a GRPO and a DPO stage of a single step each after SFT."""
    recipe = yaml.safe_load(Path(QUICKSTART).read_text())
    recipe["stages"] = [GRPO, DPO]
    path = folder / "quickstart_stages.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def text_files(folder: Path) -> str:
    """Everything written under `folder` that reads as text (binary files are skipped)."""
    texts = []
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix not in (".safetensors", ".png", ".bin", ".pt"):
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def test_run_on_postgres_scores_ex_on_the_server_and_hides_the_password(
    tiny_model_dir,  # noqa: F811
    postgres_url,
    tmp_path,
    capsys,
    caplog,
):
    url = postgres_url.replace("postgres@", f"postgres:{SECRET}@") + "{db_id}"
    out = tmp_path / "run"
    recipe = quickstart_with_stages(tmp_path)
    argv = ["run", recipe, *tiny(tiny_model_dir, out), "dialect=postgres", f"db_url={url}"]
    assert cli(argv) == 0
    printed = capsys.readouterr()
    header = next(line for line in printed.out.splitlines() if "┃" in line and "questions" in line)
    assert (
        "EX" in header and "EM" not in header and "after grpo" in printed.out and "after dpo" in printed.out
    )
    assert "EM not computed" in " ".join(printed.out.split())  # rich wraps lines at the terminal's width
    assert "db load: 6 database(s)" in printed.err and "postgres:***@" in printed.err

    report = json.loads((out / "report.json").read_text())
    for label in ("before", "after"):
        assert report[label]["em"] is None and report[label]["by_hardness"] == {}
        assert report[label]["n"] == len(read_jsonl(out / "data" / "demo_dev.jsonl")) > 0
        assert 0.0 <= report[label]["ex"] <= 1.0
        assert report[label]["gold_failed_on_server"] == 0  # the gold SQL was checked there
        rows = json.loads((out / "eval" / f"{label}.json").read_text())["examples"]
        assert all(row["exact"] is None and row["exec"] in (0, 1) for row in rows)
    assert report["stages"]["grpo"]["em"] is None and 0.0 <= report["stages"]["grpo"]["ex"] <= 1.0
    evaluation = report["evaluation"]
    assert evaluation["db_url"] == url.replace(SECRET, "***")
    assert evaluation["database_variant"].startswith("postgresql server") and "exact_match" in evaluation
    assert report["run"]["dialect"] == "postgres" and report["run"]["timing"]["db_load_s"] > 0
    markdown = (out / "report.md").read_text()
    assert "| | EX | questions |" in markdown and "By hardness" not in markdown and "db load" in markdown

    # the records hold PostgreSQL SQL, checked on the server, and prompts that name PostgreSQL; the
    # evaluation ran that SQL there
    rewritten = 0
    for name in ("demo_train", "demo_dev"):
        dataset = load_dataset(out / "data", name)
        built = dataset.entry["sqltune"]["dialect"]
        assert built["dialect"] == "postgres" and built["kept"] == len(dataset.examples) > 0
        assert built["db_url"] == url.replace(SECRET, "***")
        assert all(
            record["instruction"].startswith("You are a PostgreSQL expert") for record in dataset.records
        )
        for example in dataset.examples:
            server = execute(url.replace("{db_id}", example.db_id), example.sql)
            assert server.ok, (example.sql, server.error)
        rewritten += built["changed"]
    assert rewritten > 0  # sqltune's rules changed some gold SQL for PostgreSQL
    dev = load_dataset(out / "data", "demo_dev").examples
    scored = json.loads((out / "eval" / "after.json").read_text())["examples"]
    assert [row["gold"] for row in scored] == [" ".join(e.sql.split()) for e in dev]
    # the tiny model writes no SQL; answers that are the gold score 1 on the server, as the run scores
    write_jsonl(out / "predictions" / "gold.jsonl", [{"index": i, "sql": e.sql} for i, e in enumerate(dev)])
    run = RunArguments(source="demo", db_url=url)
    assert score("gold", out, run, "demo_dev")["summary"]["levels"]["all"]["exec"]["rate"] == 1.0

    # the run card records the dialect, so predict and ask prompt the same way; the GRPO stage's
    # reward and the DPO stage's execution pairs ran the answers on the server
    assert RunCard.load(out).prompt_options["dialect"] == "postgres"
    grpo = RunCard.load(out / "stages" / "grpo")
    assert grpo.stage_settings["db_url"] == url.replace(SECRET, "***")
    assert sum(grpo.metrics["stage_signals"]["execution_outcomes"].values()) == 2
    pairs = json.loads((out / "data" / "dpo_pairs.counts.json").read_text())
    assert pairs["db_url"] == url.replace(SECRET, "***") and pairs["counts"]["candidates"] == 8
    assert SECRET not in printed.out + printed.err + caplog.text and SECRET not in text_files(out)


def test_run_on_mariadb_in_the_mysql_dialect(tiny_model_dir, mariadb_url, tmp_path, capsys):  # noqa: F811
    """MySQL's dialect, with execution-guided decoding: its candidates run on the server too."""
    out = tmp_path / "run"
    url = mariadb_url + "{db_id}"
    guided = ["decoding=execution_guided", "num_candidates=2", "before=false"]
    assert (
        cli(["run", QUICKSTART, *tiny(tiny_model_dir, out), "dialect=mysql", f"db_url={url}", *guided]) == 0
    )
    printed = capsys.readouterr()
    assert "EM not computed" in " ".join(printed.out.split())
    assert "candidates run on" in printed.err  # sqltune predict's summary: the server
    assert all("chosen_by" in row for row in read_jsonl(out / "predictions" / "after.jsonl"))
    report = json.loads((out / "report.json").read_text())
    dev = load_dataset(out / "data", "demo_dev")
    assert report["after"]["em"] is None and report["after"]["n"] == len(dev.examples) > 0
    assert report["run"]["dialect"] == "mysql" and report["evaluation"]["database_variant"].startswith(
        "mysql"
    )
    assert dev.entry["sqltune"]["dialect"]["dialect"] == "mysql"
    assert all(record["instruction"].startswith("You are a MySQL expert") for record in dev.records)


def server_tables(url: str) -> set[str]:
    import sqlalchemy as sa

    from sqltune.db.urls import with_driver

    engine = sa.create_engine(with_driver(url))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_spider_run_loads_only_the_databases_its_questions_use(spider_dir, postgres_url, tmp_path, capsys):
    url = postgres_url + "{db_id}"
    run = RunArguments(source="spider", spider_dir=str(spider_dir), train_limit=3, eval_limit=3, db_url=url)
    load_into_server(run, tmp_path / "data", seed=42)
    assert "db load: 2 database(s)" in capsys.readouterr().err  # department_management, concert_singer
    assert "singer" in server_tables(postgres_url + "concert_singer")
    assert "head" in server_tables(postgres_url + "department_management")


def test_a_synth_run_loads_its_own_database(postgres_url, tmp_path, capsys):
    db = write_concert_db(tmp_path / "my_shop.sqlite")
    run = RunArguments(source="synth", db=str(db), db_url=postgres_url + "{db_id}")
    load_into_server(run, tmp_path / "data", seed=42)
    assert "db load: 1 database(s)" in capsys.readouterr().err
    assert "singer" in server_tables(postgres_url + "my_shop")


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["dialect=postgres"], "dialect=postgres: sqltune run needs db_url="),
        (
            [f"db_url=postgresql://u:{SECRET}@127.0.0.1:1/{{db_id}}"],
            "only with dialect=postgres or dialect=mysql",
        ),
        (
            ["dialect=mysql", f"db_url=postgresql://u:{SECRET}@127.0.0.1:1/{{db_id}}"],
            "is not a MySQL URL",
        ),
        (["dialect=postgres", "db_url=shop.sqlite"], "db_url: 'shop.sqlite' is not a URL"),
    ],
    ids=["dialect-without-url", "url-with-sqlite", "url-of-another-server", "not-a-url"],
)
def test_dialect_and_db_url_must_agree_before_any_work(options, said, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(["run", QUICKSTART, f"output_dir={out}", *options]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("sqltune run: error: ") and said in errors[0], errors
    assert SECRET not in errors[0] and not out.exists()


def test_training_on_datasets_of_two_dialects_is_refused(tmp_path):
    folder = tmp_path / "data"
    make_dataset(folder, "in_sqlite")
    make_dataset(folder, "in_postgres")
    registry = json.loads((folder / "dataset_info.json").read_text())
    registry["in_postgres"]["sqltune"]["prompt"]["dialect"] = "postgres"
    (folder / "dataset_info.json").write_text(json.dumps(registry))
    assert prompt_settings(folder, ["in_postgres"]).dialect == "postgres"
    with pytest.raises(ConfigError) as caught:
        prompt_settings(folder, ["in_sqlite", "in_postgres"])
    message = str(caught.value)
    assert "\n" not in message and "different SQL dialects" in message
    assert "in_sqlite: sqlite" in message and "in_postgres: postgres" in message


def test_a_server_that_does_not_answer_is_one_line_with_the_password_hidden(tmp_path, capsys):
    url = f"postgresql://u:{SECRET}@127.0.0.1:1/{{db_id}}"  # nothing listens on port 1
    assert (
        cli(["run", QUICKSTART, f"output_dir={tmp_path / 'run'}", "dialect=postgres", f"db_url={url}"]) == 2
    )
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "cannot use the server at postgresql://u:***@127.0.0.1:1/" in errors[0], (
        errors
    )
    assert SECRET not in errors[0]
