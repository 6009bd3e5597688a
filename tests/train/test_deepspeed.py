"""DeepSpeed ZeRO-2 and ZeRO-3 training steps on the CPU (DS_ACCELERATOR=cpu), on a tiny model.

A single `sqltune train ... deepspeed=<config>` process gets the environment of a one-process group
(DeepSpeed would otherwise look for MPI), and the result must match plain training: ZeRO changes
where states live, not what is learned. The GPU paths (offload to CPU from a GPU, multi-GPU) need
a GPU machine.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.tiny import make_dataset

pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra: pip install 'sqltune[deepspeed]'")

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"
SRC = Path(__file__).resolve().parents[2] / "src"


def train(model_dir, data_dir, out, *extra):
    """Run `sqltune train` in a fresh process (DeepSpeed initialises process-wide state)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    argv = [
        sys.executable, "-m", "sqltune", "train",
        f"model_name_or_path={model_dir}", f"dataset_dir={data_dir}", "dataset=tiny_train",
        f"output_dir={out}", "cutoff_len=1024", "max_steps=3", "per_device_train_batch_size=2",
        "save_strategy=no", "lora_rank=4", "learning_rate=5e-3", "seed=7", *extra,
    ]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_file(out / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds-data"))


@pytest.fixture(scope="module")
def plain(tiny_model_dir, data_dir, tmp_path_factory):
    return train(tiny_model_dir, data_dir, tmp_path_factory.mktemp("plain"))


@pytest.mark.parametrize("config", ["ds_z2.json", "ds_z3.json"])
def test_zero_matches_plain_training(config, plain, tiny_model_dir, data_dir, tmp_path):
    zero = train(tiny_model_dir, data_dir, tmp_path / "zero", f"deepspeed={CONFIGS / config}")
    assert plain.keys() == zero.keys()
    assert any(float(t.abs().sum()) > 0 for k, t in zero.items() if "lora_B" in k), "ZeRO run did not train"
    for name in plain:
        torch.testing.assert_close(zero[name], plain[name], rtol=1e-3, atol=1e-5, msg=name)
