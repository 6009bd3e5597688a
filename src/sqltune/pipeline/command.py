"""`sqltune run`: data -> train -> predict -> evaluate, before and after fine-tuning, in one command.

    sqltune run configs/quickstart.yaml
    sqltune run configs/quickstart.yaml output_dir=outputs/mine max_steps=30
    sqltune run configs/spider_smollm2.yaml spider_dir=../shared/data/spider
    sqltune run configs/own_database.yaml db=shop.sqlite     # a model for your own database
    sqltune run configs/quickstart.yaml dialect=postgres db_url=postgresql://user@127.0.0.1:5432/{db_id}

Each step calls the same function as its own command and leaves the same files, all inside the run
directory (`output_dir`): `data/` (the train and dev datasets and the dev gold file), the trained run
(adapter, tokenizer, run card, loss curve), `predictions/before.jsonl` and `after.jsonl`,
`eval/before.json` and `after.json`, and finally `report.md`, `report.json` and `report.png`
(`sqltune.pipeline.report`). "Before" is the base model answering with the same template, prompt
format and generation settings as the fine-tuned one, so the gain is the fine-tuning's alone.

Rerunning the command continues: a finished training run is reused (`overwrite_output_dir=true`
trains again, and then predicts "after" again), predictions resume where they stopped. A finished
run is recorded in the run index (`sqltune.run_index`), where `sqltune ask` finds it.

On a server (`dialect=postgres|mysql db_url=...`, `{db_id}` where the database name goes), the run
first copies its SQLite databases there (`sqltune db load`: the demo databases, the Spider databases
its questions use, or the synth database; idempotent, so a rerun loads them again), builds the data
in the dialect (gold SQL kept only when it returns SQLite's result on the server), and scores EX on
the server. Exact match is not computed: it parses SQLite SQL, and the gold is the server's. Later
stages run their answers there too (grpo/ppo `reward_db_url`, `data pairs` `db_url`). The URL is
shown and saved with its password hidden.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from sqltune.args import (
    DataArguments,
    FinetuningArguments,
    GeneratingArguments,
    ModelArguments,
    PredictArguments,
    PromptArguments,
    RunArguments,
    SourceArguments,
)
from sqltune.config import format_help, parse_args
from sqltune.errors import ConfigError, DataError
from sqltune.runcard import RUN_CARD, RunCard

DATA = "data"


def groups() -> tuple:
    from sqltune.train.arguments import TrainingArguments

    return (
        RunArguments,
        ModelArguments,
        FinetuningArguments,
        TrainingArguments,
        PromptArguments,
        GeneratingArguments,
    )


def check_server(run: RunArguments, prompt: PromptArguments) -> str | None:
    """The server URL template the run works on (`{db_id}` in it), or None on SQLite files; checked
    before any work, so a missing or mismatched URL is one line, not a failure minutes later."""
    from sqltune.data.dialect import check_url
    from sqltune.db.load import database_template

    if prompt.dialect == "sqlite":
        if run.db_url:
            raise ConfigError(
                "db_url: sqltune run uses a server only with dialect=postgres or dialect=mysql; with "
                "dialect=sqlite the prompts and gold SQL are SQLite's and are scored on the SQLite files "
                "(give dialect=postgres|mysql to run on the server, or leave db_url out)"
            )
        return None
    if not run.db_url:
        raise ConfigError(
            f"dialect={prompt.dialect}: sqltune run needs db_url=<the server to load the databases into "
            "and score on, {db_id} where the database name goes>, e.g. "
            "postgresql://user@127.0.0.1:5432/{db_id}"
        )
    return database_template(check_url(run.db_url, prompt.dialect))


def check_spider(run: RunArguments) -> None:
    """A Spider run needs the Spider folder before anything (a load into a server reads it first)."""
    if run.source == "spider" and not Path(run.spider_dir).is_dir():
        raise ConfigError(
            f"spider_dir={run.spider_dir}: no such folder; this recipe needs Spider (tables.json, "
            "train_spider.json, dev.json, database/): give spider_dir=<spider folder>"
        )


def source_arguments(run: RunArguments, split: str, data_dir: Path, seed: int) -> SourceArguments:
    """What `sqltune data` is given for one split of the run's data."""
    return SourceArguments(
        source=run.source,
        data_dir=run.spider_dir,
        split=split,
        output_dir=str(data_dir),
        limit=run.train_limit if split == "train" else run.eval_limit,
        seed=seed,
        db=run.db,
        synth_pairs=run.synth_pairs,
        holdout=run.holdout,
        db_url=run.db_url,
    )


