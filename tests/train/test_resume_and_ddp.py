"""Checkpoints and resuming after a hard kill; torchrun data parallelism on CPU (gloo)."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from sqltune.cli import main as cli
from sqltune.runcard import RunCard

SRC = Path(__file__).resolve().parents[2] / "src"

# Runs `sqltune train` and SIGKILLs the process right after optimizer step KILL_AT: a real kill,
# no clean-up, no final save.
KILLER = """
import os, signal, sys
from transformers import TrainerCallback
import sqltune.train.trainer as trainer

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(os.environ["KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)

original = trainer.SftTrainer.__init__
def patched(self, *args, **kwargs):
    original(self, *args, **kwargs)
    self.add_callback(Kill())
trainer.SftTrainer.__init__ = patched

from sqltune.cli import main
sys.exit(main(sys.argv[1:]))
"""


def argv(model_dir, data_dir, out, *extra):
    return [
        "train",
        f"model_name_or_path={model_dir}",
        f"dataset_dir={data_dir}",
        "dataset=tiny_train",
        f"output_dir={out}",
        "cutoff_len=1024",
        "per_device_train_batch_size=2",
        "lora_rank=4",
        "lora_dropout=0.1",  # uses the random generator, which the checkpoint must restore
        "learning_rate=5e-3",
        "logging_steps=1",
        "seed=7",
        *extra,
    ]


def env(**extra):
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def test_killed_and_resumed_run_matches_an_uninterrupted_one(tiny_model_dir, tiny_data_dir, tmp_path):
    steps = ["max_steps=6", "save_steps=3"]
    assert cli(argv(tiny_model_dir, tiny_data_dir, tmp_path / "straight", *steps)) == 0

    killed = tmp_path / "killed"
    run = subprocess.run(
        [sys.executable, "-c", KILLER, *argv(tiny_model_dir, tiny_data_dir, killed, *steps)],
        env=env(KILL_AT="4"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == -9, run.stderr[-2000:]
    assert (killed / "checkpoint-3").is_dir() and not (killed / "checkpoint-6").exists()
    assert not (killed / "adapter_model.safetensors").exists()

    assert cli(argv(tiny_model_dir, tiny_data_dir, killed, *steps, "resume_from_checkpoint=true")) == 0
    straight = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    resumed = load_file(killed / "adapter_model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    assert RunCard.load(killed).metrics["train_steps"] == 6


def test_torchrun_two_processes_match_one(tiny_model_dir, tiny_data_dir, tmp_path):
    """2 processes x batch 1 take the same optimizer steps as 1 process x batch 2 (same examples,
    gradients averaged over processes), so the weights agree to float rounding."""
    common = ["max_steps=3", "save_strategy=no", "lora_dropout=0", "train_sampling_strategy=sequential"]
    assert cli(argv(tiny_model_dir, tiny_data_dir, tmp_path / "one", *common)) == 0
    two = tmp_path / "two"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sqltune",
            *argv(
                tiny_model_dir,
                tiny_data_dir,
                two,
                *common,
                "per_device_train_batch_size=1",
                "nproc_per_node=2",
            ),
        ],
        env=env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    card = RunCard.load(two)
    assert card.metrics["processes"] == 2 and card.metrics["train_steps"] == 3
    one = load_file(tmp_path / "one" / "adapter_model.safetensors")
    both = load_file(two / "adapter_model.safetensors")
    for name in one:
        assert torch.allclose(one[name], both[name], atol=1e-5), name
    assert abs(card.metrics["train_tokens"] - RunCard.load(tmp_path / "one").metrics["train_tokens"]) == 0
