"""Execution match: does the prediction return the gold query's rows, by the test-suite rules?

These are the comparison rules of the official test-suite evaluator (test-suite-sql-eval,
`exec_eval.py` and `parse.py`), written anew:

* Both queries get `> =`, `< =`, `! =` closed up, and DISTINCT removed (unless keep_distinct).
  DISTINCT is removed token by token with sqlparse, which also drops everything after the first
  statement. `YEAR(CURDATE())` becomes 2020.
* Results are bags of rows: duplicates count, the order of rows counts only when the gold query
  contains the text "order by", and the columns may come in any order.
* With plug_value, the gold query's literal values are plugged into the prediction's value slots in
  every possible way (after trying the prediction as written); any one that matches counts.
* In test-suite mode every `*.sqlite` file in the database's folder is a test database, and the
  prediction must match on all of them.

Queries run through `sqltune.db`: read-only, with a time limit, and with a row limit (a prediction
is read only up to one row more than the gold has; it cannot match beyond that). A database is a
SQLite file or a server URL (PostgreSQL, MySQL/MariaDB); the rules above are the same for both, and
on a server the time limit is the server's own statement timeout.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlparse
from sqlparse import tokens as T
from sqlparse.engine import FilterStack

from sqltune.db import QueryResult, open_database
from sqltune.db.urls import hide_password, is_url

_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)
_VALUE_SLOT = "VALUERARE"  # the placeholder the official plugging uses; lower-cased in slot lists


# --- text rules ---------------------------------------------------------------------------------------
def close_operators(sql: str) -> str:
    return sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")


def first_statement_tokens(sql: str) -> list:
    """sqlparse's tokens of the first statement (what `sqlparse.parse(sql)[0].flatten()` gives)."""
    statement = next(FilterStack().run(sql), None)
    return [] if statement is None else list(statement.flatten())


def remove_distinct(sql: str) -> str:
    lowered = sql.lower()
    if "distinct" not in lowered and ";" not in sql and "go" not in lowered:
        # Nothing to drop and no statement boundary (sqlparse splits at ';' and at GO): the
        # tokens would join back to the same text, so skip the (slow) lexer.
        return sql
    return "".join(t.value for t in first_statement_tokens(sql) if t.value.lower() != "distinct")


def order_matters(gold_sql: str) -> bool:
    return "order by" in gold_sql.lower()


def replace_current_year(sql: str) -> str:
    return _CUR_YEAR.sub("2020", sql)


# --- comparing results --------------------------------------------------------------------------------
def _sorted_row(row: tuple) -> tuple:
    return tuple(sorted(row, key=lambda value: str(value) + str(type(value))))


def results_match(gold: list[tuple], pred: list[tuple], ordered: bool) -> bool:
    """The official `result_eq`: equal bags (or lists, when ordered) of rows, up to column order.

    A cheap test comes first, as in the original, and is kept because it decides some cases on its
    own: each row's values are sorted by their text and type, and the sorted rows must agree (as
    sets only, when unordered). Then some permutation of the prediction's columns must make the
    results equal.
    """
    if not gold and not pred:
        return True
    if len(gold) != len(pred) or len(gold[0]) != len(pred[0]):
        return False
    gold_sorted = [_sorted_row(r) for r in gold]
    pred_sorted = [_sorted_row(r) for r in pred]
    if (gold_sorted != pred_sorted) if ordered else (set(gold_sorted) != set(pred_sorted)):
        return False
    width = len(gold[0])
    gold_counts = Counter(gold) if not ordered else None
    column_bags = [Counter(row[i] for row in gold) for i in range(width)]
    pred_bags = [Counter(row[i] for row in pred) for i in range(width)]
    # Search column assignments, keeping only those whose value bags agree column by column.
    candidates = [[j for j in range(width) if pred_bags[j] == column_bags[i]] for i in range(width)]
    for perm in _assignments(candidates):
        permuted = [tuple(row[j] for j in perm) for row in pred]
        if permuted == gold if ordered else Counter(permuted) == gold_counts:
            return True
    return False


def _assignments(candidates: list[list[int]], used: tuple = ()) -> Iterator[tuple]:
    if len(used) == len(candidates):
        yield used
        return
    for j in candidates[len(used)]:
        if j not in used:
            yield from _assignments(candidates, (*used, j))


# --- plugging gold values -----------------------------------------------------------------------------
def _reformat(sql: str) -> str:
    sql = sql.strip().replace(";", "").replace("\t", "")
    text = " ".join(t.value for t in first_statement_tokens(sql) if t.ttype != T.Whitespace)
    for star in ("t1.*", "t2.*", "t3.*", "T1.*", "T2.*", "T3.*"):
        text = text.replace(star, "*")
    return text


