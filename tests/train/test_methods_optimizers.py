"""GaLore, APOLLO, BAdam and NEFTune (`sqltune.train.methods.optimizers`) on a tiny model built in the
test: each method really acts (low-rank optimizer state, one block trained per interval, noise in
training mode only), its run's loss is finite, the run reloads and predicts, and its user errors
are one line."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from sqltune.cli import main as cli
from sqltune.config import parse_args
from sqltune.errors import SqltuneWarning
from sqltune.runcard import RunCard
from sqltune.train.command import GROUPS, run_train
from tests.tiny import train_options

RANK = 4
ZERO2 = Path(__file__).resolve().parents[2] / "configs" / "deepspeed" / "ds_z2.json"


def options(model_dir, data_dir, out, *extra: str) -> list[str]:
    return train_options(
        model_dir,
        data_dir,
        out,
        *extra,
        cutoff_len=1024,
        per_device_train_batch_size=2,
        learning_rate="1e-3",
        finetuning_type="full",
        max_steps=2,
    )


def train_watched(argv: list[str], probe: TrainerCallback) -> RunCard:
    """`sqltune train` as the command runs it, with a callback that looks inside the Trainer."""
    return run_train(*parse_args(GROUPS, argv), extra_callbacks=[probe])


def check_run(out, data_dir, tmp_path, steps: int) -> RunCard:
    """The run finished with finite losses, reloads, and answers questions."""
    card = RunCard.load(out)
    assert card.metrics["train_steps"] == steps and math.isfinite(card.metrics["train_loss"])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [row["loss"] for row in history if "loss" in row]
    assert len(losses) == steps and all(math.isfinite(loss) for loss in losses)
    predictions = tmp_path / f"{out.name}-predictions.jsonl"
    argv = ["predict", f"run_dir={out}", f"dataset_dir={data_dir}", "dataset=tiny_train"]
    assert cli([*argv, "max_samples=2", "max_new_tokens=8", f"output={predictions}"]) == 0
    assert len(predictions.read_text().splitlines()) == 2
    return card


class OptimizerState(TrainerCallback):
    """The optimizer's state of every parameter, by name, at the end of training."""

    def on_train_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
        per_weight = getattr(inner, "optimizer_dict", None)  # layer-wise: one optimizer per weight
        self.inner = inner
        self.shapes = {name: tuple(param.shape) for name, param in model.named_parameters()}
        self.states = {
            name: dict((per_weight[param] if per_weight else inner).state.get(param, {}))
            for name, param in model.named_parameters()
        }


def is_decoder_linear(name: str, shape: tuple) -> bool:
    return ".layers." in name and len(shape) == 2


@pytest.mark.parametrize(
    "method, extra",
    [
        ("galore", []),
        ("galore", ["galore_layerwise=true"]),
        ("galore", ["galore_target=q_proj,v_proj"]),
        ("apollo", ["apollo_proj=random"]),
        ("apollo", ["apollo_layerwise=true", "apollo_scale_type=tensor"]),
    ],
)
def test_low_rank_methods_keep_adam_state_in_a_rank_r_subspace(
    tiny_model_dir, tiny_data_dir, tmp_path, method, extra
):
    out = tmp_path / method
    probe = OptimizerState()
    argv = options(tiny_model_dir, tiny_data_dir, out, f"use_{method}=true", f"{method}_rank={RANK}", *extra)
    train_watched(argv, probe)
    layerwise = any("layerwise" in option for option in extra)
    targets = ("q_proj", "v_proj") if "galore_target=q_proj,v_proj" in extra else None
    projected = 0
    for name, shape in probe.shapes.items():
        moment = probe.states[name]["exp_avg"]
        if is_decoder_linear(name, shape) and (targets is None or any(t in name for t in targets)):
            # (m x n) -> (m x r) or (r x n): Adam's moments live in the projected space
            assert tuple(moment.shape) in {(shape[0], RANK), (RANK, shape[1])}, name
            basis = probe.states[name]["projector"].ortho_matrix
            assert RANK in basis.shape and torch.linalg.matrix_rank(basis.float()) == RANK
            projected += 1
        else:  # embeddings, norms, untargeted layers: plain Adam, full-size moments
            assert tuple(moment.shape) == shape, name
            assert "projector" not in probe.states[name]
    assert projected == (4 if targets else 14)  # 2 layers x (7 linear layers, or the 2 named)
    card = check_run(out, tiny_data_dir, tmp_path, steps=2)
    expected_optim = f"{method}_adamw" + ("_layerwise" if layerwise else "")
    assert card.arguments["optim"] == expected_optim
    settings = card.stage_settings[method]
    assert settings["optim"] == expected_optim and settings["rank"] == RANK
    assert settings["projected_weights"] == projected and settings["layerwise"] is layerwise


