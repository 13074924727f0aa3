from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, connections, models, transaction
from django.urls import reverse
from django.utils import timezone

from ..figures import breakdown, stats
from ..snippets import diffs, failures

if TYPE_CHECKING:
    from ..figures.measure import Figures
    from ..sandbox import Outcome


logger = logging.getLogger(__name__)
# How long a run's end waits for a busy database before it is given up (runs.models
# Run.store): past SQLite's busy timeout (20 s) twice, and a PostgreSQL restart.
RESULT_WRITE_SECONDS = 120


def clean_code(code: object) -> str:
    """The snippet to run, or ValidationError with a message a user can act on."""
    if not isinstance(code, str):
        raise ValidationError("Code must be text.")
    if not code.strip():
        raise ValidationError("There is no code to run.")
    if "\x00" in code:
        raise ValidationError("The code contains NUL bytes; is it a binary file?")
    try:
        size = len(code.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError("The code is not valid UTF-8 text.") from None
    if size > settings.MAX_CODE_BYTES:
        raise ValidationError(
            f"The code is {size:,} bytes; the limit is {settings.MAX_CODE_BYTES:,} bytes.",
            code="too_large",
        )
    return code


class RunQuerySet(models.QuerySet):
    def submit(self, code: str, **fields) -> Run:
        """Create a queued run from user input (validated here, for every entry point)."""
        run = self.new(code, **fields)
        run.save(force_insert=True, using=self.db)
        return run

    def new(self, code: str, **fields) -> Run:
        """`submit`'s run, not yet saved (runs.queue.tasks.store_and_enqueue saves it)."""
        fields.setdefault("timeout_s", settings.EXECUTION_TIMEOUT)
        fields.setdefault("country_iso_code", settings.CODECARBON_COUNTRY)
        fields.setdefault("region", settings.CODECARBON_REGION)
        return self.model(code=clean_code(code), **fields)

    def recent_duplicate(self, session_key: str, code: str, seconds: float = 1.0) -> Run | None:
        """This session's run of exactly this code submitted in the last second, if any."""
        since = timezone.now() - timedelta(seconds=seconds)
        return (
            self.filter(session_key=session_key, created_at__gte=since, code=code, series=None)
            .order_by("-created_at")
            .first()
        )

    def for_session(self, session_key: str | None) -> RunQuerySet:
        if not session_key:
            return self.none()
        return self.filter(session_key=session_key)

    def history_rows(self) -> RunQuerySet:
        """Single runs, and one run (the first) for each repeat or comparison."""
        return self.filter(models.Q(series__isnull=True) | models.Q(repetition=1, variant="A"))

    def queued(self) -> RunQuerySet:
        return self.filter(status=Run.Status.QUEUED)

    def undispatched(self) -> RunQuerySet:
        """Queued runs not yet handed to the workers (runs.queue.tasks)."""
        return self.queued().filter(dispatched_at__isnull=True)

    def waiting_or_running(self) -> RunQuerySet:
        return self.filter(status__in=Run.IN_FLIGHT)

    def of_client(self, client: str) -> RunQuerySet:
        return self.filter(client=client)

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
    # Who submitted it, for per-client limits and the fair queue (runs.clients).
    client = models.CharField(max_length=64, blank=True, default="")
    source = models.CharField(max_length=8, choices=Source, default=Source.WEB)
    status = models.CharField(max_length=16, choices=Status, default=Status.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    # When it was handed to the workers' queue: one run per client at a time (runs.queue.tasks).
    dispatched_at = models.DateTimeField(null=True, blank=True)
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
    # CPU the interpreter spent starting before the code arrived: measured, not charged.
    startup_cpu_seconds = models.FloatField(null=True, blank=True)
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
    # Where the energy went (runs.figures.breakdown): named sections and sampled lines, from
    # the snippet's own process and checked against the figures above.
    sections = models.JSONField(default=list, blank=True)
    lines = models.JSONField(default=list, blank=True)
    measurement_notes = models.JSONField(default=list, blank=True)
    # The line of the snippet it was on when it ended or was stopped (the profile's
    # last sample of its own code): where a timeout or a limit caught it.
    last_line = models.PositiveIntegerField(null=True, blank=True)
    # The sandbox's start-up cost on this host when the run executed (Baseline).
    baseline_energy_kwh = models.FloatField(null=True, blank=True)
    baseline_duration_s = models.FloatField(null=True, blank=True)
    baseline_cpu_seconds = models.FloatField(null=True, blank=True)
    # Its host's repeatability when it ran (Repeatability.as_dict()), as its page shows.
    host_repeatability = models.JSONField(null=True, blank=True)

    series = models.ForeignKey(
        "Series", null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    variant = models.CharField(max_length=1, blank=True, default="")  # "A" or "B"
    repetition = models.PositiveSmallIntegerField(null=True, blank=True)

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
            # Per-client limits and the next run to dispatch: WHERE client = ? AND ...
            models.Index(fields=["client", "status", "created_at"], name="run_client_idx"),
        ]
        constraints = [
            # The fair queue's invariant, kept by the database across every web process
            # and worker: at most one run of a client in the workers' queue or running.
            models.UniqueConstraint(
                fields=["client"],
                condition=models.Q(dispatched_at__isnull=False, status__in=["queued", "running"]),
                name="run_one_dispatched_per_client",
            ),
        ]

    IN_FLIGHT = [Status.QUEUED, Status.RUNNING]

    def __str__(self) -> str:
        return f"Run {self.public_id} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("runs:detail", kwargs={"public_id": self.public_id})

    @property
    def python_version(self) -> str | None:
        """The snippet interpreter's version, as the sandbox reported it."""
        return (self.provenance or {}).get("python")

    @property
    def is_over(self) -> bool:
        return self.status not in {self.Status.QUEUED, self.Status.RUNNING}

    @property
    def net_energy_kwh(self) -> float | None:
        """The snippet's energy less the interpreter's start-up (never below zero)."""
        if self.energy_kwh is None or self.baseline_energy_kwh is None:
            return None
        return max(self.energy_kwh - self.baseline_energy_kwh, 0.0)

    @property
    def repeatability(self) -> Repeatability | None:
        """Its host's repeatability when it ran."""
        stored = self.host_repeatability
        return Repeatability.from_dict(stored) if stored else None

    def apply_baseline(self, baseline: Baseline | None) -> None:
        if baseline is not None:
            self.baseline_energy_kwh = baseline.energy_kwh
            self.baseline_duration_s = baseline.duration_s
            self.baseline_cpu_seconds = baseline.cpu_seconds

    @property
    def elapsed_s(self) -> float:
        if not self.started_at:
            return 0.0
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    @property
    def failing_line(self) -> int | None:
        """The line of the snippet that failed, or that a timeout or a limit stopped,
        for the editor to mark."""
        if self.status == self.Status.FAILED:
            return failures.failing_line(self.stderr)
        if self.status in (self.Status.TIMED_OUT, self.Status.LIMIT_EXCEEDED):
            return self.last_line
        return None

    @property
    def hints(self) -> list[str]:
        return failures.hints(self.stderr) if self.status == self.Status.FAILED else []

    def queue_position(self) -> int | None:
        """1 for the next run to start, None once it has started."""
        if self.status != self.Status.QUEUED:
            return None
        # The workers' queue holds one run per client, in the order they were sent; a
        # run not sent yet waits behind all of those and its own client's earlier runs.
        sent = Run.objects.queued().filter(dispatched_at__isnull=False)
        if self.dispatched_at:
            return sent.filter(dispatched_at__lt=self.dispatched_at).count() + 1
        own = (
            Run.objects.undispatched()
            .of_client(self.client)
            .filter(created_at__lt=self.created_at)
            .count()
        )
        return sent.count() + own + 1

    # --- state changes, written by the worker --------------------------------------

    def mark_running(self, worker: str) -> None:
        self.status = self.Status.RUNNING
        self.started_at = timezone.now()
        self.worker = worker
        self.save(update_fields=["status", "started_at", "worker"])

    def record_progress(self, appended: list[OutputChunk], power_samples: list) -> bool:
        """Append what a running run has printed since the last call, and its power
        samples so far (a few per second of its limit); False once it is no longer
        running (a reaper failed it, or its end is written), when nothing is written.
        This object is its worker's, which sets its end: the row is not saved whole."""
        with transaction.atomic(using=self._state.db):
            # The row's lock orders this against the run's end (Run.store): chunks are
            # never added after the end has gathered them.
            if not Run.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
                power_samples=power_samples
            ):
                return False
            OutputChunk.objects.bulk_create(appended)
        return True

    def output_after(self, seen: Offsets) -> tuple[str, str, Offsets]:
        """What a viewer who has seen `seen` of each stream has not: from the run's
        chunks while it runs, from its row once it is over."""
        if self.status == self.Status.QUEUED:
            return "", "", seen
        if self.status != self.Status.RUNNING:
            out, err = self.stdout, self.stderr
            return out[seen.stdout :], err[seen.stderr :], Offsets(len(out), len(err))
        new = {"stdout": [], "stderr": []}
        ends = seen._asdict()
        for chunk in self.output_chunks.filter(
            models.Q(stream="stdout", end__gt=seen.stdout)
            | models.Q(stream="stderr", end__gt=seen.stderr)
        ).order_by("stream", "start"):
            new[chunk.stream].append(chunk.text[max(ends[chunk.stream] - chunk.start, 0) :])
            ends[chunk.stream] = chunk.end
        return "".join(new["stdout"]), "".join(new["stderr"]), Offsets(**ends)

    def finish(self, outcome: Outcome, figures: Figures | None) -> None:
        """Store the sandbox's outcome and the measured figures, and settle the status.

        Every figure has a column of the same name (checked: a new figure without one
        fails here, in the tests, instead of vanishing on save)."""
        self.exit_code = outcome.exit_code
        self.stdout, self.stderr = outcome.stdout, outcome.stderr
        self.stdout_truncated = outcome.stdout_truncated
        self.stderr_truncated = outcome.stderr_truncated
        self.duration_s = outcome.wall_s
        self.cpu_seconds = outcome.cpu_s
        self.startup_cpu_seconds = outcome.startup_cpu_s
        self.peak_memory_bytes = outcome.peak_memory_bytes
        self.isolation = outcome.isolation
        self.limit = outcome.limit
        self.last_line = outcome.last_line
        if outcome.error:
            self.status, self.error = self.Status.ERROR, outcome.error
        elif outcome.timed_out:
            self.status, self.error = self.Status.TIMED_OUT, outcome.limit_message
        elif outcome.limit:
            self.status = self.Status.LIMIT_EXCEEDED
            self.error = outcome.limit_message
        elif outcome.exit_code == 0:
            self.status = self.Status.SUCCEEDED
        else:
            self.status = self.Status.FAILED
            self.error = failure_message(outcome.exit_code, outcome.stderr)
        if figures is not None:
            for name, value in dataclasses.asdict(figures).items():
                self._meta.get_field(name)  # FieldDoesNotExist for a figure with no column
                setattr(self, name, value)
        parts = breakdown.of(outcome.measurements, self)
        self.sections, self.lines, self.measurement_notes = parts.sections, parts.lines, parts.notes
        self.finished_at = timezone.now()
        self.store(self.result_fields())

    # Written when the run is submitted or handed to a worker; never by its end.
    SUBMITTED_FIELDS = frozenset(
        {"public_id", "code", "session_key", "client", "source", "created_at", "timeout_s"}
        | {"series", "variant", "repetition", "dispatched_at", "started_at", "worker"}
    )

    @classmethod
    def result_fields(cls) -> list[str]:
        """What a run's end writes: every column but the submitted ones (not the code
        again, up to MAX_CODE_BYTES, with every result)."""
        fields = cls._meta.concrete_fields
        return [f.name for f in fields if not f.primary_key and f.name not in cls.SUBMITTED_FIELDS]

    def take_row_of(self, stored: Run) -> None:
        """Become `stored`: this same run as the database holds it (read here, or sent
        by the worker that stored it)."""
        for field in self._meta.concrete_fields:
            setattr(self, field.attname, getattr(stored, field.attname))
        self._state.adding = False
        self._state.db = stored._state.db or self._state.db  # a row sent over: no db

    def fail(self, message: str) -> None:
        self.stdout, self.stderr, _ = self.output_after(Offsets())  # what it printed
        self.status = self.Status.ERROR
        self.error = message
        self.finished_at = timezone.now()
        self.store(["status", "error", "finished_at", "stdout", "stderr"])

    def store(self, fields: list[str]) -> None:
        """Save `fields` of a run's end: if the database is busy (locked past its
        timeout, or its connection dropped) wait and try again, a while, rather than
        lose what the run printed and measured."""
        deadline = time.monotonic() + RESULT_WRITE_SECONDS
        delay = 0.5
        while True:
            try:
                with transaction.atomic(using=self._state.db):
                    self.save(update_fields=fields)
                    # Its output is in the row now (gathered once, here at its end).
                    OutputChunk.objects.filter(run_id=self.pk).delete()
                return
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning(
                    "storing run %s failed (%s); trying again in %g s", self.public_id, exc, delay
                )
                connections[self._state.db or "default"].close()  # reopened by the next query
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def fail_orphaned(self) -> int:
        with transaction.atomic(using=self._state.db):
            # Conditional update: the worker may have finished the run a moment ago.
            if not Run.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
                status=self.Status.ERROR,
                error="The worker running this snippet stopped (killed or restarted) "
                "before it finished. Run it again.",
                finished_at=timezone.now(),
            ):
                return 0
            # What it printed before its worker died stays with it.
            self.status = self.Status.RUNNING
            stdout, stderr, _ = self.output_after(Offsets())
            Run.objects.filter(pk=self.pk).update(stdout=stdout, stderr=stderr)
            OutputChunk.objects.filter(run_id=self.pk).delete()
        return 1

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
            "sections": self.sections,
            "lines": self.lines,
            "measurement_notes": self.measurement_notes,
            "last_line": self.last_line,
            "host_repeatability": self.host_repeatability,
            "net_energy_kwh": self.net_energy_kwh,
            "baseline": None
            if self.baseline_energy_kwh is None
            else {
                "energy_kwh": self.baseline_energy_kwh,
                "duration_s": self.baseline_duration_s,
                "cpu_seconds": self.baseline_cpu_seconds,
            },
            "startup_cpu_seconds": self.startup_cpu_seconds,
            "python_version": self.python_version,
            "code": self.code,
            "series_id": str(self.series.public_id) if self.series_id else None,
            "variant": self.variant or None,
            "repetition": self.repetition,
            "created_at": self.created_at.isoformat(),
        }


