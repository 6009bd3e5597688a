"""`stage=ppo`: the math against numbers worked out by hand, and the stage end to end on a tiny model."""

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from sqltune.models.loading import load_for_inference
from sqltune.runcard import RunCard
from sqltune.train.ppo import RolloutSampler, until_stop
from sqltune.train.ppo_math import (
    compute_rewards,
    gae,
    masked_whiten,
    pack_sequences,
    policy_loss,
    value_loss,
)
from tests.train.test_stages import predict_runs, train

# A fixed batch of two answers: three tokens, and two tokens plus one of padding. The padded
# position holds wild numbers that must never count.
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


# ---- the math, by hand -----------------------------------------------------------------------------


def test_rewards_are_the_kl_penalty_plus_the_score_at_the_last_token():
    scores = torch.tensor([1.0, -2.0])
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, 9.0]])
    ref_logprobs = torch.tensor([[-1.5, -2.0, -1.0], [-0.5, -1.0, 0.0]])
    rewards, kl = compute_rewards(scores, logprobs, ref_logprobs, MASK, kl_coef=0.1)
    # kl = logp - logp_ref: [0.5, 0, 0.5] and [-0.5, 0, padding]
    assert torch.allclose(kl, torch.tensor([[0.5, 0.0, 0.5], [-0.5, 0.0, 0.0]]))
    # -0.1 * kl per token; the score lands on token 3 of answer 1 and token 2 of answer 2
    expected = torch.tensor([[-0.05, 0.0, -0.05 + 1.0], [0.05, 0.0 - 2.0, 0.0]])
    assert torch.allclose(rewards, expected)


def test_gae_runs_backwards_and_stops_at_the_end_of_each_answer():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 7.0]])
    advantages, returns = gae(rewards, values, MASK, gamma=1.0, lam=0.5)
    # answer 1: delta_3 = 1 - 0.5 = 0.5; delta_2 = 0 + 0.5 - 0.5 = 0; delta_1 = 0
    #   A_3 = 0.5, A_2 = 0 + 0.5 * 0.5 = 0.25, A_1 = 0 + 0.5 * 0.25 = 0.125
    # answer 2 ends at token 2 (V after it is 0): delta_2 = 2 - 1 = 1, delta_1 = 0 + 1 - 1 = 0
    #   A_2 = 1, A_1 = 0.5 * 1 = 0.5
    assert torch.allclose(advantages, torch.tensor([[0.125, 0.25, 0.5], [0.5, 1.0, 0.0]]))
    assert torch.allclose(returns, torch.tensor([[0.625, 0.75, 1.0], [1.5, 2.0, 0.0]]))
    # discounting: gamma = 0.5, lam = 1 on answer 1: A_3 = 0.5, A_2 = 0.5 * 0.5 - 0.5 + 0.5 * 0.5 = 0,
    # A_1 = 0.25 - 0.5 + 0.5 * 0 = -0.25
    advantages, _ = gae(rewards[:1], values[:1], MASK[:1], gamma=0.5, lam=1.0)
    assert torch.allclose(advantages, torch.tensor([[-0.25, 0.0, 0.5]]))


def test_policy_loss_clips_the_ratio_where_it_would_gain_too_much():
    old = torch.zeros(2, 3)
    logprobs = torch.tensor([[math.log(1.5), 0.0, math.log(0.5)], [math.log(2.0), 50.0, 0.0]])
    advantages = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, 0.0]])
    loss, clip_fraction, approx_kl = policy_loss(logprobs, old, advantages, MASK, cliprange=0.2)
    # token by token, max(-A * r, -A * clip(r, 0.8, 1.2)):
    #   r = 1.5, A = 1:  max(-1.5, -1.2) = -1.2 (clipped)
    #   r = 1,   A = -1: max(1, 1) = 1
    #   r = 0.5, A = 1:  max(-0.5, -0.8) = -0.5
    #   r = 2,   A = -1: max(2, 1.2) = 2
    #   r = e^50 at token 2 of answer 2 is inside the answer: A = 1: max(-e^50, -1.2) = -1.2 (clipped)
    assert loss.item() == pytest.approx((-1.2 + 1 - 0.5 + 2 - 1.2) / 5)
    assert clip_fraction.item() == pytest.approx(2 / 5)
    halves = [
        0.5 * math.log(1.5) ** 2,
        0.0,
        0.5 * math.log(0.5) ** 2,
        0.5 * math.log(2.0) ** 2,
        0.5 * 50.0**2,
    ]
    assert approx_kl.item() == pytest.approx(sum(halves) / 5)


def test_policy_loss_ignores_padding():
    old = torch.zeros(2, 3)
    logprobs = torch.tensor([[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 1e4]])
    advantages = torch.tensor([[1.0, 1.0, 1.0], [-1.0, 1.0, 1e4]])
    loss, clip_fraction, approx_kl = policy_loss(logprobs, old, advantages, MASK, cliprange=0.2)
    # -1 three times, then max(2, 1.2) = 2 and -1; the padded position counts nothing
    assert loss.item() == pytest.approx((-1 - 1 - 1 + 2 - 1) / 5)
    assert clip_fraction.item() == 0.0
    assert approx_kl.item() == pytest.approx(0.5 * math.log(2.0) ** 2 / 5)


