"""Integration: the quickstart recipe trains the embedded SmolLM2-135M on a small Text-to-SQL set
(built here in place of the demo data), the loss falls, and the adapter reloads for inference."""

import json
from pathlib import Path

import pytest
import torch

from sqltune.args import ModelArguments
from sqltune.cli import main as cli
from sqltune.models.encoding import encode_example
from sqltune.models.loading import load_for_inference, load_model
from sqltune.models.templates import get_template
from sqltune.train.data import read_samples
from tests.tiny import make_dataset

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "quickstart_lora.yaml"


def loss_on(model, tokenizer, sample) -> float:
    ids, labels = encode_example(sample.prompt, sample.response, get_template("hf", tokenizer), tokenizer)
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()


@pytest.mark.slow
def test_quickstart_recipe_on_smollm2(tmp_path):
    data = make_dataset(tmp_path / "data", "demo_train", count=8, prompt_format="dbgpt")
    out = tmp_path / "run"
    overrides = [
        "max_steps=5",
        "per_device_train_batch_size=2",
        "logging_steps=1",
        "warmup_steps=0",
        "lr_scheduler_type=constant",
        "learning_rate=2e-3",
        "save_steps=100",
    ]
    assert cli(["train", str(RECIPE), f"dataset_dir={data}", f"output_dir={out}", *overrides]) == 0
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [row["loss"] for row in state["log_history"] if "loss" in row]
    assert len(losses) == 5 and sum(losses[-2:]) / 2 < losses[0] - 0.3, losses

    model, tokenizer, card = load_for_inference(out)
    assert card.template == "hf" and card.model_name_or_path == "smollm2-135m"
    assert Path(card.base_model, "config.json").is_file()
    assert card.metrics["train_tokens_per_second"] > 0
    sample = read_samples(data, "demo_train")[0]
    base = load_model(ModelArguments(model_name_or_path=card.base_model))
    assert loss_on(model, tokenizer, sample) < loss_on(base, tokenizer, sample) - 0.3
