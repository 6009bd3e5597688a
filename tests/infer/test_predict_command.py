"""`sqltune predict` end to end on the tiny model: output file, resuming, run cards, errors."""

import json

import pytest

from sqltune.cli import main as cli
from sqltune.data.prompts import build_prompt
from sqltune.data.records import load_dataset
from sqltune.files import read_jsonl
from sqltune.infer.hf import HfEngine
from sqltune.models.encoding import encode_prompt
from sqltune.models.templates import get_template
from sqltune.runcard import RunCard
from tests.tiny import make_dataset


def predict(*argv: str) -> int:
    return cli(["predict", "max_new_tokens=6", "infer_dtype=float32", *argv])


def test_predictions_file_resume_and_spider_format(diverse_model_dir, db_data_dir, tmp_path, capsys):
    out = tmp_path / "preds.jsonl"
    base = [f"model_name_or_path={diverse_model_dir}", f"dataset_dir={db_data_dir}", "dataset=concert_dev"]
    assert predict(*base, f"output={out}", "batch_size=4", "--format", "spider") == 0
    rows = read_jsonl(out)
    dataset = load_dataset(db_data_dir, "concert_dev")
    assert [r["index"] for r in rows] == list(range(6))
    assert [(r["db_id"], r["question"]) for r in rows] == [(e.db_id, e.question) for e in dataset.examples]
    assert all(r["new_tokens"] <= 6 and r["prompt_tokens"] > 0 and r["seconds"] > 0 for r in rows)
    assert all(isinstance(r["raw"], str) and "\n" not in r["sql"] for r in rows)
    lines = out.with_suffix(".sql").read_text().split("\n")[:-1]
    # multi-turn (example 3 continues example 2): a blank line before every other first turn
    assert [i for i, line in enumerate(lines) if not line] == [1, 3, 6, 8] and len(lines) == 10
    assert "questions/s" in capsys.readouterr().err

    kept = rows[:2]  # as if the run had stopped after its first answers
    out.write_text("".join(json.dumps(r) + "\n" for r in kept))
    assert predict(*base, f"output={out}") == 0
    assert "6 (4 answered now)" in capsys.readouterr().err
    resumed = read_jsonl(out)
    assert resumed[:2] == kept and [r["sql"] for r in resumed] == [r["sql"] for r in rows]

    other = make_dataset(tmp_path / "other", "tiny_dev", 3)  # fewer questions than the file answers
    assert (
        predict(
            f"model_name_or_path={diverse_model_dir}",
            f"dataset_dir={other}",
            "dataset=tiny_dev",
            f"output={out}",
        )
        == 2
    )
    assert "holds predictions for other questions" in capsys.readouterr().err


def test_an_interrupted_run_keeps_every_finished_batch(diverse_model_dir, db_data_dir, tmp_path, monkeypatch):
    out = tmp_path / "preds.jsonl"
    generate = HfEngine.generate

    def stop_after_one_batch(self, *args, **kwargs):
        batches = generate(self, *args, **kwargs)
        yield next(batches)
        raise KeyboardInterrupt

    monkeypatch.setattr(HfEngine, "generate", stop_after_one_batch)
    argv = [f"model_name_or_path={diverse_model_dir}", f"dataset_dir={db_data_dir}", "dataset=concert_dev"]
    assert predict(*argv, f"output={out}", "batch_size=4") == 130
    assert len(read_jsonl(out)) == 4 and not list(tmp_path.glob(".*tmp"))


def test_a_run_directory_brings_its_template_prompt_format_and_budget(tiny_run, tmp_path):
    data = make_dataset(tmp_path / "data", "tiny_dev", 5, prompt_format="dbgpt")
    out = tmp_path / "preds.jsonl"
    assert predict(f"run_dir={tiny_run}", f"dataset_dir={data}", "dataset=tiny_dev", f"output={out}") == 0
    card = RunCard.load(tiny_run)
    assert card.prompt_format == "ddl"
    dataset = load_dataset(data, "tiny_dev")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_run)
    template = get_template(card.template, tokenizer)
    for row, example in zip(read_jsonl(out), dataset.examples):
        prompt = build_prompt(
            example, dataset.schemas[example.db_id], dataset.prompt_args.__class__(prompt_format="ddl")
        )
        assert row["prompt_tokens"] == len(encode_prompt(prompt, template, tokenizer))
    # a budget too small for the full schema shortens it, as training would
    assert (
        predict(
            f"run_dir={tiny_run}",
            f"dataset_dir={data}",
            "dataset=tiny_dev",
            f"output={tmp_path / 'short.jsonl'}",
            "cutoff_len=200",
        )
        == 0
    )
    short = [s["prompt_tokens"] for s in read_jsonl(tmp_path / "short.jsonl")]
    full = [r["prompt_tokens"] for r in read_jsonl(out)]
    assert all(s < f for s, f in zip(short, full)) and sum(s <= 200 - 6 for s in short) == 4  # 1 too long


def test_execution_guided_decoding_records_its_candidates(diverse_model_dir, db_data_dir, tmp_path):
    out = tmp_path / "preds.jsonl"
    argv = [f"model_name_or_path={diverse_model_dir}", f"dataset_dir={db_data_dir}", "dataset=concert_dev"]
    assert predict(*argv, f"output={out}", "decoding=execution_guided", "num_candidates=3") == 0
    for row in read_jsonl(out):
        assert len(row["candidates"]) == 3 and row["chosen_by"] == "none executable"  # random weights
        assert row["sql"] == row["candidates"][0]["sql"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["dataset=nope"], "dataset 'nope' is not registered"),
        ([], "dataset: give the registered dataset"),
        (["dataset=concert_dev", "run_dir=x", "model_name_or_path=y"], "give run_dir"),
        (["dataset=concert_dev", "run_dir=/nonexistent"], "not a sqltune run directory"),
        (["dataset=concert_dev", "infer_backend=vllm"], "infer_backend=vllm needs"),
        (["dataset=concert_dev", "infer_backend=tgi"], "infer_backend: unknown 'tgi'"),
        (["dataset=concert_dev", "decoding=vote"], "decoding: unknown 'vote'"),
        (["dataset=concert_dev", "cutoff_len=12"], "leaves no room for a prompt"),
    ],
)
def test_user_errors_exit_2(diverse_model_dir, db_data_dir, tmp_path, capsys, argv, message):
    base = [
        f"model_name_or_path={diverse_model_dir}",
        f"dataset_dir={db_data_dir}",
        f"output={tmp_path / 'p.jsonl'}",
    ]
    if any(a.startswith(("model_name_or_path", "run_dir")) for a in argv):
        base = base[1:]
    assert predict(*base, *argv) == 2
    assert message in capsys.readouterr().err
