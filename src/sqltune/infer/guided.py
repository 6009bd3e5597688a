"""Execution-guided decoding: choose among several generated queries by running them.

`decoding=execution_guided num_candidates=K` asks the engine for K answers per question (the K best
beams, or K samples with `do_sample=true`), runs each candidate's SQL on the question's database
(read-only, `candidate_timeout` seconds, `sqltune.db`: a SQLite file, or a PostgreSQL/MySQL server
database given by URL) and picks one. Candidates that fail (syntax
error, unknown column, timeout, a runaway result) are discarded, and results with rows are
preferred to empty results, which are rarely the answer. Then, by `guided_choice`:

* `first` (execution-guided decoding as Wang et al. 2018 defined it): the most likely candidate
  that survives, so a question the model already answers well keeps its best answer;
* `vote` (self-consistency): the executable candidates are grouped by their result (the rows as a
  multiset, so row order does not split a group) and the largest group wins; ties go to the group
  holding the more likely candidate, whose SQL is returned (candidates arrive best first).

When nothing executes, the most likely candidate is returned as it is.

This is our own code: no library offers execution-guided selection for text-to-SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqltune.db import open_database

MAX_ROWS = 10_000  # a candidate returning more rows than this is treated as a runaway query


@dataclass
class Choice:
    index: int  # the chosen candidate's position (0 = most likely)
    votes: int  # candidates whose result agrees with the chosen one (0 when nothing executed)
    reason: str  # "vote", "most likely executable" or "none executable"
    outcomes: list[str] = field(default_factory=list)  # per candidate: "rows", "empty" or the error


def result_key(rows: list[tuple]) -> tuple:
    """The rows as an order-free multiset; 1 and 1.0 compare equal, floats to 6 decimal places, and a
    server's exact decimals (PostgreSQL's AVG) like the floats SQLite returns."""

    def value(v):
        if isinstance(v, Decimal):
            v = float(v)
        if isinstance(v, float):
            v = round(v, 6)
            return int(v) if v.is_integer() else v
        return v

    return tuple(sorted((tuple(value(v) for v in row) for row in rows), key=repr))


def choose(sqls: Sequence[str], database: str | Path, timeout: float, rule: str = "first") -> Choice:
    """Pick one of `sqls` (most likely first) by executing them on `database` (a SQLite file or a
    server URL) with `rule` (see the module docstring)."""
    db = open_database(database)
    results: dict[str, tuple[str, tuple | None]] = {}  # sql -> (outcome, result key)
    try:
        for sql in sqls:
            if sql in results:
                continue
            if not sql.strip():
                results[sql] = ("empty answer", None)
                continue
            result = db.run(sql, timeout=timeout, max_rows=MAX_ROWS)
            if not result.ok:
                results[sql] = (result.error or "error", None)
            else:
                results[sql] = ("rows" if result.rows else "empty", result_key(result.rows))
    finally:
        db.close()
    outcomes = [results[sql][0] for sql in sqls]
    for wanted in ("rows", "empty"):
        groups: dict[tuple, list[int]] = {}
        for index, sql in enumerate(sqls):
            outcome, key = results[sql]
            if outcome == wanted:
                groups.setdefault(key, []).append(index)
        if not groups:
            continue
        if rule == "first":
            first = min(index for members in groups.values() for index in members)
            members = next(m for m in groups.values() if first in m)
            return Choice(first, len(members), f"most likely with {wanted} result", outcomes)
        # largest group first; among equals, the one whose best member is most likely
        best = min(groups.values(), key=lambda members: (-len(members), members[0]))
        reason = "vote" if len(best) > 1 else "most likely executable"
        return Choice(best[0], len(best), reason, outcomes)
    return Choice(0, 0, "none executable", outcomes)
