"""`sqltune webui`: the web UI, served on this machine until Ctrl-C.

    sqltune webui                                           # http://127.0.0.1:7860
    sqltune webui run_dir=saves/quickstart databases=shop.sqlite,spider/database port=8080

Needs Gradio: `pip install 'sqltune[webui]'`. See docs/webui.md for what each tab does.
"""

from __future__ import annotations

import ipaddress
import signal
import sys
from importlib.util import find_spec

from sqltune.args import WebuiArguments
from sqltune.config import format_help, parse_args
from sqltune.errors import ConfigError
from sqltune.runcard import RunCard

GROUPS = (WebuiArguments,)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def interrupt(signum, frame) -> None:
    """SIGTERM stops the page as Ctrl-C does, so a training it started is stopped too."""
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help(GROUPS, "webui"))
        return 0
    (args,) = parse_args(GROUPS, argv)
    if find_spec("gradio") is None:
        raise ConfigError("the web UI needs Gradio: pip install 'sqltune[webui]'")
    if args.run_dir:
        RunCard.load(args.run_dir)  # a wrong run_dir is one line now, not an error on the first question
    from sqltune.webui.app import Workspace, build_app, launch

    workspace = Workspace(args)
    app = build_app(workspace)
    url = launch(app, args)
    print(f"sqltune webui: {url} (Ctrl-C stops it)", file=sys.stderr)
    if not is_loopback(args.host):
        print(
            f"sqltune webui: warning: listening on {args.host}: whoever reaches it can start trainings "
            "and read your databases",
            file=sys.stderr,
        )
    signal.signal(signal.SIGTERM, interrupt)
    try:
        app.block_thread()
    finally:
        app.close()
        if workspace.train_job is not None and workspace.train_job.state() == "running":
            print(f"sqltune webui: stopping the training in {workspace.train_job.run_dir}", file=sys.stderr)
        workspace.close()
    return 0
