"""What happens when a command names a dataset that is not registered.

A recipe names its dataset (`dataset: demo_train`), but on a fresh clone nothing is registered
yet. The embedded demo datasets need nothing from the user and are deterministic, so they are
built on the spot, as `sqltune data source=demo` would build them. Every other dataset needs files
only the user has (a benchmark folder, a database), so the error names the `sqltune data` command
that builds it, read from the `<source>_<split>` name that command gives by default.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sqltune.args import SOURCES, PromptArguments, SourceArguments
from sqltune.data.records import REGISTRY
from sqltune.errors import DataError

DEMO_SOURCE = "demo"
SPLITS = ("train", "dev", "test")
# what a source reads besides its split, as typed on the command line; the others read data_dir=
SOURCE_INPUTS = {
    "demo": "",
    "sqlite": "db=<database> questions=<pairs file>",
    "jsonl": "questions=<pairs file> db_dir=<databases folder>",
    "synth": "db=<database>",
}


def split_name(name: str) -> tuple[str, str] | None:
    """(source, split) when `name` is the default name `sqltune data` gives, else None."""
    source, _, split = name.rpartition("_")
    return (source, split) if source in SOURCES and split in SPLITS else None


def build_command(name: str, dataset_dir: str | Path) -> str:
    """The `sqltune data` command that registers `name` in `dataset_dir`."""
    parts = split_name(name)
    if parts is None:
        return f"sqltune data source=<source> ... dataset_name={name} output_dir={dataset_dir} (docs/data.md)"
    source, split = parts
    inputs = SOURCE_INPUTS.get(source, f"data_dir=<{source} folder>")
    words = ["sqltune data", f"source={source}", inputs, f"split={split}", f"output_dir={dataset_dir}"]
    return " ".join(word for word in words if word)


def build_demo(dataset_dir: str | Path, name: str, split: str) -> None:
    """Build and register an embedded demo dataset (a few seconds), saying so in one line."""
    from sqltune.data.command import run_data

    print(
        f"dataset '{name}' is not registered in {dataset_dir}: building it from the embedded demo "
        f"databases, as `{build_command(name, dataset_dir)}` does",
        file=sys.stderr,
    )
    source = SourceArguments(source=DEMO_SOURCE, split=split, output_dir=str(dataset_dir))
    run_data(source, PromptArguments(), quiet=True)


def provide_missing(dataset_dir: str | Path, name: str, registered: list[str]) -> None:
    """Register the missing dataset `name` when it is an embedded demo one; otherwise raise an
    error that names the command which builds it."""
    from sqltune.data.demo import SPLITS as DEMO_SPLITS

    parts = split_name(name)
    if parts is not None and parts[0] == DEMO_SOURCE and parts[1] in DEMO_SPLITS:
        build_demo(dataset_dir, name, parts[1])
        return
    registry = Path(dataset_dir) / REGISTRY
    raise DataError(
        f"dataset '{name}' is not registered in {registry} (registered: {', '.join(registered) or 'none'}); "
        f"build it first: {build_command(name, dataset_dir)}"
    )
