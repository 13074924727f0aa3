"""The real front (`bin/serve`: nginx, gunicorn, a worker) against hostile clients.

Slow clients and clients waiting on `POST /run` must cost almost nothing: the pages
and the health check keep answering while they hold their connections.
"""

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
from django.conf import settings

from .conftest import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root, like CI")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def front(front_and_upstream):
    return front_and_upstream[0]


@pytest.fixture
def front_and_upstream(worker_env, tmp_path):
    """`bin/serve` running: the port of its front (nginx), and of gunicorn behind it."""
    port, upstream = free_port(), free_port()
    env = worker_env | {
        "BIND": f"127.0.0.1:{port}",
        "UPSTREAM_BIND": f"127.0.0.1:{upstream}",
        "PYTHON": sys.executable,
        "MIGRATE_ON_START": "0",
        "DATA_DIR": str(tmp_path),
        "WORKER_HEARTBEAT_SECONDS": "2",
        "WORKER_STALE_SECONDS": "10",
    }
    with (tmp_path / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            ["bin/serve"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready() -> bool:
        try:
            status, body, _ = get(port, "/healthz")
        except OSError:
            return False
        return status == 200 and json.loads(body)["workers_alive"] > 0

    try:
        wait_for(ready, timeout=60, interval=0.2)
        yield port, upstream
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        reap_group(proc.pid)


def reap_group(group: int) -> None:
    """Wait for every process of the stopped server: those its script left behind come
    to this process (a subreaper, as the sandbox made it) and must be reaped here."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-group, os.WNOHANG)[0]:
                pass
        alive = [
            p
            for p in psutil.process_iter(["status"])
            if p.info["status"] != psutil.STATUS_ZOMBIE and _group_of(p) == group
        ]
        if not alive:
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-group, os.WNOHANG)[0]:
                    pass
            return
        time.sleep(0.05)


def _group_of(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except OSError:
        return None


def get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes, float]:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(), time.monotonic() - started
    finally:
        connection.close()


def ask(port: int, paths: tuple[str, ...], latencies: list, failures: list) -> None:
    """GET each of `paths` once (2 s at most): its time, and any answer but 200 or a
    connection refused, go to `latencies` and `failures`."""
    for path in paths:
        try:
            status, _, elapsed = get(port, path, timeout=2)
            latencies.append(elapsed)
            if status != 200:
                failures.append((path, status))
        except OSError as exc:
            failures.append((path, repr(exc)))


class SlowClients(threading.Thread):
    """Keeps `count` connections open, each with half a request line sent, reopening
    any that the server closes: a slowloris attacker."""

    def __init__(self, port: int, count: int):
        super().__init__(daemon=True)
        self.port, self.count = port, count
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = []

    def open_one(self) -> None:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        self.sockets.append(s)

    def run(self) -> None:
        while not self.stopped.is_set():
            for s in list(self.sockets):
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                self.sockets.remove(s)
                s.close()
            while len(self.sockets) < self.count and not self.stopped.is_set():
                self.open_one()
            self.stopped.wait(0.2)
        for s in self.sockets:
            s.close()


def post_run(port: int, source: str, code: str, results: list) -> None:
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=120, source_address=(source, 0)
    )
    try:
        body = json.dumps({"code": code})
        connection.request("POST", "/run", body, {"Content-Type": "application/json"})
        results.append(connection.getresponse().status)
    finally:
        connection.close()


def test_pages_keep_answering_under_slow_and_waiting_clients(front):
    slow = SlowClients(front, 200)
    for _ in range(200):
        slow.open_one()
    slow.start()
    statuses: list[int] = []
    waiting = [
        threading.Thread(
            target=post_run,
            args=(front, f"127.0.0.{2 + i % 6}", "import time; time.sleep(3)", statuses),
            daemon=True,
        )
        for i in range(30)
    ]
    for thread in waiting:
        thread.start()
    latencies, failures = [], []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ask(front, ("/healthz", "/"), latencies, failures)
            time.sleep(0.5)
    finally:
        slow.stopped.set()
        slow.join(timeout=10)
    # Every probe answered 200 within ask's 2 s: how fast is `make bench`'s (bench_front,
    # a ratio against the same requests without slow clients), not a timed assertion here.
    assert failures == [] and latencies
    for thread in waiting:
        thread.join(timeout=90)
    # Every waiting client got an answer: the run's result, or 202 and where to look.
    assert sorted(set(statuses)) <= [200, 202] and len(statuses) == 30, statuses


def test_a_client_that_sends_5_mb_before_reading_gets_a_json_413(front):
    body = json.dumps({"code": "x" * 5_000_000}).encode()
    head = (
        f"POST /run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", front), timeout=30) as s:
        s.sendall(head)
        sent = 0
        try:
            while sent < len(body):
                sent += s.send(body[sent : sent + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may stop reading once it has answered; the answer is there
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line, answer[:200]
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"].startswith("Request body too large")


def post_json(port: int, path: str, body: dict) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def server_process(port: int, *words: str) -> psutil.Process:
    """The process of the server on `port` whose command line holds all `words`."""
    # bin/serve's own subshells (a restart loop each) look like it: the top one is the
    # one whose parent is none of them, whatever order the process ids came in.
    serves = [p for p in psutil.process_iter(["cmdline"]) if _serves(p, port)]
    pids = {p.pid for p in serves}
    serve = next(p for p in serves if p.ppid() not in pids)
    for child in serve.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if all(word in " ".join(child.cmdline()) for word in words):
                return child
    every = [" ".join(c.cmdline()) for c in serve.children(recursive=True)]
    raise AssertionError(f"no {words} under bin/serve: {every}")


def _serves(process: psutil.Process, port: int) -> bool:
    """Whether `process` is the bin/serve on `port` (processes come and go meanwhile)."""
    try:
        return (process.info["cmdline"] or [])[-1:] == ["bin/serve"] and process.environ().get(
            "BIND", ""
        ).endswith(f":{port}")
    except psutil.Error:
        return False


def test_a_killed_worker_is_replaced_while_the_site_keeps_serving(front):
    from runs.sandbox import cgroups

    from .conftest import sandbox_processes

    status, started = post_json(front, "/api/runs", {"code": "import time\nwhile True: pass"})
    assert status == 202
    run_url = f"/api/runs/{started['id']}"
    wait_for(lambda: json.loads(get(front, run_url)[1])["status"] == "running", timeout=30)
    worker = server_process(front, "manage.py", "worker")
    worker.kill()  # SIGKILL, mid-run: nothing of it can clean up

    failures, latencies = [], []
    replaced = None
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and not (replaced and latencies[-1:]):
        ask(front, ("/", "/healthz"), latencies, failures)
        with contextlib.suppress(AssertionError):
            new = server_process(front, "manage.py", "worker")
            if new.pid != worker.pid:
                replaced = replaced or time.monotonic()
        time.sleep(0.2)
    assert failures == [] and max(latencies) < 1.0, (failures, sorted(latencies)[-3:])
    assert replaced, "no new worker"

    # The new worker takes runs, and the killed run is marked as what it is.
    status, body = post_json(front, "/run", {"code": "print('after')"})
    assert status == 200 and body["stdout"] == "after\n", body

    def over() -> dict | None:
        run = json.loads(get(front, run_url)[1])
        return run if run["status"] != "running" else None

    killed = wait_for(over)
    assert killed["status"] == "error" and "stopped" in killed["error"]
    health = json.loads(get(front, "/healthz")[1])
    assert health["workers_alive"] >= 1
    # Nothing of the killed run is left: its cgroups, and sandbox processes other than
    # the new worker's (those it keeps ready for its next runs).
    wait_for(lambda: not [d for d in cgroups.run_dirs() if f"run-{worker.pid}-" in d.name])
    new = server_process(front, "manage.py", "worker")

    def strays() -> list:
        return [p for p in sandbox_processes() if new.pid not in [a.pid for a in p.parents()]]

    wait_for(lambda: not strays(), timeout=15)


def test_a_killed_front_is_started_again(front):
    nginx = server_process(front, "nginx", "-c")
    nginx.kill()

    def started_again() -> bool:
        # Its old workers may answer for a moment after their master died: wait for a
        # new master, and for the front to answer through it.
        try:
            return server_process(front, "nginx", "-c").pid != nginx.pid and _answers(front)
        except (AssertionError, psutil.Error):  # none yet, or one that is going
            return False

    # Back within the first back-off (1 s) and nginx's start.
    wait_for(started_again, timeout=10, interval=0.1)


def _answers(port: int) -> bool:
    try:
        return get(port, "/healthz", timeout=2)[0] == 200
    except OSError:
        return False


def submitted_by(port: int, source: str, headers: dict) -> str:
    """The client a run posted to `port` from `source` is counted against."""
    from runs.models import Run

    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(source, 0)
    )
    try:
        body = json.dumps({"code": "print(1)"})
        connection.request(
            "POST", "/api/runs", body, {"Content-Type": "application/json", **headers}
        )
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 202, answer
    finally:
        connection.close()
    return Run.objects.get(public_id=answer["id"]).client


def test_only_the_front_says_who_a_client_is(front_and_upstream):
    port, upstream = front_and_upstream
    forged = {"X-Forwarded-For": "203.0.113.5", "X-Front-Token": "a guess"}
    # Through the front: the address it saw, whatever the client claimed.
    assert submitted_by(port, "127.0.0.5", forged) == "127.0.0.5"
    # Past the front, straight to gunicorn's port: the local peer it is, not the
    # client it claims to be (it stopped another's run so once).
    assert submitted_by(upstream, "127.0.0.6", forged) == "127.0.0.6"
    assert submitted_by(upstream, "127.0.0.1", forged) == "127.0.0.1"
