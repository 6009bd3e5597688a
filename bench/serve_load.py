"""Load on `sqltune serve`: concurrent /v1/sql and chat clients against offline batched answering.

    nice -n 19 python bench/serve_load.py                       # embedded SmolLM2, demo dev questions
    nice -n 19 python bench/serve_load.py --run-dir saves/quickstart_lora --clients 1,4,16 --output r.json

The same questions (a seeded sample of the demo dev set: databases hospital and flights) are
answered three ways by the same model and engine settings (`batch_size`, `max_new_tokens`, dtype):

* offline: `Asker.ask_many` on all of them at once, what `sqltune predict` does (batches sorted by
  prompt, executed), in this process, before the server starts (after one warm-up question; the
  server gets one warm-up request of each kind too);
* `/v1/sql` with 1, 4 and 16 concurrent clients (each client sends its next request as soon as its
  last one is answered), the SQL executed;
* `/v1/chat/completions` with the same clients, the question inside a chat message.

The server is `sqltune serve` in a subprocess on a free loopback port (it inherits this process's
nice level). Each level sends a bounded number of requests (`max(8, 2 * clients)`) and stops sending
after `--max-seconds`. Reported per level: requests/s, p50 and p95 latency, errors, mean batch size
(the server's own statistics), the server's CPU time per answered request (user + system, every
thread, from /proc), the server's RSS (sampled twice a second: per level, and start, peak and end),
and the 1-minute load average. On a shared machine wall-clock rates move with everyone else's
work; CPU seconds per answer do not, so both are compared with offline (offline's CPU time is this
process's, `time.process_time`). The goal of issue 12: at 16 clients, /v1/sql throughput at least
70% of offline, zero errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def demo_questions(folder: Path, count: int, seed: int) -> tuple[list[tuple[str, str]], Path]:
    """(db_id, question) pairs sampled from the demo dev set, and the folder of its databases."""
    from sqltune.args import SourceArguments
    from sqltune.data.demo import read_demo

    data = read_demo(SourceArguments(source="demo", split="dev", output_dir=str(folder)))
    chosen = random.Random(seed).sample(data.examples, count)
    return [(e.db_id, e.question) for e in chosen], Path(data.db_dir)


def offline(args, questions: list[tuple[str, str]], db_dir: Path) -> dict:
    """All questions answered at once by `Asker.ask_many` (one warm-up question first)."""
    from sqltune.args import GeneratingArguments, ModelArguments
    from sqltune.infer.ask import Asker
    from sqltune.infer.engine import model_source

    model_args = ModelArguments(model_name_or_path=args.model)
    settings = GeneratingArguments(max_new_tokens=args.max_new_tokens)
    asker = Asker(
        model_source(args.run_dir, model_args), settings, batch_size=args.batch_size, dtype=args.dtype
    )
    targets = [(str(db_dir / db / f"{db}.sqlite"), q) for db, q in questions]
    asker.ask_many(targets[:1])
    began, cpu = time.perf_counter(), time.process_time()
    replies = asker.ask_many(targets)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {
        "requests": len(targets),
        "seconds": round(seconds, 2),
        "rps": round(len(targets) / seconds, 3),
        "cpu_per_request": round(cpu / len(targets), 3),
        "executed": sum(r.result.ok for r in replies),
        "load_average": round(os.getloadavg()[0], 2),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args, db_dir: Path, port: int, log) -> subprocess.Popen:
    import httpx

    command = [sys.executable, "-m", "sqltune", "serve", f"databases={db_dir}", f"port={port}"]
    command += [f"batch_size={args.batch_size}", f"max_new_tokens={args.max_new_tokens}"]
    command += [
        f"infer_dtype={args.dtype}",
        f"model_name_or_path={args.model}",
        f"max_queue={args.max_queue}",
    ]
    command += [f"run_dir={args.run_dir}"] if args.run_dir else []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode} (see {log.name})")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("the server did not start within 300 s")


def warm_up(url: str, question: tuple[str, str], max_new_tokens: int) -> None:
    """One request of each kind before timing, as offline answers one question first."""
    import httpx

    for kind in ("sql", "chat"):
        path, body = request_body(kind, *question, max_new_tokens)
        httpx.post(f"{url}{path}", json=body, timeout=600).raise_for_status()


class RssSampler(threading.Thread):
    """The server's resident memory, read from /proc twice a second (Linux)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []  # (seconds since start, MiB)
        self.stopped = threading.Event()

    def rss_mib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
        return 0

    def run(self) -> None:
        began = time.monotonic()
        while not self.stopped.wait(0.5):
            try:
                self.samples.append((round(time.monotonic() - began, 1), self.rss_mib()))
            except OSError:
                return


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_body(kind: str, db: str, question: str, max_new_tokens: int) -> tuple[str, dict]:
    if kind == "sql":
        return "/v1/sql", {"database": db, "question": question}
    message = f"Write one SQLite query that answers: {question}"
    body = {"model": "m", "messages": [{"role": "user", "content": message}], "max_tokens": max_new_tokens}
    return "/v1/chat/completions", {**body, "temperature": 0}