class Offsets(NamedTuple):
    """How much of each output stream a viewer has seen, in characters; in a URL,
    `?since=<stdout>.<stderr>`."""

    stdout: int = 0
    stderr: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> Offsets | None:
        """The offsets a poll sent, or None for none or nonsense (sent whole then)."""
        try:
            stdout, stderr = (int(part) for part in (raw or "").split("."))
        except ValueError:
            return None
        return cls(stdout, stderr) if stdout >= 0 and stderr >= 0 else None

    def __str__(self) -> str:
        return f"{self.stdout}.{self.stderr}"


class OutputChunk(models.Model):
    """What a running run printed between two of its worker's progress writes: output
    is appended as it comes instead of rewritten whole, polls read only the chunks past
    what their viewer has seen, and the run's end gathers them into its row (and
    deletes them). Characters `start` to `end` of the stream, as the sandbox decoded it."""

    class Stream(models.TextChoices):
        STDOUT = "stdout"
        STDERR = "stderr"

    # No index of its own: the poll's index starts with the run (one page less to write
    # per progress write).
    run = models.ForeignKey(
        Run, on_delete=models.CASCADE, related_name="output_chunks", db_index=False
    )
    stream = models.CharField(max_length=6, choices=Stream)
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    text = models.TextField()

    class Meta:
        indexes = [
            # A poll: WHERE run = ? AND stream = ? AND end > (what its viewer has seen).
            models.Index(fields=["run", "stream", "end"], name="output_chunk_poll_idx")
        ]

    def __str__(self) -> str:
        return f"{self.stream} {self.start}–{self.end} of run {self.run_id}"