def test_value_loss_clips_values_that_move_too_far():
    values = torch.tensor([[1.0, 1.0, 0.0], [0.0, 3.0, 99.0]])
    old_values = torch.tensor([[0.5, 0.0, 0.0], [0.0, 3.0, 0.0]])
    returns = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    loss, clip_fraction = value_loss(values, old_values, returns, MASK, cliprange=0.2)
    # V_clipped = old + clip(V - old, -0.2, 0.2) = [0.7, 0.2, 0] and [0, 3, padding]
    # errors max((V - R)^2, (V_clipped - R)^2):
    #   max(1, 0.49) = 1; max(0, 0.64) = 0.64 (clipped); max(0, 0) = 0; max(1, 1) = 1; max(4, 4) = 4
    assert loss.item() == pytest.approx(0.5 * (1 + 0.64 + 0 + 1 + 4) / 5)
    assert clip_fraction.item() == pytest.approx(1 / 5)


def test_whitening_uses_the_answer_tokens_only():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 1000.0]])
    # mean of 1..5 = 3, population variance = (4 + 1 + 0 + 1 + 4) / 5 = 2
    expected = (torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 3.0]]) - 3) / math.sqrt(2) * MASK
    assert torch.allclose(masked_whiten(values, MASK), expected, atol=1e-6)
    kept_mean = masked_whiten(values, MASK, shift_mean=False)
    assert torch.allclose(kept_mean, (expected + 3) * MASK, atol=1e-6)


