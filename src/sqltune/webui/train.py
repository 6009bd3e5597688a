"""The Train tab: a `sqltune train` command built from a recipe or a form, run, followed and stopped.

The form holds the main options (model, dataset, stage, fine-tuning type, steps, learning rate, run
directory) and a box for any other `key=value`. A recipe (a `sqltune train` YAML of configs/) fills
the form with its values, and the command then names the recipe plus the options that differ from
it. The command shown is the command run: `python -m sqltune train ...` in its own process group,
so that "Stop" ends it with everything it started, and the page stays free while it trains.

Its progress is read from the run directory while it runs: `progress.json` (written at every step
by `sqltune.train.callbacks.ProgressFileCallback`), `train.log` (the Trainer's log records, for the
loss plot) and `webui_console.log` (what the process printed: the live log, and the error when it
fails).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqltune.errors import ConfigError, SqltuneError

NO_RECIPE = "(none: the form alone)"
FORM_KEYS = (
    "model_name_or_path",
    "dataset",
    "dataset_dir",
    "stage",
    "finetuning_type",
    "max_steps",
    "learning_rate",
    "output_dir",
)
ALWAYS_SHOWN = ("dataset", "output_dir")  # the command names them even when they are the defaults
CONSOLE_LOG = "webui_console.log"
LOG_RECORD = re.compile(r"step (\d+): (\{.*\})\s*$")
LOG_LINES = 40
SCROLL_LOG = (
    "() => { const t = document.querySelector('#train-log textarea'); if (t) t.scrollTop = t.scrollHeight; }"
)


def train_groups() -> tuple:
    from sqltune.train.command import GROUPS  # imports transformers: only when the tab is built

    return GROUPS


def recipes_dir() -> Path:
    """./configs when run from the project folder, else the project's own (a source checkout)."""
    local = Path("configs")
    project = Path(__file__).resolve().parents[3] / "configs"
    return local if local.is_dir() or not project.is_dir() else project


def train_recipes(folder: Path) -> list[str]:
    """The YAML files of `folder` that are `sqltune train` recipes: every key is a training option
    (the `sqltune run` recipes also name a data source or later stages)."""
    from sqltune.config import field_map, load_yaml

    fields = field_map(train_groups())
    recipes = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            keys = load_yaml(path)
        except SqltuneError:
            continue
        if keys and all(key in fields for key in keys):
            recipes.append(str(path))
    return recipes


def form_defaults(recipe: str | None, data_dir: str | None = None) -> dict:
    """The form's values: the recipe's, else the argument groups' defaults (with the page's
    `data_dir` as the dataset folder)."""
    import dataclasses

    from sqltune.config import load_yaml

    values = {}
    for group in train_groups():
        for item in dataclasses.fields(group):
            if item.name in FORM_KEYS and item.name not in values:
                values[item.name] = item.default
    if recipe:
        values.update({k: v for k, v in load_yaml(recipe).items() if k in FORM_KEYS})
    elif data_dir:
        values["dataset_dir"] = data_dir
    return values


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return str(value)


