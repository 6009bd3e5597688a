"""Spider dev quality of a fine-tuned run: EX/EM zero-shot, fine-tuned (greedy), and fine-tuned with
execution-guided decoding, on the dev questions whose database is present (972 of 1,034).

The fine-tuning itself is the long part and runs before this script, as its own command:

    sqltune data source=spider data_dir=../shared/data/spider split=train output_dir=runs/data
    sqltune train configs/spider_smollm2_lora.yaml dataset_dir=runs/data output_dir=runs/spider_lora \
        max_steps=150 val_size=0
    python bench/spider_quality.py --run-dir runs/spider_lora --out runs/quality
    python bench/spider_quality.py --run-dir runs/spider_lora --out runs/quality --limit 200 \
        --variants fine-tuned,guided --candidates 4

Every variant asks with the run's template and prompt format (the dev records are built with the
prompt options the run was trained on), greedy, `--max-new-tokens` 128. "zero-shot" is the base
model alone, "fine-tuned" the run (base + adapter), "guided" the run with
`decoding=execution_guided num_candidates=K` (K beams, executed; the most likely one that returns
rows is kept, `guided_choice=first`), and "guided-vote" the same K beams of "guided" chosen again
by majority vote over their results (`guided_choice=vote`), so the two rules are compared on the
very same candidates. Predictions resume, so an interrupted run continues where it stopped; the
predictions of a `sqltune run` of the same run directory can be copied in as
`<out>/predictions/zero-shot.jsonl` (its before.jsonl) and `fine-tuned.jsonl` (after.jsonl) to
score them without generating again. The table and `<out>/quality.json` hold EX/EM overall and by
hardness, and questions/s of each variant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

VARIANTS = ("zero-shot", "fine-tuned", "guided", "guided-vote")


def build_dev(spider_dir: Path, out: Path, card, limit: int | None) -> str:
    """Spider dev records in `out/data`, built as the run's training records were; returns the name."""
    from sqltune.args import PromptArguments, SourceArguments
    from sqltune.data.command import run_data
    from sqltune.infer.questions import prompt_arguments_from_card
    from sqltune.pipeline.command import DATA, keep_questions_with_databases

    data_dir = out / DATA
    source = SourceArguments(
        source="spider", data_dir=str(spider_dir), split="dev", output_dir=str(data_dir), limit=limit
    )
    run_data(source, prompt_arguments_from_card(card) or PromptArguments())
    keep_questions_with_databases(data_dir, "spider_dev")
    return "spider_dev"


def rechoose(out: Path, dev: str, rule: str, timeout: float) -> Path:
    """The "guided" predictions with each question's candidates chosen again by `rule`."""
    from sqltune.data.records import load_dataset
    from sqltune.files import read_jsonl, write_jsonl
    from sqltune.infer.guided import choose
    from sqltune.pipeline.command import DATA

    schemas = load_dataset(out / DATA, dev).schemas
    rows = read_jsonl(out / "predictions" / "guided.jsonl", "guided predictions")
    for row in rows:
        sqls = [candidate["sql"] for candidate in row["candidates"]]
        choice = choose(sqls, schemas[row["db_id"]].db_path, timeout, rule)
        row.update(sql=sqls[choice.index], chosen_by=choice.reason, votes=choice.votes)
    path = out / "predictions" / f"guided-{rule}.jsonl"
    write_jsonl(path, rows)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", required=True, type=Path, help="a trained sqltune run (LoRA)")
    parser.add_argument("--spider-dir", type=Path, default=ROOT.parent / "shared" / "data" / "spider")
    parser.add_argument("--out", required=True, type=Path, help="folder for data, predictions, scores")
    parser.add_argument("--limit", type=int, default=None, help="only the first N dev questions")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--candidates", type=int, default=4, help="guided: beams per question")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from sqltune.args import GeneratingArguments, ModelArguments, RunArguments
    from sqltune.evaluate.spider.hardness import LEVELS
    from sqltune.pipeline.command import predict_and_score, score
    from sqltune.pipeline.report import scores
    from sqltune.runcard import RunCard

    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)} (choose from {', '.join(VARIANTS)})")
    card = RunCard.load(args.run_dir)
    dev = build_dev(args.spider_dir, args.out, card, args.limit)
    run = RunArguments(
        source="spider",
        spider_dir=str(args.spider_dir),
        cutoff_len=card.cutoff_len or 1024,
        infer_batch_size=args.batch_size,
        eval_timeout=30.0,
    )
    greedy = GeneratingArguments(max_new_tokens=args.max_new_tokens)
    guided = dataclasses.replace(greedy, decoding="execution_guided", num_candidates=args.candidates)
    base = ModelArguments(model_name_or_path=card.model_name_or_path, template=card.template)
    plans = {
        "zero-shot": (base, None, greedy),
        "fine-tuned": (ModelArguments(), args.run_dir, greedy),
        "guided": (ModelArguments(), args.run_dir, guided),
    }
    results = {}
    for variant in variants:
        if variant == "guided-vote":
            rechoose(args.out, dev, "vote", guided.candidate_timeout)
            evaluation = score(variant, args.out, run, dev)
        else:
            model_args, trained, settings = plans[variant]
            evaluation = predict_and_score(
                variant, model_args, args.out, trained, run, settings, dev, 42, False
            )
        results[variant] = scores(evaluation)
        print(f"{variant}: EX {results[variant]['ex']:.3f} EM {results[variant]['em']:.3f}", file=sys.stderr)

    summary = {
        "run_dir": str(args.run_dir),
        "train": {k: card.metrics.get(k) for k in ("train_examples", "train_steps", "train_runtime_s")},
        "candidates": args.candidates,
        "max_new_tokens": args.max_new_tokens,
        "variants": results,
    }
    (args.out / "quality.json").write_text(json.dumps(summary, indent=2) + "\n")
    levels = [lv for lv in LEVELS if any(lv in r["by_hardness"] for r in results.values())]
    print("| variant | questions | EX | EM | q/s | " + " | ".join(f"EX {lv}" for lv in levels) + " |")
    print("| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in levels) + " |")
    for variant, r in results.items():
        by = [r["by_hardness"].get(lv, {}).get("ex") for lv in levels]
        speed = r["questions_per_second"]
        cells = [f"{x:.3f}" if x is not None else "-" for x in by]
        print(
            f"| {variant} | {r['n']} | {r['ex']:.3f} | {r['em']:.3f} | "
            f"{'-' if speed is None else f'{speed:.2f}'} | " + " | ".join(cells) + " |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
