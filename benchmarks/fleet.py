"""`make bench`, part two: the queue and the front on PostgreSQL, through real processes.

- Drain rate: 200 queued `print(1)` runs (from 20 clients, so the fair queue lets
  workers share them) with 1 and with 2 workers, per worker, against back-to-back bare
  `python -I -c "print(1)"` measured in the same run. Target >= 0.5x.
- Submission latency through the real front (`bin/serve`: nginx, gunicorn, a worker):
  `POST /api/runs` with 200 slowloris connections held open, against the same without
  them. Target ratio <= 1.5.

Uses its own database, `playground_bench`, on the PostgreSQL of TEST_POSTGRES_URL.
"""

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SERVER = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/playground")
URL = SERVER.rsplit("/", 1)[0] + "/playground_bench"
os.environ["DATABASE_URL"] = URL
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")

import psycopg  # noqa: E402

with psycopg.connect(SERVER.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
    if not admin.execute("SELECT 1 FROM pg_database WHERE datname = 'playground_bench'").fetchone():
        admin.execute("CREATE DATABASE playground_bench")

import django  # noqa: E402

django.setup()

from common import UNLIMITED, free_port, line, start_server, stop_server  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django_tasks_db.models import DBTaskResult  # noqa: E402

from runs.models import Run, Series  # noqa: E402
from runs.queue.tasks import enqueue  # noqa: E402
from runs.sandbox import environments  # noqa: E402

RUNS = 200
ENV = os.environ | {"DATABASE_URL": URL, "PYTHONUNBUFFERED": "1"}


def clear() -> None:
    DBTaskResult.objects.all().delete()
    Series.objects.all().delete()
    Run.objects.all().delete()


def start_workers(n: int) -> list[subprocess.Popen]:
    workers = []
    for i in range(n):
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "worker"],
            cwd=ROOT,
            env=ENV | {"HOST_NAME": f"bench-{i}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for out in worker.stdout:
            if "ready" in out:
                break
        workers.append(worker)
    return workers


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def bare_rate(n: int = 40) -> float:
    started = time.perf_counter()
    for _ in range(n):
        subprocess.run([environments.default().python, "-I", "-c", "print(1)"], capture_output=True)
    return n / (time.perf_counter() - started)


def drain_rate(workers: int) -> float:
    clear()
    processes = start_workers(workers)
    try:
        runs = [Run.objects.submit("print(1)", client=f"10.0.0.{i % 20}") for i in range(RUNS)]
        started = time.perf_counter()
        enqueue(*runs)
        while Run.objects.finished().count() < RUNS:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        assert Run.objects.filter(status=Run.Status.SUCCEEDED).count() == RUNS
    finally:
        stop(processes)
    return RUNS / elapsed


def bench_drain() -> None:
    print(f"Drain rate: {RUNS} queued print(1) runs on PostgreSQL, per worker")
    bare = bare_rate()
    print(f'  bare `python -I -c "print(1)"` back to back: {bare:.1f}/s')
    for workers in (1, 2):
        rate = drain_rate(workers)
        per_worker = rate / workers
        line(
            f"{workers} worker(s): {rate:.1f} runs/s, per worker / bare",
            f"{per_worker / bare:.2f}x",
            ">= 0.5x",
            per_worker / bare >= 0.5,
        )


def submission_latency(port: int, n: int = 40) -> float:
    times = []
    for i in range(n):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        started = time.perf_counter()
        connection.request(
            "POST",
            "/api/runs",
            json.dumps({"code": f"print({i})"}),
            {"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        response.read()
        times.append(time.perf_counter() - started)
        connection.close()
        assert response.status == 202, response.status
    return statistics.median(times)


def bench_front() -> None:
    print("Submission latency through the front (nginx + gunicorn), POST /api/runs")
    clear()
    port = free_port()
    env = ENV | UNLIMITED | {"UPSTREAM_BIND": f"127.0.0.1:{free_port()}"}
    serve = start_server(port, env)
    slow: list[socket.socket] = []
    try:
        submission_latency(port, 5)  # warm-up
        quiet = submission_latency(port)
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        loaded = submission_latency(port)
    finally:
        for s in slow:
            s.close()
        stop_server(serve)
    print(f"  median {quiet * 1000:.1f} ms quiet, {loaded * 1000:.1f} ms with 200 slow clients")
    ratio = loaded / quiet
    line("with slow clients / without", f"{ratio:.2f}", "<= 1.5", ratio <= 1.5)


def main() -> None:
    call_command("migrate", verbosity=0)
    bench_drain()
    print()
    bench_front()
    clear()


if __name__ == "__main__":
    main()
