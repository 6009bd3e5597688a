"""The Ask tab: pick a database and a model, ask, see (and edit) the SQL, its rows and a chart, and
mark the answer correct or wrong.

The databases on offer are the demo databases (written once under `<data_dir>/demo_databases`, as
`sqltune data source=demo` writes them), those of `databases=`, and those added on the page: a
folder of `<db>/<db>.sqlite`, an uploaded SQLite file (copied to `<data_dir>/uploads/<db>/<db>.sqlite`,
a folder `sqltune data source=jsonl db_dir=` reads) or a SQLAlchemy URL. The page only ever sees a
database's label; URLs with their passwords stay on the server.

The model answers through `sqltune.infer.ask.Asker` (the code of `sqltune ask`), loaded on first
use and kept open per model. The SQL box is editable; "Run edited SQL" runs it through
`sqltune.db.execute` (read-only, time limit, row cap), as every answer of the model is run. "Correct"
and "Wrong" append the question and the SQL in the box to the feedback file
(`sqltune.feedback.verdicts`); an answer is recorded as correct only if its SQL runs.
"""

from __future__ import annotations

import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from sqltune.db.sqlite import SQLITE_SUFFIXES
from sqltune.db.urls import hide_password, is_url
from sqltune.errors import DataError, SqltuneError

BASE_MODEL = "base model (smollm2-135m, not fine-tuned)"
UPLOADS = "uploads"


@dataclass
class Database:
    label: str  # what the page shows
    target: str  # a SQLite path or a URL with its password: never sent to the page
    db_id: str | None = None  # as the data readers name it, read when first needed


class Catalog:
    """The databases the Ask tab offers, by label."""

    def __init__(self) -> None:
        self.entries: dict[str, Database] = {}
        self.lock = threading.Lock()

    def labels(self) -> list[str]:
        return list(self.entries)

    def add(self, label: str, target: str) -> str:
        """Offer `target` under `label` (made unique); a target already offered keeps its label."""
        with self.lock:
            for entry in self.entries.values():
                if entry.target == target:
                    return entry.label
            unique, number = label, 2
            while unique in self.entries:
                unique, number = f"{label} ({number})", number + 1
            self.entries[unique] = Database(unique, target)
            return unique

    def add_folder(self, folder: str | Path, prefix: str | None = None) -> list[str]:
        """Every SQLite database of a folder: `<db>/<db>.sqlite` (a Spider-style database folder)
        or loose files."""
        from sqltune.db.sqlite import folder_databases

        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise DataError(f"database folder not found: {folder}")
        found = folder_databases(folder)
        if not found:
            raise DataError(f"no databases in {folder} (expected <db_id>/<db_id>.sqlite or *.sqlite)")
        return [self.add(f"{prefix or folder.name}/{db_id}", str(path)) for db_id, path in found]

    def add_file(self, path: str | Path) -> str:
        from sqltune.data.introspect import schema_from_sqlite

        path = Path(path).expanduser()
        schema_from_sqlite(path)  # a file that is not a SQLite database is refused here, by name
        return self.add(path.name, str(path))

    def add_url(self, url: str) -> str:
        from sqltune.data.introspect import schema_from_url

        url = url.strip()
        if not is_url(url):
            raise DataError(f"'{url}' is not a SQLAlchemy URL (postgresql://user:password@host/db, ...)")
        schema = schema_from_url(url, values=0)  # it answers, or a one-line error without the password
        label = self.add(hide_password(url), url)
        self.entries[label].db_id = schema.db_id
        return label

    def add_source(self, source: str) -> list[str]:
        """One item of `databases=`: a folder, a SQLite file or a URL."""
        if is_url(source):
            return [self.add(hide_password(source), source)]  # connected when first asked
        if Path(source).is_dir():
            return self.add_folder(source)
        return [self.add_file(source)]

    def add_upload(self, uploaded: str | Path, uploads_dir: Path) -> str:
        """Copy an uploaded SQLite file to `<uploads_dir>/<name>/<name>.sqlite` and offer it."""
        from sqltune.data.introspect import schema_from_sqlite

        uploaded = Path(uploaded)
        name = re.sub(r"[^\w-]+", "_", uploaded.stem).strip("_") or "database"  # a plain folder name
        schema_from_sqlite(uploaded)  # refuse anything that is not a SQLite database before copying
        target = uploads_dir / name / f"{name}.sqlite"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(uploaded, target)
        for entry in self.entries.values():  # an upload under the same name replaces the older one
            if entry.target == str(target):
                entry.db_id = None
        return self.add(f"{UPLOADS}/{name}", str(target))

    def get(self, label: str | None) -> Database:
        entry = self.entries.get(label or "")
        if entry is None:
            raise DataError("choose a database first")
        return entry

    def db_id(self, label: str) -> str:
        """The db_id `sqltune data` will give this database (what a verdict records)."""
        from sqltune.data.introspect import schema_from_url

        entry = self.get(label)
        if entry.db_id is None:
            target = entry.target
            entry.db_id = schema_from_url(target, values=0).db_id if is_url(target) else Path(target).stem
        return entry.db_id


