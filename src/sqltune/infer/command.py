"""`sqltune predict`: answer the questions of a registered dataset with a trained run or a base model.

    sqltune predict run_dir=saves/quickstart dataset=demo_dev
    sqltune predict run_dir=saves/spider dataset=spider_dev batch_size=32 --format spider
    sqltune predict model_name_or_path=smollm2-135m dataset=spider_dev max_new_tokens=128
    sqltune predict run_dir=saves/spider dataset=spider_dev decoding=execution_guided num_candidates=8
    sqltune predict run_dir=saves/spider dataset=spider_dev decoding=execution_guided \
        db_url=postgresql://reader@127.0.0.1:5432/{db_id}
    sqltune predict run_dir=saves/spider_agent dataset=spider_dev decoding=agent max_turns=4

With `run_dir`, the run card supplies the base model, adapter, chat template, prompt options and
`cutoff_len`; without it, `model_name_or_path` (+ `adapter_name_or_path`, `template`) names a
model and the dataset's own prompt options are used. Predictions go to `output` (default
`<run_dir or .>/predictions/<dataset>.jsonl`), saved after every batch; rerunning the same command
resumes where it stopped.

Execution-guided decoding runs the candidates on each question's SQLite file, or with `db_url` on
a server database (the databases loaded there by `sqltune db load`); the prompt's schema comes from
the dataset either way. `decoding=agent` lets the model call tools on the same databases before it
answers (`sqltune.infer.agent`); each row then also holds the conversation and why it ended.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqltune.args import GeneratingArguments, ModelArguments, PredictArguments
from sqltune.config import format_help, parse_args
from sqltune.db.urls import hide_password
from sqltune.errors import ConfigError, DataError

GROUPS = (PredictArguments, GeneratingArguments, ModelArguments)


@dataclass
class PredictSummary:
    output: Path
    questions: int
    answered: int  # by this run (the rest were resumed from the file)
    seconds: float
    new_tokens: int
    shortened: int
    over_budget: int
    spider_file: Path | None = None
    chosen_by: Counter = field(default_factory=Counter)  # execution-guided: how answers were chosen
    executed_on: str | None = None  # execution-guided on a server: its URL, password hidden
    stop_reasons: Counter = field(default_factory=Counter)  # agent: why the conversations ended

    @property
    def questions_per_second(self) -> float | None:
        """Questions answered per second by this run (None when it answered none)."""
        return self.answered / self.seconds if self.answered and self.seconds else None


def default_output(args: PredictArguments) -> Path:
    return Path(args.run_dir or ".") / "predictions" / f"{args.dataset}.jsonl"


def execution_targets(args: PredictArguments, settings: GeneratingArguments, dataset, examples) -> dict:
    """db_id -> where execution-guided decoding runs that database's candidates: the dataset's
    SQLite file, or the server database of `db_url`, which must answer before any model loads."""
    from sqltune.db import unreachable
    from sqltune.db.urls import for_database

    db_ids = sorted({example.db_id for example in examples})
    if not args.db_url:
        return {db_id: dataset.schemas[db_id].db_path for db_id in db_ids}
    failed = unreachable(args.db_url, db_ids, settings.candidate_timeout)
    if failed:
        raise DataError(f"db_url: database not reachable for db_id(s): {'; '.join(failed)}")
    return {db_id: for_database(args.db_url, db_id) for db_id in db_ids}


def to_row(question, answer) -> dict:
    row = {
        "index": question.index,
        "id": question.example.id,
        "db_id": question.example.db_id,
        "question": question.example.question,
        "sql": answer.sql,
        "raw": answer.raw,
        "prompt_tokens": len(question.prompt_ids),
        "new_tokens": answer.new_tokens,
        "seconds": round(answer.seconds, 4),
    }
    if answer.choice is not None:
        row["chosen_by"] = answer.choice.reason
        row["votes"] = answer.choice.votes
        row["candidates"] = [
            {"sql": sql, "outcome": outcome}
            for sql, outcome in zip(answer.candidates, answer.choice.outcomes)
        ]
    from sqltune.infer.agent import AgentAnswer

    if isinstance(answer, AgentAnswer):
        row.update(prompt_tokens=answer.prompt_tokens, **answer.fields())
    return row


def run_predict(
    model_args: ModelArguments, args: PredictArguments, settings: GeneratingArguments, progress: bool = True
) -> PredictSummary:
    """Answer the dataset's pending questions into the predictions file; return the summary."""
    from tqdm import tqdm

    from sqltune.data.records import dataset_files, load_dataset
    from sqltune.files import check_output
    from sqltune.infer.answers import answer
    from sqltune.infer.engine import model_source, open_engine
    from sqltune.infer.predictions import PredictionFile
    from sqltune.infer.questions import build_questions, dataset_examples, prompt_arguments, token_budget
    from sqltune.models.multimodal import is_multimodal, is_multimodal_run
    from sqltune.models.templates import get_template

    if not args.dataset:
        raise ConfigError("dataset: give the registered dataset to answer (see dataset_info.json)")
    if args.db_url and settings.decoding == "single":
        raise ConfigError(
            "db_url: predict runs SQL only with decoding=execution_guided or agent; to score predictions on "
            "a server, use sqltune eval --db-url"
        )
    source = model_source(args.run_dir, model_args)
    # a vision-language run or model: each question asked with its images. Read from the run card or
    # the model folder, without resolving the model: a resumed prediction with nothing left to
    # answer needs no model.
    if is_multimodal_run(source.card) if source.card else is_multimodal(model_args.model_name_or_path):
        from sqltune.infer.multimodal import predict_with_images

        return predict_with_images(source, args, settings, progress)
    dataset = load_dataset(args.dataset_dir, args.dataset)
    examples = dataset_examples(dataset, args.max_samples)
    output = check_output(args.output or default_output(args), dataset_files(args.dataset_dir, args.dataset))
    file = PredictionFile(output, overwrite=args.overwrite)
    pending = file.pending(examples)
    summary = PredictSummary(output, len(examples), len(pending), 0.0, 0, 0, 0)
    summary.executed_on = hide_password(args.db_url) if args.db_url else None
    if pending:
        targets = execution_targets(args, settings, dataset, [examples[i] for i in pending])
        engine = open_engine(
            source,
            backend=args.infer_backend,
            dtype=args.infer_dtype,
            batch_size=args.batch_size,
            seed=args.seed,
            tensor_parallel_size=args.tensor_parallel_size,
            gpu_memory_utilization=args.gpu_memory_utilization,
        )
        template = get_template(source.template, engine.tokenizer)
        budget = token_budget(args.cutoff_len, source.card, settings.max_new_tokens)
        prompt_args = prompt_arguments(source.card, dataset)
        fit = budget
        if settings.decoding == "agent":  # the tool list takes its share of the prompt budget
            from sqltune.infer.agent import agent_answers, tools_overhead

            fit = budget - tools_overhead(template, engine.tokenizer)
        questions = build_questions(dataset, pending, prompt_args, template, engine.tokenizer, fit)
        summary.shortened = sum(q.shortened for q in questions)
        summary.over_budget = sum(not q.fits for q in questions)
        paths = [targets[q.example.db_id] for q in questions]
        bar = tqdm(
            total=len(examples),
            initial=len(examples) - len(pending),
            unit="q",
            desc="predict",
            disable=not progress,
        )
        began = time.perf_counter()
        try:
            stream = (
                agent_answers(engine, template, settings, budget, questions, dataset.schemas, paths)
                if settings.decoding == "agent"
                else answer(engine, [q.prompt_ids for q in questions], settings, paths)
            )
            for answers in stream:
                file.add([to_row(questions[i], item) for i, item in answers])
                summary.new_tokens += sum(item.new_tokens for _, item in answers)
                summary.chosen_by.update(item.choice.reason for _, item in answers if item.choice)
                summary.stop_reasons.update(getattr(item, "stop_reason", "") for _, item in answers)
                bar.update(len(answers))
        finally:
            bar.close()
        summary.seconds = time.perf_counter() - began
    if args.format == "spider":
        summary.spider_file = file.write_spider(examples)
    print_summary(summary, source.run_dir or source.model_args.model_name_or_path, args.dataset)
    return summary