def test_galore_resumes_from_a_checkpoint_to_the_same_weights(tiny_model_dir, tiny_data_dir, tmp_path):
    """A checkpoint's optimizer state holds GaLore's projectors; resuming reads them back (torch's
    safe loading would refuse their class) and ends where an uninterrupted run ends."""
    from safetensors.torch import load_file

    def train(out, *extra):
        argv = options(tiny_model_dir, tiny_data_dir, out, "use_galore=true", f"galore_rank={RANK}")
        # a constant learning rate: the 2-step run is the first half of the 4-step one
        steps = ["save_strategy=steps", "save_steps=2", "lr_scheduler_type=constant"]
        assert cli(["train", *argv, *steps, *extra]) == 0

    train(tmp_path / "straight", "max_steps=4")
    train(tmp_path / "resumed", "max_steps=2")
    train(tmp_path / "resumed", "max_steps=4", "resume_from_checkpoint=true")
    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], msg=name)


class ChangedPerStep(TrainerCallback):
    """The names of the parameters each optimizer step changed (bit for bit), and how many entries."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.last = self.snapshot(model)
        self.changed: list[dict[str, int]] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        now = self.snapshot(model)
        self.changed.append(
            {
                name: int((now[name] != self.last[name]).sum())
                for name in now
                if not torch.equal(now[name], self.last[name])
            }
        )
        self.last = now

    @staticmethod
    def snapshot(model) -> dict[str, torch.Tensor]:
        return {name: param.detach().clone() for name, param in model.named_parameters()}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_badam_trains_one_decoder_layer_per_interval_and_leaves_the_rest_bit_identical(
    tiny_model_dir, tiny_data_dir, tmp_path, precision
):
    out = tmp_path / "badam"
    probe = ChangedPerStep()
    argv = options(tiny_model_dir, tiny_data_dir, out, "use_badam=true", "badam_switch_interval=2")
    train_watched([*argv, "max_steps=4", f"bf16={precision == 'bf16'}"], probe)
    names = set(probe.last)
    layer = [{n for n in names if n.startswith(f"model.layers.{i}.")} for i in range(2)]
    # ascending from layer 0, two steps each; embeddings and the final norm never change
    for step, trained in zip(probe.changed, [layer[0], layer[0], layer[1], layer[1]], strict=True):
        matrices = {name for name in trained if probe.last[name].dim() == 2}
        assert matrices <= set(step) <= trained
        if precision == "fp32":  # in bf16 a norm weight of 1.0 moved by 1e-3 rounds back to 1.0
            assert set(step) == trained
    dtypes = {param.dtype for param in probe.last.values()}
    assert dtypes == {torch.bfloat16 if precision == "bf16" else torch.float32}
    card = check_run(out, tiny_data_dir, tmp_path, steps=4)
    assert card.stage_settings["badam"] == {
        "mode": "layer",
        "switch_interval": 2,
        "switch_mode": "ascending",
        "start_block": None,
        "blocks": 2,
        "weights_dtype": "bfloat16" if precision == "bf16" else "float32",
    }


def test_badam_descending_from_a_start_block(tiny_model_dir, tiny_data_dir, tmp_path):
    probe = ChangedPerStep()
    extra = [
        "use_badam=true",
        "badam_switch_interval=1",
        "badam_switch_mode=descending",
        "badam_start_block=0",
    ]
    train_watched([*options(tiny_model_dir, tiny_data_dir, tmp_path / "run", *extra), "max_steps=3"], probe)
    first_layer_trained = [{name.split(".")[2] for name in step} for step in probe.changed]
    assert first_layer_trained == [{"0"}, {"1"}, {"0"}]  # 0, then descending wraps to the last layer


def test_badam_ratio_updates_a_fraction_of_every_weight(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "badam_ratio"
    probe = ChangedPerStep()
    extra = ["use_badam=true", "badam_mode=ratio", "badam_update_ratio=0.25", "badam_switch_interval=1"]
    train_watched(options(tiny_model_dir, tiny_data_dir, out, *extra), probe)
    for step in probe.changed:
        assert not any("embed_tokens" in name for name in step)  # the (tied) embeddings stay
        for name, count in step.items():
            numel = math.prod(probe.last[name].shape)
            if numel >= 100:  # badam updates smaller weights whole
                assert 0 < count <= int(numel * 0.25), (name, count, numel)
        matrices = [name for name in probe.last if is_decoder_linear(name, tuple(probe.last[name].shape))]
        assert set(matrices) <= set(step)  # every decoder weight moves, each only in part
    card = check_run(out, tiny_data_dir, tmp_path, steps=2)
    assert card.stage_settings["badam"] == {
        "mode": "ratio",
        "switch_interval": 1,
        "update_ratio": 0.25,
        "mask_mode": "adjacent",
    }


class EmbeddingNoise(TrainerCallback):
    """After the first step: how far the embedding output is from the plain lookup, in training
    mode and in eval mode."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step != 1:
            return
        embeddings = model.get_input_embeddings()
        ids = torch.tensor([[3, 4, 5, 6, 7]])
        plain = embeddings.weight[ids].detach()
        with torch.no_grad():
            model.train()
            self.training = [(embeddings(ids) - plain).abs().max().item() for _ in range(2)]
            self.fresh_noise = not torch.equal(embeddings(ids), embeddings(ids))
            model.eval()
            self.eval = (embeddings(ids) - plain).abs().max().item()
            model.train()
        self.bound = 5.0 / math.sqrt(ids.shape[1] * plain.shape[-1])  # alpha / sqrt(length x hidden)


