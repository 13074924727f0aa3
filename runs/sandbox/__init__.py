"""Run one Python snippet in isolation, under limits, and report what happened.

Layers, outermost first (see docs/sandbox.md):
- an unprivileged account with no supplementary groups (when the server is root);
- bubblewrap: no network, own PID namespace, read-only /usr, nothing of the host's
  files but the interpreter, a size-limited private /tmp and /dev/shm, dies with us;
  where namespaces are not allowed we fall back to the layers below and say so;
- a per-run cgroup capping the whole tree's memory and processes (where writable);
- resource limits and a seccomp filter set by runs/sandbox/launcher.py inside the sandbox;
- a watchdog here: wall-clock timeout, output cap, file count, memory when no cgroup.

Nothing here knows about the database or about energy: callers get `Tick`s while the
snippet runs and one `Outcome` at the end.

The package, outermost first: `contract` (what goes in and comes out), `host` (what
this machine offers), `command` (how a sandbox is made), `watch` (one sandbox from its
start to its end, with `usage` and `teardown`), `standby` (sandboxes started ahead),
`launcher` (the supervisor inside) and `cgroups`. This module is its face.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .command import isolation
from .contract import (
    CANCELLED,
    CPU_FROM_CGROUP,
    CPU_FROM_SUPERVISOR,
    FIRST_TICK_SECONDS,
    NOBODY,
    Abandoned,
    Limits,
    Observer,
    Outcome,
    SandboxUnavailable,
    Tick,
)
from .host import gpu_devices, landlock_abi, python_version
from .standby import discard_standby, prepare_standby, take
from .watch import launch

__all__ = [
    "CANCELLED",
    "CPU_FROM_CGROUP",
    "CPU_FROM_SUPERVISOR",
    "FIRST_TICK_SECONDS",
    "Abandoned",
    "Limits",
    "Observer",
    "Outcome",
    "SandboxUnavailable",
    "Tick",
    "discard_standby",
    "executed",
    "gpu_devices",
    "isolation",
    "landlock_abi",
    "prepare_standby",
    "python_version",
    "run",
]


def run(code: str, limits: Limits, observer: Observer = NOBODY, stdin: str = "") -> Outcome:
    """Run `code` to completion or to a limit; never raises for the snippet's faults.

    In the sandbox prepared ahead for this process (`prepare_standby`) when there is one
    with these limits, else in a new one."""
    with executed(code, limits, observer, stdin=stdin) as outcome:
        return outcome


@contextlib.contextmanager
def executed(
    code: str, limits: Limits, observer: Observer = NOBODY, stdin: str = ""
) -> Iterator[Outcome]:
    """`run`, with the outcome in hand as soon as the snippet's processes are gone: the
    sandbox's own teardown (bubblewrap's exit, the cgroup) waits until the block ends,
    so a worker can store and answer first.

    `observer.started()` is asked once the code is in the sandbox (or, where the sandbox
    failed, instead of sending it), so that the caller's own work overlaps the snippet's
    start; False ends the sandbox at once and raises Abandoned. `observer.tick` hears
    how it goes; once `observer.stop_requested()` the run ends as a limit would, with
    `Outcome.cancelled`. `stdin` is what the snippet reads on its standard input (end of
    file after it)."""
    watch = take(limits) or launch(limits)
    try:
        yield watch.execute(code.encode(), observer, stdin=stdin.encode())
    finally:
        watch.cleanup()
