"""Running an evaluation: check the inputs, score every example (in parallel), summarise.

Each example is scored independently, so examples are spread over worker processes in contiguous
chunks (neighbouring rows often share a gold query, whose results each worker caches). Schemas are
read once per database and worker, gold queries run once per database file, and every query runs
read-only with a time limit, so one bad prediction can neither hang nor stop the run.

Each prediction line is scored as written, as the official evaluator scores it. SQL extraction is
opt-in (`extract=True`): it changes what is scored, so the lines it changed are scored a second
time as written, and the report keeps the official numbers beside the extracted ones.

With `db_url` (a PostgreSQL or MySQL/MariaDB URL, `{db_id}` where the database name goes), every
query runs on the server instead, by the same rules; each worker process opens its own connections.
Gold SQL runs there as written, and Spider's gold is SQLite SQL: a gold query the server rejects
says nothing about the prediction, so that example is left unscored and counted apart ("gold failed
on the server") instead of being scored 0. Exact match and hardness parse the SQL against the
SQLite schema, so they need `db_dir` too; without it only EX is computed.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sqltune.db import unreachable
from sqltune.db.urls import backend, for_database, hide_password, is_url, scrub
from sqltune.errors import ConfigError, DataError
from sqltune.evaluate.bird import score_bird
from sqltune.evaluate.execution import Executor, Target, execution_match, test_databases
from sqltune.evaluate.inputs import (
    GoldItem,
    Unreadable,
    describe,
    is_multi_turn,
    read_gold,
    read_predictions,
)
from sqltune.evaluate.report import compare_official, summarize, write_report
from sqltune.evaluate.spider.exact import EMPTY_SQL, exact_match, foreign_key_map, normalize
from sqltune.evaluate.spider.hardness import hardness
from sqltune.evaluate.spider.parse import ParseError, SpiderSchema, parse_sql
from sqltune.files import check_output, read_json
from sqltune.sql_extract import extract_sql

SEMANTICS = "test-suite-sql-eval (taoyds) at e97acc546ecb; BIRD EX and mini-dev R-VES"
NO_EXACT_ON_SERVER = (
    "exact match not computed: it parses Spider's SQLite SQL against the SQLite schema, which a server "
    "does not have; give db_dir too for EM and hardness from the SQLite files"
)


@dataclass
class EvalConfig:
    """Everything a worker needs to score examples (plain data, so it pickles)."""

    db_dir: str | None
    etype: str = "all"
    plug_value: bool = False
    keep_distinct: bool = False
    timeout: float | None = 30.0
    format: str = "spider"
    max_rows: int = 1_000_000
    ves_repeats: int = 10
    fk_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    db_url: str | None = None  # server URL template: queries run there instead of on db_dir's files


@dataclass
class Task:
    index: int
    pred: str
    gold: GoldItem


class ExampleScorer:
    def __init__(self, config: EvalConfig):
        self.config = config
        self.executor = Executor(config.timeout, config.max_rows)
        self._schemas: dict[str, SpiderSchema] = {}
        self._databases: dict[str, list[Path]] = {}

    def main_db(self, db_id: str) -> Path:
        return Path(self.config.db_dir) / db_id / f"{db_id}.sqlite"

    def target(self, db_id: str) -> Target:
        """Where db_id's queries run: its server database, else its SQLite file."""
        return for_database(self.config.db_url, db_id) if self.config.db_url else self.main_db(db_id)

    def schema(self, db_id: str) -> SpiderSchema:
        if db_id not in self._schemas:
            self._schemas[db_id] = SpiderSchema.from_sqlite(self.main_db(db_id))
        return self._schemas[db_id]

    def databases(self, db_id: str) -> list[Target]:
        if self.config.db_url:  # one database per db_id on a server (no test suites there)
            return [self.target(db_id)]
        if db_id not in self._databases:
            self._databases[db_id] = test_databases(self.main_db(db_id).parent)
        return self._databases[db_id]

    def gold_failed_on_server(self, row: dict, gold_failed: bool) -> None:
        """On a server, an example whose gold query failed there is left unscored (see the module
        docstring); `gold_failed` is in every row of a server run, so the report can count them."""
        if self.config.db_url and gold_failed:
            row.update(gold_failed=True, exec=None)

    def __call__(self, task: Task) -> dict:
        gold = task.gold
        # The official evaluator replaces every "value" (case-sensitive) in a prediction by 1.
        pred = task.pred.strip().replace("value", "1")
        row: dict = {"index": task.index, "db_id": gold.db_id}
        if self.config.format == "bird":
            row["difficulty"] = gold.difficulty
        else:
            row["hardness"] = None
        row.update(session=gold.session, turn=gold.turn)
        row.update(exact=None, exec=None, pred_parse_ok=None, error=None, pred=pred, gold=gold.sql)
        if self.config.db_url:
            row["gold_failed"] = False  # an empty prediction scores 0 without running the gold
        try:
            if self.config.format == "bird":
                self._score_bird(row, pred, gold)
            else:
                self._score_spider(row, pred, gold)
        except Exception as err:  # one broken example must not stop the run; it is reported
            message = scrub(repr(err), self.config.db_url) if self.config.db_url else repr(err)
            row.update(exec=0 if row["exec"] is None else row["exec"], error=f"evaluation failed: {message}")
        if isinstance(task.pred, Unreadable):  # scored as the empty prediction it stands for
            row["error"] = task.pred.reason
        return row

    def _score_bird(self, row: dict, pred: str, gold: GoldItem) -> None:
        if not pred:
            row.update(exec=0, error="empty prediction", reward=0.0 if self.config.etype == "all" else None)
            return
        repeats = self.config.ves_repeats if self.config.etype == "all" else 0
        result = score_bird(self.executor, self.target(gold.db_id), pred, gold.sql, repeats)
        row.update(exec=int(result.exec), error=result.error, reward=result.reward)
        self.gold_failed_on_server(row, result.gold_failed)
        if row["exec"] is None:
            row["reward"] = None

    def _score_spider(self, row: dict, pred: str, gold: GoldItem) -> None:
        gold_sql = None
        if self.config.db_dir:  # without it (server only), no hardness and no exact match
            schema = self.schema(gold.db_id)
            try:
                gold_sql = parse_sql(gold.sql, schema)
                row["hardness"] = hardness(gold_sql)
            except ParseError as err:
                row["error"] = f"gold query does not parse: {err}"
        if self.config.etype in ("all", "match"):
            try:
                pred_sql = parse_sql(pred, schema) if pred else EMPTY_SQL
                row["pred_parse_ok"] = bool(pred)
            except ParseError:
                pred_sql, row["pred_parse_ok"] = EMPTY_SQL, False
            if gold_sql is not None:
                fk_map = self.config.fk_maps[gold.db_id]
                same, scores = exact_match(
                    normalize(pred_sql, schema, fk_map), normalize(gold_sql, schema, fk_map)
                )
                row["exact"] = int(same)
                row["partial"] = {name: score._asdict() for name, score in scores.items()}
            else:
                row["exact"] = 0
        if not pred:
            row.update(exec=0 if self.config.etype != "match" else None, error="empty prediction")
            return
        if self.config.etype in ("all", "exec"):
            outcome = execution_match(
                self.executor,
                self.databases(gold.db_id),
                pred,
                gold.sql,
                self.config.plug_value,
                self.config.keep_distinct,
            )
            row["exec"] = int(outcome.match)
            row["error"] = "; ".join(e for e in (row["error"], outcome.error) if e) or None
            self.gold_failed_on_server(row, outcome.gold_failed)


