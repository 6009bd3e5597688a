"""`sqltune <command> [CONFIG.yaml] [key=value ...]`: one command per step of the flow.

Each command lives in its step's package and is imported only when called, so `sqltune data` does
not pay for importing the training stack. A `SqltuneError` (bad input the user can fix) is printed
on one line and exits with status 2.
"""

from __future__ import annotations

import sys
import warnings
from importlib import import_module

from sqltune.errors import SqltuneError, SqltuneWarning

# command -> ("module:function", one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "data": (
        "sqltune.data.command:main",
        "build SFT records from a benchmark or database (`data synth`: pairs; `data corpus`: pt text; "
        "`data pairs`: DPO/KTO data; `data agent`: tool-call traces; `data erd`: ER-diagram images for "
        "multimodal SFT)",
    ),
    "train": (
        "sqltune.train.command:main",
        "fine-tune a model (LoRA, QLoRA, freeze, full) into a run directory",
    ),
    "predict": (
        "sqltune.infer.command:main",
        "answer a dataset's questions with a run directory or a base model (hf or vllm)",
    ),
    "eval": (
        "sqltune.evaluate.command:main",
        "score predictions: Spider EM/EX (official rules), BIRD EX/R-VES",
    ),
    "run": (
        "sqltune.pipeline.command:main",
        "data -> train -> predict -> evaluate in one command, EX/EM before and after fine-tuning",
    ),
    "export": (
        "sqltune.export:main",
        "merge a run's LoRA adapter into its base model and save it (safetensors shards)",
    ),
    "expand": (
        "sqltune.train.methods.expand:main",
        "LLaMA Pro: insert zero-initialised copies of a model's layers (then train them: use_llama_pro)",
    ),
    "ask": (
        "sqltune.infer.ask:main",
        'ask a database a question: sqltune ask --db my.sqlite "how many orders?"',
    ),
    "serve": (
        "sqltune.serve.command:main",
        "an OpenAI-compatible API (/v1/chat/completions) and Text-to-SQL endpoints (/v1/sql) over HTTP",
    ),
    "webui": (
        "sqltune.webui.command:main",
        "a browser page: ask a database (SQL, rows, chart, feedback), train, evaluate, export",
    ),
    "db": (
        "sqltune.db.command:main",
        "database servers: `db load` copies SQLite databases into PostgreSQL or MySQL/MariaDB",
    ),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: sqltune <command> [CONFIG.yaml] [key=value ...] [--key value ...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "`sqltune <command> --help` lists a command's options."]
    return "\n".join(lines)


def one_line_warnings(command: str) -> None:
    """Show sqltune's own warnings as one line (`sqltune train: warning: ...`) instead of Python's
    two-line form with a file name and source line."""
    default = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None):
        if issubclass(category, SqltuneWarning):
            return f"sqltune {command}: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = format_warning


# commands that train: started as programs, they run on tcmalloc when installed (sqltune.allocator)
TRAINING_COMMANDS = ("train", "run")


def main(argv: list[str] | None = None) -> int:
    as_program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from sqltune import __version__

        print(f"sqltune {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"sqltune: unknown command '{command}'{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    module, function = COMMANDS[command][0].split(":")
    one_line_warnings(command)
    try:
        if as_program and command in TRAINING_COMMANDS and not {"-h", "--help"} & set(rest):
            from sqltune.allocator import restart_with_allocator

            restart_with_allocator()
        return int(getattr(import_module(module), function)(rest) or 0)
    except SqltuneError as err:
        print(f"sqltune {command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sqltune {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