def demo_folder(data_dir: str | Path) -> Path:
    """The demo databases under `data_dir`, written when any is missing (deterministic, quick)."""
    from sqltune.data.demo import FOLDER, build_demo_databases
    from sqltune.data.demo_domains import DOMAINS

    folder = Path(data_dir) / FOLDER
    if not all((folder / d.name / f"{d.name}.sqlite").is_file() for d in DOMAINS):
        build_demo_databases(folder)
    return folder


def build_catalog(data_dir: str | Path, sources: list[str] | None) -> Catalog:
    catalog = Catalog()
    catalog.add_folder(demo_folder(data_dir), prefix="demo")
    uploads = Path(data_dir) / UPLOADS
    if uploads.is_dir() and any(uploads.glob("*/*.sqlite")):
        catalog.add_folder(uploads, prefix=UPLOADS)
    for source in sources or []:
        catalog.add_source(source)
    return catalog


class Askers:
    """One `Asker` per model, loaded on first use and kept open; one question at a time per model."""

    def __init__(self) -> None:
        self.open: dict[str, tuple[object, threading.Lock]] = {}
        self.lock = threading.Lock()

    def get(self, model: str | None):
        from sqltune.args import GeneratingArguments, ModelArguments
        from sqltune.infer.ask import Asker
        from sqltune.infer.engine import model_source

        key = (model or "").strip() or BASE_MODEL
        with self.lock:
            if key not in self.open:
                run_dir = None if key == BASE_MODEL else key
                asker = Asker(model_source(run_dir, ModelArguments()), GeneratingArguments())
                self.open[key] = (asker, threading.Lock())
            return self.open[key]


def model_choices(workspace) -> list[str]:
    return [*workspace.runs(), BASE_MODEL]


def default_model(workspace) -> str:
    """`run_dir=`, else the newest fine-tuned run (`sqltune.run_index`, as `sqltune ask`), else
    the base model."""
    from sqltune.run_index import find_run

    if workspace.args.run_dir:
        return workspace.args.run_dir
    try:
        found = find_run(None)
    except SqltuneError:
        found = None
    return str(found) if found else BASE_MODEL


def unique_columns(columns: list[str]) -> list[str]:
    """Column names made unique (`count(*)`, `count(*) (2)`): a table needs distinct headers."""
    seen: dict[str, int] = {}
    out = []
    for name in columns:
        name = name or "?"
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def result_frame(result):
    """A query result as a pandas DataFrame (values as JSON-friendly cells)."""
    import pandas as pd

    from sqltune.data.introspect import plain_value

    rows = [[plain_value(value) for value in row] for row in result.rows]
    return pd.DataFrame(rows, columns=unique_columns(list(result.columns)))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def chart_columns(frame) -> tuple[str, str] | None:
    """(label column, numeric column) when the result can be drawn as a bar chart: a column of text
    labels and a column of numbers, over at least one row; None otherwise."""
    if frame.empty:
        return None
    columns = list(frame.columns)
    values = {name: frame[name].dropna().tolist() for name in columns}  # NULLs are no label, no number
    label = next((c for c in columns if values[c] and all(isinstance(v, str) for v in values[c])), None)
    number = next(
        (c for c in columns if c != label and values[c] and all(_is_number(v) for v in values[c])), None
    )
    return (label, number) if label and number else None


def describe(result, max_rows: int) -> str:
    """One status line for a query's result."""
    if result.error == "too many rows":
        return f"First {max_rows} rows shown (the query returns more), {result.seconds:.3f} s."
    if result.error:
        return f"The query failed: {result.error}"
    return f"{len(result.rows)} row(s), {result.seconds:.3f} s."


