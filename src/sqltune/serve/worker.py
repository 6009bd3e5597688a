"""Everything that touches the model or its tokenizer, run on the queue's one worker thread.

The worker receives a group of compatible requests (same kind, same generation settings; for
`/v1/sql` also the same database) and answers them with one `generate` call: chat requests through
the engine directly (`Engine.generate`, `n` answers each), Text-to-SQL requests through
`Asker.ask_many`, the code `sqltune ask` runs. Prompts are encoded here too, so the tokenizer is
only ever used by this thread; a prompt over `max_prompt_tokens` fails alone, the rest of its batch
goes on. The SQL is executed later, outside this thread (by the request's handler), so a slow
query never holds up the next batch.

A `/v1/sql` batch holds one database's questions because their prompts share the instruction and
the schema: the transformers engine computes that shared prefix once for the whole batch, which on
a CPU costs less than one mixed batch whose prompts share almost nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Hashable
from dataclasses import dataclass

from sqltune.args import GeneratingArguments
from sqltune.errors import SqltuneError
from sqltune.infer.ask import Asker, Reply
from sqltune.infer.engine import Candidate
from sqltune.serve.batching import BatchStats
from sqltune.serve.chat import encode_chat
from sqltune.serve.errors import ApiError, PromptTooLong


@dataclass(frozen=True)
class ChatWork:
    messages: tuple[tuple[str, str], ...]  # (role, content)
    settings: GeneratingArguments
    n: int  # answers wanted

    @property
    def key(self) -> Hashable:
        return ("chat", self.n, dataclasses.astuple(self.settings))


@dataclass
class ChatResult:
    prompt_tokens: int
    candidates: list[Candidate]


@dataclass(frozen=True)
class SqlWork:
    database: str  # the served database's name
    target: str  # its SQLite file or URL
    question: str
    settings: GeneratingArguments

    @property
    def key(self) -> Hashable:
        return ("sql", self.database, dataclasses.astuple(self.settings))


class ModelWorker:
    """The queue's runner: `worker(key, payloads)` answers a group of `ChatWork` or `SqlWork`."""

    def __init__(self, asker: Asker, max_prompt_tokens: int, stats: BatchStats) -> None:
        self.asker = asker
        self.max_prompt_tokens = max_prompt_tokens
        self.stats = stats

    def __call__(self, key: Hashable, payloads: list) -> list:
        return self.chat(payloads) if key[0] == "chat" else self.sql(payloads)

    def _checked(self, encode, param: str) -> list[int]:
        try:
            ids = encode()
        except SqltuneError as err:  # e.g. a chat template that cannot render this conversation
            raise ApiError(400, str(err), param=param) from None
        if len(ids) > self.max_prompt_tokens:
            raise PromptTooLong(len(ids), self.max_prompt_tokens, param)
        return ids

    def chat(self, works: list[ChatWork]) -> list[ChatResult | Exception]:
        results: list[ChatResult | Exception | None] = [None] * len(works)
        prompts: list[list[int]] = []
        owners: list[int] = []
        template, tokenizer = self.asker.template, self.asker.engine.tokenizer
        for position, work in enumerate(works):
            try:
                prompts.append(
                    self._checked(lambda w=work: encode_chat(template, tokenizer, w.messages), "messages")
                )
                owners.append(position)
            except ApiError as err:
                results[position] = err
        if prompts:
            began = time.perf_counter()
            for batch in self.asker.engine.generate(prompts, works[0].settings, works[0].n):
                for index, candidates in zip(batch.indices, batch.candidates):
                    results[owners[index]] = ChatResult(len(prompts[index]), candidates)
            self.stats.generate_call(len(prompts), time.perf_counter() - began)
        return results  # type: ignore[return-value]

    def sql(self, works: list[SqlWork]) -> list[Reply | Exception]:
        results: list[Reply | Exception | None] = [None] * len(works)
        asked: list[tuple[str, str]] = []
        owners: list[int] = []
        for position, work in enumerate(works):
            try:
                self._checked(lambda w=work: self.asker.prompt_ids(w.target, w.question), "question")
                asked.append((work.target, work.question))
                owners.append(position)
            except ApiError as err:
                results[position] = err
        if asked:
            began = time.perf_counter()
            replies = self.asker.ask_many(asked, settings=works[0].settings, execute_sql=False)
            self.stats.generate_call(len(asked), time.perf_counter() - began)
            for position, reply in zip(owners, replies):
                results[position] = reply
        return results  # type: ignore[return-value]
