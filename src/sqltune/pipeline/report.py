"""The report of `sqltune run`: EX/EM before and after fine-tuning, as a table, JSON, Markdown and a plot.

`report.json` holds, for "before" (the base model) and "after" (the fine-tuned run), `ex`, `em` and
`n` (questions scored) plus the same by Spider hardness level, next to the training metrics and the
settings that produced them. With later stages (`stages:`, `sqltune.pipeline.stages`) it also holds
`stages`: per entry the same scores, the stage, the run it started from, its training metrics and the
stage's own signals. `report.png` shows the training loss curve beside EX by hardness.

A run on a database server (`dialect=postgres|mysql db_url=...`) scores EX there and no EM (the gold
SQL is in the server's dialect, and exact match parses SQLite SQL), so `em` is null, the tables leave
the EM column out, and `evaluation` names the server (password hidden) and why EM is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqltune.evaluate.spider.hardness import LEVELS
from sqltune.files import write_json, write_text
from sqltune.runcard import RunCard

LABELS = {"before": "before (base model)", "after": "after fine-tuning"}
NO_EM = "not computed: the gold SQL is in the server's dialect, and exact match parses SQLite SQL"


def _rate(score: dict | None) -> float | None:
    return None if score is None else score["rate"]


def scores(evaluation: dict) -> dict:
    """EX, EM and counts, overall and by hardness, from an evaluation report."""
    levels = evaluation["summary"]["levels"]

    def level(name: str) -> dict:
        entry = levels[name]
        return {"ex": _rate(entry["exec"]), "em": _rate(entry["exact"]), "n": entry["count"]}

    found = {
        **level("all"),
        "by_hardness": {name: level(name) for name in LEVELS if levels[name]["count"]},
        "errors": evaluation["summary"]["errors"],
        "questions_per_second": evaluation["prediction"]["questions_per_second"],
    }
    if "gold_failed_on_server" in levels["all"]:  # unscored: the gold query failed on the server
        found["gold_failed_on_server"] = levels["all"]["gold_failed_on_server"]
    return found


TRAIN_METRICS = ("train_examples", "train_steps", "train_tokens", "train_loss", "train_runtime_s")


def write_reports(
    run_dir: Path,
    evaluations: dict[str, dict],
    card: RunCard,
    timing: dict,
    stages: dict[str, dict] | None = None,
    stage_cards: dict[str, RunCard] | None = None,
) -> dict:
    """Write report.json, report.md and report.png into the run directory; return the report.
    `timing`: wall seconds of each step and in total (`sqltune.pipeline.command.Timing`);
    `stages`/`stage_cards`: the evaluation and run card of each later stage, by entry name."""
    settings = next(iter(evaluations.values()))["settings"]
    report = {label: scores(evaluation) for label, evaluation in evaluations.items()}
    if stages:
        report["stages"] = {}
        for name, evaluation in stages.items():
            stage_card = (stage_cards or {})[name]
            report["stages"][name] = {
                **(scores(evaluation) if evaluation else {"ex": None, "em": None, "n": 0}),
                "stage": stage_card.stage,
                "started_from": stage_card.stage_settings.get("started_from"),
                "train": {k: stage_card.metrics.get(k) for k in TRAIN_METRICS},
                "signals": stage_card.metrics.get("stage_signals", {}),
            }
    report["run"] = {
        "run_dir": str(run_dir),
        "model": card.model_name_or_path,
        "finetuning_type": card.finetuning_type,
        "template": card.template,
        "prompt_format": card.prompt_format,
        "dialect": card.prompt_options.get("dialect", "sqlite"),
        "datasets": card.datasets,
        "train": {k: card.metrics.get(k) for k in TRAIN_METRICS},
        "precision": card.precision.get("used"),
        "device": card.precision.get("device"),
        "timing": timing,
        "stages": list(stages or {}),
    }
    report["evaluation"] = {
        k: settings[k] for k in ("gold", "database_variant", "timeout", "evaluator_version")
    }
    if settings.get("db_url"):  # already with the password hidden (sqltune.evaluate.run)
        report["evaluation"]["db_url"] = settings["db_url"]
        report["evaluation"]["exact_match"] = NO_EM
    write_json(run_dir / "report.json", report)
    plot(run_dir / "report.png", run_dir / "trainer_state.json", report)
    write_text(run_dir / "report.md", markdown(report))
    return report


def minutes(seconds: float) -> str:
    """`7 min 49 s` (or `38 s`)."""
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def time_line(run: dict) -> str:
    """One line: the wall time of the whole run and of its steps, and what trained."""
    timing = run["timing"]
    names = {
        "db_load_s": "db load",
        "data_s": "data",
        "train_s": "training",
        "before_s": "base model",
        "after_s": "fine-tuned",
    }
    steps = ", ".join(f"{names[k]} {minutes(timing[k])}" for k in names if k in timing)
    for name in run.get("stages", []):  # later stages: training, then scoring
        spent = timing.get(f"{name}_train_s", 0) + timing.get(f"{name}_s", 0)
        steps += f", {name} {minutes(spent)}"
    reused = "" if timing.get("trained_now", True) else " (training reused from an earlier run)"
    where = f", {run['precision']} on {run['device']}" if run.get("precision") else ""
    return f"wall time {minutes(timing['total_s'])}: {steps}{reused}{where}"


def columns(report: dict) -> list[tuple[str, dict]]:
    """(label, scores) of every model the report scores: the base model, the SFT run, later stages."""
    found = [(LABELS[key], report[key]) for key in LABELS if key in report]
    for name, entry in report.get("stages", {}).items():
        if "by_hardness" not in entry:  # a reward model: not asked
            continue
        label = f"after {entry['stage']}" if name == entry["stage"] else f"after {name} ({entry['stage']})"
        found.append((label, entry))
    return found


def has_em(report: dict) -> bool:
    """Whether any model of the report has an exact-match score (none on a server)."""
    return any(entry["em"] is not None for _, entry in columns(report))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _gain(report: dict, key: str) -> str:
    if "before" not in report or report["before"][key] is None or report["after"][key] is None:
        return "-"
    return f"{report['after'][key] - report['before'][key]:+.3f}"


def markdown(report: dict) -> str:
    run = report["run"]
    models = columns(report)
    lines = [
        f"# sqltune run: {run['run_dir']}",
        "",
        f"{run['model']}, {run['finetuning_type']} fine-tuning on {', '.join(run['datasets'])} "
        f"({run['train']['train_examples']} examples, {run['train']['train_steps']} steps, "
        f"{run['train']['train_runtime_s']} s), template {run['template']}, prompt format {run['prompt_format']}.",
        "",
        time_line(run) + ".",
        "",
    ]
    keys = ("ex", "em") if has_em(report) else ("ex",)
    lines += ["| | " + " | ".join(k.upper() for k in keys) + " | questions |"]
    lines += ["| --- |" + " ---: |" * (len(keys) + 1)]
    for label, entry in models:
        lines.append(f"| {label} | " + " | ".join(_fmt(entry[k]) for k in keys) + f" | {entry['n']} |")
    if "before" in report:
        lines.append("| gain | " + " | ".join(_gain(report, k) for k in keys) + " | |")
    lines += stage_lines(report, keys)
    if report["after"]["by_hardness"]:  # none on a server: hardness parses SQLite SQL
        lines += [
            "",
            f"By hardness ({' / '.join(k.upper() for k in keys)}):",
            "",
            "| hardness | questions | " + " | ".join(label for label, _ in models) + " |",
        ]
        lines.append("| --- | ---: |" + " ---: |" * len(models))
        for level, entry in report["after"]["by_hardness"].items():
            cells = [" / ".join(_fmt(scored["by_hardness"][level][k]) for k in keys) for _, scored in models]
            lines.append(f"| {level} | {entry['n']} | " + " | ".join(cells) + " |")
    evaluation = report["evaluation"]
    where = f" on the server {evaluation['db_url']}" if evaluation.get("db_url") else ""
    meaning = (
        f"EM {evaluation['exact_match']}" if "exact_match" in evaluation else "EM = Spider exact set match"
    )
    lines += [
        "",
        f"Evaluated with {evaluation['evaluator_version']} against {evaluation['gold']}{where} "
        f"({evaluation['database_variant']}, {evaluation['timeout']} s per query); EX = execution match, "
        f"{meaning}.",
        "",
        "![training loss and EX by hardness](report.png)",
        "",
    ]
    return "\n".join(lines)


def stage_lines(report: dict, keys: tuple[str, ...] = ("ex", "em")) -> list[str]:
    """Markdown: each later stage's gain over the SFT run and its training, in a few words; `keys`:
    the scores the report has (EX, and EM unless the run was scored on a server)."""
    if not report.get("stages"):
        return []
    sft = report["after"]
    lines = ["", "Later stages, each against the SFT run (`after`):", ""]
    lines += [
        "| stage | " + " | ".join(f"{k.upper()} gain" for k in keys) + " | steps | training s | signals |",
        "| --- |" + " ---: |" * len(keys) + " ---: | ---: | --- |",
    ]
    for name, entry in report["stages"].items():
        signals = ", ".join(
            f"{key} {value:.3g}" for key, value in entry["signals"].items() if isinstance(value, (int, float))
        )
        gains = ["-" if entry[k] is None or sft[k] is None else f"{entry[k] - sft[k]:+.3f}" for k in keys]
        lines.append(
            f"| {name} | {' | '.join(gains)} | {entry['train']['train_steps']} | "
            f"{entry['train']['train_runtime_s']} | {signals or '-'} |"
        )
    return lines


def plot(path: Path, trainer_state: Path, report: dict) -> Path:
    """Training loss by step (left) beside EX by hardness before and after (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = json.loads(trainer_state.read_text())["log_history"] if trainer_state.is_file() else []
    steps = [(row["step"], row["loss"]) for row in history if "loss" in row]
    figure, (loss_axes, ex_axes) = plt.subplots(1, 2, figsize=(11, 4))
    if steps:
        loss_axes.plot(*zip(*steps), "-o", markersize=3)
    loss_axes.set(title="training loss", xlabel="step", ylabel="loss")
    loss_axes.grid(alpha=0.3)
    levels = [*report["after"]["by_hardness"], "all"]
    models = columns(report)
    width = 0.8 / len(models)
    for offset, (label, scored) in enumerate(models):
        values = [
            (scored["by_hardness"].get(level, {}).get("ex") if level != "all" else scored["ex"]) or 0.0
            for level in levels
        ]
        ex_axes.bar([i + offset * width for i in range(len(levels))], values, width, label=label)
    ex_axes.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(levels))], levels)
    ex_axes.set(title="execution accuracy (EX) by hardness", ylim=(0, 1))
    ex_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def print_table(report: dict, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = ("ex", "em") if has_em(report) else ("ex",)
    table = Table(title=f"sqltune run: {run_dir}")
    for column in ("", *(k.upper() for k in keys), "questions"):
        table.add_column(column, justify="right" if column else "left")
    for label, scored in columns(report):
        table.add_row(label, *(_fmt(scored[k]) for k in keys), str(scored["n"]))
    if "before" in report:
        table.add_row("gain", *(_gain(report, k) for k in keys), "")
    console = Console()  # the result of the whole command: stdout
    console.print(table)
    if "db_url" in report["evaluation"]:
        console.print(f"EX on the server {report['evaluation']['db_url']}; EM {NO_EM}")
    console.print(time_line(report["run"]))
    console.print(f"report: {run_dir / 'report.md'}, {run_dir / 'report.json'}, {run_dir / 'report.png'}")