def test_sequences_line_up_prompt_and_answer():
    batch = pack_sequences([[5, 6, 7], [8]], [[1, 2], [3, 4, 9]], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1, 2, 0], [0, 0, 8, 3, 4, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 4], [0, 0, 0, 1, 2, 3]]
    assert batch["completion_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]
    assert until_stop([4, 2, 9, 2], stop_ids=[9]) == [4, 2, 9] and until_stop([4], [9]) == [4]


def test_sampler_repeats_each_rollout_once_per_micro_batch():
    sampler = RolloutSampler(size=5, rollout_size=2, repeats=3, seed=0)
    order = list(sampler)
    assert len(order) == len(sampler) == 12  # two rollouts of 2; the fifth question waits
    first, second = order[:2], order[6:8]
    assert order[:6] == first * 3 and order[6:] == second * 3 and not set(first) & set(second)
    assert list(sampler) == order  # seeded
    sampler.set_epoch(1)
    assert list(sampler) != order  # each epoch its own shuffle


# ---- the stage through the CLI ----------------------------------------------------------------------


def logged(run_dir) -> list[dict]:
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return [row for row in history if "loss" in row]


PPO = ["stage=ppo", "dataset=tiny_train", "max_completion_length=8", "ppo_epochs=2"]


def test_ppo_trains_on_the_execution_reward_and_predicts(tiny_model_dir, grpo_data, tmp_path):
    out = tmp_path / "ppo"
    # a rollout of 2 questions, trained on in 2 micro-batches of 1 per step, twice (ppo_epochs=2)
    batches = ["per_device_train_batch_size=1", "gradient_accumulation_steps=2"]
    assert train(tiny_model_dir, grpo_data, out, *PPO, *batches, "kl_coef=0.1") == 0
    card = RunCard.load(out)
    assert card.stage == "ppo" and card.prompt_format == "ddl"
    settings = card.stage_settings
    assert settings["ppo_epochs"] == 2 and settings["kl_coef"] == 0.1 and settings["rollout_size"] == 2
    assert settings["reward"] == "execution" and settings["optimizer_steps_per_rollout"] == 2
    assert settings["reference"] == "the base model (adapter disabled), no second copy of the weights"
    assert card.metrics["train_steps"] == 3 and math.isfinite(card.metrics["train_loss"])
    signals = card.metrics["stage_signals"]
    for key in ("reward", "kl", "policy_loss", "value_loss", "clip_fraction", "approx_kl", "entropy"):
        assert math.isfinite(signals[key]), key
    # 3 steps at 2 per rollout: two rollouts of 2 answers; a random model writes no SQL
    assert sum(signals["execution_outcomes"].values()) == 4 and signals["reward"] == -6.0
    rows = logged(out)
    assert len(rows) == 3 and all("value_loss" in row and "execution/no_query" in row for row in rows)
    # the first rollout's answers come from the new adapter, still equal to the base: no KL yet;
    # the first batch of every rollout is trained on where it was sampled: ratio 1, nothing clipped
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    for first_of_rollout in (rows[0], rows[2]):
        assert first_of_rollout["approx_kl"] < 1e-8 and first_of_rollout["clip_fraction"] == 0.0
    # the value head is trained, saved beside the adapter, and no part of it
    head = load_file(out / "value_head.safetensors")
    assert head["linear.weight"].abs().sum() > 0
    assert (out / "adapter_model.safetensors").is_file() and not (out / "ref").exists()
    model, _, loaded = load_for_inference(out)
    assert loaded.stage == "ppo" and list(model.peft_config) == ["default"]
    predict_runs(out, grpo_data, tmp_path)


def test_ppo_continues_an_sft_run_against_it(tiny_model_dir, grpo_data, tmp_path):
    sft = tmp_path / "sft"
    assert train(tiny_model_dir, grpo_data, sft, "dataset=tiny_train", "max_steps=2") == 0
    out = tmp_path / "ppo"
    options = [*PPO, f"adapter_name_or_path={sft}", "max_steps=2", "bf16=true"]
    assert train(None, grpo_data, out, *options) == 0
    card = RunCard.load(out)
    assert card.base_model == str(tiny_model_dir) and card.precision["used"] == "bf16"
    assert card.stage_settings["reference"].startswith("a frozen copy of the starting adapter")
    # the reference adapter stays frozen: the trained parameters are the SFT adapter's
    assert card.metrics["trainable_params"] == RunCard.load(sft).metrics["trainable_params"]
    # the reference is the SFT adapter as it was: the first rollout has no KL from it
    assert logged(out)[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == []  # the reference is not saved
    predict_runs(out, grpo_data, tmp_path)


def test_ppo_freeze_keeps_a_reference_copy_and_resumes_exactly(tiny_model_dir, grpo_data, tmp_path):
    options = [*PPO, "finetuning_type=freeze", "freeze_trainable_layers=1", "ppo_epochs=1", "max_steps=2"]
    whole = tmp_path / "whole"
    assert train(tiny_model_dir, grpo_data, whole, *options, "save_strategy=steps", "save_steps=1") == 0
    assert RunCard.load(whole).stage_settings["reference"] == "a separate copy of the starting model"
    assert (whole / "checkpoint-1" / "value_head.safetensors").is_file()
    # stop after step 1, resume: the same run as without the interruption
    resumed = tmp_path / "resumed"
    shutil.copytree(whole / "checkpoint-1", resumed / "checkpoint-1")
    assert train(tiny_model_dir, grpo_data, resumed, *options, "resume_from_checkpoint=true") == 0
    for name in ("value_head.safetensors", "model.safetensors"):
        expected, got = load_file(whole / name), load_file(resumed / name)
        assert all(torch.equal(expected[key], got[key]) for key in expected), name


def test_ppo_scores_with_a_reward_model(tiny_model_dir, pair_data, tmp_path):
    rm = tmp_path / "rm"
    assert train(tiny_model_dir, pair_data, rm, "stage=rm", "dataset=tiny_pairs", "max_steps=1") == 0
    out = tmp_path / "ppo"
    # tiny_train of pair_data has no databases: the reward model needs none
    assert train(tiny_model_dir, pair_data, out, *PPO, f"reward_model={rm}", "max_steps=2") == 0
    card = RunCard.load(out)
    assert card.stage_settings["reward"] == f"reward model {rm.resolve()}"
    signals = card.metrics["stage_signals"]
    assert "execution_outcomes" not in signals and math.isfinite(signals["reward"])
    assert signals["reward"] not in (-6.0, -4.0, 0.0, 6.0)  # a learnt score, not the execution ladder


@pytest.mark.parametrize(
    "options, message",
    [
        (["dataset=tiny_train"], "stage=ppo executes answers: dataset 'tiny_train' records no db_dir"),
        (["dataset=tiny_train", "reward_model=nowhere"], "reward_model: nowhere is not a run directory"),
        (["dataset=tiny_train", "ppo_epochs=0"], "ppo_epochs and ppo_buffer_size: must be >= 1"),
        (["dataset=tiny_train", "lam=2"], "gamma and lam: must be between 0 and 1"),
    ],
)
def test_ppo_user_errors_are_one_line(tiny_model_dir, pair_data, tmp_path, capsys, options, message):
    assert train(tiny_model_dir, pair_data, tmp_path / "run", "stage=ppo", *options) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run" / "sqltune_run.json").exists()


def test_ppo_needs_db_id_and_enough_questions(tiny_model_dir, grpo_data, tmp_path, capsys):
    registry = json.loads((grpo_data / "dataset_info.json").read_text())
    rows = [{"instruction": "SQL for:", "input": "How many singers?", "output": "SELECT 1"}] * 4
    (grpo_data / "plain.json").write_text(json.dumps(rows))
    registry["plain"] = {"file_name": "plain.json", "db_dir": registry["tiny_train"]["sqltune"]["db_dir"]}
    (grpo_data / "dataset_info.json").write_text(json.dumps(registry))
    assert train(tiny_model_dir, grpo_data, tmp_path / "a", "stage=ppo", "dataset=plain") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "sqltune train: error: stage=ppo executes answers and needs each question's db_id: dataset "
        "'plain' record 1 has none (or score with reward_model=<an rm run>)"
    ]
    options = ["stage=ppo", "dataset=tiny_train", "max_samples=3", "ppo_buffer_size=2"]
    assert train(tiny_model_dir, grpo_data, tmp_path / "b", *options) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ppo_buffer_size = 4 questions, the data has 3" in err[0], err
