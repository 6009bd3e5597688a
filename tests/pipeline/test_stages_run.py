"""`sqltune run` with later stages (`stages:`): each trained from the SFT run or an earlier entry,
each scored on the same dev questions, reported under `stages`; rerun reuses them; bad entries are
one-line errors naming the entry and key."""

import json
from pathlib import Path

import pytest
import yaml

from sqltune.cli import main as cli
from sqltune.errors import ConfigError
from sqltune.pipeline.stages import plan_stages
from sqltune.runcard import RunCard
from sqltune.train.arguments import TrainingArguments
from tests.infer.conftest import write_concert_db
from tests.pipeline.test_own_database import RECIPE, tiny_sizes  # noqa: F401
from tests.tiny import tiny_model_dir  # noqa: F401

GRPO_SMALL = {
    "max_steps": 1,
    "num_generations": 2,
    "per_device_train_batch_size": 2,
    "max_completion_length": 8,
    "logging_steps": 1,
}


def recipe_with(tmp_path: Path, stages: list) -> str:
    recipe = yaml.safe_load(Path(RECIPE).read_text())
    recipe["stages"] = stages
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_later_stages_train_from_sft_and_from_each_other_and_are_reported(tiny_sizes, tmp_path, capsys):  # noqa: F811
    db = write_concert_db(tmp_path / "shop.sqlite")
    out = tmp_path / "run"
    stages = [
        {"stage": "grpo", **GRPO_SMALL},
        {"stage": "grpo", "name": "grpo_again", "from": "grpo", **GRPO_SMALL, "learning_rate": 1e-3},
        {"stage": "dpo", "pairs": {"num_candidates": 2, "max_new_tokens": 8}, "max_steps": 1},
    ]
    argv = [
        "run",
        recipe_with(tmp_path, stages),
        f"db={db}",
        f"output_dir={out}",
        *tiny_sizes,
        "before=false",
    ]
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert "after grpo" in printed and "after grpo_again (grpo)" in printed and "after dpo" in printed

    report = json.loads((out / "report.json").read_text())
    assert set(report["stages"]) == {"grpo", "grpo_again", "dpo"}
    dpo = report["stages"].pop("dpo")  # pairs of the SFT run's own answers, 2 per question
    counts = json.loads((out / "data" / "dpo_pairs.counts.json").read_text())["counts"]
    assert counts["questions"] == 24 and counts["candidates"] == 48 and dpo["train"]["train_steps"] == 1
    assert "rewards/margins" in dpo["signals"] and RunCard.load(out / "stages" / "dpo").datasets == [
        "dpo_pairs"
    ]
    for name, entry in report["stages"].items():
        assert entry["stage"] == "grpo" and entry["n"] == report["after"]["n"] == 6
        assert 0.0 <= entry["ex"] <= 1.0 and entry["train"]["train_steps"] == 1
        assert sum(entry["signals"]["execution_outcomes"].values()) == 2  # one question, two answers
        assert (out / "predictions" / f"{name}.jsonl").is_file() and (out / "eval" / f"{name}.json").is_file()
        assert (out / "stages" / name / "stage_signals.png").stat().st_size > 1000  # reward etc. by step
    first, second = (RunCard.load(out / "stages" / name) for name in ("grpo", "grpo_again"))
    assert first.stage_settings["started_from"] == str(out.resolve())
    assert second.stage_settings["started_from"] == str((out / "stages" / "grpo").resolve())
    assert (
        second.arguments["learning_rate"] == 1e-3 and first.arguments["learning_rate"] == 1e-4
    )  # entry, default
    assert "Later stages" in (out / "report.md").read_text()

    stamp = (out / "stages" / "grpo" / "adapter_model.safetensors").stat().st_mtime_ns
    assert cli(argv) == 0  # rerun: everything reused
    assert "reusing the trained stage" in capsys.readouterr().err
    assert (out / "stages" / "grpo" / "adapter_model.safetensors").stat().st_mtime_ns == stamp


