"""Trainer callbacks: a progress bar with tokens/s, the run log, the progress file, and the loss plot."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from transformers import ProgressCallback, TrainerCallback

LOG_FILE = "train.log"
PLOT_FILE = "training_loss.png"
SIGNALS_PLOT_FILE = "stage_signals.png"
PROGRESS_FILE = "progress.json"


class TokenProgressCallback(ProgressCallback):
    """transformers' progress bar (steps, ETA) with the non-padding tokens/s of this run."""

    def __init__(self, trainer) -> None:
        super().__init__()
        self.trainer = trainer
        self.start = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()
        return super().on_train_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        super().on_step_end(args, state, control, **kwargs)
        if self.training_bar is not None:
            rate = self.trainer.train_tokens / max(time.perf_counter() - self.start, 1e-9)
            self.training_bar.set_postfix_str(f"{rate:,.0f} tok/s (this process)", refresh=False)


class LogFileCallback(TrainerCallback):
    """Appends every Trainer log record (loss, learning rate, eval loss...) to `train.log`."""

    def __init__(self, output_dir: str | Path) -> None:
        self.logger = logging.getLogger("sqltune.train")
        self.path = Path(output_dir) / LOG_FILE

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.logger.info("step %d: %s", state.global_step, json.dumps(logs))


class ProgressFileCallback(TrainerCallback):
    """Keeps `progress.json` in the run directory: step, max_steps, elapsed_s, remaining_s, the last
    logged loss and status (running, finished, failed), rewritten atomically at every step, so that
    a process that did not start the training (the web UI) can follow it from the file alone.

    `run_train` calls `finish()` once the run directory is complete and `fail()` when it stops on an
    error; a process killed from outside leaves `running` behind (its parent knows it stopped it)."""

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / PROGRESS_FILE
        self.start = time.perf_counter()
        self.first_step = self.step = self.max_steps = 0
        self.loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.first_step = time.perf_counter(), state.global_step  # a resumed run starts later
        self.write(state, "running")

    def on_step_end(self, args, state, control, **kwargs):
        self.write(state, "running")

    def on_log(self, args, state, control, logs=None, **kwargs):
        try:
            self.loss = float(logs["loss"])
        except (TypeError, KeyError, ValueError):  # a record without a training loss (eval, summary)
            return
        self.write(state, "running")

    def finish(self) -> None:
        self.write(None, "finished")

    def fail(self, error: BaseException) -> None:
        self.write(None, "failed", f"{type(error).__name__}: {error}")

    def write(self, state, status: str, error: str | None = None) -> None:
        from sqltune.files import write_json

        if state is not None:
            self.step, self.max_steps = state.global_step, state.max_steps
        elapsed = time.perf_counter() - self.start
        done, remaining = self.step - self.first_step, None
        if status == "finished":
            remaining = 0.0
        elif done > 0:  # at the pace of the steps taken so far
            remaining = round(elapsed / done * max(self.max_steps - self.step, 0), 2)
        progress = {
            "step": self.step,
            "max_steps": self.max_steps,
            "elapsed_s": round(elapsed, 2),
            "remaining_s": remaining,
            "loss": self.loss,
            "status": status,
        }
        if error:
            progress["error"] = error
        write_json(self.path, progress)


def open_log(output_dir: str | Path) -> logging.Handler:
    """Send the `sqltune` loggers to `<output_dir>/train.log` (appending across resumed runs)."""
    path = Path(output_dir) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("sqltune")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


def close_log(handler: logging.Handler) -> None:
    logging.getLogger("sqltune").removeHandler(handler)
    handler.close()


def plot_loss(log_history: list[dict], path: str | Path) -> Path | None:
    """Train (and eval) loss by step as a PNG; None when nothing was logged."""
    train = [(row["step"], row["loss"]) for row in log_history if "loss" in row and "step" in row]
    evals = [(row["step"], row["eval_loss"]) for row in log_history if "eval_loss" in row and "step" in row]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for points, label, style in ((train, "train loss", "-"), (evals, "eval loss", "o--")):
        if points:
            axes.plot(*zip(*points), style, label=label)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def plot_signals(log_history: list[dict], keys, path: str | Path) -> Path | None:
    """A later stage's own signals by step (reward, margins, KL...), one small panel per logged key;
    None when none of the keys was logged with a number."""
    series = {}
    for key in keys:
        points = [
            (row["step"], row[key])
            for row in log_history
            if isinstance(row.get(key), (int, float)) and "step" in row and "train_runtime" not in row
        ]
        if points:
            series[key] = points
    if not series:
        return None
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(series))
    rows = math.ceil(len(series) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for panel, (key, points) in zip(axes.flat, series.items()):
        panel.plot(*zip(*points), "-o", markersize=3)
        panel.set_title(key, fontsize=10)
        panel.set_xlabel("step")
        panel.grid(alpha=0.3)
    for panel in list(axes.flat)[len(series) :]:
        panel.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)
