"""Wake an idle worker on this machine the moment a run is queued, and a request
waiting for a run the moment that run prints or ends.

Workers poll the queue (WORKER_POLL_INTERVAL) and waiting requests poll the run,
because that works across machines; on one machine a named pipe wakes them at once,
saving most of a poll interval on every run. Losing a wake-up costs nothing but that
delay.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import stat
import time

from . import rendezvous


def _path() -> str:
    return str(rendezvous.directory() / "worker-wakeup.fifo")


RUN_PIPE_PREFIX, RUN_PIPE_SUFFIX = "run-", ".fifo"
# A run's pipe is swept once nobody reads it (a waiting request always does) and it is
# at least this old: far past the microseconds between its waiter creating and opening it.
STALE_PIPE_SECONDS = 60


def _run_path(run_pk: int) -> str:
    return str(rendezvous.directory() / f"{RUN_PIPE_PREFIX}{run_pk}{RUN_PIPE_SUFFIX}")


def notify() -> None:
    """Wake one waiting worker, if any; never blocks, never fails the caller."""
    _poke(_path())


def notify_run(run_pk: int) -> None:
    """Wake the requests on this machine waiting for run `run_pk`, if any. Never
    fails the run: at worst its waiter sees it at its next poll."""
    with contextlib.suppress(OSError):
        _poke(_run_path(run_pk))


def _poke(path: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno not in (errno.ENXIO, errno.ENOENT):  # no worker waiting / none yet
            raise
        return
    with contextlib.suppress(BlockingIOError):
        os.write(fd, b"\n")
    os.close(fd)


def sweep(older_than: float = STALE_PIPE_SECONDS) -> int:
    """Remove the run pipes of requests that died waiting (a killed web process cannot
    remove its own); how many. Workers call it as they start and now and then."""
    removed, now = 0, time.time()
    with contextlib.suppress(OSError), os.scandir(rendezvous.directory()) as entries:
        for entry in entries:
            if not (
                entry.name.startswith(RUN_PIPE_PREFIX) and entry.name.endswith(RUN_PIPE_SUFFIX)
            ):
                continue
            try:
                if now - entry.stat().st_ctime < older_than:
                    continue
                # A writer's open fails with ENXIO exactly when no reader has it open.
                os.close(os.open(entry.path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    removed += 1
    return removed


class Waiter:
    """The waiting end: sleep until notified or until `timeout` passes. A worker waits
    on the queue's pipe; a request on its run's (Waiter.for_run), removed on close."""

    def __init__(self, path: str | None = None) -> None:
        path = path or _path()
        self.path = path
        with contextlib.suppress(FileExistsError):
            os.mkfifo(path, 0o600)
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            raise RuntimeError(f"{path} exists and is not a named pipe")
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        # Our own writer keeps the pipe open, so select() does not spin on EOF
        # between notifications.
        self.keepalive = os.open(path, os.O_WRONLY | os.O_NONBLOCK)

    def wait(self, timeout: float, also: int | None = None) -> bool:
        """Sleep until notified, until `timeout`, or until the descriptor `also` is
        readable; True in that last case."""
        ready, _, _ = select.select([self.fd] if also is None else [self.fd, also], [], [], timeout)
        if self.fd in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self.fd, 4096)
        return also is not None and also in ready

    @classmethod
    def for_run(cls, run_pk: int) -> Waiter:
        waiter = cls(_run_path(run_pk))
        waiter.owned = True
        return waiter

    owned = False  # a run's pipe is removed by its waiter; the queue's stays

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.keepalive)
        if self.owned:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