def value_slots(sql: str) -> tuple[list[str], set[str]]:
    """(lower-cased words with each literal replaced by a slot, the set of literals as written).

    The official rule: string literals are what sqlparse calls single-quoted strings or
    double-quoted symbols; numbers are whole words that look like a decimal, or digits not
    preceded by `t`/`T` (so `T1` is not a number).
    """
    text = sqlparse.format(_reformat(sql), reindent=False, keyword_case="upper")
    text = re.sub(r"(T\d+\.)\s", r"\1", text)
    string_types = (T.Literal.String.Single, T.Literal.String.Symbol)
    literals = [t.value for t in first_statement_tokens(text) if t.ttype in string_types]
    values = list(literals)
    for literal in literals:
        text = text.replace(literal.strip(), _VALUE_SLOT)
    words = text.split()
    decimals = re.findall(r"[-+]?\d*\.\d+", text)
    values += [w for w in words if w in decimals]
    words = [_VALUE_SLOT if w in decimals else w for w in words]
    integers = [m.strip() for m in re.findall(r"[^tT]\d+", " ".join(words))]
    values += [w for w in words if w in integers]
    words = [_VALUE_SLOT if w in integers else w for w in words]
    out: list[str] = []
    for word in words:
        if "." in word and re.search(r"[Tt]\d+\.", word):
            out += [part.lower() for part in word.replace(".", " . ").split()]
        else:
            out.append(word.lower())
    return out, set(values)


def plugged_predictions(gold_sql: str, pred_sql: str) -> Iterator[str]:
    """Every way of filling the prediction's value slots with the gold query's values."""
    gold_values = list(value_slots(gold_sql)[1])
    words = value_slots(pred_sql)[0]
    slot = _VALUE_SLOT.lower()
    positions = [i for i, word in enumerate(words) if word == slot]
    for choice in itertools.product(gold_values, repeat=len(positions)):
        filled = list(words)
        for position, value in zip(positions, choice):
            filled[position] = value
        yield " ".join(filled)


# --- running ------------------------------------------------------------------------------------------
def test_databases(folder: Path) -> list[Path]:
    """The databases a query is checked on: every `*.sqlite` file in its folder."""
    return sorted(p for p in folder.glob("*.sqlite") if p.is_file())


Target = Path | str  # a SQLite file or a server database's URL


def target_name(target: Target) -> str:
    """How a database is named in messages and reports: the file's name, or the URL with its
    password hidden."""
    return hide_password(target) if isinstance(target, str) and is_url(target) else Path(target).name


@dataclass
class ExecOutcome:
    match: bool
    error: str | None = None  # why the prediction (or the gold) could not be compared
    gold_failed: bool = False  # the gold query itself failed, so the prediction was not run


class Executor:
    """Runs queries on databases (SQLite files or server URLs), keeping them open and caching gold
    results for reuse. Each process needs its own: a connection is not shared across a fork."""

    def __init__(self, timeout: float | None, max_rows: int, cache_size: int = 64):
        self.timeout = timeout
        self.max_rows = max_rows
        self._databases: OrderedDict[Target, object] = OrderedDict()
        self._gold: OrderedDict[tuple[Target, str], QueryResult] = OrderedDict()
        self._cache_size = cache_size

    def _database(self, target: Target):
        database = self._databases.pop(target, None) or open_database(target, decode_errors="ignore")
        self._databases[target] = database
        if len(self._databases) > self._cache_size:
            self._databases.popitem(last=False)[1].close()
        return database

    def run(self, target: Target, sql: str, max_rows: int | None = None) -> QueryResult:
        return self._database(target).run(sql, self.timeout, max_rows)

    def gold(self, target: Target, sql: str) -> QueryResult:
        key = (target, sql)
        if key not in self._gold:
            self._gold[key] = self.run(target, sql, self.max_rows)
            if len(self._gold) > self._cache_size:
                self._gold.popitem(last=False)
        self._gold.move_to_end(key)
        return self._gold[key]

    def close(self) -> None:
        for database in self._databases.values():
            database.close()
        self._databases.clear()


def execution_match(
    executor: Executor,
    databases: list[Target],
    pred_sql: str,
    gold_sql: str,
    plug_value: bool = False,
    keep_distinct: bool = False,
) -> ExecOutcome:
    """Score one prediction by the test-suite rules (see the module docstring)."""
    pred_sql, gold_sql = close_operators(pred_sql), close_operators(gold_sql)
    if not keep_distinct:
        pred_sql, gold_sql = remove_distinct(pred_sql), remove_distinct(gold_sql)
    ordered = order_matters(gold_sql)
    gold_exec = replace_current_year(gold_sql)
    golds = []
    for target in databases:
        result = executor.gold(target, gold_exec)
        if not result.ok:
            error = f"gold query failed on {target_name(target)}: {result.error}"
            return ExecOutcome(False, error, gold_failed=True)
        golds.append(result)
    candidates = [pred_sql]
    if plug_value:
        candidates = itertools.chain(candidates, plugged_predictions(gold_sql, pred_sql))
    tried: set[str] = set()
    first_error = None
    for index, candidate in enumerate(candidates):
        if candidate in tried:
            continue
        tried.add(candidate)
        candidate = replace_current_year(candidate)
        for target, gold in zip(databases, golds):
            result = executor.run(target, candidate, len(gold.rows) + 1)
            if result.error == "too many rows":
                break  # more rows than the gold: cannot match
            if result.error == "timeout":
                # The official evaluator has no working time limit; we stop here rather than
                # wait once more for every plugged variant of a runaway query.
                return ExecOutcome(False, "timeout")
            if not result.ok:
                if index == 0:
                    first_error = result.error
                break
            if not results_match(gold.rows, result.rows, ordered):
                break
        else:
            return ExecOutcome(True)
    return ExecOutcome(False, first_error)
