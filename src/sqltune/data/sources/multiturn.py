"""SParC, CoSQL and CHASE: conversations (`interaction` lists) over Spider-style databases.

Every turn becomes one example whose `history` holds the earlier turns of its conversation as
(question, SQL) pairs, oldest first; the prompt renders each earlier question with the same input
template as the current one. This is DB-GPT-Hub's multi-turn record (sql_data_process.py), with one
deliberate difference: DB-GPT-Hub appends to one shared list, so every record of a conversation
ends up holding all of its turns (the later ones included); here a turn sees only the turns
before it.

The three benchmarks share the record shape (`database_id`, `interaction[].utterance`,
`interaction[].query`) but not their file names: CHASE calls its files `chase_train.json`,
`chase_dev.json`, `chase_tables.json` (sometimes inside a `Chase/` folder) and keeps its databases
flat as `database/<db_id>.sqlite`; CoSQL's official release keeps the conversations under
`sql_state_tracking/cosql_<split>.json`.
"""

from __future__ import annotations

from pathlib import Path

from sqltune.args import SourceArguments
from sqltune.data.example import Example
from sqltune.data.schema import Schema, load_tables_json
from sqltune.data.sources import Skips, SourceData, require_dir
from sqltune.data.sources.common import first_file
from sqltune.errors import ConfigError, DataError
from sqltune.files import read_json

# source -> split -> candidate files (the first that exists is read)
QUESTION_FILES = {
    "sparc": {"train": ["train.json"], "dev": ["dev.json"]},
    "cosql": {
        "train": ["train.json", "cosql_train.json", "sql_state_tracking/cosql_train.json"],
        "dev": ["dev.json", "cosql_dev.json", "sql_state_tracking/cosql_dev.json"],
    },
    "chase": {
        split: [f"chase_{split}.json", f"Chase/chase_{split}.json", f"{split}.json"]
        for split in ("train", "dev", "test")
    },
}
TABLES_FILES = {
    "sparc": ["tables.json"],
    "cosql": ["tables.json"],
    "chase": ["chase_tables.json", "Chase/chase_tables.json", "tables.json"],
}


def _text(record: dict, keys: tuple[str, ...]) -> str | None:
    """The first of `keys` holding non-blank text (CHASE and SParC keep a parsed `sql` dict too)."""
    return next((record[k] for k in keys if isinstance(record.get(k), str) and record[k].strip()), None)


def conversation_examples(
    conversation: object,
    index: int,
    where: str,
    schemas: dict[str, Schema],
    args: SourceArguments,
    skips: Skips,
    tables_path: Path,
) -> list[Example]:
    """The turns of one conversation as examples, each with the (question, SQL) turns before it."""
    if not isinstance(conversation, dict) or not isinstance(conversation.get("interaction"), list):
        skips.add("not a conversation (no interaction list)", where)
        return []
    db_id = conversation.get("database_id") or conversation.get("db_id")
    if not db_id:
        skips.add("missing db_id", where)
        return []
    if db_id not in schemas:
        raise DataError(f"{where}: unknown db_id '{db_id}' (not in {tables_path})")
    examples: list[Example] = []
    history: list[tuple[str, str]] = []
    for turn_index, turn in enumerate(conversation["interaction"]):
        turn_where = f"{where}, turn {turn_index}"
        turn = turn if isinstance(turn, dict) else {}
        question = _text(turn, ("utterance", "question"))
        sql = _text(turn, ("query", "sql"))
        if question is None:
            skips.add("missing question", turn_where)
            continue
        if sql is None:
            skips.add("missing SQL", turn_where)
            continue
        examples.append(
            Example(
                id=f"{args.split}_{index}_{turn_index}",
                db_id=db_id,
                question=question,
                sql=sql,
                history=list(history),
                source=args.source,
            )
        )
        history.append((question, sql))
    return examples


def read_multiturn(args: SourceArguments) -> SourceData:
    data_dir = Path(require_dir(args))
    files = QUESTION_FILES[args.source]
    if args.split not in files:
        raise ConfigError(
            f"split: unknown '{args.split}' for {args.source}, choose one of {', '.join(files)}"
        )
    path = first_file(data_dir, files[args.split])
    if path is None:
        raise DataError(f"{data_dir}: no {args.source} {args.split} file ({' or '.join(files[args.split])})")
    if args.tables:
        tables_path = Path(args.tables)
    else:
        tables_path = (
            first_file(data_dir, TABLES_FILES[args.source]) or data_dir / TABLES_FILES[args.source][0]
        )
    db_dir = Path(args.db_dir) if args.db_dir else data_dir / "database"
    schemas = load_tables_json(tables_path, db_dir)
    conversations = read_json(path, f"{args.source} file")
    if not isinstance(conversations, list):
        raise DataError(f"{path}: expected a JSON list of conversations")
    skips = Skips(args.strict)
    examples: list[Example] = []
    for index, conversation in enumerate(conversations):
        found = conversation_examples(
            conversation, index, f"{path}: conversation {index}", schemas, args, skips, tables_path
        )
        if args.limit is not None and len(examples) + len(found) >= args.limit:
            examples += found[: args.limit - len(examples)]
            break
        examples += found
    read = len(examples) + sum(skips.counts.values())
    return SourceData(examples, schemas, skips.counts, read, str(tables_path), str(db_dir))
