"""Sandboxes started ahead of the runs that will use them, per process."""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time

from django.conf import settings

from .command import isolation
from .contract import INIT_WAIT_SECONDS, Limits
from .host import default_python, gpu_devices, sandbox_account
from .watch import Watch, launch

logger = logging.getLogger(__name__)


# The next runs' sandboxes, started ahead, oldest first: their interpreters are up and
# waiting for code. More than one, so that a run arriving right after another finds
# one whose interpreter has finished starting (starting takes ~40 ms on a busy host).
# Each is keyed by what it is made of (its environment's interpreter included): a pool
# per key, SANDBOX_STANDBY each, for the keys the last `prepare_standby` named.
_standbys: list[tuple[tuple, Watch]] = []
# Notified when one is added, and when the preparer has nothing left to start.
_standbys_changed = threading.Condition()
# Standby sandboxes start at the lowest priority, so that starting them never slows
# the requests and the run of the moment; a run's own is raised back when it is taken.
STANDBY_NICE = 19


def _standby_key(limits: Limits) -> tuple:
    # Everything a sandbox is made of but the timeout, which the worker keeps itself.
    return (
        dataclasses.replace(limits, timeout_s=0, python=limits.python or default_python()),
        isolation(),
        sandbox_account(),
        settings.SANDBOX_CPUS,
        settings.PROFILE_INTERVAL_MS,
        tuple(gpu_devices()),
        os.getpid(),
    )


def prepare_standby(*pools: Limits, background: bool = False) -> None:
    """Keep SANDBOX_STANDBY sandboxes started ahead for each of `pools` (the default
    environment's and the last one used, say), and no others, so that a run pays only
    for its own code. Every run still gets a sandbox nobody used: each is used once,
    then ended.

    In the background, the worker is free to fetch its next run meanwhile; a run that
    finds none ready waits for the one being started (sooner than starting its own)."""
    if background:
        _preparer.submit(pools)
    else:
        _top_up(pools)


def _top_up(pools: tuple[Limits, ...]) -> None:
    keys = [_standby_key(limits) for limits in pools]
    with _standbys_changed:
        stale = [watch for k, watch in _standbys if k not in keys or watch.exited()]
        _standbys[:] = [(k, watch) for k, watch in _standbys if watch not in stale]
    for watch in stale:
        watch.cleanup()
    for limits, key in zip(pools, keys, strict=True):
        if not _fill(limits, key):
            return


def _fill(limits: Limits, key: tuple) -> bool:
    """Start this pool's missing sandboxes; False if one could not be started."""
    with _standbys_changed:
        missing = settings.SANDBOX_STANDBY - sum(k == key for k, _ in _standbys)
    for _ in range(missing):
        try:
            watch = launch(limits, nice=STANDBY_NICE)
        except Exception:
            # A run will meet the same problem in its own sandbox, and say so.
            logger.exception("could not prepare the next run's sandbox")
            return False
        if watch.outcome.error:
            watch.cleanup()
            return False
        with _standbys_changed:
            _standbys.append((key, watch))
            _standbys_changed.notify_all()
    return True


class _Preparer:
    """One thread for the life of the process that starts standby sandboxes. Not a
    thread per sandbox: bubblewrap dies with the thread that started it
    (--die-with-parent is PR_SET_PDEATHSIG, which follows the thread, not the process)."""

    def __init__(self) -> None:
        self.requests: queue.SimpleQueue[tuple[Limits, ...]] = queue.SimpleQueue()
        self.idle = threading.Event()
        self.idle.set()
        self.thread: threading.Thread | None = None

    def submit(self, pools: tuple[Limits, ...]) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._serve, name="sandbox-standby", daemon=True)
            self.thread.start()
        self.idle.clear()
        self.requests.put(pools)

    def _serve(self) -> None:
        while True:
            pools = self.requests.get()
            try:
                _top_up(pools)
            finally:
                if self.requests.empty():
                    with _standbys_changed:
                        self.idle.set()
                        _standbys_changed.notify_all()

    def wait(self) -> None:
        self.idle.wait()


_preparer = _Preparer()


def discard_standby() -> None:
    """End every sandbox started ahead (settings changed, or the worker leaves)."""
    _preparer.wait()
    with _standbys_changed:
        watches = [watch for _, watch in _standbys]
        _standbys.clear()
    for watch in watches:
        watch.cleanup()


def take(limits: Limits) -> Watch | None:
    """The oldest sandbox started ahead with these limits, taken out of its pool; if
    none is there but one is being started, that one (sooner than starting another)."""
    key = _standby_key(limits)
    deadline = time.monotonic() + INIT_WAIT_SECONDS
    useless: list[Watch] = []  # died waiting
    watch: Watch | None = None
    with _standbys_changed:
        while True:
            useless += [w for _, w in _standbys if w.exited()]
            _standbys[:] = [(k, w) for k, w in _standbys if w not in useless]
            mine = next((i for i, (k, _) in enumerate(_standbys) if k == key), None)
            if mine is not None:
                watch = _standbys.pop(mine)[1]
                break
            remaining = deadline - time.monotonic()
            if _preparer.idle.is_set() or remaining <= 0:
                watch = None
                break
            _standbys_changed.wait(remaining)
    for stale in useless:
        stale.cleanup()
    if watch is not None:
        watch.limits = limits  # this run's own timeout
        watch.raise_priority()
    return watch