def failure_message(exit_code: int | None, stderr: str) -> str:
    """One sentence saying why the snippet failed, with its line where we know it."""
    if exit_code is not None and exit_code < 0:
        return f"The snippet was killed by signal {-exit_code} ({signal_name(-exit_code)})."
    last = failures.last_line(stderr)
    number = failures.failing_line(stderr)
    line = f" on line {number}" if number else ""
    if last.startswith(failures.SYNTAX_ERRORS):
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
        return f"{settings.HOST_NAME}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

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


class SeriesQuerySet(models.QuerySet):
    def submit(
        self, kind: str, codes: list[str], repetitions: int, run_fields=None, **fields
    ) -> Series:
        """Create a series and its runs, interleaved: A1, B1, A2, B2, ... (the caller
        queues them, as for single runs); `run_fields` are set on every run (its grid).
        A comparison runs until its answer is clear, at most `repetitions` pairs: only
        its first round is created here (the queue adds the next, runs.queue.tasks)."""
        if not 1 <= repetitions <= MAX_REPETITIONS:
            raise ValidationError(f"Repetitions must be between 1 and {MAX_REPETITIONS}.")
        codes = [clean_code(code) for code in codes]
        section = fields.get("section", "")
        for label, code in zip("AB", codes, strict=False):
            if section and not breakdown.defines_section(code, section):
                raise ValidationError(
                    f"Snippet {label} has no section named “{section}”: wrap the part to "
                    f'compare in `with section("{section.split("/")[-1]}"):`.'
                )
        if kind == Series.Kind.COMPARE:
            fields["max_pairs"] = repetitions
            repetitions = stats.looks(repetitions)[0]
            fields["diff"] = diffs.for_storage(codes[0], codes[1])
        with transaction.atomic():
            series = self.create(
                kind=kind,
                code_a=codes[0],
                code_b=codes[1] if len(codes) > 1 else "",
                repetitions=repetitions,
                **fields,
            )
            series.add_runs(range(1, repetitions + 1), **(run_fields or {}))
        return series

    def stalled(self) -> SeriesQuerySet:
        """Comparisons not finished with no run waiting or running: their last round
        ended but nobody started the next (its worker died in between)."""
        return self.filter(
            kind=Series.Kind.COMPARE, max_pairs__isnull=False, finished_at__isnull=True
        ).exclude(runs__status__in=Run.IN_FLIGHT)


