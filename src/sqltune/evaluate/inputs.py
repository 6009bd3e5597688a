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
  `sqltune predict` writes them (`id` is kept for reference). The content decides, not the name: a
  file whose first line is a JSON object is read as JSON lines, also when it is named `.txt`,
  `.sql` or (when that object has an "sql" key) `.json`;
* BIRD's JSON object `{"0": "SQL\\t----- bird -----\\tdb_id", ...}` in a `.json` file.

Every file is read by `sqltune.files` (UTF-8, a byte-order mark dropped). Model output can hold
broken bytes, so a prediction line that is not UTF-8 text (or holds a NUL byte) does not stop the
run: it is scored as a wrong prediction whose error says what is wrong (`Unreadable`). Gold files
and BIRD's JSON object are read whole, and an unreadable byte there is an error.

Counts are never truncated to the shorter file: any mismatch is an error naming both counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqltune.errors import DataError
from sqltune.files import Line, read_json, read_jsonl_lines, read_lines, require_file

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
    for line in read_lines(path, "gold file"):
        if not line.text.strip():
            if turn:
                session, turn = session + 1, 0
            continue
        fields = line.text.strip().split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise DataError(
                f"{path}: line {line.number}: expected 'SQL<TAB>db_id', got {len(fields)} field(s)"
            )
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
class Unreadable(str):
    """A prediction whose line could not be read: the empty prediction to every scorer, so it counts
    as wrong, carrying the `reason` that the report shows as its error."""

    reason: str

    def __new__(cls, reason: str = "") -> Unreadable:
        pred = super().__new__(cls, "")
        pred.reason = reason
        return pred


def read_predictions(path: str | Path, gold: list[GoldItem]) -> list[str]:
    """One prediction per gold item, in gold order ("" for an empty prediction)."""
    path = require_file(path, "prediction file")
    lines = read_lines(path, "prediction file", keep_unreadable=True)
    kind = _format(path, lines)
    if kind == "jsonl":
        return _from_jsonl(path, lines, gold)
    if kind == "json":
        return _from_bird_json(path, gold)
    preds = [_unreadable(line) if line.problem else line.text.strip().split("\t")[0] for line in lines]
    if not is_multi_turn(gold):
        if len(preds) != len(gold):
            raise DataError(
                f"{path} has {len(preds)} prediction lines but the gold has {len(gold)} queries "
                "(every line is one prediction; a blank line is an empty prediction)"
            )
        return preds
    return _align_sessions(path, preds, gold)


def _format(path: Path, lines: list[Line]) -> str:
    """jsonl, json (BIRD's object) or text. `.jsonl` is JSON lines; otherwise a first line that is a
    JSON object (one with "sql", in a `.json` file) is too; else `.json` is BIRD's object."""
    suffix = path.suffix.lower()
    first = next((line.text.strip() for line in lines if line.text.strip()), "")
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".json":
        return "jsonl" if _is_prediction_row(first) else "json"
    return "jsonl" if first.startswith("{") else "text"


def _is_prediction_row(text: str) -> bool:
    try:
        row = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and "sql" in row


def _unreadable(line: Line) -> Unreadable:
    return Unreadable(f"unreadable prediction: line {line.number}: {line.problem}")


def _blank(pred: str) -> bool:
    return not pred.strip() and not isinstance(pred, Unreadable)


def _align_sessions(path: Path, preds: list[str], gold: list[GoldItem]) -> list[str]:
    sessions: list[list[str]] = [[]]
    for pred in preds:
        if not _blank(pred):
            sessions[-1].append(pred)
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
    return [pred for session in sessions for pred in session]


def _from_jsonl(path: Path, lines: list[Line], gold: list[GoldItem]) -> list[str]:
    preds: list[str | None] = [None] * len(gold)
    count = 0
    for order, (line, row) in enumerate(read_jsonl_lines(lines, path)):
        count += 1
        where = f"{path}: line {line.number}"
        index = row.get("index", order)
        if not isinstance(index, int) or isinstance(index, bool):
            raise DataError(f"{where}: index {index!r} is not an integer")
        if not 0 <= index < len(gold):
            raise DataError(f"{where}: index {index} is outside 0..{len(gold) - 1}")
        if preds[index] is not None:
            raise DataError(f"{where}: a second prediction for index {index}")
        db_id = row.get("db_id")
        if db_id is not None and db_id != gold[index].db_id:
            raise DataError(f"{where}: db_id '{db_id}' but gold index {index} is on '{gold[index].db_id}'")
        sql = row.get("sql", "")
        preds[index] = _unreadable(line) if line.problem else sql if isinstance(sql, str) else ""
    missing = [i for i, pred in enumerate(preds) if pred is None]
    if missing or count != len(gold):
        raise DataError(
            f"{path} has {count} predictions but the gold has {len(gold)} queries"
            + (f" (no prediction for index {', '.join(map(str, missing[:10]))})" if missing else "")
        )
    return [pred for pred in preds if pred is not None]


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
    """The prediction file's format (jsonl, json or text), as `read_predictions` read it."""
    path = Path(path)
    return _format(path, read_lines(path, "prediction file", keep_unreadable=True))
