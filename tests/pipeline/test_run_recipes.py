"""The `sqltune run` recipes under configs/ load and validate."""

from pathlib import Path

import pytest

from sqltune.config import load_yaml, parse_args
from sqltune.errors import ConfigError
from sqltune.pipeline.command import groups
from sqltune.pipeline.stages import plan_stages

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RUN_RECIPES = sorted(p for p in CONFIGS.glob("*.yaml") if "source" in load_yaml(p))


def test_the_promised_run_recipes_exist():
    assert {p.name for p in RUN_RECIPES} == {
        "quickstart.yaml",
        "quickstart_rl.yaml",
        "spider_smollm2.yaml",
        "own_database.yaml",
    }


@pytest.mark.parametrize("recipe", RUN_RECIPES, ids=lambda p: p.name)
def test_run_recipe_validates(recipe):
    database = ["db=shop.sqlite"] if load_yaml(recipe)["source"] == "synth" else []
    run, model, finetuning, training, prompt, generating = parse_args(groups(), [str(recipe), *database])
    assert training.output_dir.startswith("outputs/") and model.model_name_or_path == "smollm2-135m"
    assert run.source in ("demo", "spider", "synth") and finetuning.finetuning_type in (
        "lora",
        "freeze",
        "full",
    )
    assert generating.max_new_tokens <= 128 and run.cutoff_len <= 1024
    for plan in plan_stages(run.stages, type(training)):  # later stages: each entry checks out
        assert plan.stage in ("dpo", "grpo") and plan.start == "sft"


def test_spider_recipe_needs_its_folder():
    with pytest.raises(ConfigError, match="source=spider needs spider_dir"):
        parse_args(groups(), [str(CONFIGS / "spider_smollm2.yaml"), "spider_dir="])


def test_own_database_recipe_needs_the_database():
    with pytest.raises(ConfigError, match="source=synth needs db="):
        parse_args(groups(), [str(CONFIGS / "own_database.yaml")])