MAX_REPETITIONS = 30
# A side of a series whose energy varies more than this, run to run, is called noisy.
NOISY_CV = 0.10
# Runs using less CPU than this are mostly start-up (pyperf warns likewise).
SHORT_RUN_CPU_SECONDS = 0.05


def _known(values) -> list[float]:
    return [value for value in values if value is not None]


class Measured(NamedTuple):
    """The figures of a run that a series compares: the run's, or one section's."""

    energy_kwh: float | None
    net_energy_kwh: float | None
    duration_s: float | None
    emissions_g: float | None
    cpu_seconds: float | None


class Compared(NamedTuple):
    """One figure an A/B comparison states: its key, Run field, and how it reads."""

    key: str
    field: str
    label: str
    quantity: str
    verb: str

    def verdict(self, comparison: stats.Comparison) -> str:
        return comparison.verdict(self.quantity, self.verb)


# The first is the headline, which decides when the comparison stops; the others are
# its breakdown, at the same look and with intervals of the same level.
COMPARED = [
    Compared("energy", "energy_kwh", "Energy", "energy", "uses"),
    Compared(
        "net_energy", "net_energy_kwh", "Energy beyond start-up", "energy beyond start-up", "uses"
    ),
    Compared("cpu", "cpu_seconds", "CPU time", "CPU time", "uses"),
    Compared("duration", "duration_s", "Duration", "time", "takes"),
]
HEADLINE = COMPARED[0]


