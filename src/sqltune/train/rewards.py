"""The execution reward: how good a generated answer is, judged by running its SQL.

Reinforcement learning from execution feedback (`stage=grpo`) needs a number for every sampled
completion. The number comes from what the database says, by the same rules the rest of sqltune
uses, so the model is rewarded for exactly what `sqltune eval` scores:

1. The SQL is pulled out of the completion with `sqltune.sql_extract.extract_sql`, the rule
   `sqltune predict` applies to every answer.
2. It runs through `sqltune.evaluate.execution` (hence `sqltune.db`): the database is opened
   read-only with an authorizer that refuses anything but reading, one statement at most, a time
   limit that really interrupts the query, and a row cap one row above the gold result's size.
   A `DROP TABLE` or a runaway recursive query can neither change a file nor stall training.
3. Its result is compared with the gold query's by the evaluator's execution-match rules
   (`execution_match`: bag of rows, any column order, order only when the gold orders, DISTINCT
   dropped), on the question's own database `<db_dir>/<db_id>/<db_id>.sqlite`.

With `db_url` (`postgresql://user@host/{db_id}`, `mysql://...`) the question's database is the one
on that server instead, and both the answer and the gold query run there, each in a read-only
transaction under the server's statement timeout (`sqltune.db.server`). Gold SQL runs as written,
so SQLite gold that the server rejects makes the result component 0, as below.

Three components, each worth `+weight` when met and `-weight` when not; a component whose
prerequisite failed counts as not met. The default weights are SQL-R1's (Ma et al., 2025:
format +-1, execution +-2, result +-3), so the total is a ladder that never ties two kinds of
failure:

    no query (empty, prose, DROP TABLE)   -1 -2 -3 = -6    outcome no_query
    a query that errors or times out      +1 -2 -3 = -4    outcome fails
    runs, wrong result                    +1 +2 -3 =  0    outcome wrong_result
    runs, gold result                     +1 +2 +3 = +6    outcome match

`format` means the extracted text is a query: it begins with SELECT or WITH (the statements the
extraction rule looks for; anything else, such as `DROP TABLE`, is still run, read-only, and
fails). If the gold query itself fails, the result component scores 0 for that question, since
nothing can be learnt about matching it, and a warning is logged once per gold query.

No library computes this (TRL's rewards check math answers and think-tag formats; none executes
SQL), hence our own.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqltune.db import unreachable
from sqltune.db.urls import for_database, is_url
from sqltune.errors import ConfigError, DataError
from sqltune.evaluate.execution import Executor, Target, execution_match
from sqltune.sql_extract import extract_sql

logger = logging.getLogger("sqltune.train")

_QUERY = re.compile(r"(select|with)\b", re.I)

# what a completion came to, from worst to best (the keys of `ExecutionReward.outcomes`):
# no query (nothing extracted, or a statement that is no query and fails), a query that fails,
# a wrong result, the gold result
OUTCOMES = ("no_query", "fails", "wrong_result", "match")


@dataclass(frozen=True)
class RewardWeights:
    """How much each component is worth (+weight met, -weight not met). Defaults: SQL-R1's."""

    format: float = 1.0
    executes: float = 2.0
    match: float = 3.0


@dataclass
class Judgement:
    """One completion, judged: the SQL that ran, what became of it, and the reward."""

    sql: str
    outcome: str  # one of OUTCOMES
    reward: float
    error: str | None = None


def completion_text(completion: str | list[dict]) -> str:
    """The answer's text: a plain string, or the last message of a chat-style completion."""
    if isinstance(completion, str):
        return completion
    if not completion:
        return ""
    content = completion[-1].get("content", "")
    if isinstance(content, list):  # content blocks: [{"type": "text", "text": ...}]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


