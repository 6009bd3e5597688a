"""Every recipe under configs/, run the way a newcomer runs it in a fresh clone (no registered
dataset, no ../shared): it runs, or stops with one line that says what to run or give first.

The tiny model stands in for the recipe's model and everything is cut to a step or two: what is
checked is what the recipe needs before it can train, not the training itself.
"""

import json
from pathlib import Path

import pytest

from sqltune.cli import main as cli
from sqltune.config import load_yaml
from tests.tiny import tiny_model_dir  # noqa: F401

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted(CONFIGS.glob("*.yaml"))
TINY_TRAINING = ["max_steps=1", "per_device_train_batch_size=2", "save_strategy=no", "logging_steps=1"]
TINY_RUN = ["train_limit=4", "eval_limit=2", "max_new_tokens=4", "infer_batch_size=2"]
SPIDER_TRAIN = (
    "build it first: sqltune data source=spider data_dir=<spider folder> split=train output_dir=data"
)
# what a newcomer sees for the recipes that cannot run on their own; any other recipe must run
NEEDS = {
    "spider_smollm2_lora.yaml": SPIDER_TRAIN,
    "spider_full.yaml": SPIDER_TRAIN,
    "spider_freeze.yaml": SPIDER_TRAIN,
    "spider_smollm2.yaml": "spider_dir=../shared/data/spider: no such folder; this recipe needs Spider",
    "own_database.yaml": "source=synth needs db=",
    "spider_qlora_gpu.yaml": SPIDER_TRAIN,  # on a GPU; without one it says that it needs one
}


# a recipe's later stages, cut to a step each; the tiny tokenizer (320 tokens) needs longer sequences
TINY_STAGE = {"max_steps": 1, "per_device_train_batch_size": 2, "logging_steps": 1}
TINY_STAGE_KEYS = {
    "grpo": {"num_generations": 2, "max_completion_length": 4},
    "ppo": {"max_completion_length": 4, "ppo_epochs": 1},
}


def tiny_stages(recipe: Path, folder: Path) -> Path:
    """The recipe with its `stages` cut to a step each (same stages, same order, same data)."""
    import yaml

    config = load_yaml(recipe)
    for entry in config["stages"]:
        entry.update(TINY_STAGE, **TINY_STAGE_KEYS.get(entry["stage"], {}))
        if "pairs" in entry:
            entry["pairs"].update(num_candidates=2, max_new_tokens=4, limit=4)
    copy = folder / recipe.name
    copy.write_text(yaml.safe_dump(config))
    return copy


def newcomer_command(recipe: Path, model: Path) -> list[str]:
    """The recipe's command with the tiny model and tiny sizes; outputs go to the working folder."""
    command = "run" if "source" in load_yaml(recipe) else "train"
    tiny = TINY_TRAINING + (TINY_RUN if command == "run" else [])
    if load_yaml(recipe).get("stages"):
        recipe, tiny = tiny_stages(recipe, Path.cwd()), [*tiny, "cutoff_len=2048"]
    return [command, str(recipe), f"model_name_or_path={model}", "output_dir=out", *tiny]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_a_recipe_runs_or_says_what_it_needs_first(recipe, tiny_model_dir, tmp_path, monkeypatch, capfd):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    status = cli(newcomer_command(recipe, tiny_model_dir))
    said = capfd.readouterr().err
    errors = [line for line in said.splitlines() if ": error: " in line]
    needs = NEEDS.get(recipe.name)
    if load_yaml(recipe).get("quantization_bit") and not cuda_available():
        needs = "needs a CUDA GPU"
    if needs:
        assert status == 2 and len(errors) == 1 and needs in errors[0], errors
    else:
        assert status == 0, errors
        assert (tmp_path / "out" / "sqltune_run.json").is_file()
        dataset = load_yaml(recipe).get("dataset")  # a train recipe's dataset, built when missing
        assert not dataset or f"dataset '{dataset}' is not registered in data: building it" in said
        stages = [entry["stage"] for entry in load_yaml(recipe).get("stages", [])]
        if stages:  # every later stage trained and scored
            report = json.loads((tmp_path / "out" / "report.json").read_text())
            assert [entry["stage"] for entry in report["stages"].values()] == stages


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
