"""Runs LLaMA-Factory's trainer with `StepTimer` for `train_speed.py` (executed by the Python of a
separate LLaMA-Factory environment; takes the LLaMA-Factory arguments as one JSON string)."""

from __future__ import annotations

import json
import sys

import transformers

from step_timer import StepTimer, count_tokens


def main() -> None:
    args = json.loads(sys.argv[1])
    timer = StepTimer(args.pop("bench_warmup"))
    count_tokens(transformers.Trainer)
    from llamafactory.train.tuner import run_exp

    run_exp(args, callbacks=[timer])
    print("BENCH_RESULT " + json.dumps(timer.result()), flush=True)


if __name__ == "__main__":
    main()
