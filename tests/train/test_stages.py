"""`sqltune train stage=dpo|grpo` end to end on a tiny model: train, reload, predict; and the user errors."""

import json
import math

import pytest

from sqltune.cli import main as cli
from sqltune.models.loading import load_for_inference
from sqltune.runcard import RunCard
from tests.tiny import QUESTIONS


def train(model_dir, data_dir, out, *extra: str) -> int:
    argv = [
        "train",
        f"dataset_dir={data_dir}",
        f"output_dir={out}",
        "cutoff_len=1024",
        "max_steps=3",
        "per_device_train_batch_size=2",
        "logging_steps=1",
        "save_strategy=no",
        "lora_rank=4",
        "learning_rate=1e-3",
        *extra,
    ]
    if model_dir is not None:
        argv.append(f"model_name_or_path={model_dir}")
    return cli(argv)


def predict_runs(run_dir, data_dir, tmp_path) -> None:
    output = tmp_path / "predictions.jsonl"
    argv = ["predict", f"run_dir={run_dir}", f"dataset_dir={data_dir}", "dataset=tiny_train"]
    argv += ["max_samples=2", "max_new_tokens=8", f"output={output}"]
    assert cli(argv) == 0
    assert len(output.read_text().splitlines()) == 2


def test_dpo_with_lora_trains_against_the_base_and_predicts(tiny_model_dir, pair_data, tmp_path):
    out = tmp_path / "dpo"
    assert train(tiny_model_dir, pair_data, out, "stage=dpo", "dataset=tiny_pairs", "beta=0.2") == 0
    card = RunCard.load(out)
    assert card.stage == "dpo" and card.datasets == ["tiny_pairs"]
    assert card.stage_settings["beta"] == 0.2 and card.stage_settings["loss_type"] == ["sigmoid"]
    assert (
        card.stage_settings["reference"] == "the base model (adapter disabled), no second copy of the weights"
    )
    assert card.metrics["train_steps"] == 3 and math.isfinite(card.metrics["train_loss"])
    assert card.data_stats["tiny_pairs"]["kept"] == len(QUESTIONS)
    assert "rewards/margins" in card.metrics["stage_signals"]
    assert card.precision["used"] == "fp32" and card.arguments["gradient_checkpointing"] is False
    losses = [
        row["loss"]
        for row in json.loads((out / "trainer_state.json").read_text())["log_history"]
        if "loss" in row
    ]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert (out / "adapter_model.safetensors").is_file() and not (out / "ref").exists()
    model, _, loaded = load_for_inference(out)
    assert loaded.stage == "dpo" and list(model.peft_config) == ["default"]
    predict_runs(out, pair_data, tmp_path)


def test_dpo_with_pref_ftx_adds_the_chosen_answers_own_loss(tiny_model_dir, pair_data, tmp_path):
    """RPO: the preference loss plus pref_ftx x the chosen answer's NLL. At step 1 a new adapter is
    the reference, so the sigmoid loss is exactly ln 2 and the rest is the (large) NLL of the tiny model."""
    first_losses = {}
    for name, extra in (("plain", []), ("rpo", ["pref_ftx=0.5"])):
        out = tmp_path / name
        assert (
            train(tiny_model_dir, pair_data, out, "stage=dpo", "dataset=tiny_pairs", "max_steps=1", *extra)
            == 0
        )
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        first_losses[name] = next(row["loss"] for row in history if "loss" in row)
        settings = RunCard.load(out).stage_settings
    assert settings["loss_type"] == ["sigmoid", "sft"] and settings["loss_weights"] == [1.0, 0.5]
    assert first_losses["plain"] == pytest.approx(math.log(2), abs=1e-3)
    assert first_losses["rpo"] > first_losses["plain"] + 1.0


def test_dpo_continues_an_sft_run(tiny_model_dir, pair_data, tmp_path):
    sft = tmp_path / "sft"
    assert train(tiny_model_dir, pair_data, sft, "dataset=tiny_train", "max_steps=2") == 0
    out = tmp_path / "dpo"
    # the base model and template come from the SFT run's card
    options = ["stage=dpo", "dataset=tiny_pairs", f"adapter_name_or_path={sft}", "bf16=true"]
    assert train(None, pair_data, out, *options) == 0
    card = RunCard.load(out)
    assert card.base_model == str(tiny_model_dir) and card.template == RunCard.load(sft).template
    assert card.stage_settings["started_from"] == str(sft.resolve())
    assert card.stage_settings["reference"].startswith("a frozen copy of the starting adapter")
    assert card.prompt_format == "ddl"  # the SFT run's format: the pairs record none
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == []  # the reference adapter is not saved
    predict_runs(out, pair_data, tmp_path)