def _same(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return _text(a).strip() == _text(b).strip()


def command_argv(recipe: str | None, form: dict, extra: str = "") -> list[str]:
    """The `sqltune train` arguments: the recipe, the form's values that differ from it (or from
    the defaults), then the extra `key=value` items as typed."""
    base = form_defaults(recipe)  # what `sqltune train` would use for a key left out
    argv = [recipe] if recipe else []
    for key in FORM_KEYS:
        value = form.get(key)
        if value is None or _text(value).strip() == "":
            continue
        if _same(value, base.get(key)) and key not in ALWAYS_SHOWN:
            continue
        argv.append(f"{key}={_text(value).strip()}")
    try:
        argv += shlex.split(extra or "")
    except ValueError as err:
        raise ConfigError(f"more options: {err}") from None
    return argv


def show_command(argv: list[str]) -> str:
    return "sqltune train " + shlex.join(argv)


def check_command(argv: list[str]) -> Path:
    """Parse the command as `sqltune train` will (a bad key or value is a one-line error here,
    before any process starts); returns its run directory."""
    from sqltune.config import parse_args
    from sqltune.train.command import check_output_dir, resume_target

    _, data_args, _, training_args = parse_args(train_groups(), argv)
    if not data_args.dataset_names:
        raise ConfigError("dataset: choose a registered dataset to train on")
    check_output_dir(training_args, resume_target(training_args))
    return Path(training_args.output_dir)


@dataclass
class TrainJob:
    """A `sqltune train` process started from the page."""

    argv: list[str]
    run_dir: Path
    process: subprocess.Popen
    stopped: bool = False

    @classmethod
    def start(cls, argv: list[str], run_dir: Path) -> TrainJob:
        import sqltune

        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "progress.json").unlink(missing_ok=True)  # a failed attempt's, not this one's
        env = dict(os.environ)
        package_root = str(Path(sqltune.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"  # the live log shows lines as they are printed
        with open(run_dir / CONSOLE_LOG, "wb") as console:
            process = subprocess.Popen(
                [sys.executable, "-m", "sqltune", "train", *argv],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stop() ends its children too
            )
        return cls(argv, run_dir, process)

    def state(self) -> str:
        """running, finished, failed or stopped."""
        code = self.process.poll()
        if code is None:
            return "running"
        if self.stopped:
            return "stopped"
        return "finished" if code == 0 else "failed"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.stopped = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def read_progress(run_dir: Path) -> dict | None:
    """progress.json, or None before the first step has written it."""
    from sqltune.files import read_json

    path = run_dir / "progress.json"
    try:
        progress = read_json(path, "progress file") if path.is_file() else None
    except SqltuneError:
        return None
    return progress if isinstance(progress, dict) else None


def loss_points(run_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) of every training-loss record in train.log, in order."""
    path = run_dir / "train.log"
    if not path.is_file():
        return []
    import json

    points = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = LOG_RECORD.search(line)
        if not match:
            continue
        try:
            record = json.loads(match.group(2))
            points.append((int(match.group(1)), float(record["loss"])))
        except (ValueError, KeyError, TypeError):  # eval or summary records carry no training loss
            continue
    return points


def console_tail(run_dir: Path, lines: int = LOG_LINES) -> str:
    """The last lines the process printed (progress-bar redraws count as lines)."""
    path = run_dir / CONSOLE_LOG
    if not path.is_file():
        return ""
    text = path.read_bytes()[-64_000:].decode("utf-8", errors="replace")
    rows = [row.rstrip() for row in re.split(r"[\r\n]+", text) if row.strip()]
    return "\n".join(rows[-lines:])


def last_error(run_dir: Path) -> str:
    """The line that says why a training failed: sqltune's one-line error, else the last line."""
    rows = console_tail(run_dir, 200).splitlines()
    errors = [row for row in rows if "error" in row.lower()]
    return (errors or rows or ["(no output)"])[-1].strip()


def _seconds(value) -> str:
    if value is None:
        return "?"
    value = float(value)
    return f"{value:.1f} s" if value < 120 else f"{int(value // 60)} min {int(value % 60)} s"


def progress_line(progress: dict | None, state: str) -> str:
    """step/total, elapsed, remaining, last loss and status, on one line."""
    if not progress:
        return f"status **{state}**" + (" (waiting for the first step)" if state == "running" else "")
    loss = progress.get("loss")
    parts = [
        f"step **{progress.get('step', 0)}/{progress.get('max_steps', '?')}**",
        f"elapsed {_seconds(progress.get('elapsed_s'))}",
        f"remaining {_seconds(progress.get('remaining_s'))}",
        f"loss {loss:.4f}" if isinstance(loss, (int, float)) else "loss ?",
        f"status **{state}**",
    ]
    return " · ".join(parts)


def build_tab(workspace, tab) -> None:
    import gradio as gr
    import pandas as pd

    from sqltune.args import FINETUNING_TYPES, STAGES, stage_available

    recipes = train_recipes(recipes_dir())
    default_recipe = next((r for r in recipes if r.endswith("quickstart_lora.yaml")), NO_RECIPE)
    initial = form_defaults(None if default_recipe == NO_RECIPE else default_recipe, workspace.args.data_dir)

    def loss_plot(points: list[tuple[int, float]]):
        # the whole component, not just its data: updated with data alone, Gradio 6.31 kept the
        # axis layout of the first (empty) data and clipped the tick labels
        frame = pd.DataFrame(points, columns=["step", "loss"]) if points else None
        return gr.LinePlot(value=frame, x="step", y="loss")

    def recipe_of(choice):
        return None if not choice or choice == NO_RECIPE else choice

    def form_of(values) -> dict:
        return dict(zip(FORM_KEYS, values))

    def preview(recipe, extra, *values):
        try:
            return show_command(command_argv(recipe_of(recipe), form_of(values), extra))
        except SqltuneError as err:
            return f"# {err}"

    def fill(recipe, extra, output_dir):
        try:
            values = form_defaults(recipe_of(recipe), workspace.args.data_dir)
        except SqltuneError as err:
            return (*[gr.update() for _ in FORM_KEYS], f"# {err}")
        if recipe_of(recipe) is None:  # keep the run directory typed, or the fresh default
            values["output_dir"] = output_dir
        updates = [values.get(key) for key in FORM_KEYS]
        return (*updates, preview(recipe, extra, *updates))

    def poll():
        job = workspace.train_job
        if job is None:
            return "No training started from this page yet.", "", "", loss_plot([]), gr.Timer(active=False)
        state = job.state()
        if state == "finished" and str(job.run_dir) not in workspace.started_runs:
            workspace.started_runs.append(str(job.run_dir))
        messages = {
            "running": f"Training in {job.run_dir} (process {job.process.pid}).",
            "finished": f"Finished: the run is in {job.run_dir}.",
            "stopped": f"Stopped: {job.run_dir} holds what was saved before.",
            "failed": f"Failed (exit code {job.process.returncode}): {last_error(job.run_dir)}",
        }
        progress = progress_line(read_progress(job.run_dir), state)
        log = console_tail(job.run_dir)
        return (
            messages[state],
            progress,
            log,
            loss_plot(loss_points(job.run_dir)),
            gr.Timer(active=state == "running"),
        )

    def start(recipe, extra, *values):
        job = workspace.train_job
        if job is not None and job.state() == "running":
            return (f"A training is running in {job.run_dir}: stop it first.", *poll()[1:])
        try:
            argv = command_argv(recipe_of(recipe), form_of(values), extra)
            run_dir = check_command(argv)
        except SqltuneError as err:
            return f"Not started: {err}", "", "", loss_plot([]), gr.Timer()
        workspace.train_job = TrainJob.start(argv, run_dir)
        return poll()

    def stop():
        if workspace.train_job is not None:
            workspace.train_job.stop()
        return poll()

    stages = [stage for stage in STAGES if stage_available(stage)]
    with gr.Row():
        recipe = gr.Dropdown(
            [NO_RECIPE, *recipes],
            value=default_recipe,
            label="Recipe (configs/*.yaml)",
            elem_id="train-recipe",
        )
    with gr.Row():
        model = gr.Textbox(
            _text(initial["model_name_or_path"]),
            label="Model (directory, .gguf or smollm2-135m)",
            elem_id="train-model",
        )
        dataset = gr.Dropdown(
            workspace.datasets(),
            value=initial.get("dataset") or "demo_train",
            label="Dataset (registered)",
            allow_custom_value=True,
            elem_id="train-dataset",
        )
        dataset_dir = gr.Textbox(
            _text(initial["dataset_dir"]),
            label="Dataset folder",
            elem_id="train-dataset-dir",
        )
    with gr.Row():
        stage = gr.Dropdown(stages, value=initial["stage"], label="Stage", elem_id="train-stage")
        finetuning = gr.Dropdown(
            list(FINETUNING_TYPES),
            value=initial["finetuning_type"],
            label="Fine-tuning type",
            elem_id="train-finetuning",
        )
        max_steps = gr.Number(
            initial["max_steps"],
            precision=0,
            label="Steps (-1: num_train_epochs decides)",
            elem_id="train-max-steps",
        )
        learning_rate = gr.Number(initial["learning_rate"], label="Learning rate", elem_id="train-lr")
    output_dir = gr.Textbox(
        _text(initial["output_dir"])
        if default_recipe != NO_RECIPE
        else (lambda: time.strftime("saves/webui-%Y%m%d-%H%M%S")),
        label="Run directory (output_dir)",
        elem_id="train-output-dir",
    )
    extra = gr.Textbox(
        label="More options (key=value ..., as on the command line)",
        placeholder="per_device_train_batch_size=8 lora_rank=16 cutoff_len=512",
        elem_id="train-extra",
    )
    command = gr.Code(
        label="The command",
        language="shell",
        interactive=False,
        wrap_lines=True,
        show_line_numbers=False,
        elem_id="train-command",
    )
    with gr.Row():
        start_button = gr.Button("Start", variant="primary", elem_id="train-start")
        stop_button = gr.Button("Stop", variant="stop", elem_id="train-stop")
    status = gr.Markdown(elem_id="train-status", elem_classes="sqltune-status")
    progress = gr.Markdown(elem_id="train-progress", elem_classes="sqltune-status")
    with gr.Row():
        log = gr.Textbox(label="Log", lines=14, max_lines=14, interactive=False, elem_id="train-log", scale=3)
        loss = gr.LinePlot(x="step", y="loss", title="Training loss", elem_id="train-loss", scale=2)
    timer = gr.Timer(1.0, active=False)

    form = [model, dataset, dataset_dir, stage, finetuning, max_steps, learning_rate, output_dir]
    watched = [recipe, extra, *form]
    monitor = [status, progress, log, loss, timer]
    gr.on([item.change for item in [extra, *form]], preview, watched, command, show_progress="hidden")
    recipe.change(fill, [recipe, extra, output_dir], [*form, command])
    start_button.click(start, watched, monitor)
    stop_button.click(stop, None, monitor)
    timer.tick(poll, None, monitor, show_progress="hidden")
    log.change(None, None, None, js=SCROLL_LOG)  # Gradio scrolls a streamed textbox only
    tab.select(poll, None, monitor, show_progress="hidden")
    tab.select(preview, watched, command, show_progress="hidden")
    tab.select(
        lambda d: gr.Dropdown(choices=workspace.datasets(d)), dataset_dir, dataset, show_progress="hidden"
    )
