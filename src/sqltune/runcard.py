"""The run card: `sqltune_run.json` in every run directory.

It records everything a later step needs to use the trained model without being told again: the
base model, the chat template, the prompt format and its options, the fine-tuning type, the data
and length budget, every argument, library versions, the git revision and the final metrics.
`sqltune predict`, `export` and `eval` read it, so a template or prompt format is never mismatched.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sqltune.errors import DataError
from sqltune.files import read_json, write_json

RUN_CARD = "sqltune_run.json"
TRACKED_PACKAGES = ("sqltune", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "deepspeed")


@dataclass
class RunCard:
    """What produced a run directory and how to use it."""

    base_model: str  # the loadable base model directory (or hub-style name) the weights start from
    model_name_or_path: str  # as the user gave it (e.g. "smollm2-135m")
    template: str  # resolved template name (never "auto")
    finetuning_type: str  # lora | freeze | full
    stage: str = "sft"
    stage_settings: dict[str, Any] = field(default_factory=dict)  # e.g. beta, reference, started_from
    prompt_format: str | None = None
    prompt_options: dict[str, Any] = field(default_factory=dict)  # PromptArguments of the training data
    datasets: list[str] = field(default_factory=list)
    dataset_dir: str | None = None
    cutoff_len: int | None = None
    arguments: dict[str, Any] = field(default_factory=dict)  # every argument of the run, flattened
    data_stats: dict[str, Any] = field(default_factory=dict)  # examples used, shortened, dropped
    precision: dict[str, Any] = field(default_factory=dict)  # requested, used, and the hardware why
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    git_revision: str | None = None
    created: str = ""

    def save(self, run_dir: str | Path) -> Path:
        """Write the card; a password in any database URL it holds is saved as ***."""
        path = Path(run_dir) / RUN_CARD
        write_json(path, _hide_passwords(dataclasses.asdict(self)), indent=2)
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> RunCard:
        path = Path(run_dir) / RUN_CARD
        if not path.is_file():
            raise DataError(f"{run_dir}: not a sqltune run directory (no {RUN_CARD})")
        data = read_json(path, "run card")
        if not isinstance(data, dict):
            raise DataError(f"{path}: malformed run card (expected a JSON object)")
        fields = dataclasses.fields(cls)
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]  # later fields have defaults
        if missing:
            raise DataError(f"{path}: malformed run card (missing {', '.join(missing)})")
        names = {f.name for f in fields}
        return cls(**{k: v for k, v in data.items() if k in names})


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_revision(path: str | Path | None = None) -> str | None:
    """The commit of the source tree sqltune runs from (with '-dirty' when it has changes), if any."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "") if rev else None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _hide_passwords(value: Any) -> Any:
    from sqltune.db.urls import hide_password, is_url

    if isinstance(value, str):
        return hide_password(value) if is_url(value) else value
    if isinstance(value, dict):
        return {key: _hide_passwords(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hide_passwords(item) for item in value]
    return value
