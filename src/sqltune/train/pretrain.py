"""`stage=pt`: continued pre-training on plain text, packed into blocks of `cutoff_len` tokens.

For Text-to-SQL this is where a model reads what it will later be asked about before it is asked:
the DDL and rows of the databases and the SQL written against them (`sqltune data corpus` builds
such a corpus), or any SQL-heavy text. There is no prompt and no answer: every token is predicted.

Data: plain text records `{"text": ...}` registered in `dataset_info.json` with
`"columns": {"prompt": "text"}`, LLaMA-Factory's pt format, so its pt datasets load unchanged
(`.json` lists or JSON lines; an entry without `columns` reads the `text` field).

Packing: each text is tokenised without special tokens or chat template, followed by the
tokenizer's end-of-sequence token, and the texts of a dataset are concatenated in file order and
cut into blocks of exactly `cutoff_len` tokens (the usual causal-LM recipe: attention may cross
from one text into the next within a block, the EOS between them marks the boundary). The tail
shorter than a block is dropped and counted. Labels are the input ids: the loss is the
next-token cross-entropy on every position, computed by the SFT stage's trainer
(`sqltune.train.sft.token_loss_trainer`), so LoRA/freeze/full, precision and the chunked loss are
exactly those of SFT.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqltune.args import DataArguments, FinetuningArguments, ModelArguments
from sqltune.data.records import dataset_entry
from sqltune.errors import ConfigError, DataError
from sqltune.files import read_json, read_jsonl_lines, read_lines
from sqltune.models.templates import Template
from sqltune.train.stage import StageRun

TEXT_COLUMN = "text"


def text_column(name: str, entry: dict) -> str:
    """The column holding the text of a pt dataset (`columns.prompt`, default `text`); a dataset of
    another kind (SFT records, pairs, conversations) is refused rather than half-read."""
    columns = entry.get("columns", {})
    if entry.get("ranking") or entry.get("formatting", "alpaca") != "alpaca" or "response" in columns:
        raise ConfigError(
            f"stage=pt trains on plain text: dataset '{name}' is not a text dataset (register "
            '{"file_name": ..., "columns": {"prompt": "text"}}, or build one with sqltune data corpus)'
        )
    if "file_name" not in entry:
        raise ConfigError(f"dataset '{name}': its dataset_info.json entry has no file_name")
    return columns.get("prompt", TEXT_COLUMN)


def read_texts(dataset_dir: str | Path, name: str, max_samples: int | None = None) -> list[str]:
    """The texts of one registered pt dataset (the first `max_samples` when given); a record
    without a text is an error naming the file and line (JSON lines) or record (JSON list)."""
    entry = dataset_entry(dataset_dir, name)
    column = text_column(name, entry)
    path = Path(dataset_dir) / entry["file_name"]
    if not path.is_file():
        raise DataError(f"records of dataset '{name}': file not found: {path}")
    if path.suffix == ".json":
        rows = read_json(path, f"records of dataset '{name}'")
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of records")
        located = [(f"record {index}", row) for index, row in enumerate(rows, 1)]
    else:
        lines = read_lines(path, f"records of dataset '{name}'")
        located = [(f"line {line.number}", row) for line, row in read_jsonl_lines(lines, path)]
    texts = []
    for where, row in located[:max_samples] if max_samples else located:
        text = row.get(column) if isinstance(row, dict) else None
        if not isinstance(text, str):
            found = json.dumps(row, ensure_ascii=False)[:60]
            raise DataError(f"{path}: {where}: expected a text in field '{column}', found {found}")
        texts.append(text)
    return texts


def pack(texts: list[str], tokenizer, block_size: int) -> tuple[list[list[int]], dict]:
    """Blocks of exactly `block_size` token ids from the texts, each followed by EOS (module
    docstring), and the counts: texts, empty texts skipped, tokens, blocks, tokens dropped."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("stage=pt separates texts with the end-of-sequence token; the tokenizer has none")
    kept = [text for text in texts if text.strip()]
    stream: list[int] = []
    if kept:
        encoded = tokenizer(kept, add_special_tokens=False, verbose=False)["input_ids"]
        for ids in encoded:
            stream.extend(ids)
            stream.append(eos)
    count = len(stream) // block_size
    blocks = [stream[i * block_size : (i + 1) * block_size] for i in range(count)]
    stats = {
        "texts": len(kept),
        "empty_texts": len(texts) - len(kept),
        "tokens": len(stream),
        "blocks": count,
        "tokens_dropped": len(stream) - count * block_size,
    }
    return blocks, stats


def build(
    model_args: ModelArguments,
    data_args: DataArguments,
    finetuning_args: FinetuningArguments,
    training_args,
    template: Template,
    tokenizer,
) -> StageRun:
    from datasets import Dataset
    from transformers import default_data_collator

    from sqltune.train.sft import token_loss_trainer

    if data_args.packing:
        raise ConfigError("stage=pt always packs texts into blocks of cutoff_len tokens; leave packing unset")
    blocks: list[list[int]] = []
    data_stats = {}
    for name in data_args.dataset_names:
        texts = read_texts(data_args.dataset_dir, name, data_args.max_samples)
        packed, data_stats[name] = pack(texts, tokenizer, data_args.cutoff_len)
        blocks += packed
    if not blocks:
        tokens = sum(stats["tokens"] for stats in data_stats.values())
        raise DataError(
            f"{', '.join(data_args.dataset_names)}: {tokens} tokens, not one block of "
            f"cutoff_len={data_args.cutoff_len}; lower cutoff_len or add text"
        )
    trainer = token_loss_trainer(
        model_args,
        finetuning_args,
        training_args,
        tokenizer,
        Dataset.from_dict({"input_ids": blocks, "labels": [list(block) for block in blocks]}),
        None,
        default_data_collator,  # every block has the same length: no padding, no attention mask
    )
    settings = {
        "block_size": data_args.cutoff_len,
        "separator": tokenizer.eos_token,
        "tail": "dropped",
    }
    # no prompt format of its own: a run continued from SFT keeps that run's (see train.command)
    return StageRun(trainer, len(blocks), data_stats, None, settings)