def build_tab(workspace, tab) -> None:
    import gradio as gr

    from sqltune.db import execute
    from sqltune.feedback.verdicts import Verdict, append_verdict
    from sqltune.infer.ask import NOT_SQL, preview

    args = workspace.args
    catalog = build_catalog(args.data_dir, args.databases)
    askers = Askers()

    def shown(result):
        """(table, chart, status) updates for a query result."""
        frame = result_frame(result)
        pair = chart_columns(frame)
        chart = gr.BarPlot(visible=False)
        if pair:
            bottom = min(0.0, float(frame[pair[1]].min()))  # bars start at zero (or below, if negative)
            chart = gr.BarPlot(
                value=frame,
                x=pair[0],
                y=pair[1],
                title=f"{pair[1]} by {pair[0]}",
                y_lim=[bottom, None],
                visible=True,
            )
        return frame, chart, describe(result, args.max_rows)

    def failed(message: str):
        return None, gr.BarPlot(visible=False), message

    def ask(label, model, question):
        try:
            database = catalog.get(label)
            if not (question or "").strip():
                raise DataError("type a question first")
            asker, lock = askers.get(model)
            with lock:
                reply = asker.ask(database.target, question.strip(), args.timeout, args.max_rows)
        except SqltuneError as err:
            return ("", *failed(str(err)))
        if reply.result.error == NOT_SQL:
            message = (
                f"The model's answer is not SQL: {preview(reply.raw)}. "
                "Edit it into SQL and press **Run edited SQL**."
            )
            return (reply.sql or reply.raw, *failed(message))
        return (reply.sql, *shown(reply.result))

    def run_edited(label, sql):
        try:
            database = catalog.get(label)
            if not (sql or "").strip():
                raise DataError("there is no SQL to run")
        except SqltuneError as err:
            return failed(str(err))
        return shown(execute(database.target, sql, timeout=args.timeout, max_rows=args.max_rows))

    def record(verdict: str):
        def handler(label, model, question, sql):
            try:
                database = catalog.get(label)
                if verdict == "correct":  # gold SQL must at least run
                    result = execute(database.target, sql or "", timeout=args.timeout, max_rows=1)
                    if result.error and result.error != "too many rows":
                        return f"Not recorded: the SQL fails on the database ({result.error})."
                item = Verdict(
                    question=question or "",
                    sql=sql or "",
                    db_id=catalog.db_id(label),
                    verdict=verdict,
                    db_path=database.target,
                    model=(model or BASE_MODEL),
                )
                count = append_verdict(args.feedback, item)
            except SqltuneError as err:
                return f"Not recorded: {err}"
            return f"Recorded as **{verdict}** in {args.feedback} ({count} verdict(s) in the file)."

        return handler

    def choose(labels, message):
        return gr.Dropdown(choices=catalog.labels(), value=labels[0] if labels else None), message

    def open_folder(folder):
        try:
            labels = catalog.add_folder(folder.strip())
        except SqltuneError as err:
            return gr.Dropdown(), str(err)
        return choose(labels, f"{len(labels)} database(s) added from {folder}.")

    def upload(path):
        if not path:
            return gr.Dropdown(), ""
        try:
            label = catalog.add_upload(path, Path(args.data_dir) / UPLOADS)
        except SqltuneError as err:
            return gr.Dropdown(), str(err)
        return choose([label], f"Added {label}.")

    def connect(url):
        try:
            label = catalog.add_url(url)
        except SqltuneError as err:
            return gr.Dropdown(), str(err)
        return choose([label], f"Connected to {label}.")

    labels = catalog.labels()
    with gr.Row():
        database = gr.Dropdown(labels, value=labels[0], label="Database", elem_id="ask-db", scale=2)
        model = gr.Dropdown(
            model_choices(workspace),
            value=default_model(workspace),
            label="Model (a run directory, or the base model)",
            allow_custom_value=True,
            elem_id="ask-model",
            scale=3,
        )
    with gr.Accordion("Add a database", open=False):
        with gr.Row():
            folder = gr.Textbox(label="Folder of <db>/<db>.sqlite (Spider-style)", elem_id="ask-folder")
            open_button = gr.Button("Open folder", elem_id="ask-open-folder", scale=0)
        with gr.Row():
            url = gr.Textbox(label="SQLAlchemy URL (postgresql://user:password@host/db)", elem_id="ask-url")
            connect_button = gr.Button("Connect", elem_id="ask-connect", scale=0)
        uploaded = gr.File(
            label="Upload a SQLite file",
            file_types=list(SQLITE_SUFFIXES),
            type="filepath",
            elem_id="ask-upload",
        )
    with gr.Row():
        question = gr.Textbox(label="Question", placeholder="How many ...?", elem_id="ask-question", scale=4)
        ask_button = gr.Button("Ask", variant="primary", elem_id="ask-button", scale=0)
    sql = gr.Code(label="SQL (editable)", language="sql", interactive=True, elem_id="ask-sql")
    with gr.Row():
        run_button = gr.Button("Run edited SQL", elem_id="ask-run")
        correct_button = gr.Button("Correct", elem_id="ask-correct")
        wrong_button = gr.Button("Wrong", elem_id="ask-wrong")
    status = gr.Markdown(elem_id="ask-status", elem_classes="sqltune-status")
    with gr.Row():
        table = gr.Dataframe(label="Result", interactive=False, elem_id="ask-result", scale=3)
        chart = gr.BarPlot(visible=False, elem_id="ask-chart", scale=2)

    ask_inputs = [database, model, question]
    ask_button.click(ask, ask_inputs, [sql, table, chart, status])
    question.submit(ask, ask_inputs, [sql, table, chart, status])
    run_button.click(run_edited, [database, sql], [table, chart, status])
    verdict_inputs = [database, model, question, sql]
    correct_button.click(record("correct"), verdict_inputs, status)
    wrong_button.click(record("wrong"), verdict_inputs, status)
    open_button.click(open_folder, folder, [database, status])
    connect_button.click(connect, url, [database, status])
    uploaded.upload(upload, uploaded, [database, status])
    tab.select(lambda: gr.Dropdown(choices=model_choices(workspace)), None, model, show_progress="hidden")
