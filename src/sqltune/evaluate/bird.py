"""BIRD's metrics: execution accuracy (EX) and the reward-based valid efficiency score (R-VES).

EX, as BIRD's own evaluator defines it, is set equality of the result rows: order, duplicates and
column names do not matter, column order does. R-VES (from the BIRD mini-dev evaluator) rewards a
correct prediction by how fast it runs against the gold query: both are timed `repeats` times in
turn, the ratios gold/pred outside mean +- 3 standard deviations are dropped, and the mean ratio
maps to a reward (>= 2: 1.25, >= 1: 1, >= 0.5: 0.75, >= 0.25: 0.5, else 0.25; 0 when wrong).
R-VES is 100 x the mean square root of the rewards over all examples.

Differences from BIRD's scripts, both for robustness: queries run read-only with a time limit on a
reused connection (BIRD reconnects for every timing, which adds the same constant to both sides),
and when every ratio is equal (the standard deviation is 0 and BIRD's filter drops them all and
divides by zero) all ratios are kept.

On a database server (`sqltune eval --db-url`) the timings are kept and include each query's round
trip and read-only transaction set-up, the same on both sides, so ratios lean towards 1 more than
on a SQLite file: compare R-VES only between runs on the same kind of database.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from sqltune.evaluate.execution import ExecOutcome, Executor, Target, target_name

DIFFICULTIES = ("simple", "moderate", "challenging")


def bird_match(executor: Executor, database: Target, pred_sql: str, gold_sql: str) -> ExecOutcome:
    gold = executor.gold(database, gold_sql)
    if not gold.ok:
        error = f"gold query failed on {target_name(database)}: {gold.error}"
        return ExecOutcome(False, error, gold_failed=True)
    pred = executor.run(database, pred_sql, executor.max_rows)
    if not pred.ok:
        return ExecOutcome(False, pred.error)
    return ExecOutcome(set(pred.rows) == set(gold.rows))


def time_ratio(executor: Executor, database: Target, pred_sql: str, gold_sql: str, repeats: int) -> float:
    """Mean gold-time / pred-time over `repeats` alternating runs, outliers dropped as BIRD does."""
    ratios = []
    for _ in range(repeats):
        pred = executor.run(database, pred_sql, executor.max_rows)
        gold = executor.run(database, gold_sql, executor.max_rows)
        if not (pred.ok and gold.ok):
            return 0.0
        ratios.append(gold.seconds / max(pred.seconds, 1e-9))
    if not ratios:
        return 0.0
    mean, spread = statistics.fmean(ratios), statistics.pstdev(ratios)
    kept = [r for r in ratios if mean - 3 * spread < r < mean + 3 * spread] or ratios
    return statistics.fmean(kept)


def reward(ratio: float) -> float:
    if ratio <= 0:
        return 0.0
    if ratio >= 2:
        return 1.25
    if ratio >= 1:
        return 1.0
    if ratio >= 0.5:
        return 0.75
    if ratio >= 0.25:
        return 0.5
    return 0.25


def r_ves(rewards: list[float]) -> float:
    """100 x mean of sqrt(reward), over every example (wrong ones have reward 0)."""
    return 100 * sum(math.sqrt(r) for r in rewards) / len(rewards) if rewards else 0.0


@dataclass
class BirdResult:
    exec: bool
    error: str | None
    reward: float | None  # None when R-VES is not measured
    gold_failed: bool = False  # the gold query itself failed, so the prediction was not run


def score_bird(
    executor: Executor, database: Target, pred_sql: str, gold_sql: str, repeats: int
) -> BirdResult:
    outcome = bird_match(executor, database, pred_sql, gold_sql)
    if repeats <= 0:
        return BirdResult(outcome.match, outcome.error, None, outcome.gold_failed)
    ratio = time_ratio(executor, database, pred_sql, gold_sql, repeats) if outcome.match else 0.0
    return BirdResult(outcome.match, outcome.error, reward(ratio), outcome.gold_failed)