class Series(models.Model):
    """Repetitions of one snippet, or of two interleaved for an A/B comparison."""

    class Kind(models.TextChoices):
        REPEAT = "repeat", "Repeat"
        COMPARE = "compare", "Comparison"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=8, choices=Kind, default=Kind.REPEAT)
    code_a = models.TextField()
    code_b = models.TextField(blank=True, default="")
    repetitions = models.PositiveSmallIntegerField()
    # The first run of each side is a warm-up: kept and shown, left out of the statistics.
    warmup = models.BooleanField(default=False)
    # Compare this named section of both snippets (runs.figures.breakdown) instead of the runs.
    section = models.CharField(max_length=100, blank=True, default="")
    session_key = models.CharField(max_length=40, blank=True, default="")
    client = models.CharField(max_length=64, blank=True, default="")
    source = models.CharField(max_length=8, choices=Run.Source, default=Run.Source.WEB)
    created_at = models.DateTimeField(default=timezone.now)
    # A comparison runs in rounds until its answer is clear, up to this many pairs
    # (stats.decide). None: a fixed number of pairs, all queued at once (older ones).
    max_pairs = models.PositiveSmallIntegerField(null=True, blank=True)
    # When a comparison that runs until clear stopped, and why, if not clear.
    finished_at = models.DateTimeField(null=True, blank=True)
    stop_reason = models.CharField(max_length=300, blank=True, default="")
    # Its hosts' repeatability when it stopped ([Repeatability.as_dict()]).
    host_repeatability = models.JSONField(null=True, blank=True)
    # A comparison's code side by side, computed once when it is created (runs.snippets.diffs);
    # None: too long to show so.
    diff = models.JSONField(null=True, blank=True)

    objects = SeriesQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "series"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.public_id}"

    def get_absolute_url(self) -> str:
        name = "runs:compare-detail" if self.kind == self.Kind.COMPARE else "runs:series-detail"
        return reverse(name, kwargs={"public_id": self.public_id})

    def ordered_runs(self) -> list[Run]:
        return list(self.runs.order_by("repetition", "variant"))

    # What its medians, verdict and next round are computed from (`results`): not the
    # runs' code and output, up to 60 of each.
    RESULT_FIELDS = [
        "series",
        "variant",
        "repetition",
        "status",
        "energy_kwh",
        "emissions_g",
        "duration_s",
        "cpu_seconds",
        "baseline_energy_kwh",
        "carbon_intensity_g_per_kwh",
        "sections",
    ]

    def runs_for_results(self) -> list[Run]:
        return list(self.runs.order_by("repetition", "variant").only(*self.RESULT_FIELDS))

    @property
    def variants(self) -> str:
        return "AB" if self.kind == self.Kind.COMPARE else "A"

    @property
    def variant_labels(self) -> dict[str, str]:
        """How the page names each variant: a repeat has one, which is not an "A"."""
        return {"A": "A", "B": "B"} if self.kind == self.Kind.COMPARE else {"A": "Runs"}

    def code_of(self, variant: str) -> str:
        return self.code_b if variant == "B" else self.code_a

    def add_runs(self, repetitions: range, **run_fields) -> list[Run]:
        """Queued runs for these repetitions, interleaved A, B, A, B (the caller
        queues them)."""
        return [
            Run.objects.submit(
                self.code_of(variant),
                session_key=self.session_key,
                source=self.source,
                client=self.client,
                series=self,
                variant=variant,
                repetition=repetition,
                **run_fields,
            )
            for repetition in repetitions
            for variant in self.variants
        ]

    @property
    def runs_until_clear(self) -> bool:
        """A comparison that adds rounds until its answer is clear (not an older one
        whose pairs were all queued at once)."""
        return self.kind == self.Kind.COMPARE and self.max_pairs is not None

    @property
    def pair_cap(self) -> int:
        return self.max_pairs or self.repetitions

    @property
    def first_look(self) -> int:
        """After how many pairs the first verdict comes."""
        return stats.looks(self.pair_cap)[0]

    def completed_look(self, runs: list[Run]) -> int:
        """The pairs of the last look whose runs have all ended (0: none yet)."""
        first_unfinished = min(
            (run.repetition for run in runs if not run.is_over), default=self.repetitions + 1
        )
        done = 0
        for look in stats.looks(self.pair_cap):
            if look > self.repetitions or look >= first_unfinished:
                break
            done = look
        return done

    def is_finished(self, runs: list[Run]) -> bool:
        if self.runs_until_clear:
            return self.finished_at is not None
        return all(run.is_over for run in runs)

    def next_round(self, runs: list[Run]) -> int:
        """How many pairs a comparison that runs until clear adds now: the next round
        once every run so far has ended and the answer is not clear (0 otherwise)."""
        if not self.runs_until_clear or self.finished_at or not all(r.is_over for r in runs):
            return 0
        results = self.results(runs)
        decision = results["decision"]
        if decision is None or decision.outcome != stats.CONTINUE:
            return 0
        previous = max(
            (look for look in stats.looks(self.pair_cap) if look < self.repetitions), default=0
        )
        succeeded = {(r.variant, r.repetition) for r in runs if r.status == Run.Status.SUCCEEDED}
        if not any(
            ("A", n) in succeeded and ("B", n) in succeeded
            for n in range(previous + 1, self.repetitions + 1)
        ):
            return 0  # the last round gave no pair to compare: more would not either
        later = [look for look in stats.looks(self.pair_cap) if look > self.repetitions]
        return later[0] - self.repetitions if later else 0

    def add_round(self, count: int) -> list[Run]:
        """`count` more pairs on the same grid, numbered after the last: created once,
        whoever else tries at the same moment (the runs' worker, a repair)."""
        first = self.runs.order_by("repetition").first()
        grid = {"country_iso_code": first.country_iso_code, "region": first.region}
        with transaction.atomic():
            added = Series.objects.filter(
                pk=self.pk, repetitions=self.repetitions, finished_at__isnull=True
            ).update(repetitions=models.F("repetitions") + count)
            if not added:
                return []
            start = self.repetitions + 1
            self.repetitions += count
            return self.add_runs(range(start, self.repetitions + 1), **grid)

    def finish(self, reason: str = "") -> None:
        """A comparison that runs until clear stops: with the repeatability of its hosts
        as it was then, which its page keeps showing."""
        now = timezone.now()
        self.finished_at, self.stop_reason = now, reason[:300]
        self.host_repeatability = [spread.as_dict() for spread in self._host_spreads_at(now)]
        Series.objects.filter(pk=self.pk, finished_at__isnull=True).update(
            finished_at=self.finished_at,
            stop_reason=self.stop_reason,
            host_repeatability=self.host_repeatability,
        )

    def is_warmup(self, run: Run) -> bool:
        """The first run of each side, kept but left out of the statistics if asked."""
        return self.warmup and run.repetition == 1

    def measured(self, run: Run) -> Measured | None:
        """What this series compares of `run`: the whole run, or its named section
        (None when a succeeded run did not report that section)."""
        if not self.section:
            return Measured(
                run.energy_kwh, run.net_energy_kwh, run.duration_s, run.emissions_g,
                run.cpu_seconds,
            )  # fmt: skip
        part = breakdown.section_figures(run, self.section)
        if part is None:
            return None
        intensity = run.carbon_intensity_g_per_kwh or 0.0
        return Measured(
            part["energy_kwh"], None, part["duration_s"], part["energy_kwh"] * intensity,
            part["cpu_seconds"],
        )  # fmt: skip

    def results(self, runs: list[Run] | None = None) -> dict:
        """Per-variant summaries and, for a comparison, B against A, from succeeded runs
        (warm-up runs left out), of the whole runs or of the series' section."""
        runs = self.ordered_runs() if runs is None else runs
        variants = {}
        for variant in self.variants:
            mine = [r for r in runs if r.variant == variant]
            counted = [r for r in mine if not self.is_warmup(r)]
            succeeded = [r for r in counted if r.status == Run.Status.SUCCEEDED]
            measured = {r.repetition: self.measured(r) for r in succeeded}
            ok = [m for m in measured.values() if m is not None]
            variants[variant] = {
                "runs": mine,
                "measured": {k: m for k, m in measured.items() if m is not None},
                "without_section": len(measured) - len(ok),
                "succeeded": len(succeeded),
                "failed": sum(1 for r in counted if r.is_over and r.status != Run.Status.SUCCEEDED),
                # A figure a run lacks (never measured) is left out, not a zero.
                "energy": stats.summarize(_known(m.energy_kwh for m in ok)),
                "net_energy": stats.summarize(_known(m.net_energy_kwh for m in ok)),
                "duration": stats.summarize(_known(m.duration_s for m in ok)),
                "emissions": stats.summarize(_known(m.emissions_g for m in ok)),
                "cpu": stats.summarize(_known(m.cpu_seconds for m in ok)),
            }
        result = {
            "variants": variants,
            "finished": sum(1 for r in runs if r.is_over),
            "total": len(runs),
            "is_over": self.is_finished(runs),
        }
        if self.kind == self.Kind.COMPARE:
            result |= self._comparisons(variants, self.completed_look(runs), result["is_over"])
        result["warnings"] = self._warnings(result)
        return result

    @staticmethod
    def _pairs(variants: dict, look: int) -> list[tuple[Measured, Measured]]:
        a, b = variants["A"]["measured"], variants["B"]["measured"]
        return [(a[k], b[k]) for k in sorted(a.keys() & b.keys()) if k <= look]

    @classmethod
    def _energy_pairs(cls, variants: dict, look: int) -> list[tuple[float, float]]:
        """The headline's figures of each pair up to `look`: what the verdict tests."""
        field = HEADLINE.field
        return [
            (getattr(a, field) or 0.0, getattr(b, field) or 0.0)
            for a, b in cls._pairs(variants, look)
        ]

    def _comparisons(self, variants: dict, look: int, is_over: bool) -> dict:
        """B against A at the last completed look: the headline's decision (which says
        when a comparison that runs until clear stops) and every compared figure, each
        interval at the decision's level.

        Runs of the same repetition ran back to back: compare them in pairs (the
        machine's drift cancels); with fewer than two complete pairs, no verdict yet.
        """
        pairs = self._pairs(variants, look)
        decision = None
        if look:
            decision = stats.decide(self._energy_pairs(variants, look), look, self.pair_cap)
            if is_over and decision.outcome == stats.CONTINUE:
                # Stopped before it was clear (failed runs, a limit): not settled.
                decision = dataclasses.replace(decision, outcome=stats.UNSETTLED)
        level = decision.comparison.level if decision and decision.comparison else None

        def of(field: str) -> stats.Comparison | None:
            values = [(getattr(a, field), getattr(b, field)) for a, b in pairs]
            if not values or any(a is None or b is None for a, b in values):
                return None  # not measured for a section: the start-up is the run's
            return stats.compare_paired(values, interval=level)

        return {c.key: of(c.field) for c in COMPARED} | {
            "decision": decision,
            "pairs": len(pairs),
            "look": look,
        }

    def _warnings(self, results: dict) -> list[str]:
        """What makes this series' figures less sure than they look."""
        found = []
        labels = self.variant_labels
        for variant, data in results["variants"].items():
            if data["without_section"]:
                found.append(
                    f"{data['without_section']} of {labels[variant]}'s successful runs did "
                    f"not report the section “{self.section}” and are left out."
                )
            side = "The runs" if self.kind == self.Kind.REPEAT else f"{labels[variant]}'s runs"
            energy, cpu = data["energy"], data["cpu"]
            # A repeat's spread is its answer's uncertainty; a comparison's sides spread
            # with the machine's drift, which the pairs cancel (its own warnings below).
            if self.kind == self.Kind.REPEAT and energy and energy.n >= 3 and energy.cv > NOISY_CV:
                found.append(
                    f"{side} vary by {energy.cv:.0%} (coefficient of variation), more than "
                    f"{NOISY_CV:.0%}: a noisy machine or code whose work changes from run to "
                    "run. Treat the median as rough; more runs help."
                )
            if cpu and cpu.median < SHORT_RUN_CPU_SECONDS:
                found.append(
                    f"{side} use {cpu.median * 1000:.0f} ms of CPU each, under "
                    f"{SHORT_RUN_CPU_SECONDS * 1000:.0f} ms: mostly the interpreter and the "
                    "sandbox, not your code. Put the work in a loop so that it dominates."
                )
        if results.get("decision"):
            found += self._fragility(results)
        if self.stop_reason:
            found.append(self.stop_reason)
        return found

    def _fragility(self, results: dict) -> list[str]:
        """Where the pairs themselves make the verdict fragile: the difference moved
        while the comparison ran, or many pairs point the other way."""
        decision = results["decision"]
        pairs = self._energy_pairs(results["variants"], results["look"])
        found = []
        moved = stats.drift(pairs)
        if moved:
            first, second = (stats.signed_percent(value) for value in moved)
            found.append(
                f"The difference moved while this ran: B against A was {first} in the first "
                f"half of the pairs and {second} in the second. The verdict is an average "
                "over a moving target; run it again at a quieter moment to see which holds."
            )
        if decision.outcome == stats.DIFFERENT and decision.comparison:
            change = decision.comparison.change
            agree, total = stats.agreeing(pairs, change)
            if total and (total - agree) / total >= stats.DISAGREEING_SHARE:
                way = "more" if change > 0 else "less"
                found.append(
                    f"B used {way} energy than A in only {agree} of {total} pairs: the "
                    "difference is small against the spread between pairs, so the verdict "
                    "is fragile. Running the comparison again would tell whether it holds."
                )
        return found

    def headline(self, results: dict) -> str | None:
        """A comparison's one answer, in plain words (None before its first look)."""
        decision = results.get("decision")
        if decision is None:
            return None
        return decision.verdict(HEADLINE.quantity, HEADLINE.verb)

    def basis(self, results: dict, runs: list[Run]) -> str:
        """What the headline rests on, and why time may say otherwise."""
        provenance = next((r.provenance for r in runs if r.provenance.get("cpu")), {})
        cpu = provenance.get("cpu", {})
        if cpu.get("method") == "measured":
            rests = (
                "Energy here is the CPU's energy counter shared out by CPU time, plus a small "
                "share for memory"
            )
        elif cpu.get("power"):
            rests = (
                f"Energy here is CPU time × a constant ({cpu['power']}) plus a small share "
                "for memory: it follows CPU time, so the energy verdict is a CPU-time verdict"
            )
        else:
            rests = "Energy here follows CPU time"
        decision, duration = results.get("decision"), results.get("duration")
        if decision and decision.comparison and duration:
            energy = decision.comparison
            if energy.significant != duration.significant or (
                energy.significant and (energy.change > 0) != (duration.change > 0)
            ):
                if duration.significant:
                    time = duration.verdict("time", "takes").removesuffix(".")
                else:
                    time = f"no clear difference in time ({duration.interval()})"
                return (
                    f"{rests}. Time tells another story — {time} — because elapsed time "
                    "also counts waiting (sleep, input and output, the machine's other work), "
                    "which costs no CPU time and so almost no energy here."
                )
        return f"{rests}; time is shown below for comparison."

    def host_spreads(self) -> list[Repeatability]:
        """The repeatability of the hosts this ran on: as it was when it stopped, or,
        while it runs, as it is now."""
        if self.host_repeatability is not None:
            return [Repeatability.from_dict(stored) for stored in self.host_repeatability]
        return self._host_spreads_at(timezone.now())

    def _host_spreads_at(self, moment: datetime) -> list[Repeatability]:
        hosts = self.runs.values_list("provenance__host", flat=True).distinct()
        spreads = [ControlRun.objects.repeatability(host, at=moment) for host in hosts if host]
        return [spread for spread in spreads if spread]

    def as_dict(self) -> dict:
        """The JSON export of a series: its runs, summaries and comparison."""
        runs = self.ordered_runs()
        results = self.results(runs)

        def summary(s: stats.Summary | None) -> dict | None:
            return s.as_dict() if s else None

        data = {
            "id": str(self.public_id),
            "kind": self.kind,
            "repetitions": self.repetitions,
            "warmup": self.warmup,
            "section": self.section or None,
            "warnings": results["warnings"],
            "created_at": self.created_at.isoformat(),
            "code": {v: self.code_of(v) for v in self.variants},
            "finished": results["finished"],
            "total": results["total"],
            "host_repeatability": [spread.as_dict() for spread in self.host_spreads()],
            "summary": {
                v: {
                    name: summary(results["variants"][v][name])
                    for name in ("energy", "net_energy", "duration", "emissions")
                }
                | {
                    "unit": {
                        "energy": "kWh",
                        "net_energy": "kWh",
                        "duration": "s",
                        "emissions": "g",
                    }
                }
                for v in self.variants
            },
            "runs": [run.as_dict() for run in runs],
        }
        if self.kind == self.Kind.COMPARE:
            decision = results["decision"]
            data["comparison"] = {
                compared.key: comparison.as_dict() | {"verdict": verdict} if comparison else None
                for compared, comparison, verdict in self.verdicts(results)
            } | {
                "verdict": self.headline(results),
                "outcome": decision.outcome if decision else None,
                "pairs": results["pairs"],
                "max_pairs": self.pair_cap,
                "runs_until_clear": self.runs_until_clear,
            }
        return data

    def verdicts(self, results: dict) -> list[tuple[Compared, stats.Comparison | None, str | None]]:
        """Each compared figure, B against A, for the page's breakdown and the export."""
        return [
            (c, results[c.key], c.verdict(results[c.key]) if results[c.key] else None)
            for c in COMPARED
        ]


