"""`sqltune data pairs`: preference pairs and KTO labels from a run's own answers, judged by execution.

    sqltune data pairs run_dir=saves/quickstart_lora dataset=demo_train num_candidates=8 output_dir=data
    sqltune train stage=dpo dataset=demo_train_pairs adapter_name_or_path=saves/quickstart_lora ...

The run's model answers every question of a registered SFT dataset `num_candidates` times (samples,
or the best beams with `do_sample=false`) through the prediction engine (`sqltune.infer.engine`),
prompted with the dataset record's own prompt in the run's chat template. Each answer is judged by
the execution reward (`sqltune.train.rewards`): its SQL is extracted with `predict`'s rule, run
read-only on the question's database `<db_dir>/<db_id>/<db_id>.sqlite`, and compared with the gold
result by the evaluator's execution-match rules. Then, per question:

* chosen: the most likely answer that returns the gold result, else the gold SQL itself;
* rejected: the most likely answer that runs but returns a wrong result (a hard negative), else
  one that fails (an error, a timeout, no query); a question with neither gives no pair;
* KTO: up to `kto_per_question` distinct answers, labelled by whether they return the gold result,
  and the gold SQL as a desirable answer.

A question whose gold SQL does not itself run is left out (counted). Two datasets are registered in
`output_dir/dataset_info.json` beside the entries already there: `<name>` (LLaMA-Factory's pairwise
alpaca format, `"ranking": true`, which `stage=dpo` reads) and `<name>_kto` (alpaca with a boolean
`label` column mapped as `"kto_tag"`). Both keep the source record's prompt, so a pair is trained on
exactly the prompt its answers were sampled from.

Resuming: every question's judged candidates go to `<name>.candidates.jsonl` (rewritten atomically
every few seconds and when the run stops), and a rerun samples only the questions not in it. Each
question samples with its own seed (`seed + index`) in its own `generate` call, so its candidates do
not depend on which other questions were sampled with it: an interrupted run, resumed, writes the
same files as an uninterrupted one. The datasets and `<name>.counts.json` are written atomically
once every question is done.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

from sqltune.args import ModelArguments, PairsArguments, PromptArguments
from sqltune.config import format_help, parse_args
from sqltune.data.records import dataset_entry, dataset_files, register
from sqltune.errors import ConfigError, DataError, SqltuneWarning
from sqltune.files import (
    check_output,
    check_output_dir,
    plain_name,
    read_jsonl_lines,
    read_lines,
    write_json,
    write_jsonl,
)

SAVE_SECONDS = 10.0  # the candidates file is rewritten at most this often (and when the run stops)
# the rejected answer, best first: a wrong result is the hard negative
REJECTED_ORDER = ("wrong_result", "fails", "no_query")
FAILED = ("fails", "no_query")
# the counts of a run (with_*: of the questions whose gold SQL runs); pairs + no_rejected +
# gold_fails = questions
COUNTS = (
    "questions",
    "candidates",
    "with_correct",
    "with_wrong_result",
    "with_failing",
    "gold_fails",
    "pairs",
    "pairs_gold_chosen",
    "no_rejected",
    "kto_desirable",
    "kto_undesirable",
)


def sampling_settings(args: PairsArguments) -> dict:
    """Everything that decides a question's candidates and their judgement."""
    names = ("dataset", "num_candidates", "do_sample", "temperature", "top_p", "top_k", "max_new_tokens")
    names += ("timeout", "seed", "infer_backend", "infer_dtype")
    return {"run_dir": str(Path(args.run_dir or "").resolve()), **{n: getattr(args, n) for n in names}}