_worker: ExampleScorer | None = None


def _start_worker(config: EvalConfig) -> None:
    global _worker
    _worker = ExampleScorer(config)


def _score(task: Task) -> dict:
    assert _worker is not None
    return _worker(task)


def _check_databases(db_dir: Path, gold: list[GoldItem]) -> str:
    """Every database must exist; returns the variant ("original" or "test-suite ...")."""
    if not db_dir.is_dir():
        raise DataError(f"database folder not found: {db_dir}")
    db_ids = sorted({item.db_id for item in gold})
    missing = [d for d in db_ids if not (db_dir / d / f"{d}.sqlite").is_file()]
    if missing:
        shown = ", ".join(f"{d} ({db_dir / d / (d + '.sqlite')})" for d in missing[:5])
        raise DataError(f"database not found for {len(missing)} db_id(s): {shown}")
    files = [len(test_databases(db_dir / d)) for d in db_ids]
    if max(files) > 1:
        return f"test-suite ({sum(files)} databases for {len(db_ids)} db_ids)"
    return f"original ({len(db_ids)} databases)"


def _check_server(db_url: str, gold: list[GoldItem], timeout: float | None) -> str:
    """Every db_id's database must answer on the server before the run starts (one line naming
    them otherwise); returns the variant."""
    if backend(db_url) not in ("postgresql", "mysql"):
        raise ConfigError(
            f"db_url '{hide_password(db_url)}': give a PostgreSQL or MySQL/MariaDB URL "
            "(SQLite files go in db_dir)"
        )
    db_ids = sorted({item.db_id for item in gold})
    failed = unreachable(db_url, db_ids, timeout)  # each worker opens its own connections later
    if failed:
        raise DataError(f"database not reachable on the server for db_id(s): {'; '.join(failed)}")
    return f"{backend(db_url)} server ({len(db_ids)} databases)"  # the URL is in settings["db_url"]