class Baseline(models.Model):
    """What starting the interpreter in the sandbox costs on one host (`pass`, N times)."""

    host = models.CharField(max_length=200)
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
            models.Index(fields=["host", "-created_at"], name="baseline_host_idx"),
        ]

    def __str__(self) -> str:
        return f"Baseline on {self.host}: {self.energy_kwh:.3g} kWh"

    @classmethod
    def latest_for_this_host(cls, max_age: timedelta | None = None) -> Baseline | None:
        baselines = cls.objects.filter(host=settings.HOST_NAME)
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

    def as_dict(self) -> dict:
        return {
            "host": self.host,
            "cv": self.cv,
            "control_runs": self.runs,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }

    @classmethod
    def from_dict(cls, stored: dict) -> Repeatability:
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


class ControlRunQuerySet(models.QuerySet):
    def repeatability(self, host: str, at: datetime | None = None) -> Repeatability | None:
        """The spread (CV) of `host`'s last control runs as of `at` (now)."""
        at = at or timezone.now()
        runs = self.filter(
            host=host, created_at__lte=at, created_at__gte=at - REPEATABILITY_MAX_AGE
        ).order_by("-created_at")
        rows = list(runs.values_list("cpu_seconds", "created_at")[:REPEATABILITY_RUNS])
        if len(rows) < CONTROL_RUNS_NEEDED:
            return None
        values = [value for value, _ in rows]
        return Repeatability(host, stats.summarize(values).cv, len(rows), rows[-1][1], rows[0][1])

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


class Maintenance(models.Model):
    """When a fleet-wide chore (retention) last ran: one row per chore."""

    name = models.CharField(max_length=32, unique=True)
    last_run_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} (last {self.last_run_at})"


class LoginFailure(models.Model):
    """A failed admin login, counted per client to slow password guessing."""

    client = models.CharField(max_length=64)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["client", "at"], name="login_failure_idx")]

    def __str__(self) -> str:
        return f"{self.client} at {self.at}"
