"""`Example`: one question with its gold SQL, the unit every source produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Example:
    """A Text-to-SQL question over one database.

    `history` holds the earlier turns of a multi-turn interaction (SParC, CoSQL, CHASE) as
    (question, SQL) pairs, oldest first; it is empty for single-turn benchmarks.
    """

    id: str
    db_id: str
    question: str
    sql: str
    evidence: str = ""
    history: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    difficulty: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["history"] = [list(turn) for turn in self.history]
        return data

    @classmethod
    def from_pair(cls, pair: dict, id: str, db_id: str, source: str) -> Example:
        """An example from a synthesized pair (`sqltune.data.synth`: question, sql, difficulty)."""
        return cls(id, db_id, pair["question"], pair["sql"], source=source, difficulty=pair["difficulty"])

    @classmethod
    def from_dict(cls, data: dict) -> Example:
        data = dict(data)
        data["history"] = [tuple(turn) for turn in data.get("history", [])]
        return cls(**data)
