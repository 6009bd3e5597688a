"""The finished runs of `sqltune run`, remembered so that a model is found without being named.

The base model cannot write SQL until it is fine-tuned, so `sqltune ask` without `run_dir` (and any
later front end: serve, webui) should answer with a fine-tuned run. Run directories can live
anywhere and the user can ask from any working directory, so `sqltune run` records each finished
run in one small file in the sqltune cache (`$SQLTUNE_CACHE/runs.json`, by default
`~/.cache/sqltune/runs.json`):

    {"runs": [{"run_dir": "/abs/outputs/quickstart", "source": "demo", "database": null,
               "finished": "2025-01-01T12:00:00+00:00"}, ...]}

`fine_tuned_run(db)` picks, newest first, the run that `configs/own_database.yaml` made for that very
database file (`source: synth`), else a run of the quickstart's (`source: demo`). Runs whose
directory is gone are skipped. Without either it raises one line that gives the command to make one.
"""

from __future__ import annotations

import shlex
from datetime import datetime, timezone
from pathlib import Path

from sqltune.errors import DataError, SqltuneError
from sqltune.files import read_json, write_json
from sqltune.models.embedded import cache_root
from sqltune.runcard import RUN_CARD

INDEX_NAME = "runs.json"
OWN_DATABASE_SOURCE = "synth"  # the source of configs/own_database.yaml
QUICKSTART_SOURCE = "demo"  # the source of configs/quickstart.yaml


def index_path() -> Path:
    return cache_root() / INDEX_NAME


def database_key(db: str | None) -> str | None:
    """How a database is named in the index: its absolute path (a SQLAlchemy URL has no key: runs
    for one database are made from SQLite files only)."""
    if not db or "://" in db:
        return None
    return str(Path(db).expanduser().resolve())


def finished_runs() -> list[dict]:
    """The recorded runs whose directory still holds a run card, oldest first."""
    path = index_path()
    if not path.is_file():
        return []
    index = read_json(path, "run index")
    runs = index.get("runs") if isinstance(index, dict) else None
    if not isinstance(runs, list):
        raise DataError(f"{path}: malformed run index (delete it; `sqltune run` writes it again)")
    return [
        run
        for run in runs
        if isinstance(run, dict)
        and isinstance(run.get("run_dir"), str)
        and (Path(run["run_dir"]) / RUN_CARD).is_file()
    ]


def record_run(run_dir: str | Path, source: str, database: str | None = None) -> None:
    """Remember a finished run (a rerun of the same directory replaces its entry)."""
    run_dir = str(Path(run_dir).resolve())
    runs = [run for run in finished_runs() if run["run_dir"] != run_dir]
    runs.append(
        {
            "run_dir": run_dir,
            "source": source,
            "database": database_key(database),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    write_json(index_path(), {"runs": runs})


def find_run(db: str | None) -> Path | None:
    """The newest run made for `db` by the own-database recipe, else the newest quickstart run."""
    runs = finished_runs()
    key = database_key(db)
    own = [r for r in runs if key and r.get("source") == OWN_DATABASE_SOURCE and r.get("database") == key]
    chosen = own or [r for r in runs if r.get("source") == QUICKSTART_SOURCE]
    return Path(chosen[-1]["run_dir"]) if chosen else None


def recipe(name: str) -> str:
    """A recipe's path as the user can type it: relative when run from the project folder, else
    the project's absolute path (a source checkout), else as the README writes it."""
    relative = Path("configs") / name
    project = Path(__file__).resolve().parents[2] / relative
    return str(relative if relative.is_file() or not project.is_file() else project)


def fine_tuned_run(db: str | None) -> Path:
    """The run to answer questions about `db` with, or one line that says how to make one."""
    found = find_run(db)
    if found is not None:
        return found
    quickstart = f"`sqltune run {recipe('quickstart.yaml')}`"
    key = database_key(db)
    make = (
        f"make one for this database with `sqltune run {recipe('own_database.yaml')} db={shlex.quote(str(db))}` "
        f"(a few minutes) or run {quickstart}"
        if key is not None
        else f"make one with {quickstart}"
    )
    raise SqltuneError(
        f"the base model cannot write SQL until it is fine-tuned, and there is no fine-tuned run yet: {make}; "
        "or choose a model with run_dir=..."
    )
