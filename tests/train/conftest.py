"""Fixtures of the training tests: the tiny model and datasets of `tests.tiny`, and pairwise data."""

import json

import pytest

from tests.tiny import QUESTIONS, make_dataset, tiny_data_dir, tiny_model_dir, tiny_tokenizer  # noqa: F401


@pytest.fixture
def pair_data(tmp_path):
    """The tiny dataset plus a LLaMA-Factory style ranking dataset: gold SQL over another question's."""
    data = make_dataset(tmp_path / "data", count=8)
    rows = [
        {
            "instruction": "Write the SQL query for the question.\n",
            "input": question,
            "chosen": sql,
            "rejected": QUESTIONS[(i + 1) % len(QUESTIONS)][1],
        }
        for i, (question, sql) in enumerate(QUESTIONS)
    ]
    (data / "tiny_pairs.json").write_text(json.dumps(rows))
    registry = json.loads((data / "dataset_info.json").read_text())
    registry["tiny_pairs"] = {
        "file_name": "tiny_pairs.json",
        "ranking": True,
        "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"},
    }
    (data / "dataset_info.json").write_text(json.dumps(registry))
    return data