def test_a_reward_model_entry_scores_a_ppo_entry_and_is_not_asked(tiny_sizes, tmp_path, capsys):  # noqa: F811
    db = write_concert_db(tmp_path / "shop.sqlite")
    out = tmp_path / "run"
    stages = [
        {"stage": "rm", "pairs": {"num_candidates": 2, "max_new_tokens": 8}, "max_steps": 1},
        {"stage": "ppo", "reward_model": "rm", "max_steps": 1, "max_completion_length": 8, "ppo_epochs": 1},
    ]
    argv = [
        "run",
        recipe_with(tmp_path, stages),
        f"db={db}",
        f"output_dir={out}",
        *tiny_sizes,
        "before=false",
    ]
    assert cli(argv) == 0
    assert "after ppo" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["stages"]["rm"]["ex"] is None and "accuracy" in report["stages"]["rm"]["signals"]
    assert not (out / "predictions" / "rm.jsonl").exists() and report["stages"]["ppo"]["n"] == 6
    ppo = RunCard.load(out / "stages" / "ppo")
    assert ppo.arguments["reward_model"] == str(out / "stages" / "rm")
    assert "| rm | - | - | 1 |" in (out / "report.md").read_text()


def test_pt_on_the_training_databases_then_sft_again(tiny_sizes, tmp_path, capsys):  # noqa: F811
    db = write_concert_db(tmp_path / "shop.sqlite")
    out = tmp_path / "run"
    stages = [
        {"stage": "pt", "max_steps": 1, "logging_steps": 1},
        {"stage": "sft", "name": "sft_after_pt", "from": "pt", "max_steps": 1},
    ]
    argv = [
        "run",
        recipe_with(tmp_path, stages),
        f"db={db}",
        f"output_dir={out}",
        *tiny_sizes,
        "before=false",
    ]
    assert cli(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["stages"]["pt"]["stage"] == "pt" and report["stages"]["sft_after_pt"]["stage"] == "sft"
    assert report["stages"]["sft_after_pt"]["started_from"] == str((out / "stages" / "pt").resolve())
    corpus = [json.loads(line) for line in (out / "data" / "pt_corpus.jsonl").read_text().splitlines()]
    assert {row["kind"] for row in corpus} == {"schema", "questions"}
    assert all(row["db_id"] == "shop" for row in corpus)  # the training database only
    assert RunCard.load(out / "stages" / "pt").datasets == ["pt_corpus"]


@pytest.mark.parametrize(
    "stages, message",
    [
        ([{"stage": "rlhf"}], "stages[0].stage: unknown 'rlhf', choose one of pt, sft, rm,"),
        ([{"stage": "sft"}], "stages[0].name: 'sft' is taken"),
        (["grpo", "grpo"], "stages[1].name: 'grpo' is taken"),
        ([{"stage": "dpo", "from": "grpo"}], "stages[0].from: 'grpo' is neither sft nor an earlier entry"),
        ([{"stage": "grpo", "learning_rat": 1}], "stages[0].learning_rat: not a key a stage entry takes"),
        ([{"stage": "grpo", "max_steps": "many"}], "stages[0].max_steps"),
        ([{"name": "x"}], "stages[0]: give a stage name"),
        (["rm", {"stage": "dpo", "from": "rm"}], "stages[1].from: 'rm' is a reward model"),
        ([{"stage": "grpo", "reward_model": "x"}], "stages[0].reward_model: only a ppo entry"),
        (["grpo", {"stage": "ppo", "reward_model": "grpo"}], "stages[1].reward_model: 'grpo' is not an rm"),
    ],
)
def test_bad_stage_entries_are_one_line_errors(stages, message):
    with pytest.raises(ConfigError, match=None) as caught:
        plan_stages(stages, TrainingArguments)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_stage_names_on_the_command_line(tiny_sizes, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    argv = ["run", RECIPE, "db=missing.sqlite", f"output_dir={out}", *tiny_sizes, "stages=grpo,rlhf"]
    assert cli(argv) == 2
    assert "stages[1].stage: unknown 'rlhf'" in capsys.readouterr().err
    assert not out.exists()  # checked before any work
