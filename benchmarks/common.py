"""What the benchmark scripts share: the result line, a free port, and the real server
(`bin/serve`) started and stopped. Standard library only: each script chooses its own
database before Django starts."""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Limits a benchmark's own traffic must not hit.
UNLIMITED = {"LIMIT_RUNS_PER_MINUTE": "1000", "LIMIT_QUEUED_RUNS_PER_CLIENT": "1000"}


def line(name: str, value: str, target: str, ok: bool) -> None:
    print(f"  {name:<58} {value:>16}   target {target:<14} {'ok' if ok else 'MISSED'}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, env: dict[str, str]) -> subprocess.Popen:
    """`bin/serve` on `port` with `env`, once the whole chain answers /healthz (nginx
    listens before gunicorn does, so an open port is not enough)."""
    server = subprocess.Popen(
        ["bin/serve"],
        cwd=ROOT,
        env=env | {"BIND": f"127.0.0.1:{port}", "PYTHON": sys.executable, "MIGRATE_ON_START": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError("the server did not start")
        time.sleep(0.2)


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)
