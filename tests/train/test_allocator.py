"""`sqltune train` started as a program runs on tcmalloc when it is installed (`SQLTUNE_ALLOCATOR`),
and the run card says which allocator it trained on."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sqltune import allocator
from sqltune.errors import ConfigError
from sqltune.runcard import RunCard
from tests.tiny import train_options

SRC = Path(__file__).resolve().parents[2] / "src"


def train(tiny_model_dir, tiny_data_dir, out, choice: str | None):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.ENV, "RANK")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    if choice is not None:
        env[allocator.ENV] = choice
    argv = train_options(tiny_model_dir, tiny_data_dir, out, max_steps=1, per_device_train_batch_size=2)
    return subprocess.run(
        [sys.executable, "-m", "sqltune", "train", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or allocator.find("tcmalloc") is None,
    reason="tcmalloc is not installed (Debian/Ubuntu: apt-get install libtcmalloc-minimal4)",
)
def test_training_runs_on_tcmalloc_unless_told_otherwise(tiny_model_dir, tiny_data_dir, tmp_path):
    done = train(tiny_model_dir, tiny_data_dir, tmp_path / "auto", None)
    assert done.returncode == 0, done.stderr[-3000:]
    assert RunCard.load(tmp_path / "auto").metrics["memory_allocator"] == "tcmalloc"
    done = train(tiny_model_dir, tiny_data_dir, tmp_path / "system", "system")
    assert done.returncode == 0, done.stderr[-3000:]
    assert RunCard.load(tmp_path / "system").metrics["memory_allocator"] == "system"


def test_an_unknown_allocator_is_named_in_the_error(tiny_model_dir, tiny_data_dir, tmp_path):
    done = train(tiny_model_dir, tiny_data_dir, tmp_path / "run", "hoard")
    assert done.returncode == 2
    assert "SQLTUNE_ALLOCATOR='hoard': choose one of auto, tcmalloc, jemalloc, system" in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_missing_allocator_names_its_package(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "jemalloc")
    monkeypatch.delenv("SQLTUNE_ALLOCATOR_STARTED", raising=False)
    monkeypatch.setitem(allocator.LIBRARIES, "jemalloc", (("sqltune-no-such-allocator",), "libjemalloc2"))
    if allocator.loaded() != "system":
        pytest.skip(f"this test process already runs on {allocator.loaded()}")
    with pytest.raises(ConfigError, match="apt-get install libjemalloc2"):
        allocator.restart_with_allocator()
