from __future__ import annotations

import os
import re
import signal
import socket
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone


def clean_code(code: object) -> str:
    """The snippet to run, or ValidationError with a message a user can act on."""
    if not isinstance(code, str):
        raise ValidationError("Code must be text.")
    if not code.strip():
        raise ValidationError("There is no code to run.")
    if "\x00" in code:
        raise ValidationError("The code contains NUL bytes; is it a binary file?")
    size = len(code.encode("utf-8", errors="surrogatepass"))
    if size > settings.MAX_CODE_BYTES:
        raise ValidationError(
            f"The code is {size:,} bytes; the limit is {settings.MAX_CODE_BYTES:,} bytes."
        )
    try:
        code.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("The code is not valid UTF-8 text.") from None
    return code


class RunQuerySet(models.QuerySet):
    def submit(self, code: str, **fields) -> Run:
        """Create a queued run from user input (validated here, for every entry point)."""
        fields.setdefault("timeout_s", settings.EXECUTION_TIMEOUT)
        fields.setdefault("country_iso_code", settings.CODECARBON_COUNTRY)
        fields.setdefault("region", settings.CODECARBON_REGION)
        return self.create(code=clean_code(code), **fields)

    def for_session(self, session_key: str | None) -> RunQuerySet:
        if not session_key:
            return self.none()
        return self.filter(session_key=session_key)

    def queued(self) -> RunQuerySet:
        return self.filter(status=Run.Status.QUEUED)

    def running(self) -> RunQuerySet:
        return self.filter(status=Run.Status.RUNNING)

    def finished(self) -> RunQuerySet:
        return self.exclude(status__in=[Run.Status.QUEUED, Run.Status.RUNNING])

    def orphaned(self) -> RunQuerySet:
        """Runs marked running whose worker has stopped sending heartbeats."""
        alive = Worker.objects.alive().values("name")
        return self.running().exclude(worker__in=alive)

    def fail_orphans(self) -> int:
        """Mark runs whose worker died as errors; returns how many were found."""
        count = 0
        for run in self.orphaned():
            count += run.fail_orphaned()
        return count


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"  # the snippet exited non-zero
        TIMED_OUT = "timed_out", "Timed out"
        LIMIT_EXCEEDED = "limit_exceeded", "Limit exceeded"
        ERROR = "error", "Error"  # our fault, never the snippet's

    class Source(models.TextChoices):
        WEB = "web", "Web"
        API = "api", "API"
        CLI = "cli", "Command line"

    # Runs can hold private code: URLs use an unguessable id, never the primary key.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    code = models.TextField()
    session_key = models.CharField(max_length=40, blank=True, default="")
    source = models.CharField(max_length=8, choices=Source, default=Source.WEB)
    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, default="")

    timeout_s = models.FloatField()
    exit_code = models.IntegerField(null=True, blank=True)
    stdout = models.TextField(blank=True, default="")
    stderr = models.TextField(blank=True, default="")
    stdout_truncated = models.BooleanField(default=False)
    stderr_truncated = models.BooleanField(default=False)
    limit = models.CharField(max_length=16, blank=True, default="")
    error = models.TextField(blank=True, default="")
    isolation = models.CharField(max_length=64, blank=True, default="")

    duration_s = models.FloatField(null=True, blank=True)
    cpu_seconds = models.FloatField(null=True, blank=True)
    peak_memory_bytes = models.BigIntegerField(null=True, blank=True)
    energy_kwh = models.FloatField(null=True, blank=True)
    cpu_energy_kwh = models.FloatField(null=True, blank=True)
    ram_energy_kwh = models.FloatField(null=True, blank=True)
    gpu_energy_kwh = models.FloatField(null=True, blank=True)
    machine_energy_kwh = models.FloatField(null=True, blank=True)
    machine_cpu_energy_kwh = models.FloatField(null=True, blank=True)
    machine_ram_energy_kwh = models.FloatField(null=True, blank=True)
    machine_gpu_energy_kwh = models.FloatField(null=True, blank=True)
    emissions_g = models.FloatField(null=True, blank=True)
    machine_emissions_g = models.FloatField(null=True, blank=True)
    carbon_intensity_g_per_kwh = models.FloatField(null=True, blank=True)
    country_iso_code = models.CharField(max_length=3, blank=True, default="")
    region = models.CharField(max_length=64, blank=True, default="")
    provenance = models.JSONField(default=dict, blank=True)
    # [[seconds since start, watts], ...], written while the run executes.
    power_samples = models.JSONField(default=list, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # History page: WHERE session_key = ? ORDER BY created_at DESC, id DESC.
            models.Index(
                fields=["session_key", "-created_at", "-id"], name="run_session_history_idx"
            ),
            # Queue position and orphan reaping: WHERE status = ? ORDER BY created_at.
            models.Index(fields=["status", "created_at"], name="run_status_created_idx"),
        ]

    def __str__(self) -> str:
        return f"Run {self.public_id} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("runs:detail", kwargs={"public_id": self.public_id})

    @property
    def is_over(self) -> bool:
        return self.status not in {self.Status.QUEUED, self.Status.RUNNING}

    @property
    def elapsed_s(self) -> float:
        if not self.started_at:
            return 0.0
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    @property
    def failure_title(self) -> str:
        return "Syntax error" if self.error.startswith(SYNTAX_ERRORS) else "Runtime error"

    def queue_position(self) -> int | None:
        """1 for the next run to start, None once it has started."""
        if self.status != self.Status.QUEUED:
            return None
        earlier = Run.objects.queued().filter(created_at__lt=self.created_at).count()
        return earlier + 1

    # --- state changes, written by the worker --------------------------------------

    def mark_running(self, worker: str) -> None:
        self.status = self.Status.RUNNING
        self.started_at = timezone.now()
        self.worker = worker
        self.save(update_fields=["status", "started_at", "worker"])

    def record_progress(self, stdout: str, stderr: str, power_samples: list) -> None:
        self.stdout, self.stderr, self.power_samples = stdout, stderr, power_samples
        # Only while still running: a reaper may have failed this run meanwhile.
        Run.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
            stdout=stdout, stderr=stderr, power_samples=power_samples
        )

    def finish(self, outcome, figures) -> None:
        """Store the sandbox's outcome and the measured figures, and settle the status."""
        self.exit_code = outcome.exit_code
        self.stdout, self.stderr = outcome.stdout, outcome.stderr
        self.stdout_truncated = outcome.stdout_truncated
        self.stderr_truncated = outcome.stderr_truncated
        self.duration_s = outcome.wall_s
        self.cpu_seconds = outcome.cpu_s
        self.peak_memory_bytes = outcome.peak_memory_bytes
        self.isolation = outcome.isolation
        self.limit = outcome.limit
        if outcome.error:
            self.status, self.error = self.Status.ERROR, outcome.error
        elif outcome.timed_out:
            self.status = self.Status.TIMED_OUT
            self.error = (
                f"Timed out after {self.timeout_s:g} s; every process it started was stopped."
            )
        elif outcome.limit:
            self.status = self.Status.LIMIT_EXCEEDED
            self.error = outcome.limit_message
        elif outcome.exit_code == 0:
            self.status = self.Status.SUCCEEDED
        else:
            self.status = self.Status.FAILED
            self.error = failure_message(outcome.exit_code, outcome.stderr)
        if figures is not None:
            for name, value in vars(figures).items():
                setattr(self, name, value)
        self.finished_at = timezone.now()
        self.save()

    def fail(self, message: str) -> None:
        self.status = self.Status.ERROR
        self.error = message
        self.finished_at = timezone.now()
        self.save(update_fields=["status", "error", "finished_at"])

    def fail_orphaned(self) -> int:
        # Conditional update: the worker may have finished the run a moment ago.
        return Run.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
            status=self.Status.ERROR,
            error="The worker running this snippet stopped (killed or restarted) "
            "before it finished. Run it again.",
            finished_at=timezone.now(),
        )

    def as_dict(self) -> dict:
        """The JSON contract shared by `runsnippet --json` and the API."""
        return {
            "id": str(self.public_id),
            "status": self.status,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
            "duration_s": self.duration_s,
            "cpu_seconds": self.cpu_seconds,
            "energy_kwh": self.energy_kwh,
            "cpu_energy_kwh": self.cpu_energy_kwh,
            "ram_energy_kwh": self.ram_energy_kwh,
            "gpu_energy_kwh": self.gpu_energy_kwh,
            "machine_energy_kwh": self.machine_energy_kwh,
            "emissions_g": self.emissions_g,
            "carbon_intensity_g_per_kwh": self.carbon_intensity_g_per_kwh,
            "country_iso_code": self.country_iso_code,
            "region": self.region,
            "isolation": self.isolation,
            "error": self.error or None,
            "provenance": self.provenance,
            "power_samples": self.power_samples,
        }


SYNTAX_ERRORS = ("SyntaxError", "IndentationError", "TabError")
TRACEBACK_LINE = re.compile(r'File "[^"]*main\.py", line (\d+)')


def failure_message(exit_code: int | None, stderr: str) -> str:
    """One sentence saying why the snippet failed, with its line where we know it."""
    if exit_code is not None and exit_code < 0:
        return f"The snippet was killed by signal {-exit_code} ({signal_name(-exit_code)})."
    lines = stderr.strip().splitlines()
    last = lines[-1].strip() if lines else ""
    where = TRACEBACK_LINE.findall(stderr)
    line = f" on line {where[-1]}" if where else ""
    if last.startswith(SYNTAX_ERRORS):
        name, _, detail = last.partition(":")
        return f"{name}{line}: {detail.strip()}"
    if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", last):
        return f"{last}{' (raised' + line + ')' if line else ''}"
    return f"The snippet exited with status {exit_code}."


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


class WorkerQuerySet(models.QuerySet):
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
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

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
