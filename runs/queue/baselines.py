"""What this host costs and how steady it is: the start-up baseline per environment
(what an empty snippet costs, taken off every run's figures) and the control runs (a
fixed workload whose spread is the host's own noise)."""

from __future__ import annotations

import logging
import statistics
from datetime import timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from .. import sandbox
from ..figures import measure
from ..models import CONTROL_RUNS_KEPT, Baseline, ControlRun
from ..sandbox import environments
from ..sandbox.environments import Environment
from .ahead import prepare_next_sandbox

logger = logging.getLogger(__name__)

_baselines: dict[str, Baseline] = {}  # environment name -> this host's start-up cost
BASELINE_RUNS = 5
BASELINE_MAX_AGE = timedelta(hours=24)
# This host's repeatability, read again after a control run here and at most this
# often otherwise (workers beside this one run control runs too): no query per run.
_repeatability: dict = {"value": None, "read_at": None}
REPEATABILITY_MAX_STALE = timedelta(seconds=60)


def measure_baseline(env: Environment | None = None, runs: int = BASELINE_RUNS) -> Baseline:
    """Measure what an empty snippet (`pass`) costs in the sandbox here, in `env` (the
    default environment), and store it."""
    env = env or environments.default()
    limits = sandbox.Limits.from_settings(10, python=env.python)
    energies, durations, cpus = [], [], []
    for _ in range(runs):
        session = measure.Session()
        outcome = sandbox.run("pass", limits)
        figures = session.finish(outcome)
        if outcome.exit_code != 0 or outcome.error:
            raise sandbox.SandboxUnavailable(
                f"an empty snippet failed: {outcome.error or outcome.stderr[-500:]}"
            )
        energies.append(figures.energy_kwh)
        durations.append(outcome.wall_s)
        cpus.append(outcome.cpu_s)
    _baselines[env.name] = Baseline.objects.create(
        host=settings.HOST_NAME,
        env=env.name,
        isolation=outcome.isolation,
        runs=runs,
        energy_kwh=statistics.median(energies),
        duration_s=statistics.median(durations),
        cpu_seconds=statistics.median(cpus),
        samples=energies,
    )
    return _baselines[env.name]


def current_baseline(env: Environment | None = None) -> Baseline:
    """This host's start-up baseline in `env` (the default environment): measured at
    worker start for the default, at an environment's first run for the others, and
    reused for a day."""
    env = env or environments.default()
    if env.name not in _baselines:
        _baselines[env.name] = Baseline.latest_for_this_host(
            env.name, max_age=BASELINE_MAX_AGE
        ) or measure_baseline(env)
    return _baselines[env.name]


def current_repeatability() -> dict | None:
    """This host's repeatability now (Repeatability.as_dict()), for the runs it ends."""
    now = timezone.now()
    read_at = _repeatability["read_at"]
    if read_at is None or now - read_at > REPEATABILITY_MAX_STALE:
        try:
            spread = ControlRun.objects.repeatability(settings.HOST_NAME, at=now)
        except (OperationalError, InterfaceError) as exc:
            # A figure about the host, not the run: the last one read stands.
            logger.warning("could not read this host's repeatability: %s", exc)
            connection.close()  # reopened by the run's own write, which waits for it
            return _repeatability["value"]
        _repeatability.update(value=spread.as_dict() if spread else None, read_at=now)
    return _repeatability["value"]


# A fixed, CPU-bound workload of about 0.2 s: the same work every time, so the spread
# of its CPU time is the host's own noise.
CONTROL_CODE = "x = 0\nfor i in range(1_500_000):\n    x += i * i\n"


def run_control() -> ControlRun | None:
    """Run the control workload in a sandbox like any run's, keep its figures and the
    last CONTROL_RUNS_KEPT of this host; None if the sandbox could not run it."""
    outcome = sandbox.run(CONTROL_CODE, sandbox.Limits.from_settings(30))
    if outcome.exit_code != 0 or outcome.error:
        logger.warning("control run failed: %s", outcome.error or outcome.stderr[-300:])
        return None
    control = ControlRun.objects.create(
        host=settings.HOST_NAME, cpu_seconds=outcome.cpu_s, duration_s=outcome.wall_s
    )
    stale = ControlRun.objects.filter(host=settings.HOST_NAME).values_list("pk", flat=True)
    ControlRun.objects.filter(pk__in=list(stale[CONTROL_RUNS_KEPT * 5 :])).delete()
    _repeatability["read_at"] = None  # read again for the next run
    prepare_next_sandbox()  # the control took the one prepared for the next run
    return control