def settings_key(settings: dict) -> str:
    """A short fingerprint of the sampling settings: a candidates file written with other settings
    is not continued."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


class CandidateFile:
    """The judged candidates of the questions done so far, one JSON line per question (by `index`)."""

    def __init__(self, path: Path, key: str, overwrite: bool = False) -> None:
        self.path = path
        self.key = key
        self.rows: dict[int, dict] = {}
        self.saved = time.monotonic()
        if path.is_file() and not overwrite:
            for line, row in read_jsonl_lines(read_lines(path, "candidates file"), path):
                if not isinstance(row.get("index"), int) or row.get("settings") != key:
                    raise ConfigError(
                        f"{path}: line {line.number} was written with other settings (or not by "
                        "sqltune data pairs); give the same settings, another dataset_name or overwrite=true"
                    )
                self.rows[row["index"]] = row

    def check(self, samples: list) -> None:
        """Refuse a file written for other questions (another dataset, or the dataset rebuilt)."""
        for index, row in self.rows.items():
            sample = samples[index] if index < len(samples) else None
            if sample is None or (row["db_id"], row["input"], row["gold"]) != (
                sample.db_id,
                sample.prompt.input,
                sample.response,
            ):
                raise ConfigError(
                    f"{self.path} holds candidates for other questions (index {index}); "
                    "give another dataset_name or overwrite=true"
                )

    def add(self, row: dict) -> None:
        self.rows[row["index"]] = row
        if time.monotonic() - self.saved >= SAVE_SECONDS:
            self.save()

    def save(self) -> None:
        write_jsonl(self.path, (self.rows[i] for i in sorted(self.rows)))
        self.saved = time.monotonic()


def judge_question(index: int, sample, texts: list[tuple[str, float | None]], reward, key: str) -> dict:
    """The candidates file's row of one question: each answer's SQL and what running it came to,
    and whether the gold SQL itself runs (judged against itself)."""
    candidates = []
    for text, logprob in texts:
        judgement = reward.judge(text, sample.db_id, sample.response)
        candidates.append(
            {
                "sql": judgement.sql,
                "raw": text,
                "outcome": judgement.outcome,
                "error": judgement.error,
                "logprob": None if logprob is None else round(logprob, 6),
            }
        )
    return {
        "index": index,
        "db_id": sample.db_id,
        "input": sample.prompt.input,
        "gold": sample.response,
        "gold_runs": reward.judge(sample.response, sample.db_id, sample.response).outcome == "match",
        "settings": key,
        "candidates": candidates,
    }


def choose_pair(row: dict) -> tuple[str, str, bool] | None:
    """(chosen, rejected, whether the chosen is the gold SQL) of one question (see the module
    docstring), or None without a rejected answer. Candidates come most likely first; an empty
    answer is never used."""
    answers = [c for c in row["candidates"] if c["sql"]]
    correct = [c["sql"] for c in answers if c["outcome"] == "match"]
    wrong = sorted(
        (c for c in answers if c["outcome"] in REJECTED_ORDER),
        key=lambda c: REJECTED_ORDER.index(c["outcome"]),  # stable: likelihood order within a kind
    )
    if not wrong:
        return None
    if correct:
        return correct[0], wrong[0]["sql"], False
    return row["gold"], wrong[0]["sql"], True


def kto_answers(row: dict, cap: int) -> list[tuple[str, bool]]:
    """Up to `cap` distinct answers with their label (True: the gold result), then the gold SQL."""
    labelled: dict[str, bool] = {}
    for candidate in row["candidates"]:
        if candidate["sql"] and candidate["sql"] not in labelled and len(labelled) < cap:
            labelled[candidate["sql"]] = candidate["outcome"] == "match"
    labelled.setdefault(row["gold"].strip(), True)
    return list(labelled.items())


def prompt_columns(sample) -> dict:
    """The source record's prompt, in alpaca columns."""
    columns = {
        "db_id": sample.db_id,
        "instruction": sample.prompt.instruction,
        "input": sample.prompt.input,
        "history": [list(turn) for turn in sample.prompt.history],
    }
    if sample.system:
        columns["system"] = sample.system
    return columns


def assemble(rows: list[dict], samples: list, cap: int) -> tuple[list[dict], list[dict], dict]:
    """The pairwise records, the KTO records and the counts of the judged questions."""
    pairs, kto = [], []
    counts = dict.fromkeys(COUNTS, 0)
    counts["questions"] = len(rows)
    for row, sample in zip(rows, samples, strict=True):
        counts["candidates"] += len(row["candidates"])
        if not row["gold_runs"]:  # nothing can be learnt about matching it
            counts["gold_fails"] += 1
            continue
        outcomes = {c["outcome"] for c in row["candidates"]}
        counts["with_correct"] += "match" in outcomes
        counts["with_wrong_result"] += "wrong_result" in outcomes
        counts["with_failing"] += bool(outcomes & set(FAILED))
        prompt = prompt_columns(sample)
        pair = choose_pair(row)
        if pair is None:
            counts["no_rejected"] += 1
        else:
            chosen, rejected, gold_chosen = pair
            pairs.append({**prompt, "chosen": chosen, "rejected": rejected})
            counts["pairs"] += 1
            counts["pairs_gold_chosen"] += gold_chosen
        for answer, label in kto_answers(row, cap):
            kto.append({**prompt, "output": answer, "label": label})
            counts["kto_desirable" if label else "kto_undesirable"] += 1
    return pairs, kto, counts


