"""The predictions file: one JSON line per question, saved as answers arrive, resumable.

Each line holds `index` (the question's position in the dataset, which evaluation matches against
the gold), `id`, `db_id`, `question`, `sql` (extracted from the model's text), `raw` (the text
itself), `prompt_tokens`, `new_tokens` and `seconds` (the question's share of its batch's time).
After every batch the whole file is rewritten atomically (`sqltune.files`), so an interrupted run
leaves a complete file of the questions answered so far; rerunning the same command answers only
the rest. `--format spider` also writes `<output>.sql`, one SQL per line in dataset order with a
blank line between the interactions of a multi-turn dataset, for the official evaluators.
"""

from __future__ import annotations

from pathlib import Path

from sqltune.data.example import Example
from sqltune.errors import ConfigError, DataError
from sqltune.files import read_jsonl_lines, read_lines, write_jsonl, write_text


class PredictionFile:
    def __init__(self, path: str | Path, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.rows: dict[int, dict] = {}
        if self.path.is_file() and not overwrite:
            lines = read_lines(self.path, "predictions file")
            for line, row in read_jsonl_lines(lines, self.path):
                if not isinstance(row.get("index"), int) or isinstance(row["index"], bool):
                    raise DataError(
                        f"{self.path}: line {line.number} has no integer 'index', so it was not written by "
                        "sqltune predict; give another output= or overwrite=true"
                    )
                self.rows[row["index"]] = row

    def pending(self, examples: list[Example]) -> list[int]:
        """Positions of the examples not answered yet. A file written for other questions (another
        dataset or a longer limit) is refused rather than mixed with new answers."""
        for index, row in self.rows.items():
            if index >= len(examples) or (row.get("db_id"), row.get("question")) != (
                examples[index].db_id,
                examples[index].question,
            ):
                raise ConfigError(
                    f"{self.path} holds predictions for other questions (index {index}); "
                    "give another output= or overwrite=true"
                )
        return [index for index in range(len(examples)) if index not in self.rows]

    def add(self, rows: list[dict]) -> None:
        for row in rows:
            self.rows[row["index"]] = row
        write_jsonl(self.path, (self.rows[i] for i in sorted(self.rows)))

    def ordered(self) -> list[dict]:
        return [self.rows[i] for i in sorted(self.rows)]

    def write_spider(self, examples: list[Example]) -> Path:
        """One SQL per line in dataset order (`<output>.sql`); interactions separated by a blank line."""
        multi_turn = any(e.history for e in examples)
        lines: list[str] = []
        for index, example in enumerate(examples):
            if multi_turn and index > 0 and not example.history:
                lines.append("")  # a first turn starts a new interaction
            sql = " ".join(self.rows[index]["sql"].split())
            # A blank line would end an interaction early; an empty answer stays a (wrong) line.
            lines.append(sql or ("SELECT" if multi_turn else ""))
        path = self.path.with_suffix(".sql")
        write_text(path, "\n".join(lines) + "\n")
        return path
