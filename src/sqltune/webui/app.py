"""The page of `sqltune webui`: four tabs over the same functions as the CLI.

Every button calls what the matching command calls (no second implementation): the Ask tab holds
an `sqltune.infer.ask.Asker` open per model and runs edited SQL through `sqltune.db`, the Train tab
runs the very `sqltune train ...` command it previews in a subprocess, the Evaluate tab calls
`run_predict` and `evaluate`, and the Export tab `run_export`. What the tabs share (the command's
arguments, the run directories to offer, the registered datasets) is the `Workspace`.

The page is served on 127.0.0.1 by default and never through a public Gradio share link: it starts
trainings and reads databases with the rights of the user who started it.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqltune.args import WebuiArguments
from sqltune.errors import ConfigError
from sqltune.runcard import RUN_CARD

TITLE = "sqltune"
RUN_FOLDERS = ("saves", "outputs")  # where `sqltune train` and `sqltune run` put runs by default
CSS = ".sqltune-status p { margin: 0; } #train-log textarea { font-family: monospace; font-size: 12px; }"


@dataclass
class Workspace:
    """What the tabs share: the command's arguments, the runs trained from the page, and the
    training running now (one at a time: the Train tab's `TrainJob`)."""

    args: WebuiArguments
    started_runs: list[str] = field(default_factory=list)  # by the Train tab, oldest first
    train_job: Any = None

    def close(self) -> None:
        """Stop the training the page started, if it still runs (nothing else would show it)."""
        if self.train_job is not None:
            self.train_job.stop()

    def runs(self) -> list[str]:
        """Finished run directories to offer, the likeliest first: `run_dir=`, the runs trained
        from this page, the runs `sqltune run` recorded, then any under ./saves and ./outputs."""
        from sqltune.errors import SqltuneError
        from sqltune.run_index import finished_runs

        candidates = [self.args.run_dir, *reversed(self.started_runs)]
        with contextlib.suppress(SqltuneError):  # a malformed run index must not take the page down
            candidates += [run["run_dir"] for run in reversed(finished_runs())]
        patterns = (f"*/{RUN_CARD}", f"*/*/{RUN_CARD}")  # saves/<run>, outputs/<recipe>/<run>
        cards = [
            card for folder in RUN_FOLDERS for pattern in patterns for card in Path(folder).glob(pattern)
        ]
        candidates += [str(card.parent) for card in sorted(cards, key=lambda p: -p.stat().st_mtime)]
        found: list[str] = []
        for run in candidates:
            if run and (Path(run) / RUN_CARD).is_file() and run not in found:
                found.append(run)
        return found

    def datasets(self, dataset_dir: str | None = None) -> list[str]:
        """The datasets registered in `dataset_dir` (default `data_dir`), and the demo's two, which
        every command builds on first use."""
        from sqltune.data.records import load_registry
        from sqltune.errors import SqltuneError

        try:
            names = sorted(load_registry(dataset_dir or self.args.data_dir))
        except SqltuneError:
            names = []
        return names + [name for name in ("demo_train", "demo_dev") if name not in names]


def build_app(workspace: Workspace):
    """The Gradio Blocks of the page (not yet served)."""
    import gradio as gr

    from sqltune.webui import ask, evaluate, export, train

    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown("# sqltune\nAsk a database, fine-tune a model, score it, export it.")
        with gr.Tabs():
            with gr.Tab("Ask a database", id="ask") as ask_tab:
                ask.build_tab(workspace, ask_tab)
            with gr.Tab("Train", id="train") as train_tab:
                train.build_tab(workspace, train_tab)
            with gr.Tab("Evaluate & predict", id="evaluate") as evaluate_tab:
                evaluate.build_tab(workspace, evaluate_tab)
            with gr.Tab("Export", id="export") as export_tab:
                export.build_tab(workspace, export_tab)
    return app


def free_port(host: str) -> int:
    """A TCP port nothing listens on now (for port=0)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def launch(app, args: WebuiArguments) -> str:
    """Serve the page on args.host:args.port in a thread (never shared publicly); returns its URL.
    `app.block_thread()` then waits for Ctrl-C, `app.close()` stops it."""
    port = args.port or free_port(args.host)
    app.queue(default_concurrency_limit=1)
    try:
        _, url, _ = app.launch(
            server_name=args.host,
            server_port=port,
            share=False,
            prevent_thread_lock=True,
            quiet=True,
            ssr_mode=False,
            css=CSS,
            footer_links=["gradio"],
        )
    except OSError as err:  # the port is taken, or the address is not this machine's
        reason = str(err).split(". ")[0]  # Gradio goes on about environment variables
        raise ConfigError(f"cannot listen on {args.host}:{port}: {reason}") from None
    return url