async def load_level(
    url: str, kind: str, clients: int, jobs: list[tuple[str, str]], args, server: RssSampler
) -> dict:
    """`clients` concurrent clients working through `jobs`; latencies and errors."""
    import httpx

    pending = list(jobs)
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + args.max_seconds

    async def client(http: httpx.AsyncClient) -> None:
        while pending and time.monotonic() < stop_at:
            db, question = pending.pop()
            path, body = request_body(kind, db, question, args.max_new_tokens)
            began = time.perf_counter()
            try:
                response = await http.post(path, json=body)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:120]}")
                    continue
            except httpx.HTTPError as err:
                errors.append(f"{type(err).__name__}: {err}")
                continue
            latencies.append(time.perf_counter() - began)

    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        before = (await http.get("/health")).json()["batching"]
        began, cpu = time.perf_counter(), cpu_seconds(server.pid)
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds, cpu = time.perf_counter() - began, cpu_seconds(server.pid) - cpu
        after = (await http.get("/health")).json()["batching"]
    calls = after["generate_calls"] - before["generate_calls"]
    done = len(latencies)
    ordered = sorted(latencies)
    return {
        "kind": kind,
        "clients": clients,
        "requests": done + len(errors),
        "errors": len(errors),
        "error_examples": errors[:3],
        "seconds": round(seconds, 2),
        "rps": round(done / seconds, 3) if seconds else None,
        "p50": round(statistics.median(ordered), 2) if ordered else None,
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2) if ordered else None,
        "mean_batch": round((after["generated"] - before["generated"]) / calls, 2) if calls else None,
        "cpu_per_request": round(cpu / done, 3) if done else None,
        "rss_mib": server.rss_mib(),
        "load_average": round(os.getloadavg()[0], 2),
    }


def markdown(report: dict) -> str:
    off = report["offline"]
    lines = [
        f"offline `Asker.ask_many` ({off['requests']} questions, batch {report['settings']['batch_size']}): "
        f"{off['rps']} questions/s ({off['seconds']} s), {off['cpu_per_request']} CPU s per question, "
        f"load average {off['load_average']}",
        "",
        "| endpoint | clients | requests | errors | req/s | vs offline | CPU s/req | vs offline | p50 s | p95 s "
        "| mean batch | RSS MiB | load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for level in report["levels"]:
        sql = level["kind"] == "sql"
        speed = f"{level['rps'] / off['rps']:.0%}" if level["rps"] and sql else "-"
        cost = level["cpu_per_request"]
        efficiency = f"{off['cpu_per_request'] / cost:.0%}" if cost and sql else "-"
        endpoint = "/v1/sql" if sql else "/v1/chat/completions"
        lines.append(
            f"| {endpoint} | {level['clients']} | {level['requests']} | {level['errors']} | {level['rps']} | "
            f"{speed} | {cost} | {efficiency} | {level['p50']} | {level['p95']} | {level['mean_batch']} | "
            f"{level['rss_mib']} | {level['load_average']} |"
        )
    rss = report["rss_mib"]
    lines += ["", f"server RSS (MiB): start {rss['start']}, peak {rss['peak']}, end {rss['end']}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="model_name_or_path (without --run-dir)")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--questions", type=int, default=32, help="demo dev questions sampled")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--kinds", default="sql,chat")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--max-queue", type=int, default=256)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-seconds", type=float, default=120, help="per level: stop sending after this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the report as JSON here")
    args = parser.parse_args()

    import torch

    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    questions, db_dir = demo_questions(work, args.questions, args.seed)
    report: dict = {
        "settings": vars(args),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "load_average_before": os.getloadavg(),
        "offline": offline(args, questions, db_dir),
    }
    print(f"offline: {report['offline']}", flush=True)
    port = free_port()
    with open(work / "server.log", "w") as log:
        server = start_server(args, db_dir, port, log)
        warm_up(f"http://127.0.0.1:{port}", questions[0], args.max_new_tokens)
        sampler = RssSampler(server.pid)
        sampler.start()
        try:
            report["levels"] = []
            for clients in [int(c) for c in args.clients.split(",")]:
                count = max(8, 2 * clients)
                jobs = [questions[i % len(questions)] for i in range(count)]
                for kind in args.kinds.split(","):
                    url = f"http://127.0.0.1:{port}"
                    level = asyncio.run(load_level(url, kind, clients, jobs, args, sampler))
                    report["levels"].append(level)
                    print(level, flush=True)
        finally:
            sampler.stopped.set()
            server.terminate()
            server.wait(30)
    mib = [m for _, m in sampler.samples] or [0]
    report["rss_mib"] = {"start": mib[0], "peak": max(mib), "end": mib[-1], "samples": sampler.samples}
    report["load_average_after"] = os.getloadavg()
    print(markdown(report))
    print(f"CPU capability {report['cpu_capability']}, {report['threads']} threads", flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
