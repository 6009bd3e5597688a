"""Verdicts from the web UI: a question, the SQL shown for it and whether the user found it right.

The Ask tab's "correct" and "wrong" buttons append one line each to a jsonl file (by default
`data/feedback.jsonl`):

    {"question": "...", "sql": "SELECT ...", "db_id": "music", "verdict": "correct",
     "db_path": "data/demo_databases/music/music.sqlite", "model": "saves/quickstart",
     "created": "2025-01-01T12:00:00+00:00"}

`question`, `sql` and `db_id` are the fields `sqltune data source=jsonl` (and `source=sqlite`) read
as a question/SQL pair, so the file is training data as it stands:

    sqltune data source=jsonl questions=data/feedback.jsonl db_dir=data/demo_databases
    sqltune data source=sqlite questions=data/feedback.jsonl db=shop.sqlite

Only answers marked correct become examples: the readers skip a record whose `verdict` is anything
else, and a verdict on a database the command was not given, and count both in their summary
(`sqltune.data.sources.common.read_examples`). Wrong answers stay in the file because they are
worth keeping (a later stage can learn from them as rejected answers), never as gold.

`db_path` is where the SQL ran: a SQLite file, or a server URL with its password hidden. Lines are
appended under an exclusive lock on `<file>.lock`, by writing the old content plus the new line to
a temporary file renamed over the old one, so two browser tabs clicking at once never interleave
and a crash never leaves half a line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqltune.db.urls import hide_password, is_url
from sqltune.errors import DataError
from sqltune.files import atomic_open, check_output, read_jsonl
from sqltune.runcard import now

VERDICTS = ("correct", "wrong")


@dataclass
class Verdict:
    """One judged answer (see the module docstring for the file it goes to)."""

    question: str
    sql: str
    db_id: str
    verdict: str
    db_path: str
    model: str | None = None
    created: str = field(default_factory=now)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise DataError(f"verdict: unknown '{self.verdict}', choose one of {', '.join(VERDICTS)}")
        for name in ("question", "sql", "db_id"):
            if not str(getattr(self, name)).strip():
                raise DataError(f"a verdict needs a {name}")
        self.question, self.sql = self.question.strip(), self.sql.strip()
        if is_url(self.db_path):  # a record is training data: it must never hold a password
            self.db_path = hide_password(self.db_path)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<path>.lock` (the data file itself is replaced by a rename, so it
    cannot carry the lock)."""
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_verdict(path: str | Path, verdict: Verdict) -> int:
    """Append one verdict to the jsonl file at `path`; returns how many records it holds now."""
    path = check_output(path, what="feedback file")
    line = json.dumps(asdict(verdict), ensure_ascii=False).encode("utf-8") + b"\n"
    with locked(path):
        old = path.read_bytes() if path.is_file() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        with atomic_open(path, "wb") as handle:
            handle.write(old + line)
    return sum(1 for row in (old + line).splitlines() if row.strip())


def read_verdicts(path: str | Path) -> list[dict]:
    """Every record of a feedback file, oldest first (none when the file does not exist yet)."""
    return read_jsonl(path, "feedback file") if Path(path).is_file() else []