def test_neftune_adds_noise_to_embeddings_in_training_mode_only(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "neftune"
    probe = EmbeddingNoise()
    argv = options(tiny_model_dir, tiny_data_dir, out, "neftune_noise_alpha=5", "finetuning_type=lora")
    train_watched([*argv, "lora_rank=4"], probe)
    assert all(0 < noise <= probe.bound for noise in probe.training) and probe.fresh_noise
    assert probe.eval == 0.0
    card = check_run(out, tiny_data_dir, tmp_path, steps=2)
    assert card.arguments["neftune_noise_alpha"] == 5.0
    assert card.stage_settings["neftune_noise_alpha"] == 5.0


def test_methods_through_the_command_line(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "galore_cli"
    argv = options(tiny_model_dir, tiny_data_dir, out, "use_galore=true", "galore_rank=4", "max_steps=1")
    warning = "use_galore=true: transformers' galore_adamw applies no weight decay; weight_decay=0.01"
    with pytest.warns(SqltuneWarning, match=re.escape(warning)):
        assert cli(["train", *argv, "galore_scale=0.5", "neftune_noise_alpha=10", "weight_decay=0.01"]) == 0
    card = RunCard.load(out)
    assert card.stage_settings["galore"]["scale"] == 0.5 and card.stage_settings["neftune_noise_alpha"] == 10
    assert card.arguments["optim_args"] == "rank=4,update_proj_gap=200,scale=0.5,proj_type=std"


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["use_galore=true", "finetuning_type=lora"],
            "use_galore=true trains every weight: it needs finetuning_type=full",
        ),
        (["use_apollo=true", "finetuning_type=freeze"], "use_apollo=true trains every weight"),
        (
            ["use_galore=true", "use_badam=true"],
            "use_galore and use_badam: choose one of GaLore, APOLLO and BAdam",
        ),
        (["use_galore=true", "galore_rank=0"], "galore_rank: must be >= 1"),
        (["use_badam=true", "badam_mode=block"], "badam_mode: unknown 'block', choose one of layer, ratio"),
        (["use_badam=true", f"deepspeed={ZERO2}"], "use_badam=true does not work with DeepSpeed"),
        (["use_galore=true", f"deepspeed={ZERO2}"], "use_galore=true does not work with DeepSpeed"),
        (["use_badam=true", "nproc_per_node=2"], "use_badam=true trains in one process"),
        (
            ["use_galore=true", "galore_layerwise=true", "gradient_accumulation_steps=2"],
            "gradient_accumulation_steps must be 1",
        ),
        (["use_badam=true", "stage=rm"], "use_badam=true does not work with stage=rm: its score head"),
        (
            ["use_apollo=true", "apollo_layerwise=true", "stage=ppo"],
            "apollo_layerwise=true does not work with stage=ppo",
        ),
        (["use_apollo=true", "optim=sgd"], "use_apollo=true replaces optim=sgd"),
        (
            ["use_galore=true", "optim_target_modules=q_proj"],
            "use_galore=true sets optim_args and optim_target",
        ),
        (["use_galore=true", "galore_target=qq_proj"], "galore_target: no linear layer named qq_proj"),
        (["use_badam=true", "badam_start_block=2"], "badam_start_block: must be below 2"),
        (["neftune_noise_alpha=5", "stage=dpo"], "neftune_noise_alpha: NEFTune is for supervised training"),
        (["neftune_noise_alpha=0"], "neftune_noise_alpha: must be > 0"),
    ],
)
def test_method_user_errors_are_one_line(tiny_model_dir, tiny_data_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert cli(["train", *options(tiny_model_dir, tiny_data_dir, out, *extra)]) == 2
    # errors found on the loaded model come after transformers' loading bar
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("Loading")]
    assert len(err) == 1 and message in err[0], err
    assert not (out / "sqltune_run.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only refusal")
def test_galore_8bit_needs_a_gpu(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    argv = options(tiny_model_dir, tiny_data_dir, tmp_path / "run", "use_galore=true", "optim=adamw_bnb_8bit")
    assert cli(["train", *argv]) == 2
    assert "optim=adamw_bnb_8bit (GaLore's 8-bit AdamW) needs a CUDA GPU" in capsys.readouterr().err