@pytest.mark.parametrize(
    "finetuning", [["finetuning_type=lora"], ["finetuning_type=freeze", "freeze_trainable_layers=1"]]
)
def test_grpo_trains_on_the_execution_reward_and_predicts(tiny_model_dir, grpo_data, tmp_path, finetuning):
    out = tmp_path / "grpo"
    options = [
        "stage=grpo",
        "dataset=tiny_train",
        "num_generations=2",
        "max_completion_length=8",
        *finetuning,
    ]
    # bf16: generation too must run under autocast, with bf16 frozen weights beside float32 trained ones
    assert train(tiny_model_dir, grpo_data, out, *options, "max_steps=2", "bf16=true") == 0
    card = RunCard.load(out)
    assert card.stage == "grpo" and card.prompt_format == "ddl" and card.precision["used"] == "bf16"
    settings = card.stage_settings
    assert settings["num_generations"] == 2 and settings["max_completion_length"] == 8
    assert settings["reward_weights"] == {"format": 1.0, "executes": 2.0, "match": 3.0}
    assert settings["reference"] == "none (beta=0)"
    assert card.metrics["train_steps"] == 2 and math.isfinite(card.metrics["train_loss"])
    signals = card.metrics["stage_signals"]
    # 2 steps x 2 completions; a random model writes no SQL
    assert sum(signals["execution_outcomes"].values()) == 4 and "reward" in signals
    predict_runs(out, grpo_data, tmp_path)


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["stage=rlhf"],
            "stage: unknown 'rlhf', choose one of pt, sft, rm, dpo, kto, orpo, simpo, ppo, grpo",
        ),
        (["stage=dpo", "dataset=tiny_train"], "stage=dpo needs pairwise data: dataset 'tiny_train'"),
        (
            ["stage=grpo", "dataset=tiny_train"],
            "stage=grpo executes answers: dataset 'tiny_train' records no db_dir",
        ),
        (["stage=grpo", "dataset=tiny_pairs", "num_generations=1"], "num_generations: must be >= 2"),
        (["stage=dpo", "dataset=tiny_pairs", "val_size=2"], "stage=dpo: val_size and eval_dataset are not"),
    ],
)
def test_stage_user_errors_are_one_line(tiny_model_dir, pair_data, tmp_path, capsys, options, message):
    assert train(tiny_model_dir, pair_data, tmp_path / "run", *options) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run" / "sqltune_run.json").exists()


def test_grpo_leaves_out_questions_whose_database_is_missing(tiny_model_dir, grpo_data, tmp_path, capsys):
    """Spider ships 3 of its databases without a file: their questions are counted and left out."""
    db_dir = json.loads((grpo_data / "dataset_info.json").read_text())["tiny_train"]["sqltune"]["db_dir"]
    rows = [
        {"instruction": "SQL for:", "input": q, "output": s, "db_id": "concert_singer"} for q, s in QUESTIONS
    ]
    rows[1]["db_id"] = rows[3]["db_id"] = "gone"
    (grpo_data / "mixed.json").write_text(json.dumps(rows))
    registry = json.loads((grpo_data / "dataset_info.json").read_text())
    registry["mixed"] = {"file_name": "mixed.json", "db_dir": db_dir}
    (grpo_data / "dataset_info.json").write_text(json.dumps(registry))
    options = ["stage=grpo", "dataset=mixed", "num_generations=2", "max_completion_length=8", "max_steps=1"]
    assert train(tiny_model_dir, grpo_data, tmp_path / "run", *options) == 0
    stats = RunCard.load(tmp_path / "run").data_stats["mixed"]
    assert stats["dropped_no_database"] == 2 and stats["kept"] == len(QUESTIONS) - 2
    assert "2 question(s) left out, no database in" in (tmp_path / "run" / "train.log").read_text()
    capsys.readouterr()
    for row in rows:
        row["db_id"] = "gone"
    (grpo_data / "mixed.json").write_text(json.dumps(rows))
    assert train(tiny_model_dir, grpo_data, tmp_path / "none", *options) == 2
    assert "no database for db_id 'gone'" in capsys.readouterr().err


def test_grpo_needs_db_id(tiny_model_dir, grpo_data, tmp_path, capsys):
    rows = [{"instruction": "SQL for:", "input": q, "output": s} for q, s in QUESTIONS[:4]]
    (grpo_data / "plain.json").write_text(json.dumps(rows))
    registry = json.loads((grpo_data / "dataset_info.json").read_text())
    registry["plain"] = {"file_name": "plain.json", "db_dir": registry["tiny_train"]["sqltune"]["db_dir"]}
    (grpo_data / "dataset_info.json").write_text(json.dumps(registry))
    assert (
        train(tiny_model_dir, grpo_data, tmp_path / "run", "stage=grpo", "dataset=plain", "num_generations=2")
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "sqltune train: error: stage=grpo needs each question's db_id: dataset 'plain' record 1 has none"
    ]


def test_grpo_runs_answers_on_a_server_for_a_dataset_in_its_dialect(
    tiny_model_dir, grpo_data, postgres_url, tmp_path, capsys
):
    from sqltune.db.load import load_databases

    registry = json.loads((grpo_data / "dataset_info.json").read_text())
    db_dir = registry["tiny_train"]["sqltune"]["db_dir"]
    load_databases(db_dir, postgres_url + "{db_id}")
    registry["tiny_train"]["sqltune"]["dialect"] = {"dialect": "postgres", "db_url": postgres_url + "{db_id}"}
    (grpo_data / "dataset_info.json").write_text(json.dumps(registry))
    options = ["stage=grpo", "dataset=tiny_train", "num_generations=2", "max_completion_length=8"]
    assert train(tiny_model_dir, grpo_data, tmp_path / "sqlite", *options, "max_steps=1") == 2
    assert "dataset 'tiny_train' holds postgres SQL, which runs only on its server" in capsys.readouterr().err
    url = postgres_url.replace("postgres@", "postgres:pw-not-saved@") + "{db_id}"
    assert (
        train(tiny_model_dir, grpo_data, tmp_path / "run", *options, "max_steps=1", f"reward_db_url={url}")
        == 0
    )
    card = RunCard.load(tmp_path / "run")
    assert card.stage_settings["db_url"] == url.replace("pw-not-saved", "***")
    assert sum(card.metrics["stage_signals"]["execution_outcomes"].values()) == 2
    assert "pw-not-saved" not in (tmp_path / "run" / "sqltune_run.json").read_text()
