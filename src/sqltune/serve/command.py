"""`sqltune serve`: the model behind an OpenAI-compatible API and Text-to-SQL endpoints.

    sqltune serve                                          # the embedded default model, 127.0.0.1:8000
    sqltune serve run_dir=saves/quickstart_lora databases=demo
    sqltune serve run_dir=saves/spider databases=spider/database,shop.sqlite port=9000 api_key=secret
    sqltune serve run_dir=saves/spider infer_backend=vllm databases=postgresql://reader@db/{db}

Everything is loaded before the first request is accepted (docs/serve.md has the endpoints). The
server listens on 127.0.0.1 unless `host=` says otherwise; `api_key=` (or `$SQLTUNE_API_KEY`)
makes every `/v1` endpoint require `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import socket
import sys

from sqltune.args import GeneratingArguments, ModelArguments, PromptArguments, ServeArguments
from sqltune.config import format_help, parse_args
from sqltune.errors import ConfigError

GROUPS = (ServeArguments, GeneratingArguments, ModelArguments, PromptArguments)
SERVE_PACKAGES = ("fastapi", "uvicorn", "sse_starlette")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def require_serve_extra() -> None:
    """One clear line when the serving libraries are missing (they are an optional extra)."""
    from sqltune.models.loading import require

    for package in SERVE_PACKAGES:
        require("sqltune serve", (package,), extra="'sqltune[serve]'")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound before the model loads so a port in use fails at once, in one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.listen(2048)
    return sock


def build_server(argv: list[str]):
    """(uvicorn.Server, its bound socket, the Service) for `argv`, the model loaded;
    `server.run(sockets=[sock])` serves until `server.should_exit` is set. The tests start servers
    this way too."""
    require_serve_extra()
    import uvicorn

    from sqltune.serve.app import create_app
    from sqltune.serve.auth import api_key_from
    from sqltune.serve.service import open_service

    args, settings, model_args, prompt = parse_args(GROUPS, argv)
    sock = listen(args.host, args.port)
    try:
        service = open_service(args, settings, model_args, prompt)
    except BaseException:
        sock.close()
        raise
    app = create_app(service, api_key_from(args.api_key))
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    return uvicorn.Server(config), sock, service


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help(GROUPS, "serve"))
        return 0
    from sqltune.serve.auth import api_key_from

    server, sock, service = build_server(argv)
    host, port = sock.getsockname()[:2]
    keyed = api_key_from(service.args.api_key) is not None
    if not keyed and host not in LOOPBACK:
        print(
            f"sqltune serve: warning: listening on {host} without api_key: anyone who reaches it may use it",
            file=sys.stderr,
        )
    databases = ", ".join(service.databases) or "none"
    print(
        f"sqltune serve: {service.model_id} on http://{host}:{port}/v1 "
        f"(databases: {databases}; api key {'required' if keyed else 'off'}; Ctrl+C stops)",
        file=sys.stderr,
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
