"""The machines that run snippets: their workers, and what each host's own runs say
of it (its start-up baseline and its repeatability)."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import psutil
from django.conf import settings
from django.db import models
from django.utils import timezone

from ..figures import stats


class WorkerQuerySet(models.QuerySet["Worker"]):
    def alive(self) -> WorkerQuerySet:
        cutoff = timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)
        return self.filter(last_seen_at__gte=cutoff)

    def queue_workers(self) -> WorkerQuerySet:
        return self.filter(kind=Worker.Kind.QUEUE)


class Worker(models.Model):
    """A worker process, known by its heartbeat; a silent worker is a dead one."""

    class Kind(models.TextChoices):
        QUEUE = "queue", "Queue worker"
        CLI = "cli", "runsnippet"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=8, choices=Kind, default=Kind.QUEUE)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["-last_seen_at"]
        indexes = [
            # healthz and orphan reaping: WHERE last_seen_at >= now - stale.
            models.Index(fields=["last_seen_at"], name="worker_last_seen_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def name_for_this_process() -> str:
        # Where the process runs, as far as a process id means anything: the host and
        # its PID namespace (containers on one host may share a name, never a namespace).
        return f"{settings.HOST_NAME}:{os.getpid()}:{uuid.uuid4().hex[:8]}@{_pid_namespace()}"

    @staticmethod
    def still_running(name: str, since: datetime | None) -> bool:
        """Whether the worker process `name` is known to be running here, and was
        already `since` (its process is not a newer one that took its id). Only a worker
        of this host and PID namespace can be known so; of another, nothing is known
        (False), and its heartbeat decides. A database lock or a slow write delays a
        heartbeat, never kills a process: this keeps such a worker's runs alive."""
        where, _, namespace = name.rpartition("@")
        parts = where.rsplit(":", 2)  # host, pid, a random part
        if len(parts) != 3 or not parts[1].isdigit():
            return False
        host, pid = parts[0], parts[1]
        if host != settings.HOST_NAME or namespace != _pid_namespace():
            return False
        try:
            process = psutil.Process(int(pid))
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            started = process.create_time()
        except psutil.Error:
            return False
        return since is None or started <= since.timestamp() + 1

    def beat(self) -> None:
        self.last_seen_at = timezone.now()
        Worker.objects.update_or_create(
            name=self.name,
            defaults={"last_seen_at": self.last_seen_at},
            create_defaults={
                "kind": self.kind,
                "started_at": self.started_at,
                "last_seen_at": self.last_seen_at,
            },
        )


def _pid_namespace() -> str:
    try:
        return f"{os.stat('/proc/self/ns/pid').st_ino:x}"
    except OSError:
        return "?"


class Baseline(models.Model):
    """What starting the interpreter in the sandbox costs on one host (`pass`, N times)."""

    host = models.CharField(max_length=200)
    # The environment whose interpreter it starts: each has its own start-up cost.
    env = models.CharField(max_length=32, blank=True, default="")
    isolation = models.CharField(max_length=64)
    runs = models.PositiveSmallIntegerField()
    energy_kwh = models.FloatField()
    duration_s = models.FloatField()
    cpu_seconds = models.FloatField()
    samples = models.JSONField(default=list)  # each run's energy, kWh
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"
        indexes = [
            # The latest baseline of this host: WHERE host = ? ORDER BY created_at DESC.
            models.Index(fields=["host", "env", "-created_at"], name="baseline_host_env_idx"),
        ]

    def __str__(self) -> str:
        return f"Baseline on {self.host}: {self.energy_kwh:.3g} kWh"

    @classmethod
    def latest_for_this_host(cls, env: str, max_age: timedelta | None = None) -> Baseline | None:
        baselines = cls.objects.filter(host=settings.HOST_NAME, env=env)
        if max_age is not None:
            baselines = baselines.filter(created_at__gte=timezone.now() - max_age)
        return baselines.first()


class Repeatability(NamedTuple):
    """How much identical work varies on a host: the spread of its control runs. It
    says how far one run's absolute figures can be trusted, and what a comparison's
    pairs cancel; it is not a threshold on a paired difference."""

    host: str
    cv: float
    runs: int
    since: datetime | None = None  # the first and last control run it counts
    until: datetime | None = None

    def sentence(self) -> str:
        return (
            f"identical work varies ±{self.cv:.1%} from run to run on {self.host} (its "
            f"last {self.runs} control runs)"
        )

    @property
    def unstable(self) -> bool:
        return self.cv > UNSTABLE_HOST_CV

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "cv": self.cv,
            "control_runs": self.runs,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Repeatability:
        def moment(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        return cls(
            stored["host"],
            stored["cv"],
            stored["control_runs"],
            moment(stored.get("since")),
            moment(stored.get("until")),
        )


# A host whose control runs vary more than this: one run's figures there are rough.
UNSTABLE_HOST_CV = 0.05
# Control runs kept per host, and the fewest that make a spread.
CONTROL_RUNS_KEPT = 20
CONTROL_RUNS_NEEDED = 3
# The one definition of a host's repeatability, everywhere it is shown: the spread of
# its last REPEATABILITY_RUNS control runs, none older than REPEATABILITY_MAX_AGE.
REPEATABILITY_RUNS = 10
REPEATABILITY_MAX_AGE = timedelta(hours=24)


class ControlRunQuerySet(models.QuerySet["ControlRun"]):
    def repeatability(self, host: str, at: datetime | None = None) -> Repeatability | None:
        """The spread (CV) of `host`'s last control runs as of `at` (now)."""
        at = at or timezone.now()
        runs = self.filter(
            host=host, created_at__lte=at, created_at__gte=at - REPEATABILITY_MAX_AGE
        ).order_by("-created_at")
        rows = list(runs.values_list("cpu_seconds", "created_at")[:REPEATABILITY_RUNS])
        if len(rows) < CONTROL_RUNS_NEEDED:
            return None
        spread = stats.summarize([value for value, _ in rows])
        if spread is None:
            return None
        return Repeatability(host, spread.cv, len(rows), rows[-1][1], rows[0][1])

    def hosts(self) -> list[str]:
        return list(self.values_list("host", flat=True).distinct().order_by("host")[:100])


class ControlRun(models.Model):
    """A fixed workload each worker runs now and then: the same work, so its spread is
    the host's own noise (as Green Metrics Tool watches its machines)."""

    host = models.CharField(max_length=200)
    cpu_seconds = models.FloatField()
    duration_s = models.FloatField()
    created_at = models.DateTimeField(default=timezone.now)

    objects = ControlRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["host", "-created_at"], name="control_host_idx")]

    def __str__(self) -> str:
        return f"Control run on {self.host}: {self.cpu_seconds:.3f} s CPU"
