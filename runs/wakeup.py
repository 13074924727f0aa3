"""Wake an idle worker on this machine the moment a run is queued.

Workers poll the queue (WORKER_POLL_INTERVAL) because that works across machines; on
the machine that took the submission a named pipe wakes one of them at once, saving
half a poll interval on every run. Losing a wake-up costs nothing but that delay.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import stat

from django.conf import settings


def _path() -> str:
    return str(settings.DATA_DIR / "worker-wakeup.fifo")


def notify() -> None:
    """Wake one waiting worker, if any; never blocks, never fails the caller."""
    try:
        fd = os.open(_path(), os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno not in (errno.ENXIO, errno.ENOENT):  # no worker waiting / none yet
            raise
        return
    with contextlib.suppress(BlockingIOError):
        os.write(fd, b"\n")
    os.close(fd)


class Waiter:
    """The worker's end: sleep until notified or until `timeout` passes."""

    def __init__(self) -> None:
        path = _path()
        with contextlib.suppress(FileExistsError):
            os.mkfifo(path, 0o600)
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            raise RuntimeError(f"{path} exists and is not a named pipe")
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        # Our own writer keeps the pipe open, so select() does not spin on EOF
        # between notifications.
        self.keepalive = os.open(path, os.O_WRONLY | os.O_NONBLOCK)

    def wait(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self.fd, 4096)

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.keepalive)