def load_into_server(run: RunArguments, data_dir: Path, seed: int) -> None:
    """Copy the run's SQLite databases into the server at `run.db_url` (`sqltune.db.load`): the demo
    databases (built where the data step builds them), the Spider databases the run's questions use,
    or the synth database. A load replaces what an earlier one left, so a rerun is the same."""
    from sqltune.db.load import load_database, load_databases
    from sqltune.db.urls import for_database, hide_password

    if run.source == "demo":
        from sqltune.data.demo import FOLDER, build_demo_databases

        build_demo_databases(data_dir / FOLDER)
        reports = load_databases(data_dir / FOLDER, run.db_url)
    elif run.source == "synth":
        from sqltune.data.introspect import schema_from_sqlite
        from sqltune.files import require_file

        db = require_file(run.db, "database")
        db_id = schema_from_sqlite(db).db_id  # the name the data step gives it
        reports = [load_database(db, for_database(run.db_url, db_id), db_id)]
    else:  # spider: only the databases the (limited) questions use; Spider's wta_1 has no file
        from sqltune.data.sources import read_source

        db_dir, db_ids = None, set()
        for split in ("train", "dev"):
            data = read_source(source_arguments(run, split, data_dir, seed))
            db_dir = Path(data.db_dir)
            db_ids |= {e.db_id for e in data.examples if (db_dir / e.db_id / f"{e.db_id}.sqlite").is_file()}
        reports = load_databases(db_dir, run.db_url, sorted(db_ids))
    differ = [r.db_id for r in reports if not r.verified]
    if differ:
        raise DataError(
            f"db load: row counts on the server differ from SQLite's for {', '.join(differ)} "
            "(see sqltune db load for the report)"
        )
    changes = sum(len(r.changes) for r in reports)
    print(
        f"db load: {len(reports)} database(s), {sum(len(r.tables) for r in reports)} tables, "
        f"{sum(r.rows for r in reports)} rows into {hide_password(run.db_url)}"
        + (f" ({changes} change(s): sqltune db load lists them)" if changes else ""),
        file=sys.stderr,
    )


def build_data(run: RunArguments, prompt: PromptArguments, data_dir: Path, seed: int) -> tuple[str, str]:
    """Build the train and dev datasets of `run.source` (in `prompt.dialect`, checked on the run's
    server); returns their names."""
    from sqltune.data.command import run_data

    for split in ("train", "dev"):
        run_data(source_arguments(run, split, data_dir, seed), prompt)
    dev = f"{run.source}_dev"
    keep_questions_with_databases(data_dir, dev)
    return f"{run.source}_train", dev


def check_database(run: RunArguments, data_dir: Path) -> None:
    """Refuse to put a second database's run into a run directory that holds one made for another:
    its finished training would be reused for the wrong database."""
    from sqltune.data.records import load_registry
    from sqltune.run_index import database_key

    if run.source != "synth":
        return
    made_for = load_registry(data_dir).get(f"{run.source}_train", {}).get("sqltune", {}).get("database")
    if made_for and made_for != database_key(run.db):
        raise ConfigError(
            f"{data_dir.parent} holds the run made for {made_for}; give another output_dir=... for {run.db}"
        )


def keep_questions_with_databases(data_dir: Path, name: str) -> None:
    """Drop the dev questions whose database file is missing (Spider's wta_1): they cannot be
    executed, so they would only count as errors in EX."""
    from sqltune.data.records import BuildResult, load_dataset, write_dataset

    dataset = load_dataset(data_dir, name)
    present = [Path(dataset.schemas[e.db_id].db_path or "").is_file() for e in dataset.examples]
    if all(present):
        return
    missing = sorted({e.db_id for e, ok in zip(dataset.examples, present) if not ok})
    examples = [e for e, ok in zip(dataset.examples, present) if ok]
    result = BuildResult(
        records=[r for r, ok in zip(dataset.records, present) if ok],
        examples=examples,
        schemas={k: v for k, v in dataset.schemas.items() if k in {e.db_id for e in examples}},
    )
    info = {k: v for k, v in dataset.entry["sqltune"].items() if k not in ("examples", "schemas", "count")}
    write_dataset(data_dir, name, result, info)
    print(
        f"{name}: {len(present) - len(examples)} question(s) left out, database file missing: {', '.join(missing)}",
        file=sys.stderr,
    )


def write_gold(data_dir: Path, name: str) -> Path:
    """The dev gold queries as `SQL<TAB>db_id` lines, in dataset order (the evaluator's input)."""
    from sqltune.data.records import load_dataset
    from sqltune.files import write_text

    dataset = load_dataset(data_dir, name)
    path = data_dir / f"{name}_gold.sql"
    write_text(path, "".join(f"{' '.join(e.sql.split())}\t{e.db_id}\n" for e in dataset.examples))
    return path


def train_step(
    model_args: ModelArguments,
    finetuning: FinetuningArguments,
    training,
    run: RunArguments,
    data_dir: Path,
    name: str,
) -> tuple[RunCard, bool]:
    """Train, or reuse the finished run in the run directory; returns (card, trained now)."""
    from sqltune.train.command import run_train

    run_dir = Path(training.output_dir)
    if (run_dir / RUN_CARD).is_file() and not training.overwrite_output_dir:
        print(
            f"reusing the trained run in {run_dir} (overwrite_output_dir=true trains again)", file=sys.stderr
        )
        return RunCard.load(run_dir), False
    data_args = DataArguments(dataset=name, dataset_dir=str(data_dir), cutoff_len=run.cutoff_len)
    return run_train(model_args, data_args, finetuning, training), True


