"""progress.json: what a training writes at every step so that another process (the web UI) can
follow it: step, max_steps, elapsed and remaining time, the last loss, and the status."""

from __future__ import annotations

import json
from types import SimpleNamespace

from sqltune.cli import main as cli
from sqltune.train.callbacks import PROGRESS_FILE, ProgressFileCallback


def read(folder):
    return json.loads((folder / PROGRESS_FILE).read_text())


def test_the_file_follows_the_steps_and_the_end(tmp_path):
    callback = ProgressFileCallback(tmp_path)
    state = SimpleNamespace(global_step=0, max_steps=4)
    callback.on_train_begin(None, state, None)
    progress = read(tmp_path)
    assert progress.pop("elapsed_s") >= 0
    assert progress == {
        "step": 0,
        "max_steps": 4,
        "remaining_s": None,  # no step yet to measure the pace by
        "loss": None,
        "status": "running",
    }
    state.global_step = 1
    callback.on_step_end(None, state, None)
    callback.on_log(None, state, None, logs={"loss": 2.5, "learning_rate": 1e-3})
    callback.on_log(None, state, None, logs={"eval_loss": 9.0})  # not a training loss: kept as it was
    progress = read(tmp_path)
    assert (progress["step"], progress["loss"], progress["status"]) == (1, 2.5, "running")
    assert progress["remaining_s"] >= 0
    callback.finish()
    progress = read(tmp_path)
    assert (progress["step"], progress["max_steps"], progress["remaining_s"]) == (1, 4, 0.0)
    assert progress["status"] == "finished"
    callback.fail(ValueError("disk full"))
    assert read(tmp_path)["status"] == "failed" and read(tmp_path)["error"] == "ValueError: disk full"
    assert [p.name for p in tmp_path.iterdir()] == [PROGRESS_FILE]  # written atomically: no temp file left


def test_a_training_writes_it_to_the_end(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "run"
    argv = [
        "train",
        f"model_name_or_path={tiny_model_dir}",
        f"dataset_dir={tiny_data_dir}",
        "dataset=tiny_train",
        f"output_dir={out}",
        "max_steps=2",
        "per_device_train_batch_size=2",
        "logging_steps=1",
        "save_strategy=no",
    ]
    assert cli(argv) == 0
    progress = read(out)
    assert progress["status"] == "finished" and progress["step"] == progress["max_steps"] == 2
    assert isinstance(progress["loss"], float) and progress["elapsed_s"] > 0


def test_a_failed_training_says_so(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train",
        f"model_name_or_path={tiny_model_dir}",
        f"dataset_dir={tiny_data_dir}",
        "dataset=no_such_dataset",
        f"output_dir={out}",
        "max_steps=2",
    ]
    assert cli(argv) == 2
    progress = read(out)
    assert progress["status"] == "failed" and "no_such_dataset" in progress["error"]
