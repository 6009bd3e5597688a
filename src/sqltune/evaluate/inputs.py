"""Reading gold queries and predictions in every accepted format, refusing anything ambiguous.

Gold:
* text, `SQL<TAB>db_id` per line (Spider's dev_gold.sql, SParC/CoSQL dev_gold.txt, BIRD's
  *_gold.sql); a blank line ends an interaction (multi-turn), as in the official format;
* JSON: a Spider list (`query`, `db_id`), a BIRD list (`SQL` or `sql`, `db_id`, `difficulty`), or a
  SParC/CoSQL list of interactions (`interaction: [{query}]`, `database_id`).

Predictions:
* text, one SQL per line; only the part before a tab counts (so `SQL<TAB>db_id` lines work). With a
  single-turn gold every line is one prediction and a blank line is an empty prediction; with a
  multi-turn gold, blank lines separate interactions, which must line up with the gold's;
* JSON lines `{"index" (0-based gold position; else the line order), "db_id", "sql"}`, as
  `sqltune predict` writes them (`id` is kept for reference);
* BIRD's JSON object `{"0": "SQL\\t----- bird -----\\tdb_id", ...}`.

Counts are never truncated to the shorter file: any mismatch is an error naming both counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqltune.errors import DataError
from sqltune.files import read_json, read_jsonl, require_file

_BIRD_SEPARATOR = "\t----- bird -----\t"


@dataclass
class GoldItem:
    sql: str
    db_id: str
    session: int = 0  # interaction number (0-based)
    turn: int = 1  # turn within the interaction (1-based)
    difficulty: str | None = None  # BIRD's simple / moderate / challenging


# --- gold ---------------------------------------------------------------------------------------------
def read_gold(path: str | Path) -> list[GoldItem]:
    path = require_file(path, "gold file")
    if path.suffix.lower() == ".json":
        return _gold_from_json(path)
    items: list[GoldItem] = []
    session, turn = 0, 0
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            if turn:
                session, turn = session + 1, 0
            continue
        fields = line.strip().split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise DataError(f"{path}: line {lineno}: expected 'SQL<TAB>db_id', got {len(fields)} field(s)")
        turn += 1
        items.append(GoldItem(fields[0], fields[1].strip(), session, turn))
    if not items:
        raise DataError(f"{path}: no gold queries")
    return items


def _gold_from_json(path: Path) -> list[GoldItem]:
    data = read_json(path, "gold file")
    if not isinstance(data, list) or not data:
        raise DataError(f"{path}: expected a non-empty JSON list of examples")
    items = []
    for position, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise DataError(f"{path}: entry {position} is not an object")
        if "interaction" in entry:
            db_id = entry.get("database_id") or entry.get("db_id")
            for turn, step in enumerate(entry["interaction"], start=1):
                items.append(GoldItem(_field(path, position, step, "query"), db_id, position, turn))
            continue
        sql = entry.get("query", entry.get("SQL", entry.get("sql")))
        if not isinstance(sql, str) or not isinstance(entry.get("db_id"), str):
            raise DataError(f"{path}: entry {position} needs 'query' (or 'SQL') and 'db_id'")
        items.append(GoldItem(sql, entry["db_id"], 0, position + 1, entry.get("difficulty")))
    return items


def _field(path: Path, position: int, entry: dict, name: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str):
        raise DataError(f"{path}: entry {position} has no '{name}'")
    return value


def is_multi_turn(gold: list[GoldItem]) -> bool:
    return len({item.session for item in gold}) > 1


# --- predictions -------------------------------------------------------------------------------------
def read_predictions(path: str | Path, gold: list[GoldItem]) -> list[str]:
    """One prediction text per gold item, in gold order ("" for an empty prediction)."""
    path = require_file(path, "prediction file")
    text = path.read_text(encoding="utf-8")
    first = text.lstrip()[:1]
    if path.suffix.lower() == ".jsonl" or (first == "{" and path.suffix.lower() != ".json"):
        return _from_jsonl(path, gold)
    if path.suffix.lower() == ".json":
        return _from_bird_json(path, gold)
    lines = [line.strip().split("\t")[0] for line in text.splitlines()]
    if not is_multi_turn(gold):
        if len(lines) != len(gold):
            raise DataError(
                f"{path} has {len(lines)} prediction lines but the gold has {len(gold)} queries "
                "(every line is one prediction; a blank line is an empty prediction)"
            )
        return lines
    return _align_sessions(path, lines, gold)


def _align_sessions(path: Path, lines: list[str], gold: list[GoldItem]) -> list[str]:
    sessions: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            sessions[-1].append(line)
        elif sessions[-1]:
            sessions.append([])
    if not sessions[-1]:
        sessions.pop()
    gold_sizes: dict[int, int] = {}
    for item in gold:
        gold_sizes[item.session] = gold_sizes.get(item.session, 0) + 1
    sizes = list(gold_sizes.values())
    if len(sessions) != len(sizes):
        raise DataError(
            f"{path} has {len(sessions)} interactions (blank-line separated) but the gold has {len(sizes)}"
        )
    for number, (predicted, expected) in enumerate(zip(sessions, sizes)):
        if len(predicted) != expected:
            raise DataError(
                f"{path}: interaction {number} has {len(predicted)} predictions but the gold has {expected} turns"
            )
    return [line for session in sessions for line in session]


def _from_jsonl(path: Path, gold: list[GoldItem]) -> list[str]:
    rows = read_jsonl(path, "prediction file")
    preds: list[str | None] = [None] * len(gold)
    for order, row in enumerate(rows):
        index = row.get("index", order)
        if not isinstance(index, int) or not 0 <= index < len(gold):
            raise DataError(f"{path}: row {order + 1}: index {index!r} is outside 0..{len(gold) - 1}")
        if preds[index] is not None:
            raise DataError(f"{path}: row {order + 1}: a second prediction for index {index}")
        db_id = row.get("db_id")
        if db_id is not None and db_id != gold[index].db_id:
            raise DataError(
                f"{path}: row {order + 1}: db_id '{db_id}' but gold index {index} is on '{gold[index].db_id}'"
            )
        sql = row.get("sql", "")
        preds[index] = sql if isinstance(sql, str) else ""
    missing = [i for i, sql in enumerate(preds) if sql is None]
    if missing or len(rows) != len(gold):
        raise DataError(
            f"{path} has {len(rows)} predictions but the gold has {len(gold)} queries"
            + (f" (no prediction for index {', '.join(map(str, missing[:10]))})" if missing else "")
        )
    return [sql or "" for sql in preds]


def _from_bird_json(path: Path, gold: list[GoldItem]) -> list[str]:
    data = read_json(path, "prediction file")
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected BIRD's JSON object {{index: 'SQL\\t----- bird -----\\tdb_id'}}")
    if len(data) != len(gold):
        raise DataError(f"{path} has {len(data)} predictions but the gold has {len(gold)} queries")
    preds = []
    for index in range(len(gold)):
        value = data.get(str(index))
        if not isinstance(value, str):
            raise DataError(f"{path}: no prediction for index {index}")
        preds.append(value.split(_BIRD_SEPARATOR)[0])
    return preds


def describe(path: str | Path) -> str:
    """A short name of a file's format for the report's settings."""
    suffix = Path(path).suffix.lower()
    return {".json": "json", ".jsonl": "jsonl"}.get(suffix, "text")