def predict_and_score(
    label: str,
    model_args: ModelArguments,
    run_dir: Path,
    trained_run: Path | None,
    run: RunArguments,
    settings: GeneratingArguments,
    dev: str,
    seed: int,
    overwrite: bool,
) -> dict:
    """Answer the dev questions with one model and score them; returns the evaluation report."""
    from sqltune.infer.command import run_predict

    data_dir = run_dir / DATA
    args = PredictArguments(
        run_dir=str(trained_run) if trained_run else None,
        dataset=dev,
        dataset_dir=str(data_dir),
        output=str(run_dir / "predictions" / f"{label}.jsonl"),
        batch_size=run.infer_batch_size,
        cutoff_len=run.cutoff_len,
        infer_dtype=run.infer_dtype,
        seed=seed,
        overwrite=overwrite,
        # the candidates are the model's SQL in the dialect: they run where the gold does
        db_url=run.db_url if settings.decoding == "execution_guided" else None,
    )
    summary = run_predict(model_args, args, settings)
    return score(label, run_dir, run, dev, summary.questions_per_second)


def score(label: str, run_dir: Path, run: RunArguments, dev: str, speed: float | None = None) -> dict:
    """Score `predictions/<label>.jsonl` of the run directory on the dev questions (`eval/<label>.json`)."""
    from sqltune.data.records import dataset_entry
    from sqltune.evaluate.run import evaluate

    data_dir = run_dir / DATA
    predictions, gold = run_dir / "predictions" / f"{label}.jsonl", write_gold(data_dir, dev)
    output = run_dir / "eval" / f"{label}.json"
    if run.db_url:  # the gold SQL is the server's: EX there; EM parses SQLite SQL, so none
        report = evaluate(
            predictions, gold, db_url=run.db_url, etype="exec", timeout=run.eval_timeout, output=output
        )
    else:
        entry = dataset_entry(data_dir, dev)["sqltune"]
        report = evaluate(
            predictions, gold, entry["db_dir"], entry["tables"], timeout=run.eval_timeout, output=output
        )
    report["prediction"] = {"questions_per_second": round(speed, 3) if speed else None}
    return report


class Timing:
    """Wall seconds of each step of the pipeline (`with timing("train_s"): ...`) and in total."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.steps: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.steps[step] = round(time.perf_counter() - start, 1)

    def seconds(self, trained: bool) -> dict:
        total = round(time.perf_counter() - self.began, 1)
        return {**self.steps, "total_s": total, "trained_now": trained}


def run_pipeline(
    run: RunArguments,
    model_args: ModelArguments,
    finetuning: FinetuningArguments,
    training,
    prompt: PromptArguments,
    settings: GeneratingArguments,
) -> dict:
    """The whole flow; returns the report (also written as report.json/.md/.png)."""
    import dataclasses

    from sqltune.pipeline.report import print_table, write_reports
    from sqltune.pipeline.stages import plan_stages, train_stage
    from sqltune.run_index import record_run

    run_dir = Path(training.output_dir)
    data_dir = run_dir / DATA
    plans = plan_stages(run.stages, type(training))  # errors before any work
    run = dataclasses.replace(run, db_url=check_server(run, prompt))
    timing = Timing()
    check_database(run, data_dir)
    check_spider(run)
    if run.db_url:
        with timing("db_load_s"):
            load_into_server(run, data_dir, training.seed)
    with timing("data_s"):
        train_name, dev = build_data(run, prompt, data_dir, training.seed)
    with timing("train_s"):
        card, trained = train_step(model_args, finetuning, training, run, data_dir, train_name)
    reports = {}
    if run.before:  # the base model, asked exactly as the fine-tuned one will be
        base = dataclasses.replace(model_args, adapter_name_or_path=None, template=card.template)
        with timing("before_s"):
            reports["before"] = predict_and_score(
                "before", base, run_dir, None, run, settings, dev, training.seed, False
            )
    with timing("after_s"):
        reports["after"] = predict_and_score(
            "after", ModelArguments(), run_dir, run_dir, run, settings, dev, training.seed, overwrite=trained
        )
    stage_reports, stage_cards = {}, {}
    for plan in plans:
        with timing(f"{plan.name}_train_s"):
            stage_dir, stage_trained = train_stage(
                plan, model_args, finetuning, training, run, run_dir, train_name, settings.max_new_tokens
            )
        trained = trained or stage_trained
        stage_cards[plan.name] = RunCard.load(stage_dir)
        if not plan.scored:
            stage_reports[plan.name] = None
            continue
        with timing(f"{plan.name}_s"):
            stage_reports[plan.name] = predict_and_score(
                plan.name,
                ModelArguments(),
                run_dir,
                stage_dir,
                run,
                settings,
                dev,
                training.seed,
                overwrite=stage_trained,
            )
    report = write_reports(run_dir, reports, card, timing.seconds(trained), stage_reports, stage_cards)
    print_table(report, run_dir)
    record_run(run_dir, run.source, run.db)  # so that `sqltune ask` finds it (sqltune.run_index)
    return report


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help(groups(), "run"))
        return 0
    run_pipeline(*parse_args(groups(), argv))
    return 0
