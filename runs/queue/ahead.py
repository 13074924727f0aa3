"""Sandboxes started ahead of the runs that will use them: a worker's next run finds
its interpreter up and its process confined."""

from __future__ import annotations

from django.conf import settings

from .. import sandbox
from ..sandbox import environments
from ..sandbox.environments import Environment


def prepare_next_sandbox(used: Environment | None = None) -> None:
    """Start the next run's sandbox while this worker waits for that run, in the
    background: a failure there is logged, and the next run starts its own sandbox.

    Sandboxes are kept for the default environment, whatever ran last, so that its
    runs never wait for an interpreter to start, and for the environment just `used`:
    someone comparing it, or trying things in it, runs there again next."""
    default = environments.default()
    pools = [default] + ([used] if used and used.name != default.name else [])
    sandbox.prepare_standby(
        *(sandbox.Limits.from_settings(settings.EXECUTION_TIMEOUT, env.python) for env in pools),
        background=True,
    )