def registry_entries(
    name: str, source: dict, info: dict, sizes: tuple[int, int], system: bool
) -> tuple[dict, dict]:
    """The dataset_info.json entries of the pairwise and the KTO dataset (`sizes`: their records)."""
    columns = {"prompt": "instruction", "query": "input", "history": "history"}
    if system:
        columns["system"] = "system"
    pairs = {
        "file_name": f"{name}.jsonl",
        "formatting": "alpaca",
        "ranking": True,
        "columns": {**columns, "chosen": "chosen", "rejected": "rejected"},
    }
    kto = {
        "file_name": f"{name}_kto.jsonl",
        "formatting": "alpaca",
        "columns": {**columns, "response": "output", "kto_tag": "label"},
    }
    # sqltune's block tells training which prompt format the records hold; a source that records
    # none gets no block (an empty one would read as the default format)
    prompt = source.get("sqltune", {}).get("prompt")
    if prompt is not None:
        pairs["sqltune"] = {**info, "prompt": prompt, "count": sizes[0]}
        kto["sqltune"] = {**info, "prompt": prompt, "count": sizes[1]}
    return pairs, kto


def output_paths(args: PairsArguments, name: str) -> dict[str, Path]:
    folder = Path(args.output_dir)
    return {
        "pairs": folder / f"{name}.jsonl",
        "kto": folder / f"{name}_kto.jsonl",
        "candidates": folder / f"{name}.candidates.jsonl",
        "counts": folder / f"{name}.counts.json",
    }


def check_outputs(args: PairsArguments) -> tuple[str, dict[str, Path]]:
    """The pairs dataset's name and files, once it is known that writing them destroys no input."""
    if not args.run_dir:
        raise ConfigError("run_dir: give the run directory of `sqltune train` whose model answers")
    if not args.dataset:
        raise ConfigError("dataset: give the registered dataset to answer (e.g. dataset=demo_train)")
    name = plain_name(args.dataset_name or f"{args.dataset}_pairs", "dataset_name")
    same_folder = Path(args.output_dir).resolve() == Path(args.dataset_dir).resolve()
    if same_folder and args.dataset in (name, f"{name}_kto"):
        raise ConfigError(f"dataset_name: '{name}' would replace the dataset it is built from")
    check_output_dir(args.output_dir)
    paths = output_paths(args, name)
    inputs = dataset_files(args.dataset_dir, args.dataset)[:3]
    for path in paths.values():
        check_output(path, inputs, "output file")
    return name, paths


def warn_prompt_mismatch(card, dataset_prompt: PromptArguments | None, run_dir: str, name: str) -> None:
    """The pairs keep the dataset's prompts; a run trained on another prompt format answers them
    out of its habit, and DPO on them would teach a format `predict` does not use."""
    from sqltune.infer.questions import prompt_arguments_from_card

    run_prompt = prompt_arguments_from_card(card)
    if run_prompt and dataset_prompt and run_prompt != dataset_prompt:
        warnings.warn(
            f"run {run_dir} was trained with other prompt options (prompt_format={run_prompt.prompt_format}) "
            f"than dataset '{name}' was built with (prompt_format={dataset_prompt.prompt_format}); the pairs "
            "keep the dataset's prompts",
            SqltuneWarning,
            stacklevel=3,
        )


def sample_pending(
    args: PairsArguments, file: CandidateFile, samples: list, pending: list[int], reward, quiet: bool
) -> None:
    """Sample and judge `samples[i]` for every pending i into `file` (saved when the loop ends,
    however it ends); `samples` are the questions of this run."""
    from tqdm import tqdm

    from sqltune.args import GeneratingArguments
    from sqltune.infer.engine import model_source, open_engine
    from sqltune.models.encoding import encode_prompt
    from sqltune.models.templates import get_template

    source = model_source(args.run_dir, ModelArguments())
    engine = open_engine(source, backend=args.infer_backend, dtype=args.infer_dtype, seed=args.seed)
    template = get_template(source.template, engine.tokenizer)
    settings = GeneratingArguments(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        num_beams=1 if args.do_sample else args.num_candidates,
    )
    bar = tqdm(total=len(samples), initial=len(samples) - len(pending), unit="q", desc="pairs", disable=quiet)
    try:
        for index in pending:
            sample = samples[index]
            prompt_ids = encode_prompt(sample.prompt, template, engine.tokenizer, sample.system)
            engine.seed = args.seed + index  # both engines seed each generate call with it
            (batch,) = list(engine.generate([prompt_ids], settings, args.num_candidates))
            texts = [(c.text, c.logprob) for c in batch.candidates[0]]
            file.add(judge_question(index, sample, texts, reward, file.key))
            bar.update(1)
    finally:
        bar.close()
        file.save()


