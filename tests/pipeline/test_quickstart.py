"""`sqltune run configs/quickstart.yaml` end to end, on the embedded SmolLM2 and the demo databases,
shortened through overrides (fewer steps and questions) to keep the suite fast."""

import json
from pathlib import Path

from sqltune.cli import main as cli
from sqltune.files import read_jsonl
from sqltune.pipeline.report import minutes

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["max_steps=2", "per_device_train_batch_size=4", "eval_limit=4", "max_new_tokens=24"]


def test_quickstart_runs_end_to_end_and_continues(tmp_path, capsys):
    out = tmp_path / "quickstart"
    assert cli(["run", str(ROOT / "configs" / "quickstart.yaml"), f"output_dir={out}", *SHORT]) == 0
    table = capsys.readouterr().out
    assert "before (base model)" in table and "after fine-tuning" in table and "gain" in table

    report = json.loads((out / "report.json").read_text())
    for label in ("before", "after"):
        assert report[label]["n"] == 4 and 0 <= report[label]["ex"] <= 1 and 0 <= report[label]["em"] <= 1
        assert sum(level["n"] for level in report[label]["by_hardness"].values()) == 4
        assert len(read_jsonl(out / "predictions" / f"{label}.jsonl")) == 4
        assert (out / "eval" / f"{label}.json").is_file()
    assert report["run"]["train"]["train_steps"] == 2 and report["run"]["prompt_format"] == "compact"
    timing = report["run"]["timing"]
    assert timing["trained_now"] and timing["train_s"] > 0 and timing["before_s"] > 0
    steps = sum(timing[k] for k in ("data_s", "train_s", "before_s", "after_s"))
    assert timing["total_s"] >= round(steps, 1) - 0.2  # each figure is rounded to 0.1 s
    assert report["run"]["precision"] in ("bf16", "fp32") and "wall time" in table
    markdown = (out / "report.md").read_text()
    assert "| before (base model) |" in markdown and "| after fine-tuning |" in markdown
    assert f"wall time {minutes(timing['total_s'])}: data" in markdown
    assert (out / "report.png").stat().st_size > 10_000
    assert (out / "adapter_model.safetensors").is_file() and (out / "data" / "demo_dev_gold.sql").is_file()

    assert cli(["run", str(ROOT / "configs" / "quickstart.yaml"), f"output_dir={out}", *SHORT]) == 0
    err = capsys.readouterr().err
    assert "reusing the trained run" in err and "4 (0 answered now)" in err
    assert "training reused" in (out / "report.md").read_text()
    again = json.loads((out / "report.json").read_text())["after"]
    assert [again[k] for k in ("ex", "em", "n", "by_hardness")] == [
        report["after"][k] for k in ("ex", "em", "n", "by_hardness")
    ]
