"""Prediction speed: a one-question-at-a-time `generate` loop against sqltune's batched HF engine.

The loop is what DB-GPT-Hub's predictor does: for every question, tokenise the prompt and call
`model.generate` on it alone, greedy, until EOS or `max_new_tokens`. sqltune's engine answers the
same prompts sorted by length in left-padded batches with a shared KV cache, stops a batch when every
row has ended, and runs in bfloat16 where the CPU has native bf16 instructions.

Everything else is equal: the embedded SmolLM2-135M-Instruct, the same Spider dev questions (the
first questions of a few databases, in dev order, as a full dev run meets them), DB-GPT-Hub prompts
in the model's chat template, greedy decoding, max_new_tokens 128, one process on the CPU, and no stop at the end of the first SQL
statement (`--stop-after-statement` turns on sqltune's default, which the loop does not have). Reported: questions/s, generated tokens/s,
the speed-up over the fp32 loop, and how many answers equal the fp32 loop's.

    python bench/predict_speed.py                          # all variants, 3 databases x 16 questions
    python bench/predict_speed.py --databases 2 --per-database 32 --batch-size 32 --only "engine fp32"
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VARIANTS = ("loop fp32", "loop bf16", "engine fp32", "engine bf16")


def spider_prompts(
    spider_dir: Path, databases: int, per_database: int, seed: int, max_new_tokens: int, tokenizer
) -> list[list[int]]:
    """Prompt ids of the first `per_database` Spider dev questions of `databases` databases (a seeded
    choice among the dev databases present). A full dev run sees about 51 questions per database in
    a row; this keeps that shape in a sample small enough for the slow loop."""
    from sqltune.args import PromptArguments, SourceArguments
    from sqltune.data.sources import read_source
    from sqltune.models.encoding import fit_to_budget
    from sqltune.models.templates import get_template

    data = read_source(SourceArguments(source="spider", data_dir=str(spider_dir), split="dev"))
    present = sorted({e.db_id for e in data.examples if Path(data.schemas[e.db_id].db_path or "").is_file()})
    chosen = random.Random(seed).sample(present, databases)
    examples = [e for db in chosen for e in [x for x in data.examples if x.db_id == db][:per_database]]
    template = get_template("auto", tokenizer)
    args = PromptArguments(prompt_format="dbgpt")
    budget = 1024 - max_new_tokens
    return [
        fit_to_budget(e, data.schemas[e.db_id], args, template, tokenizer, budget).prompt_ids
        for e in examples
    ]


def run_loop(model, stops: list[int], prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """DB-GPT-Hub style: one `generate` call per question."""
    import torch

    answers = []
    for ids in prompts:
        with torch.inference_mode():
            output = model.generate(
                torch.tensor([ids]),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=stops[0],
            )
        answers.append(output[0, len(ids) :].tolist())
    return answers


def measure(variant: str, prompts, max_new_tokens: int, batch_size: int, stop_after_statement: bool) -> dict:
    from sqltune.args import GeneratingArguments, ModelArguments
    from sqltune.infer.engine import model_source, open_engine

    dtype = "bfloat16" if variant.endswith("bf16") else "float32"
    engine = open_engine(model_source(None, ModelArguments()), dtype=dtype, batch_size=batch_size)
    settings = GeneratingArguments(max_new_tokens=max_new_tokens, stop_after_statement=stop_after_statement)
    warm = prompts[:2]
    if variant.startswith("loop"):
        engine.model.set_attn_implementation("sdpa")  # the stock model, as DB-GPT-Hub runs it
        run_loop(engine.model, engine.stop_ids, warm, 8)
        began = time.perf_counter()
        raw = run_loop(engine.model, engine.stop_ids, prompts, max_new_tokens)
        seconds = time.perf_counter() - began
        lengths = [engine.answer_length(tokens) for tokens in raw]
        texts = [engine.tokenizer.decode(t[:n], skip_special_tokens=True) for t, n in zip(raw, lengths)]
    else:
        list(engine.generate(warm, GeneratingArguments(max_new_tokens=8)))
        began = time.perf_counter()
        answers: dict[int, object] = {}
        for batch in engine.generate(prompts, settings):
            answers.update({i: group[0] for i, group in zip(batch.indices, batch.candidates)})
        seconds = time.perf_counter() - began
        texts = [answers[i].text for i in range(len(prompts))]
        lengths = [answers[i].new_tokens for i in range(len(prompts))]
    return {
        "variant": variant,
        "questions": len(prompts),
        "seconds": round(seconds, 2),
        "questions_per_s": round(len(prompts) / seconds, 3),
        "tokens_per_s": round(sum(lengths) / seconds, 1),
        "answers": texts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spider", type=Path, default=ROOT.parent / "shared" / "data" / "spider")
    parser.add_argument("--databases", type=int, default=3)
    parser.add_argument("--per-database", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stop-after-statement",
        action="store_true",
        help="let the engine end an answer at its first complete statement (sqltune's default); "
        "off, every variant generates until EOS or max_new_tokens, as the loop does",
    )
    parser.add_argument("--only", action="append", choices=VARIANTS, help="run only these variants")
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from sqltune.models.embedded import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m"))
    prompts = spider_prompts(
        options.spider,
        options.databases,
        options.per_database,
        options.seed,
        options.max_new_tokens,
        tokenizer,
    )
    print(
        f"{len(prompts)} Spider dev prompts, {sum(map(len, prompts)) / len(prompts):.0f} tokens on average; "
        f"greedy, max_new_tokens {options.max_new_tokens}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; engine batch size {options.batch_size}"
    )
    results = [
        measure(v, prompts, options.max_new_tokens, options.batch_size, options.stop_after_statement)
        for v in options.only or VARIANTS
    ]
    reference = next((r for r in results if r["variant"] == "loop fp32"), None)
    print(
        "\n| variant | questions/s | generated tokens/s | speed-up vs loop fp32 | answers equal to loop fp32 |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in results:
        speedup = f"{r['questions_per_s'] / reference['questions_per_s']:.1f}x" if reference else "-"
        same = (
            f"{sum(a == b for a, b in zip(r['answers'], reference['answers']))}/{len(prompts)}"
            if reference
            else "-"
        )
        print(
            f"| {r['variant']} | {r['questions_per_s']:.2f} | {r['tokens_per_s']:.1f} | {speedup} | {same} |"
        )
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