def _foreign_keys(tables: str | Path | None, gold: list[GoldItem]) -> dict[str, dict[str, str]]:
    if tables is None:
        raise DataError("exact match needs --tables (the tables.json of the databases)")
    entries = read_json(tables, "tables file")
    if not isinstance(entries, list):
        raise DataError(f"{tables}: expected a JSON list of database entries")
    maps = {}
    for position, entry in enumerate(entries):
        try:
            maps[entry["db_id"]] = foreign_key_map(entry)
        except (KeyError, TypeError, IndexError, ValueError) as err:
            raise DataError(
                f"{tables}: entry {position} is malformed ({type(err).__name__}: {err})"
            ) from None
    unknown = sorted({item.db_id for item in gold} - set(maps))
    if unknown:
        raise DataError(f"{tables}: no entry for db_id(s) {', '.join(unknown[:10])}")
    return maps


def evaluate(
    pred: str | Path,
    gold: str | Path,
    db_dir: str | Path | None = None,
    tables: str | Path | None = None,
    *,
    db_url: str | None = None,
    etype: str = "all",
    plug_value: bool = False,
    keep_distinct: bool = False,
    timeout: float | None = 30.0,
    workers: int = 0,
    output: str | Path | None = None,
    format: str = "spider",
    extract: bool = False,
    max_rows: int = 1_000_000,
    ves_repeats: int = 10,
    progress: bool = False,
) -> dict:
    """Score predictions against gold queries; returns {"settings", "summary", "examples"}.

    `etype` is all, exec or match (Spider); `format` is spider or bird. `workers=0` uses every CPU.
    `db_url` runs the queries on a server (see the module docstring); without `db_dir` beside it,
    etype all becomes exec.
    Lines are scored as written (official semantics) unless `extract`, which applies
    `sqltune.sql_extract.extract_sql` first and adds the "extraction" and "official" blocks.
    With `output`, the same structure is also written there as JSON.
    """
    if etype not in ("all", "exec", "match"):
        raise DataError(f"etype: unknown '{etype}', choose all, exec or match")
    if format not in ("spider", "bird"):
        raise DataError(f"format: unknown '{format}', choose spider or bird")
    if not db_dir and not db_url:
        raise ConfigError("db_dir: required (--db-dir FOLDER of SQLite files), or a server's --db-url")
    if db_url and not is_url(db_url):
        raise ConfigError(f"db_url: '{db_url}' is not a URL (postgresql://user@host:5432/{{db_id}})")
    exact_note = None
    if db_url and not db_dir and format == "spider":
        if etype == "match":
            raise ConfigError(f"etype=match: {NO_EXACT_ON_SERVER}")
        etype, exact_note = "exec", NO_EXACT_ON_SERVER
    if output:
        check_output(output, (pred, gold, tables), "output")
    gold_items = read_gold(gold)
    preds = read_predictions(pred, gold_items)
    db_dir = Path(db_dir) if db_dir else None
    if db_dir is not None:
        variant = _check_databases(db_dir, gold_items)
    if db_url:
        variant = _check_server(db_url, gold_items, timeout)
    needs_em = format == "spider" and etype in ("all", "match")
    fk_maps = _foreign_keys(tables, gold_items) if needs_em else {}
    config = EvalConfig(
        db_dir=str(db_dir) if db_dir else None,
        etype=etype,
        plug_value=plug_value,
        keep_distinct=keep_distinct,
        timeout=timeout,
        format=format,
        max_rows=max_rows,
        ves_repeats=ves_repeats,
        fk_maps=fk_maps,
        db_url=db_url,
    )
    tasks = [Task(i, p, g) for i, (p, g) in enumerate(zip(preds, gold_items))]
    originals = _extract(tasks) if extract else []
    # Fewer than ~20 examples per process is not worth starting the process.
    workers = min(workers or os.cpu_count() or 1, max(1, len(tasks) // 20))
    rows = _run(tasks + originals, config, workers, progress)
    examples = rows[: len(tasks)]
    settings = {
        "pred": str(pred),
        "pred_format": describe(pred),
        "gold": str(gold),
        "db_dir": str(db_dir) if db_dir else None,
        "db_url": hide_password(db_url) if db_url else None,
        "tables": str(tables) if tables else None,
        "database_variant": variant,
        "format": format,
        "etype": etype,
        "plug_value": plug_value,
        "keep_distinct": keep_distinct,
        "timeout": timeout,
        "max_rows": max_rows,
        "extract": extract,
        "extraction": "sqltune.sql_extract.extract_sql" if extract else "none (lines scored as written)",
        "ves_repeats": ves_repeats if format == "bird" and etype == "all" else None,
        "workers": workers,
        "evaluator_version": _version(),
        "semantics": SEMANTICS,
    }
    if db_url and format == "spider":
        from_files = "hardness and EM from the SQLite files in db_dir, EX on the server"
        settings["exact_match"] = exact_note or from_files
    multi_turn = is_multi_turn(gold_items)
    report = {
        "settings": settings,
        "summary": summarize(examples, format, etype, multi_turn),
        "examples": examples,
    }
    if extract:
        report.update(compare_official(examples, rows[len(tasks) :], format, etype, multi_turn))
    if output:
        write_report(output, report)
    return report


def _extract(tasks: list[Task]) -> list[Task]:
    """Apply the extraction rule to every task; returns the tasks it changed, as written, whose
    scores (with those of the unchanged tasks) are the official numbers."""
    originals = []
    for task in tasks:
        sql = extract_sql(task.pred)
        if sql != task.pred.strip():
            originals.append(Task(task.index, task.pred, task.gold))
            task.pred = sql
    return originals


def _version() -> str:
    from sqltune import __version__

    return f"sqltune {__version__}"


def _run(tasks: list[Task], config: EvalConfig, workers: int, progress: bool) -> list[dict]:
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="sqltune eval", unit="ex", disable=not progress, file=sys.stderr)
    if workers <= 1:
        scorer = ExampleScorer(config)
        try:
            results = []
            for task in tasks:
                results.append(scorer(task))
                bar.update()
            return results
        finally:
            scorer.executor.close()
            bar.close()
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    chunk = max(1, min(32, len(tasks) // (workers * 8)))
    with context.Pool(workers, initializer=_start_worker, initargs=(config,)) as pool:
        results = []
        for row in pool.imap(_score, tasks, chunksize=chunk):
            results.append(row)
            bar.update()
    bar.close()
    return results
