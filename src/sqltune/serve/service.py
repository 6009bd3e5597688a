"""What a running server holds: one model (`Asker`), the databases, and the queue in front of them.

`open_service` loads everything before the server accepts a request, so a wrong model, database
file or URL stops `sqltune serve` at once with a one-line error rather than failing requests.
The schemas are read then too, and only read afterwards, so the worker thread never writes to
shared state.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from sqltune.args import GeneratingArguments, ModelArguments, PromptArguments, ServeArguments
from sqltune.infer.ask import Asker
from sqltune.serve.batching import BatchQueue, BatchStats
from sqltune.serve.databases import ServedDatabase, resolve_databases, summary
from sqltune.serve.errors import ApiError
from sqltune.serve.worker import ModelWorker


@dataclass
class Service:
    args: ServeArguments
    asker: Asker
    databases: dict[str, ServedDatabase]
    summaries: dict[str, dict]  # name -> what /v1/databases shows
    queue: BatchQueue
    model_id: str
    created: int  # when the model was loaded (Unix seconds), as /v1/models reports it

    @property
    def settings(self) -> GeneratingArguments:
        """The server's generation settings: what a request does not set."""
        return self.asker.settings

    def database(self, name: str) -> ServedDatabase:
        if name not in self.databases:
            served = ", ".join(self.databases) or "none (start the server with databases=...)"
            raise ApiError(
                404,
                f"unknown database '{name}'; served: {served}",
                code="database_not_found",
                param="database",
            )
        return self.databases[name]

    def chat_settings(
        self, max_tokens: int | None, temperature: float | None, top_p: float | None
    ) -> GeneratingArguments:
        """The server's settings with a chat request's own: temperature 0 is greedy decoding, above 0
        sampling; top_k and repetition_penalty stay the server's. Chat answers are not cut at the
        end of a SQL statement, and the decoding is always a single answer per choice."""
        changes: dict = {"decoding": "single", "stop_after_statement": False}
        if max_tokens is not None:
            changes["max_new_tokens"] = max_tokens
        if temperature is not None:
            changes["do_sample"] = temperature > 0
            if temperature > 0:
                changes["temperature"] = temperature
        if top_p is not None:
            changes["top_p"] = top_p
        if changes.get("do_sample", self.settings.do_sample):
            changes["num_beams"] = 1  # sampling and beam search do not mix
        return dataclasses.replace(self.settings, **changes)

    def sql_settings(self, decoding: str | None) -> GeneratingArguments:
        return dataclasses.replace(self.settings, decoding=decoding or self.settings.decoding)

    def close(self) -> None:
        self.queue.close()


def model_id(args: ServeArguments, model_args: ModelArguments) -> str:
    if args.served_model_name:
        return args.served_model_name
    if args.run_dir:
        return Path(args.run_dir).resolve().name
    return Path(model_args.model_name_or_path).name or model_args.model_name_or_path


def open_service(
    args: ServeArguments,
    settings: GeneratingArguments,
    model_args: ModelArguments,
    prompt: PromptArguments | None = None,
) -> Service:
    """Resolve the databases, load the model, read every schema and start the worker thread."""
    from sqltune.infer.engine import model_source

    databases = resolve_databases(args.databases)  # before the model loads: a typo fails at once
    asker = Asker(
        model_source(args.run_dir, model_args),
        settings,
        prompt,
        dtype=args.infer_dtype,
        cutoff_len=args.cutoff_len,
        batch_size=args.batch_size,
        backend=args.infer_backend,
        seed=args.seed,
    )
    summaries = {name: summary(db, asker.schema(db.target)) for name, db in databases.items()}
    stats = BatchStats()
    worker = ModelWorker(asker, args.max_prompt_tokens, stats)
    queue = BatchQueue(worker, args.batch_size, args.max_wait_ms / 1000, args.max_queue, stats)
    queue.start()
    return Service(args, asker, databases, summaries, queue, model_id(args, model_args), int(time.time()))
