"""The SFT data pipeline: registered records -> token ids with response-only labels -> batches.

1. `read_samples` reads a dataset registered in `dataset_info.json`, in alpaca form
   (instruction/input/output/history, the form `sqltune data` writes) or sharegpt form
   (a list of from/value messages), into `Sample`s. Sharegpt records with a `tools` column or turns
   of role `function_call`/`observation` are agent conversations (LLaMA-Factory's agent format).
2. `encode_samples` tokenises each sample with the template (`sqltune.models.encoding`): labels
   are the last response's ids, everything before it is masked. A sample longer than `cutoff_len`
   is never cut: when its dataset has the `Example` and `Schema` sidecars, its schema is shortened
   by `fit_to_budget` (never dropping a table the gold SQL uses); a sample that still does not fit,
   or has no sidecars, is dropped. Both are counted. An agent conversation is labelled on every
   function_call and assistant turn (`encode_conversation`) and dropped when too long.
3. `collator` pads length-grouped batches (`DataCollatorForSeq2Seq`), or, with `packing`, concatenates
   a batch into one row whose position ids restart at every example, which transformers turns
   into a block-diagonal attention mask (`DataCollatorWithFlattening`): no padding and no attention
   across examples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from sqltune.args import DataArguments, PromptArguments
from sqltune.data.example import Example
from sqltune.data.prompts import Prompt
from sqltune.data.records import dataset_entry, load_dataset
from sqltune.data.schema import Schema
from sqltune.errors import ConfigError, DataError
from sqltune.files import read_json, read_jsonl
from sqltune.models.encoding import IGNORE_INDEX, encode_conversation, encode_example, fit_to_budget
from sqltune.models.templates import Message, Template
from sqltune.models.tools import MalformedCall, read_function_call, read_tools, supports_tools

SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",  # agent records: a tool's output
    "function_tag": "function_call",  # agent records: the model calls tools
    "system_tag": "system",
}


@dataclass
class Sample:
    """One training conversation before tokenising, with what is needed to shorten its schema."""

    prompt: Prompt
    response: str
    example: Example | None = None
    schema: Schema | None = None
    prompt_args: PromptArguments | None = None
    system: str | None = None
    db_id: str | None = None  # the database the question is about, where the record says
    images: list[str] | None = None  # image files of a multimodal record (sqltune.train.multimodal)
    messages: list[Message] | None = None  # an agent (tool-call) conversation, encoded whole
    tools: list[dict] | None = None  # the tool schemas of an agent conversation


def read_rows(path: Path, what: str) -> list[dict]:
    """The records of a dataset file: a JSON list (`.json`) or JSON lines."""
    if not path.is_file():
        raise DataError(f"{what}: file not found: {path}")
    if path.suffix == ".json":
        rows = read_json(path, what)
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of records")
        return rows
    return read_jsonl(path, what)


def _alpaca_samples(dataset_dir: Path, name: str, entry: dict) -> list[Sample]:
    columns = {"prompt": "instruction", "query": "input", "response": "output", "history": "history"}
    columns.update(entry.get("columns", {}))
    if "sqltune" in entry:  # written by `sqltune data`: records + examples + schemas
        data = load_dataset(dataset_dir, name)
        rows, prompt_args = data.records, data.prompt_args
        examples = data.examples or [None] * len(rows)
        schemas = data.schemas
    else:
        rows = read_rows(dataset_dir / entry["file_name"], f"records of dataset '{name}'")
        examples, schemas, prompt_args = [None] * len(rows), {}, None
    samples = []
    for line, (row, example) in enumerate(zip(rows, examples), 1):
        try:
            history = [(str(q), str(a)) for q, a in row.get(columns["history"]) or []]
            prompt = Prompt(str(row.get(columns["prompt"], "")), str(row.get(columns["query"], "")), history)
            response = str(row[columns["response"]])
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"dataset '{name}' record {line}: malformed alpaca record ({err})") from None
        schema = schemas.get(example.db_id) if example else None
        db_id = example.db_id if example else row.get("db_id")
        samples.append(Sample(prompt, response, example, schema, prompt_args, row.get("system"), db_id))
    return samples


def _sharegpt_samples(dataset_dir: Path, name: str, entry: dict) -> list[Sample]:
    columns = {"messages": "conversations", "system": "system", **entry.get("columns", {})}
    tags = {**SHAREGPT_TAGS, **entry.get("tags", {})}
    samples = []
    for line, row in enumerate(
        read_rows(dataset_dir / entry["file_name"], f"records of dataset '{name}'"), 1
    ):
        where = f"dataset '{name}' record {line}"
        try:
            messages = [(m[tags["role_tag"]], str(m[tags["content_tag"]])) for m in row[columns["messages"]]]
        except (KeyError, TypeError) as err:
            raise DataError(f"{where}: malformed sharegpt messages ({err})") from None
        system = row.get(columns["system"])
        if messages and messages[0][0] == tags["system_tag"]:
            system, messages = messages[0][1], messages[1:]
        roles = [role for role, _ in messages]
        if "tools" in columns or {tags["function_tag"], tags["observation_tag"]} & set(roles):
            tools = row.get(columns["tools"]) if "tools" in columns else None
            sample = _agent_sample(messages, tools, tags, where)
            sample.system, sample.db_id = system, row.get("db_id")
        else:
            expected = [tags["user_tag"], tags["assistant_tag"]] * (len(messages) // 2)
            if not messages or len(messages) % 2 or roles != expected:
                raise DataError(
                    f"{where}: messages must alternate {tags['user_tag']}/{tags['assistant_tag']}"
                )
            turns = [(messages[i][1], messages[i + 1][1]) for i in range(0, len(messages), 2)]
            prompt = Prompt("", turns[-1][0], turns[:-1])
            sample = Sample(prompt, turns[-1][1], system=system, db_id=row.get("db_id"))
        if "images" in columns:  # LLaMA-Factory's multimodal records: <image> placeholders + files
            from sqltune.train.multimodal import record_images

            texts = [text for _, text in messages]
            sample.images = record_images(row.get(columns["images"]), texts, dataset_dir, where)
        samples.append(sample)
    return samples


def _agent_sample(messages: list[tuple[str, str]], tools, tags: dict, where: str) -> Sample:
    """A tool-call conversation (LLaMA-Factory's agent format) in the roles of
    `Template.encode_messages`, checked here so that a bad record is named by its line. Its prompt
    and response are the first prompt turn and the final answer: what stages that train on single
    answers (grpo, kto, ...) read from it."""
    try:
        schemas = read_tools(tools) if tools is not None else []
    except ValueError as err:  # json.JSONDecodeError included
        raise DataError(f"{where}: bad tools ({err})") from None
    prompt_roles = {tags["user_tag"]: "user", tags["observation_tag"]: "observation"}
    response_roles = {tags["assistant_tag"]: "assistant", tags["function_tag"]: "function_call"}
    converted: list[Message] = []
    for index, (role, content) in enumerate(messages):
        allowed = response_roles if index % 2 else prompt_roles
        if role not in allowed:
            raise DataError(
                f"{where}: messages must alternate {'/'.join(prompt_roles)} and {'/'.join(response_roles)}"
                f" (message {index + 1} is '{role}')"
            )
        if allowed[role] == "function_call":
            try:
                read_function_call(content)
            except MalformedCall as err:
                raise DataError(f"{where}: message {index + 1} is not a tool call ({err})") from None
        converted.append((allowed[role], content))
    if not converted or len(converted) % 2:
        raise DataError(f"{where}: the conversation must end with a {'/'.join(response_roles)} message")
    answer = next((text for role, text in reversed(converted) if role == "assistant"), converted[-1][1])
    return Sample(Prompt("", converted[0][1]), answer, messages=converted, tools=schemas)


def read_samples(dataset_dir: str | Path, name: str, max_samples: int | None = None) -> list[Sample]:
    """The samples of one registered dataset (the first `max_samples` when given)."""
    dataset_dir = Path(dataset_dir)
    entry = dataset_entry(dataset_dir, name)
    formatting = entry.get("formatting", "alpaca")
    if formatting == "alpaca":
        samples = _alpaca_samples(dataset_dir, name, entry)
    elif formatting == "sharegpt":
        samples = _sharegpt_samples(dataset_dir, name, entry)
    else:
        raise DataError(f"dataset '{name}': formatting '{formatting}' is not alpaca or sharegpt")
    return samples[:max_samples] if max_samples else samples


@dataclass
class EncodeStats:
    """What happened to the samples on the way to token ids."""

    samples: int = 0
    kept: int = 0
    shortened: int = 0  # schema shortened to fit cutoff_len
    values_dropped: int = 0
    tables_dropped: int = 0  # tables removed, summed over the shortened samples
    dropped_too_long: int = 0  # still too long (or not shortenable) and left out
    tokens: int = 0
    response_tokens: int = 0
    response_tokens_p95: int = 0  # a typical long answer: prediction keeps this much room for it
    tool_format: str | None = None  # agent data: "native" (the chat template's) or "default" (sqltune's)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "tool_format" or v}


def fit_sample(sample: Sample, template: Template, tokenizer, budget: int, reserved: int = 0):
    """The sample's prompt shortened to fit `budget` tokens with `reserved` left over (schema values,
    then the least related tables, never a gold table), or None when it has no schema to shorten or
    still does not fit."""
    if sample.example is None or sample.schema is None or sample.prompt_args is None:
        return None
    fitted = fit_to_budget(
        sample.example,
        sample.schema,
        sample.prompt_args,
        template,
        tokenizer,
        budget,
        reserved=reserved,
        protect_gold_tables=True,
        system=sample.system,
    )
    return fitted if fitted.fits else None


def encode_samples(
    samples: list[Sample], template: Template, tokenizer, cutoff_len: int
) -> tuple[list[dict], EncodeStats]:
    """Token ids and labels of every sample that fits `cutoff_len` (see the module docstring)."""
    stats = EncodeStats(samples=len(samples))
    features = []
    answer_lengths = []
    for sample in samples:
        if sample.messages is not None:  # an agent conversation: every call and answer labelled
            input_ids, labels = encode_conversation(
                sample.messages, template, tokenizer, sample.system, sample.tools
            )
            if sample.tools:
                stats.tool_format = tool_format(template, tokenizer)
        else:
            input_ids, labels = encode_example(
                sample.prompt, sample.response, template, tokenizer, sample.system
            )
        if len(input_ids) > cutoff_len:  # an agent conversation has no schema to shorten: dropped
            response_len = sum(label != IGNORE_INDEX for label in labels)
            fitted = fit_sample(sample, template, tokenizer, cutoff_len, reserved=response_len)
            if fitted is None:
                stats.dropped_too_long += 1
                continue
            input_ids, labels = encode_example(
                fitted.prompt, sample.response, template, tokenizer, sample.system
            )
            stats.shortened += 1
            stats.values_dropped += fitted.shortening.values_dropped
            stats.tables_dropped += fitted.shortening.tables_dropped
        features.append({"input_ids": input_ids, "labels": labels})
        stats.kept += 1
        stats.tokens += len(input_ids)
        answer_lengths += response_lengths(labels)  # agent conversations: one per call and answer
    stats.response_tokens = sum(answer_lengths)
    if answer_lengths:
        answer_lengths.sort()
        stats.response_tokens_p95 = answer_lengths[
            min(len(answer_lengths) - 1, int(0.95 * len(answer_lengths)))
        ]
    return features, stats


def response_lengths(labels: list[int]) -> list[int]:
    """The length of each run of labelled positions: one response each (a model generates them
    one at a time, so prediction's room for an answer is a single response's length)."""
    lengths: list[int] = []
    previous = IGNORE_INDEX
    for label in labels:
        if label != IGNORE_INDEX:
            if previous == IGNORE_INDEX:
                lengths.append(0)
            lengths[-1] += 1
        previous = label
    return lengths


def tool_format(template: Template, tokenizer) -> str:
    """How `Template.encode_messages` renders tools and calls with this template and tokenizer:
    "native" (the tokenizer's chat template renders them) or "default" (`sqltune.models.tools`)."""
    return "native" if template.name == "hf" and supports_tools(tokenizer) else "default"


def split_validation(features: list[dict], val_size: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out `val_size` (a fraction below 1, else a count) of the features, chosen with `seed`."""
    if not val_size:
        return features, []
    count = int(round(val_size * len(features))) if val_size < 1 else int(val_size)
    if not 0 < count < len(features):
        raise ConfigError(f"val_size={val_size} leaves no train or no eval examples (of {len(features)})")
    order = list(range(len(features)))
    random.Random(seed).shuffle(order)
    held = set(order[:count])
    return [f for i, f in enumerate(features) if i not in held], [features[i] for i in sorted(held)]


def build_features(
    data_args: DataArguments, names: list[str], template: Template, tokenizer
) -> tuple[list[dict], dict[str, dict]]:
    """Encoded features of several datasets, and each dataset's `EncodeStats` as a dict."""
    features: list[dict] = []
    stats: dict[str, dict] = {}
    for name in names:
        samples = read_samples(data_args.dataset_dir, name, data_args.max_samples)
        encoded, counts = encode_samples(samples, template, tokenizer, data_args.cutoff_len)
        features += encoded
        stats[name] = counts.as_dict()
    if not features:
        raise DataError(f"no example of {', '.join(names)} fits cutoff_len={data_args.cutoff_len}")
    return features, stats


def prompt_settings(dataset_dir: str | Path, names: list[str]) -> PromptArguments | None:
    """The one prompt format and SQL dialect the datasets were built with (None for datasets not
    built by sqltune); a model must be trained on a single one of each, since prediction can only
    prompt one way (the run card records these settings) and its answers run on one kind of database."""
    found: dict[str, PromptArguments] = {}
    for name in names:
        entry = dataset_entry(dataset_dir, name)
        if "sqltune" in entry:
            prompt = entry["sqltune"].get("prompt", {})
            fields = PromptArguments.__dataclass_fields__
            found[name] = PromptArguments(**{k: v for k, v in prompt.items() if k in fields})
    formats = {p.prompt_format for p in found.values()}
    if len(formats) > 1:
        raise ConfigError(
            f"datasets use different prompt formats ({', '.join(sorted(formats))}); train on one"
        )
    dialects = {p.dialect for p in found.values()}  # datasets from before dialects: sqlite
    if len(dialects) > 1:
        built = ", ".join(f"{name}: {p.dialect}" for name, p in found.items())
        raise ConfigError(f"datasets are in different SQL dialects ({built}); train on one dialect")
    return next(iter(found.values()), None)


def collator(tokenizer, packing: bool):
    """The batch collator: padding-free flattening with `packing`, else dynamic right padding."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if packing:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    return DataCollatorForSeq2Seq(
        tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, pad_to_multiple_of=8
    )


def to_dataset(features: list[dict]):
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "input_ids": [f["input_ids"] for f in features],
            "labels": [f["labels"] for f in features],
            "length": [len(f["input_ids"]) for f in features],
        }
    )
