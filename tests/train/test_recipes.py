"""Every recipe under configs/ loads and validates; the DeepSpeed configs are well-formed."""

import json
from pathlib import Path

import pytest

from sqltune.config import load_yaml, parse_args
from sqltune.models.templates import get_template
from sqltune.train.command import GROUPS

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# `sqltune run` recipes (a top-level `source:`) are validated by tests/pipeline/test_run_recipes.py
RECIPES = sorted(
    p for p in CONFIGS.glob("**/*.yaml") if p.parent.name != "deepspeed" and "source" not in load_yaml(p)
)
DEEPSPEED = sorted((CONFIGS / "deepspeed").glob("*.json"))


def test_the_promised_recipes_exist():
    names = {p.name for p in RECIPES}
    assert {
        "quickstart_lora.yaml",
        "spider_smollm2_lora.yaml",
        "spider_qlora_gpu.yaml",
        "spider_full.yaml",
        "spider_freeze.yaml",
    } <= names
    assert {p.name for p in DEEPSPEED} == {"ds_z2.json", "ds_z3.json", "ds_z3_offload.json"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_validates(recipe):
    model, data, finetuning, training = parse_args(GROUPS, [str(recipe)])
    assert data.dataset_names, "a recipe names its dataset"
    assert training.output_dir.startswith("saves/")
    get_template(model.template)  # a known template name (or auto)
    if model.quantization_bit:
        assert finetuning.finetuning_type == "lora", "QLoRA is LoRA on a quantised base"
    if "gpu" not in recipe.name:
        assert model.model_name_or_path == "smollm2-135m" and not model.quantization_bit


@pytest.mark.parametrize("path", DEEPSPEED, ids=lambda p: p.name)
def test_deepspeed_configs(path):
    config = json.loads(path.read_text())
    stage = config["zero_optimization"]["stage"]
    assert stage == (2 if "z2" in path.name else 3)
    assert ("offload_param" in config["zero_optimization"]) == ("offload" in path.name)
    assert config["train_micro_batch_size_per_gpu"] == "auto"  # filled in from the Trainer's arguments


@pytest.mark.parametrize("path", DEEPSPEED, ids=lambda p: p.name)
def test_deepspeed_config_passes_through_to_the_trainer(path):
    pytest.importorskip(
        "deepspeed", reason="DeepSpeed is an optional extra: pip install 'sqltune[deepspeed]'"
    )
    training = parse_args(GROUPS, [f"deepspeed={path}", "per_device_train_batch_size=4"])[3]
    assert training.hf_deepspeed_config.config["zero_optimization"]["stage"] in (2, 3)
    assert training.hf_deepspeed_config.config["train_micro_batch_size_per_gpu"] == 4