class ExecutionReward:
    """A TRL reward function: `reward(prompts, completions, db_id=[...], gold_sql=[...]) -> [float]`.

    `db_dir` holds `<db_id>/<db_id>.sqlite`, or `db_url` names each db_id's database on a server
    (`{db_id}` where its name goes); `timeout` (seconds) bounds each query; `max_rows` caps the gold
    result. `outcomes` counts what the completions came to over the whole run.
    """

    __name__ = "execution_reward"  # the name TRL logs the reward under

    def __init__(
        self,
        db_dir: str | Path | None = None,
        weights: RewardWeights | None = None,
        timeout: float = 2.0,
        max_rows: int = 100_000,
        db_url: str | None = None,
    ) -> None:
        if (db_dir is None) == (db_url is None):
            raise ConfigError(
                "execution reward: give db_dir (SQLite files) or db_url (a server), one of them"
            )
        if db_url is not None and not is_url(db_url):
            raise ConfigError(f"execution reward: db_url '{db_url}' is not a URL")
        self.db_dir = Path(db_dir) if db_dir is not None else None
        self.db_url = db_url
        self.weights = weights or RewardWeights()
        self.executor = Executor(timeout, max_rows)
        self.outcomes: Counter[str] = Counter({name: 0 for name in OUTCOMES})
        self._failed_golds: set[tuple[str, str]] = set()
        self._unreachable: dict[str, str | None] = {}  # server: db_id -> why it does not answer

    def _why_missing(self, db_id: str) -> str | None:
        """Why db_id has no database (None when it has one); a server is asked once per db_id."""
        if self.db_url is None:
            path = self.db_dir / db_id / f"{db_id}.sqlite"
            return None if path.is_file() else str(path)
        if db_id not in self._unreachable:
            failed = unreachable(self.db_url, [db_id], self.executor.timeout)
            self._unreachable[db_id] = failed[0] if failed else None
        return self._unreachable[db_id]

    def where(self) -> dict[str, str]:
        """Where the answers run, for run cards and logs (a server's password hidden)."""
        from sqltune.db.urls import hide_password

        return {"db_url": hide_password(self.db_url)} if self.db_url else {"db_dir": str(self.db_dir)}

    def has_database(self, db_id: str) -> bool:
        return self._why_missing(db_id) is None

    def database(self, db_id: str) -> Target:
        why = self._why_missing(db_id)
        if why is not None and self.db_url:  # why: "db_id (URL, password hidden: the error)"
            raise DataError(f"execution reward: database not reachable for db_id {why}")
        if why is not None:
            raise DataError(f"execution reward: no database for db_id '{db_id}' ({why})")
        return for_database(self.db_url, db_id) if self.db_url else self.db_dir / db_id / f"{db_id}.sqlite"

    def judge(self, completion: str | list[dict], db_id: str, gold_sql: str) -> Judgement:
        w = self.weights
        sql = extract_sql(completion_text(completion))
        if not sql:
            return Judgement(sql, "no_query", -w.format - w.executes - w.match, "no SQL in the answer")
        is_query = bool(_QUERY.match(sql))
        format_score = w.format if is_query else -w.format
        failed = "fails" if is_query else "no_query"
        database = self.database(db_id)
        outcome = execution_match(self.executor, [database], sql, gold_sql)
        if outcome.match:
            return Judgement(sql, "match", format_score + w.executes + w.match)
        if outcome.gold_failed:
            if (db_id, gold_sql) not in self._failed_golds:
                self._failed_golds.add((db_id, gold_sql))
                logger.warning("execution reward: %s (db %s): %s", gold_sql, db_id, outcome.error)
            ran = self.executor.run(database, sql, max_rows=1).error in (None, "too many rows")
            kind = "wrong_result" if ran else failed
            return Judgement(sql, kind, format_score + (w.executes if ran else -w.executes), outcome.error)
        if outcome.error:  # the candidate errored or timed out
            return Judgement(sql, failed, format_score - w.executes - w.match, outcome.error)
        return Judgement(sql, "wrong_result", format_score + w.executes - w.match)

    def __call__(
        self,
        prompts: list | None = None,
        completions: list | None = None,
        db_id: list[str] | None = None,
        gold_sql: list[str] | None = None,
        **kwargs,
    ) -> list[float]:
        completions = completions or []
        if db_id is None or gold_sql is None:
            raise DataError("execution reward: every example needs db_id and gold_sql columns")
        judgements = [self.judge(c, d, g) for c, d, g in zip(completions, db_id, gold_sql, strict=True)]
        kinds = Counter(j.outcome for j in judgements)
        self.outcomes.update(kinds)
        log_metric = kwargs.get("log_metric")
        if log_metric is not None and judgements:  # GRPOTrainer: averaged per logging step
            for name in OUTCOMES:
                log_metric(f"execution/{name}", kinds[name] / len(judgements))
        return [j.reward for j in judgements]

    def close(self) -> None:
        self.executor.close()


def reward_databases(entries: dict[str, dict], needed_by: str, db_url: str | None = None) -> dict:
    """Where the execution reward runs the datasets' SQL, as `ExecutionReward`'s keyword: `db_url`
    when given, else the one folder of SQLite files the datasets were built from (their registered
    db_dir). A dataset whose gold SQL is in a server's dialect (`sqltune data dialect=...`) cannot
    run on the SQLite files, so it needs the server."""
    from sqltune.data.records import registered_db_dir

    if db_url:
        return {"db_url": db_url}
    for name, entry in entries.items():
        built = entry.get("sqltune", {}).get("dialect") or {}
        if built.get("dialect", "sqlite") != "sqlite":
            where = f" (it was checked on {built['db_url']})" if built.get("db_url") else ""
            raise ConfigError(
                f"{needed_by}: dataset '{name}' holds {built['dialect']} SQL, which runs only on its "
                f"server: give the server's URL with {{db_id}}{where}"
            )
    folders = {str(registered_db_dir(entry, name, needed_by).resolve()) for name, entry in entries.items()}
    if len(folders) > 1:
        raise ConfigError(
            f"{needed_by}: the datasets use different database folders ({', '.join(sorted(folders))})"
        )
    folder = Path(folders.pop())
    if not folder.is_dir():
        raise DataError(f"{needed_by}: the database folder {folder} does not exist")
    return {"db_dir": folder}
