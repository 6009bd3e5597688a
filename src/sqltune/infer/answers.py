"""From generated text to the answer: SQL extraction, and execution-guided choice among candidates.

Shared by `sqltune predict` (a dataset) and `sqltune ask` (one question): the engine generates,
`sqltune.sql_extract.extract_sql` (the rule `sqltune eval --extract` applies) turns each text into one SQL
statement, and with `decoding=execution_guided` the candidates are executed and voted on
(`sqltune.infer.guided`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from sqltune.args import GeneratingArguments
from sqltune.errors import DataError
from sqltune.infer.engine import Engine
from sqltune.infer.guided import Choice, choose
from sqltune.sql_extract import extract_sql


@dataclass
class Answer:
    sql: str
    raw: str  # the model's text the SQL was extracted from
    new_tokens: int  # tokens generated for this question, every candidate counted
    seconds: float  # the question's share of its batch's time (generation + execution)
    choice: Choice | None = None  # execution-guided decoding only
    candidates: list[str] = field(default_factory=list)  # the candidates' SQL, most likely first


def answer(
    engine: Engine,
    prompts: Sequence[list[int]],
    settings: GeneratingArguments,
    databases: Sequence[str | None] | None = None,
) -> Iterator[list[tuple[int, Answer]]]:
    """Answer every prompt; yields `(prompt index, Answer)` pairs batch by batch.

    `databases[i]` is the SQLite file or server URL prompt i's SQL runs on, needed by
    execution-guided decoding.
    """
    guided = settings.decoding == "execution_guided"
    if guided:
        missing = [i for i in range(len(prompts)) if not databases or not databases[i]]
        if missing:
            raise DataError(
                f"decoding=execution_guided needs each question's database (a SQLite file, or "
                f"db_url= for a server); {len(missing)} have none"
            )
    for batch in engine.generate(prompts, settings, settings.candidates):
        began = time.perf_counter()
        answers = []
        for index, candidates in zip(batch.indices, batch.candidates):
            sqls = [extract_sql(c.text) for c in candidates]
            choice = (
                choose(sqls, databases[index], settings.candidate_timeout, settings.guided_choice)
                if guided
                else None
            )
            best = choice.index if choice else 0
            tokens = sum(c.new_tokens for c in candidates)
            answers.append(
                (
                    index,
                    Answer(sqls[best], candidates[best].text, tokens, 0.0, choice, sqls if guided else []),
                )
            )
        share = (batch.seconds + time.perf_counter() - began) / max(len(answers), 1)
        for _, item in answers:
            item.seconds = share
        yield answers