def print_summary(summary: PredictSummary, model: object, dataset: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sqltune predict: {dataset}", show_header=False)
    table.add_row("model", str(model))
    table.add_row("questions", f"{summary.questions} ({summary.answered} answered now)")
    table.add_row("schemas shortened / over budget", f"{summary.shortened} / {summary.over_budget}")
    table.add_row("time", f"{summary.seconds:.1f} s")
    if summary.questions_per_second:
        table.add_row("questions/s", f"{summary.questions_per_second:.2f}")
        table.add_row("generated tokens/s", f"{summary.new_tokens / summary.seconds:.1f}")
    if summary.chosen_by:
        table.add_row("chosen by", ", ".join(f"{n} {reason}" for reason, n in summary.chosen_by.items()))
    stopped = {reason: n for reason, n in summary.stop_reasons.items() if reason}  # agent only
    if stopped:
        table.add_row("agent stopped", ", ".join(f"{n} {reason}" for reason, n in stopped.items()))
    if summary.executed_on:
        table.add_row("candidates run on", summary.executed_on)
    table.add_row("predictions", str(summary.output))
    if summary.spider_file:
        table.add_row("one SQL per line", str(summary.spider_file))
    Console(file=sys.stderr).print(table)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help(GROUPS, "predict"))
        return 0
    args, settings, model_args = parse_args(GROUPS, argv)
    run_predict(model_args, args, settings)
    return 0
