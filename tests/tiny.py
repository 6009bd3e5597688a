"""Tiny models and datasets built in-process for the model and training tests.

The tokenizer is a byte-level BPE trained here on the words the datasets use (a few hundred
tokens), with ChatML special tokens and a ChatML chat template; the model is a randomly initialised
two-layer Llama. Together they train in well under a second per step on a CPU.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sqltune.args import PromptArguments
from sqltune.data.example import Example
from sqltune.data.records import build_records, write_dataset
from sqltune.data.schema import Column, ForeignKey, Schema, Table
from sqltune.data.sources import SourceData

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]

TABLES = {
    "singer": ["singer_id", "name", "country", "age"],
    "concert": ["concert_id", "concert_name", "theme", "stadium_id", "year"],
    "stadium": ["stadium_id", "location", "name", "capacity"],
    "song": ["song_id", "title", "singer_id", "sales"],
    "ticket": ["ticket_id", "concert_id", "price", "seat"],
    "sponsor": ["sponsor_id", "company", "amount"],
}
QUESTIONS = [
    ("How many singers are there?", "SELECT count(*) FROM singer"),
    ("List the names of singers from France.", "SELECT name FROM singer WHERE country = 'France'"),
    ("What is the average age of singers?", "SELECT avg(age) FROM singer"),
    ("Show the concert names in 2014.", "SELECT concert_name FROM concert WHERE year = 2014"),
    ("Which stadium has the largest capacity?", "SELECT name FROM stadium ORDER BY capacity DESC LIMIT 1"),
    ("List song titles with sales above 100.", "SELECT title FROM song WHERE sales > 100"),
    (
        "Show concert names and stadium locations.",
        "SELECT T1.concert_name, T2.location FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id",
    ),
    ("What is the highest ticket price?", "SELECT max(price) FROM ticket"),
    ("How many sponsors gave more than 500?", "SELECT count(*) FROM sponsor WHERE amount > 500"),
    ("List the themes of all concerts.", "SELECT theme FROM concert"),
]


def concert_schema() -> Schema:
    tables = [
        Table(
            name,
            [
                Column(c, "number" if c.endswith(("id", "age", "year")) else "text", c.replace("_", " "))
                for c in cols
            ],
            [[cols[0]]],
            name,
        )
        for name, cols in TABLES.items()
    ]
    fks = [
        ForeignKey("concert", "stadium_id", "stadium", "stadium_id"),
        ForeignKey("song", "singer_id", "singer", "singer_id"),
        ForeignKey("ticket", "concert_id", "concert", "concert_id"),
    ]
    return Schema("concert_singer", tables, fks)


def examples(count: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        question, sql = QUESTIONS[i % len(QUESTIONS)] if i < len(QUESTIONS) else rng.choice(QUESTIONS)
        history = [QUESTIONS[(i + 1) % len(QUESTIONS)]] if i % 4 == 3 else []
        out.append(Example(f"ex{i}", "concert_singer", question, sql, history=history, source="test"))
    return out


def make_dataset(folder: Path, name: str = "tiny_train", count: int = 24, prompt_format: str = "ddl") -> Path:
    """Register a dataset of `count` examples over one six-table database in `folder`."""
    args = PromptArguments(prompt_format=prompt_format)
    schema = concert_schema()
    data = SourceData(examples(count), {schema.db_id: schema}, read=count)
    result = build_records(data, args)
    info = {
        "source": "test",
        "split": "train",
        "prompt": args.__dict__.copy(),
        "tables": None,
        "db_dir": None,
    }
    write_dataset(folder, name, result, info)
    return folder


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from sqltune.data.prompts import build_prompt

    corpus = [q + " " + s for q, s in QUESTIONS]
    schema = concert_schema()
    for fmt in ("ddl", "dbgpt"):
        for example in examples(len(QUESTIONS)):
            corpus.append(build_prompt(example, schema, PromptArguments(prompt_format=fmt)).text)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        bos_token="<|endoftext|>",
        chat_template=CHATML,
    )


def llama_config(tokenizer, hidden: int = 32, **overrides):
    """The tiny models' shape: a two-layer Llama over `tokenizer`'s vocabulary and special tokens."""
    from transformers import LlamaConfig

    settings = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return LlamaConfig(**{**settings, **overrides})


def build_model_dir(folder: Path, hidden: int = 32, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    config = llama_config(tokenizer, hidden, max_position_embeddings=2048, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train_options(model_dir, data_dir, out, *extra: str, **settings) -> list[str]:
    """`sqltune train` options for a model on the tiny dataset (`make_dataset`'s tiny_train), logging
    every step and saving nothing; then `settings` as key=value, then `extra` as given."""
    return [
        f"model_name_or_path={model_dir}",
        f"dataset_dir={data_dir}",
        "dataset=tiny_train",
        f"output_dir={out}",
        "logging_steps=1",
        "save_strategy=no",
        *(f"{key}={value}" for key, value in settings.items()),
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def tiny_data_dir(tmp_path) -> Path:
    return make_dataset(tmp_path / "data")