def build_pairs(args: PairsArguments, quiet: bool = False) -> dict:
    """Sample, judge and write the pairwise and KTO datasets (see the module docstring); return the
    counts (also printed, unless `quiet`, and saved in `<name>.counts.json`)."""
    from sqltune.runcard import RunCard
    from sqltune.train.data import prompt_settings, read_samples
    from sqltune.train.rewards import ExecutionReward, reward_databases

    name, paths = check_outputs(args)
    card = RunCard.load(args.run_dir)
    entry = dataset_entry(args.dataset_dir, args.dataset)
    databases = reward_databases({args.dataset: entry}, "sqltune data pairs", args.db_url)
    samples = read_samples(args.dataset_dir, args.dataset)
    for line, sample in enumerate(samples, 1):
        if not sample.db_id:
            raise DataError(f"dataset '{args.dataset}' record {line} has no db_id: its SQL cannot be run")
    settings = sampling_settings(args)
    file = CandidateFile(paths["candidates"], settings_key(settings), args.overwrite)
    file.check(samples)
    selected = samples[: args.limit] if args.limit else samples
    reward = ExecutionReward(**databases, timeout=args.timeout)
    try:
        for db_id in sorted({s.db_id for s in selected}):
            reward.database(db_id)  # every database is there before the model loads, or a one-line error
        pending = [index for index in range(len(selected)) if index not in file.rows]
        began = time.perf_counter()
        if pending:
            dataset_prompt = prompt_settings(args.dataset_dir, [args.dataset])
            warn_prompt_mismatch(card, dataset_prompt, args.run_dir, args.dataset)
            sample_pending(args, file, selected, pending, reward, quiet)
    finally:
        reward.close()
    rows = [file.rows[index] for index in range(len(selected))]
    pairs, kto, counts = assemble(rows, selected, args.kto_per_question)
    info = {
        "source": "pairs",
        "from_dataset": args.dataset,
        "run_dir": str(Path(args.run_dir).resolve()),
        **reward.where(),
    }
    write_jsonl(paths["pairs"], pairs)
    write_jsonl(paths["kto"], kto)
    summary = {"dataset": name, "kto_dataset": f"{name}_kto", **info, "sampling": settings}
    write_json(paths["counts"], {**summary, "kto_per_question": args.kto_per_question, "counts": counts})
    system = any(s.system for s in selected)
    pairs_entry, kto_entry = registry_entries(name, entry, info, (len(pairs), len(kto)), system)
    register(args.output_dir, name, pairs_entry)
    register(args.output_dir, f"{name}_kto", kto_entry)
    if not quiet:
        print_summary(name, counts, paths, len(pending), time.perf_counter() - began)
    return counts


def print_summary(name: str, counts: dict, paths: dict[str, Path], sampled: int, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sqltune data pairs: {name}", show_header=False)
    table.add_row("questions", f"{counts['questions']} ({sampled} sampled now, {seconds:.1f} s)")
    table.add_row("candidates", str(counts["candidates"]))
    table.add_row("with >= 1 correct answer", str(counts["with_correct"]))
    table.add_row("with >= 1 wrong result", str(counts["with_wrong_result"]))
    table.add_row("with >= 1 failing answer", str(counts["with_failing"]))
    table.add_row(
        "pairs written", f"{counts['pairs']} ({counts['pairs_gold_chosen']} with the gold as chosen)"
    )
    table.add_row("no pair: nothing to reject", str(counts["no_rejected"]))
    table.add_row("no pair: the gold SQL fails", str(counts["gold_fails"]))
    table.add_row("KTO desirable / undesirable", f"{counts['kto_desirable']} / {counts['kto_undesirable']}")
    table.add_row("pairs (ranking)", str(paths["pairs"]))
    table.add_row("KTO", str(paths["kto"]))
    table.add_row("counts", str(paths["counts"]))
    Console(file=sys.stderr).print(table)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help((PairsArguments,), "data pairs"))
        return 0
    (args,) = parse_args((PairsArguments,), argv)
    build_pairs(args)
    return 0
