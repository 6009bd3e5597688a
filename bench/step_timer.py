"""A Trainer callback that times optimizer steps and counts the non-padding tokens each one trains
on; shared by the sqltune and LLaMA-Factory workers of `train_speed.py` (it needs only
transformers, so it runs in either environment)."""

from __future__ import annotations

import resource
import time

from transformers import TrainerCallback

TOKENS = {"seen": 0}


def count_tokens(trainer_class) -> None:
    """Wrap `trainer_class.training_step` to count the non-padding tokens of every batch: the
    attention mask's non-zero entries (LLaMA-Factory's neat packing numbers sequences 1, 2, ...), or
    every token of a padding-free batch that has no mask."""
    original = trainer_class.training_step

    def training_step(self, model, inputs, *args, **kwargs):
        mask = inputs.get("attention_mask")
        TOKENS["seen"] += int((mask != 0).sum()) if mask is not None else inputs["input_ids"].numel()
        return original(self, model, inputs, *args, **kwargs)

    trainer_class.training_step = training_step


class StepTimer(TrainerCallback):
    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.steps: list[tuple[float, int]] = []  # (seconds, tokens) per step
        self._start = 0.0
        self._tokens = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()
        self._tokens = TOKENS["seen"]

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append((time.perf_counter() - self._start, TOKENS["seen"] - self._tokens))

    def result(self) -> dict:
        steady = self.steps[self.warmup :]
        seconds = sum(s for s, _ in steady)
        tokens = sum(t for _, t in steady)
        return {
            "steps_timed": len(steady),
            "step_time_s": round(seconds / max(len(steady), 1), 3),
            "tokens_per_step": round(tokens / max(len(steady), 1), 1),
            "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
