"""Throwaway PostgreSQL and MariaDB servers for the tests: started once per test run, on loopback
ports, in temporary folders, and stopped at the end.

A server whose binaries are missing makes its tests skip with the reason (`.ci/run` installs both,
so CI always runs them). PostgreSQL refuses to run as root, so as root the cluster belongs to the
`postgres` user (`runuser`); MariaDB runs as the current user. Bench scripts start the same servers
with the context managers `postgres_server()` and `mariadb_server()`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port: int, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start; its log:\n{log.read_text()[-2000:]}")


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class ServerMissing(Exception):
    """A server's binaries are not installed (the message says which)."""


def _serve(server) -> Iterator[str]:
    """A fixture's body: the server's URL while the session lasts, or a skip saying what is missing."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(server())
        except ServerMissing as err:
            pytest.skip(str(err))
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """`postgresql://postgres@127.0.0.1:PORT/` of a fresh cluster (trust auth, fsync off)."""
    yield from _serve(postgres_server)


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """`mysql://root@127.0.0.1:PORT/` of a fresh MariaDB (root without a password)."""
    yield from _serve(mariadb_server)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL cluster in a temporary folder, stopped and removed on exit."""
    initdb = next((Path(b) / "initdb" for b in reversed(PG_BINARIES) if (Path(b) / "initdb").exists()), None)
    if initdb is None and shutil.which("initdb"):
        initdb = Path(shutil.which("initdb"))
    if initdb is None:
        raise ServerMissing("PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin)")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        raise ServerMissing("PostgreSQL refuses to run as root and runuser is missing")
    folder = Path(tempfile.mkdtemp(prefix="sqltune-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    data, log, port = folder / "data", folder / "server.log", free_port()
    subprocess.run(
        _as_postgres([str(initdb), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    pg_ctl = str(initdb.parent / "pg_ctl")
    subprocess.run(
        _as_postgres([pg_ctl, "-D", str(data), "-l", str(log), "-w", "-o", options, "start"]),
        check=True,
        capture_output=True,
    )
    try:
        _wait_for(port, 30, log)
        yield f"postgresql://postgres@127.0.0.1:{port}/"
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def mariadb_server() -> Iterator[str]:
    """A fresh MariaDB in a temporary folder, stopped and removed on exit."""
    server, install = shutil.which("mariadbd") or "/usr/sbin/mariadbd", shutil.which("mariadb-install-db")
    if not Path(server).exists() or install is None:
        raise ServerMissing("MariaDB is not installed (apt-get install mariadb-server)")
    folder = Path(tempfile.mkdtemp(prefix="sqltune-mariadb-"))
    data, log, port = folder / "data", folder / "server.log", free_port()
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(
        [install, *user, f"--datadir={data}", "--auth-root-authentication-method=normal", "--skip-test-db"],
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [
            server,
            *user,
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={folder / 'sock'}",
            "--skip-log-bin",
            "--innodb-flush-log-at-trx-commit=0",
            f"--log-error={log}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port, 60, log)
        yield f"mysql://root@127.0.0.1:{port}/"
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["postgres", "mariadb"])
def server_url(request) -> str:
    """Each server in turn (tests that must hold on both)."""
    return request.getfixturevalue(f"{request.param}_url")


def create_database(url: str, name: str, statements: list[str] = ()) -> str:
    """A fresh database `name` on the server at `url` (dropped first if there), with `statements`
    run in it; returns its URL."""
    import sqlalchemy as sa

    from sqltune.db.urls import with_driver

    admin_db = "postgres" if url.startswith("postgresql") else ""
    admin = sa.create_engine(with_driver(url + admin_db), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    engine = sa.create_engine(with_driver(url + name))
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()
    return url + name


def checksum(url: str) -> str:
    """A digest of every table's rows in the database at `url`: equal before and after means nothing
    changed."""
    import hashlib

    import sqlalchemy as sa

    from sqltune.db.urls import with_driver

    engine = sa.create_engine(with_driver(url))
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in sorted(sa.inspect(conn).get_table_names()):
            rows = conn.exec_driver_sql(f"SELECT * FROM {table}").all()
            digest.update(f"{table}:{sorted(map(repr, rows))}".encode())
    engine.dispose()
    return digest.hexdigest()
