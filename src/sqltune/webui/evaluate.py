"""The Evaluate & predict tab: answer a registered dataset with a run, score it, browse the misses.

"Predict and evaluate" calls what `sqltune predict` and `sqltune eval` call: `run_predict` writes
`<run_dir>/predictions/<dataset>.jsonl` (`<dataset>_first<N>.jsonl` for the first N questions), then
`evaluate` scores it against the dataset's gold SQL on the dataset's databases (EM too where the
dataset records a tables.json) and writes `<run_dir>/eval/<same name>.json`. Both run in a thread
while the page shows how far prediction got (the predictions file grows batch by batch). The
evaluator runs in that thread without worker processes: forking a process that serves a web page
from several threads is not safe.

The result is the EX/EM table by hardness and the wrong answers, each with its question, gold and
predicted SQL and both results (run again through `sqltune.db`: read-only, time limit, row cap).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqltune.errors import ConfigError, SqltuneError

SHOWN_ROWS = 20  # rows of each result shown beside a wrong answer
LEVELS = ("easy", "medium", "hard", "extra", "all")


def output_name(dataset: str, max_samples: int | None) -> str:
    """The file stem of a prediction/report: the dataset, and how many questions when not all (a
    partial run must not replace a full one's files)."""
    return f"{dataset}_first{max_samples}" if max_samples else dataset


def write_gold(path: Path, examples) -> Path:
    """The gold queries of `examples` as `SQL<TAB>db_id` lines, in order (the evaluator's input)."""
    from sqltune.files import write_text

    write_text(path, "".join(f"{' '.join(e.sql.split())}\t{e.db_id}\n" for e in examples))
    return path


@dataclass
class EvalJob:
    """One predict + evaluate run, done in a thread; the page reads its fields as it goes."""

    run_dir: str
    dataset: str
    dataset_dir: str
    max_samples: int | None = None
    max_new_tokens: int = 256
    phase: str = "starting"  # starting, predicting, scoring, done, failed
    total: int | None = None
    error: str | None = None
    report: dict | None = None
    db_dir: str | None = None
    questions: dict[int, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def name(self) -> str:
        return output_name(self.dataset, self.max_samples)

    @property
    def predictions(self) -> Path:
        return Path(self.run_dir) / "predictions" / f"{self.name}.jsonl"

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="sqltune-webui-evaluate", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        try:
            self._run()
            self.phase = "done"
        except SqltuneError as err:
            self.error, self.phase = str(err), "failed"
        except Exception as err:  # shown on the page instead of lost in a thread
            self.error, self.phase = f"{type(err).__name__}: {err}", "failed"

    def _run(self) -> None:
        from sqltune.args import GeneratingArguments, ModelArguments, PredictArguments
        from sqltune.data.records import load_dataset, registered_db_dir
        from sqltune.evaluate.run import evaluate
        from sqltune.infer.command import run_predict
        from sqltune.infer.questions import dataset_examples

        if not self.run_dir or not self.dataset:
            raise ConfigError("choose a run directory and a dataset")
        dataset = load_dataset(self.dataset_dir, self.dataset)
        examples = dataset_examples(dataset, self.max_samples)
        self.db_dir = str(registered_db_dir(dataset.entry, self.dataset, "evaluation"))
        tables = dataset.entry.get("sqltune", {}).get("tables")
        self.total = len(examples)
        self.phase = "predicting"
        args = PredictArguments(
            run_dir=self.run_dir,
            dataset=self.dataset,
            dataset_dir=self.dataset_dir,
            output=str(self.predictions),
            max_samples=self.max_samples,
            overwrite=True,  # a fresh answer for each press of the button
        )
        run_predict(
            ModelArguments(), args, GeneratingArguments(max_new_tokens=self.max_new_tokens), progress=False
        )
        self.phase = "scoring"
        self.questions = {i: example.question for i, example in enumerate(examples)}
        eval_dir = Path(self.run_dir) / "eval"
        gold = write_gold(eval_dir / f"{self.name}_gold.sql", examples)
        self.report = evaluate(
            self.predictions,
            gold,
            self.db_dir,
            tables,
            etype="all" if tables else "exec",
            workers=1,
            output=eval_dir / f"{self.name}.json",
        )

    def answered(self) -> int:
        path = self.predictions
        return sum(1 for line in path.read_bytes().splitlines() if line.strip()) if path.is_file() else 0

    def status(self) -> str:
        seconds = time.perf_counter() - self.started
        if self.phase == "predicting":
            return f"Predicting: {self.answered()}/{self.total} questions answered ({seconds:.0f} s)."
        if self.phase == "scoring":
            return f"Scoring {self.total} predictions ({seconds:.0f} s)."
        if self.phase == "failed":
            return f"Failed: {self.error}"
        if self.phase == "done":
            return (
                f"Done in {seconds:.1f} s: {self.total} questions. Predictions in {self.predictions}, "
                f"report in {Path(self.run_dir) / 'eval' / (self.name + '.json')}."
            )
        return "Starting."


def _cell(score: dict | None) -> str:
    return "-" if not score else f"{score['rate']:.3f} ({score['correct']}/{score['count']})"


def levels_rows(report: dict) -> list[list]:
    """The EX/EM table by hardness: level, count, EX, EM (rate and correct/count)."""
    levels = report["summary"]["levels"]
    return [
        [level, levels[level]["count"], _cell(levels[level].get("exec")), _cell(levels[level].get("exact"))]
        for level in LEVELS
        if level in levels
    ]


def wrong_answers(report: dict) -> list[dict]:
    """The examples scored wrong: by execution, else (EX not computed) by exact match."""
    wrong = []
    for row in report["examples"]:
        score = row.get("exec") if row.get("exec") is not None else row.get("exact")
        if score == 0:
            wrong.append(row)
    return wrong


def build_tab(workspace, tab) -> None:
    import gradio as gr
    import pandas as pd

    from sqltune.db import execute
    from sqltune.db.sqlite import find_db_file
    from sqltune.webui.ask import result_frame

    last: dict[str, EvalJob] = {}
    level_headers = ["hardness", "count", "EX", "EM"]
    wrong_headers = ["#", "hardness", "question", "gold", "predicted", "EX", "EM", "error"]

    def outputs(job: EvalJob):
        levels = pd.DataFrame(levels_rows(job.report) if job.report else [], columns=level_headers)
        rows = wrong_answers(job.report) if job.report else []
        table = pd.DataFrame(
            [
                [
                    r["index"],
                    r.get("hardness") or "",
                    job.questions.get(r["index"], ""),
                    r["gold"],
                    r["pred"],
                    r.get("exec"),
                    r.get("exact"),
                    r.get("error") or "",
                ]
                for r in rows
            ],
            columns=wrong_headers,
        )
        choices = [(f"#{r['index']}: {job.questions.get(r['index'], '')[:80]}", r["index"]) for r in rows]
        picker = gr.Dropdown(choices=choices, value=None)
        return job.status(), levels, table, picker

    def run(run_dir, dataset, dataset_dir, max_samples, max_new_tokens):
        job = EvalJob(
            (run_dir or "").strip(),
            (dataset or "").strip(),
            (dataset_dir or "").strip() or workspace.args.data_dir,
            int(max_samples) if max_samples else None,
            int(max_new_tokens or 256),
        )
        last["job"] = job
        thread = job.start()
        while thread.is_alive():
            yield job.status(), gr.update(), gr.update(), gr.update()
            thread.join(0.5)
        yield outputs(job)

    def details(index):
        job = last.get("job")
        if job is None or job.report is None or index is None:
            return "", None, None
        row = next((r for r in job.report["examples"] if r["index"] == index), None)
        if row is None:
            return "", None, None
        path = find_db_file(job.db_dir, row["db_id"]) if job.db_dir else None
        text = [
            f"**Question:** {job.questions.get(index, '')}  ",
            f"**Database:** {row['db_id']}  ",
            f"**Gold:** `{row['gold']}`  ",
            f"**Predicted:** `{row['pred'] or '(empty)'}`",
        ]
        if row.get("error"):
            text.append(f"  \n**Scorer:** {row['error']}")
        if path is None:
            return "\n".join(text), None, None
        results = []
        for sql in (row["gold"], row["pred"]):
            result = execute(path, sql, timeout=workspace.args.timeout, max_rows=SHOWN_ROWS) if sql else None
            if result is None or (result.error and result.error != "too many rows"):
                results.append(pd.DataFrame({"error": [result.error if result else "empty prediction"]}))
            else:
                results.append(result_frame(result))
        return "\n".join(text), *results

    with gr.Row():
        run_dir = gr.Dropdown(
            workspace.runs(),
            value=(workspace.runs() or [None])[0],
            label="Run directory",
            allow_custom_value=True,
            elem_id="eval-run",
            scale=3,
        )
        dataset = gr.Dropdown(
            workspace.datasets(),
            value="demo_dev",
            label="Dataset (registered)",
            allow_custom_value=True,
            elem_id="eval-dataset",
            scale=2,
        )
        dataset_dir = gr.Textbox(workspace.args.data_dir, label="Dataset folder", elem_id="eval-dataset-dir")
    with gr.Row():
        max_samples = gr.Number(
            0, precision=0, label="First N questions (0: all)", elem_id="eval-max-samples"
        )
        max_new_tokens = gr.Number(256, precision=0, label="max_new_tokens", elem_id="eval-max-new-tokens")
        run_button = gr.Button("Predict and evaluate", variant="primary", elem_id="eval-run-button")
    status = gr.Markdown(elem_id="eval-status", elem_classes="sqltune-status")
    levels = gr.Dataframe(
        headers=level_headers, label="EX / EM by hardness", interactive=False, elem_id="eval-levels"
    )
    wrong = gr.Dataframe(
        headers=wrong_headers, label="Wrong answers", interactive=False, wrap=True, elem_id="eval-wrong"
    )
    picker = gr.Dropdown([], label="Look at a wrong answer", elem_id="eval-pick")
    detail = gr.Markdown(elem_id="eval-detail")
    with gr.Row():
        gold_rows = gr.Dataframe(label="Gold result", interactive=False, elem_id="eval-gold-rows")
        pred_rows = gr.Dataframe(label="Predicted result", interactive=False, elem_id="eval-pred-rows")

    run_button.click(
        run, [run_dir, dataset, dataset_dir, max_samples, max_new_tokens], [status, levels, wrong, picker]
    )
    picker.change(details, picker, [detail, gold_rows, pred_rows])
    tab.select(
        lambda d: (gr.Dropdown(choices=workspace.runs()), gr.Dropdown(choices=workspace.datasets(d))),
        dataset_dir,
        [run_dir, dataset],
        show_progress="hidden",
    )
