"""Fixtures of the prediction tests: the tiny model, a SQLite copy of its database, a trained run."""

import sqlite3
from pathlib import Path

import pytest

from sqltune.args import PromptArguments
from sqltune.cli import main as cli
from sqltune.data.records import build_records, write_dataset
from sqltune.data.sources import SourceData
from tests.tiny import TABLES, concert_schema, examples, tiny_data_dir, tiny_model_dir, tiny_tokenizer  # noqa: F401

ROWS = {
    "singer": [(1, "Joe", "France", 30), (2, "Ann", "Spain", 41), (3, "Li", "France", 25)],
    "concert": [(1, "Spring", "pop", 1, 2014), (2, "Autumn", "rock", 2, 2015)],
    "stadium": [(1, "Paris", "Big", 5000), (2, "Madrid", "Small", 800)],
    "song": [(1, "Hey", 1, 150), (2, "Ho", 2, 90)],
    "ticket": [(1, 1, 20.5, "A1"), (2, 2, 35.0, "B2")],
    "sponsor": [(1, "Acme", 700), (2, "Beta", 300)],
}


def write_concert_db(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    for table, columns in TABLES.items():
        conn.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
        conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", ROWS[table])
    conn.commit()
    conn.close()
    return path


def make_db_dataset(folder: Path, name: str = "concert_dev", count: int = 6, prompt_format: str = "dbgpt"):
    """A registered dataset whose schema points at a real SQLite file (for execution)."""
    schema = concert_schema()
    schema.db_path = str(write_concert_db(folder / "db" / "concert_singer.sqlite"))
    args = PromptArguments(prompt_format=prompt_format)
    result = build_records(SourceData(examples(count), {schema.db_id: schema}, read=count), args)
    info = {"source": "test", "split": "dev", "prompt": args.__dict__.copy(), "tables": None, "db_dir": None}
    write_dataset(folder, name, result, info)
    return folder


@pytest.fixture
def db_data_dir(tmp_path) -> Path:
    return make_db_dataset(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_run(tiny_model_dir, tmp_path_factory) -> Path:  # noqa: F811
    """A LoRA run directory of the tiny model, trained a few steps on ddl prompts (once per session,
    also when another test module imports this fixture)."""
    from tests.tiny import make_dataset

    out = tmp_path_factory.getbasetemp() / "tiny-lora-run"
    if (out / "sqltune_run.json").is_file():
        return out
    data = make_dataset(tmp_path_factory.mktemp("run-data"), "tiny_train", 16, prompt_format="ddl")
    argv = [
        "train",
        f"model_name_or_path={tiny_model_dir}",
        f"dataset_dir={data}",
        "dataset=tiny_train",
        f"output_dir={out}",
        "max_steps=3",
        "per_device_train_batch_size=4",
        "learning_rate=5e-2",
        "lora_rank=4",
        "save_strategy=no",
        "logging_steps=1",
    ]
    assert cli(argv) == 0
    return out


@pytest.fixture(scope="session")
def diverse_model_dir(tmp_path_factory) -> Path:
    """The tiny model with large random weights, so greedy answers differ from question to question
    and some end early with the EOS token (the default initialisation repeats one token)."""
    import torch
    from transformers import LlamaForCausalLM

    from tests.tiny import build_tokenizer, llama_config

    folder = tmp_path_factory.mktemp("diverse-llama")
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = llama_config(tokenizer, initializer_range=0.5)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
