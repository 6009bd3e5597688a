"""`sqltune train stage=pt` end to end on a tiny model: packing, training, reload, predict; user errors."""

import json
import math

import pytest

from sqltune.cli import main as cli
from sqltune.config import parse_args
from sqltune.models.loading import load_for_inference
from sqltune.runcard import RunCard
from sqltune.train import pretrain
from sqltune.train.command import GROUPS
from tests.tiny import QUESTIONS, make_dataset

CUTOFF = 32


def corpus_texts(repeats: int = 4) -> list[str]:
    """A small corpus the tiny tokenizer knows, repeated so that a few steps can learn it."""
    return [f"-- {question}\n{sql};" for question, sql in QUESTIONS] * repeats


def register(data_dir, name: str, entry: dict) -> None:
    path = data_dir / "dataset_info.json"
    registry = json.loads(path.read_text())
    registry[name] = entry
    path.write_text(json.dumps(registry))


@pytest.fixture
def pt_data(tmp_path):
    """The tiny SFT dataset (for predict) and a pt corpus in LLaMA-Factory's format (JSON lines)."""
    data = make_dataset(tmp_path / "data", count=8)
    lines = [json.dumps({"text": text}) for text in corpus_texts()]
    (data / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    register(data, "corpus", {"file_name": "corpus.jsonl", "columns": {"prompt": "text"}})
    return data


def train_args(model_dir, data_dir, out, *extra: str) -> list[str]:
    return [
        "train",
        "stage=pt",
        f"model_name_or_path={model_dir}",
        f"dataset_dir={data_dir}",
        "dataset=corpus",
        f"output_dir={out}",
        f"cutoff_len={CUTOFF}",
        "per_device_train_batch_size=4",
        "logging_steps=1",
        "save_strategy=no",
        "learning_rate=1e-2",
        *extra,
    ]


def losses(run_dir) -> list[float]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return [row["loss"] for row in history if "loss" in row]


def test_pack_cuts_the_eos_separated_stream_into_equal_blocks(tiny_tokenizer):
    texts = ["SELECT name FROM singer", "", "SELECT count(*) FROM concert WHERE year = 2014"]
    blocks, stats = pretrain.pack(texts, tiny_tokenizer, 5)
    stream = []
    for text in (texts[0], texts[2]):
        stream += tiny_tokenizer(text, add_special_tokens=False)["input_ids"] + [tiny_tokenizer.eos_token_id]
    assert all(len(block) == 5 for block in blocks) and len(blocks) == len(stream) // 5
    assert sum(blocks, []) == stream[: len(blocks) * 5]  # in order, the tail dropped
    assert stats == {
        "texts": 2,
        "empty_texts": 1,
        "tokens": len(stream),
        "blocks": len(stream) // 5,
        "tokens_dropped": len(stream) % 5,
    }


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize("columns", [{"columns": {"prompt": "content"}}, {}])
def test_texts_load_from_json_and_jsonl_with_or_without_columns(tmp_path, suffix, columns):
    field = columns["columns"]["prompt"] if columns else "text"
    rows = [{field: text, "source": "test"} for text in corpus_texts(1)]
    path = tmp_path / f"pt{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"pt": {"file_name": path.name, **columns}}))
    assert pretrain.read_texts(tmp_path, "pt") == corpus_texts(1)
    assert pretrain.read_texts(tmp_path, "pt", max_samples=3) == corpus_texts(1)[:3]


def test_blocks_are_cutoff_len_long_and_labelled_with_their_own_ids(
    tiny_model_dir, tiny_tokenizer, pt_data, tmp_path
):
    from sqltune.models.templates import get_template

    argv = train_args(tiny_model_dir, pt_data, tmp_path / "run")[1:]
    model_args, data_args, finetuning_args, training_args = parse_args(GROUPS, argv)
    template = get_template(model_args.template, tiny_tokenizer)
    stage = pretrain.build(model_args, data_args, finetuning_args, training_args, template, tiny_tokenizer)
    stats = stage.data_stats["corpus"]
    assert stats["texts"] == len(corpus_texts()) and stats["blocks"] == stats["tokens"] // CUTOFF
    dataset = stage.trainer.train_dataset
    assert stage.train_examples == len(dataset) == stats["blocks"]
    assert all(len(row["input_ids"]) == CUTOFF and row["labels"] == row["input_ids"] for row in dataset)
    batch = next(iter(stage.trainer.get_train_dataloader()))
    assert tuple(batch["input_ids"].shape) == (4, CUTOFF)
    assert batch["labels"].equal(batch["input_ids"])  # a loss on every token, no padding


def test_pt_trains_reloads_and_predicts(tiny_model_dir, pt_data, tmp_path):
    out = tmp_path / "pt"
    assert cli(train_args(tiny_model_dir, pt_data, out, "finetuning_type=full", "max_steps=8")) == 0
    card = RunCard.load(out)
    assert card.stage == "pt" and card.datasets == ["corpus"] and card.finetuning_type == "full"
    assert card.stage_settings["block_size"] == CUTOFF and card.stage_settings["tail"] == "dropped"
    assert card.prompt_format is None  # plain text: no prompt format of its own
    stats = card.data_stats["corpus"]
    assert stats["tokens_dropped"] == stats["tokens"] - stats["blocks"] * CUTOFF
    assert card.metrics["train_tokens"] == 8 * 4 * CUTOFF  # every block is CUTOFF tokens, no padding
    logged = losses(out)
    assert len(logged) == 8 and all(math.isfinite(loss) for loss in logged)
    assert sum(logged[-2:]) / 2 < sum(logged[:2]) / 2 - 0.3, logged  # it learns the repeated corpus
    _, _, loaded = load_for_inference(out)
    assert loaded.stage == "pt"
    predictions = tmp_path / "predictions.jsonl"
    argv = ["predict", f"run_dir={out}", f"dataset_dir={pt_data}", "dataset=tiny_train"]
    assert cli([*argv, "max_samples=2", "max_new_tokens=8", f"output={predictions}"]) == 0
    assert len(predictions.read_text().splitlines()) == 2


def test_sft_continues_a_lora_pt_run(tiny_model_dir, pt_data, tmp_path):
    pt = tmp_path / "pt"
    assert cli(train_args(tiny_model_dir, pt_data, pt, "max_steps=2")) == 0
    model, _, loaded = load_for_inference(pt)
    assert loaded.stage == "pt" and list(model.peft_config) == ["default"]
    sft = tmp_path / "sft"
    argv = ["train", f"adapter_name_or_path={pt}", f"dataset_dir={pt_data}", "dataset=tiny_train"]
    argv += [f"output_dir={sft}", "max_steps=2", "per_device_train_batch_size=2", "save_strategy=no"]
    assert cli(argv) == 0
    card = RunCard.load(sft)
    assert card.stage == "sft" and card.base_model == str(tiny_model_dir) and card.prompt_format == "ddl"
    assert card.stage_settings["started_from"] == str(pt.resolve())


@pytest.mark.parametrize(
    "lines, extra, message",
    [
        (
            ['{"text": "SELECT 1"}', "", '{"content": "SELECT 2"}'],
            [],
            "corpus.jsonl: line 3: expected a text",
        ),
        (['{"text": "SELECT 1"}', '{"text": 2'], [], "corpus.jsonl: malformed JSON at line 2"),
        (['{"text": "SELECT 1"}'], [], "not one block of cutoff_len=32"),
        (
            ['{"text": "SELECT 1"}'],
            ["dataset=tiny_train"],
            "stage=pt trains on plain text: dataset 'tiny_train'",
        ),
        (['{"text": "SELECT 1"}'], ["packing=true"], "stage=pt always packs texts"),
    ],
)
def test_pt_user_errors_are_one_line(tiny_model_dir, pt_data, tmp_path, capsys, lines, extra, message):
    (pt_data / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    assert cli(train_args(tiny_model_dir, pt_data, tmp_path / "run", "max_steps=1", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run" / "sqltune_run.json").exists()
