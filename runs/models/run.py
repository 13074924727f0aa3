"""One execution of a snippet: what was submitted, how it went, what it cost."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone

from ..figures import breakdown, cpu_power
from ..sandbox import contract as sandbox_contract
from ..sandbox import environments
from ..snippets import failures, outputs
from . import links
from .busy import write_patiently
from .fleet import Baseline, Repeatability, Worker
from .output import Offsets, OutputChunk
from .rules import clean_code, clean_env, clean_stdin
from .service import StoredBytes

if TYPE_CHECKING:
    from ..figures.measure import Figures
    from ..sandbox import Outcome


logger = logging.getLogger(__name__)


def sent_by(sent: Any, session_key: str | None, client: str) -> bool:
    """Whether a request comes from the author of `sent` (a run or a series), who alone
    may stop it: its own browser session, or, for one sent through the API, the client
    that sent it."""
    if sent.source == Run.Source.API:
        return bool(sent.client) and sent.client == client
    return bool(sent.session_key) and sent.session_key == session_key


class RunQuerySet(models.QuerySet["Run"]):
    def submit(self, code: object, **fields: Any) -> Run:
        """Create a queued run from input nobody has checked yet (runsnippet, a re-run,
        scripts); requests are checked by runs.forms, which calls the same rules."""
        fields["env"] = clean_env(fields.get("env"))
        fields["stdin"] = clean_stdin(fields.get("stdin"))
        return self.add(clean_code(code), **fields)

    def add(self, code: str, **fields: Any) -> Run:
        """Create a queued run from checked input (`new`, saved)."""
        run = self.new(code, **fields)
        run.save(force_insert=True, using=self.db)
        return run

    def new(self, code: str, **fields: Any) -> Run:
        """A run of checked input (a form's cleaned data, `submit`'s), not yet saved
        (runs.queue.tasks.store_and_enqueue saves it): the server's defaults where the
        input chose nothing."""
        fields.setdefault("timeout_s", settings.EXECUTION_TIMEOUT)
        fields.setdefault("country_iso_code", settings.CODECARBON_COUNTRY)
        fields.setdefault("region", settings.CODECARBON_REGION)
        fields["env"] = fields.get("env") or environments.default().name
        fields.setdefault("stdin", "")
        return self.model(code=code, **fields)

    def recent_duplicate(
        self, session_key: str, code: str, env: str = "", stdin: str = "", seconds: float = 1.0
    ) -> Run | None:
        """This session's run of exactly this code and input, in this environment (the
        default where empty), submitted in the last second, if any."""
        since = timezone.now() - timedelta(seconds=seconds)
        env = env or environments.default().name
        return (
            self.filter(
                session_key=session_key,
                created_at__gte=since,
                code=code,
                env=env,
                stdin=stdin,
                series=None,
            )
            .order_by("-created_at")
            .first()
        )

    def for_session(self, session_key: str | None) -> RunQuerySet:
        if not session_key:
            return self.none()
        return self.filter(session_key=session_key)

    def previous_of(self, run: Run, session_key: str | None) -> Run | None:
        """The visitor's run before `run` (their latest, where `run` is not theirs): one
        row from the history's index."""
        mine = self.for_session(session_key).exclude(pk=run.pk)
        if run.session_key and run.session_key == session_key:
            mine = mine.filter(created_at__lte=run.created_at)
        return mine.only("public_id").first()

    def history_rows(self) -> RunQuerySet:
        """Single runs, and one run (the first) for each repeat or comparison."""
        return self.filter(models.Q(series__isnull=True) | models.Q(repetition=1, variant="A"))

    def queued(self) -> RunQuerySet:
        return self.filter(status=Run.Status.QUEUED)

    def undispatched(self) -> RunQuerySet:
        """Queued runs not yet handed to the workers (runs.queue.tasks). A terminal's
        runs (runsnippet) are its own process's to run, never the workers'."""
        return self.queued().filter(dispatched_at__isnull=True).exclude(source=Run.Source.CLI)

    def abandoned(self) -> RunQuerySet:
        """A terminal's runs left queued by a runsnippet that went away (killed, its
        machine restarted): none of its comparison runs now, and the process that ran
        its others beats no more (or, for one nothing ran yet, a heartbeat's grace has
        passed since it was queued). Nobody else runs a terminal's runs (undispatched)."""
        alive = Worker.objects.alive().values("name")
        cutoff = timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)
        busy = Run.objects.filter(source=Run.Source.CLI, series__isnull=False).filter(
            models.Q(status=Run.Status.RUNNING) | models.Q(worker__in=alive)
        )
        return (
            self.queued()
            .filter(source=Run.Source.CLI, created_at__lt=cutoff)
            .exclude(series__in=busy.values("series"))
        )

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
        """Mark runs whose worker died as errors; returns how many were found. A worker
        whose heartbeat is late but whose process is seen running (on this host) is not
        dead: a locked database delays heartbeats, and a live run is never called dead."""
        count = 0
        for run in self.orphaned():
            if not Worker.still_running(run.worker, run.started_at):
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
        CANCELLED = "cancelled", "Stopped"  # its author stopped it
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
    # When its author asked to stop it while it ran: its worker stops the sandbox.
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, default="")

    timeout_s = models.FloatField()
    # The environment it runs in (runs.sandbox.environments), by name; what it was made
    # of is in its provenance. "": a run from before environments (the default then).
    env = models.CharField(max_length=32, blank=True, default="")
    # What the snippet reads on its standard input ("": none, end of file at once).
    stdin = models.TextField(blank=True, default="")
    exit_code = models.IntegerField(null=True, blank=True)
    stdout = models.TextField(blank=True, default="")
    stderr = models.TextField(blank=True, default="")
    stdout_truncated = models.BooleanField(default=False)
    # Its SHA-256 (runs.snippets.outputs), set at its end: a series says whether its runs
    # printed the same without reading their outputs.
    stdout_digest = models.CharField(max_length=64, blank=True, default="")
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
    # Added by a comparison's next round, not sent by its client: the per-minute limit
    # counts what clients send (runs.models.limits), and the round waits its turn in the queue.
    follow_up = models.BooleanField(default=False)

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

    class AlreadyEnded(Exception):
        """A run's end was to be written, but another had ended it (a stop, or a reaper
        that took its worker for dead): its status is final, and stays so."""

    # Runs that ran to their end or to a limit, their energy measured: what a series
    # counts. Not a run its author stopped, nor one our side failed.
    MEASURED_ENDINGS = frozenset(
        {Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.LIMIT_EXCEEDED}
    )

    def __str__(self) -> str:
        return f"Run {self.public_id} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("runs:detail", kwargs={"public_id": self.public_id})

    def short_url(self) -> str:
        """The link to share: its short id's while that names it alone."""
        short = links.short_id(self)
        return reverse("runs:short-run", args=[short]) if short else self.get_absolute_url()

    def embed_url(self) -> str:
        return reverse("runs:embed", kwargs={"public_id": self.public_id})

    @property
    def python_version(self) -> str | None:
        """The snippet interpreter's version, as the sandbox reported it."""
        return (self.provenance or {}).get("python")

    @property
    def environment(self) -> dict[str, Any]:
        """The environment it ran in, as stored in its provenance (or, before it ran,
        as it is declared now): name, label, interpreter and packages."""
        stored: dict[str, Any] | None = (self.provenance or {}).get("environment")
        if stored:
            return stored
        env = environments.named(self.env_name)
        return env.provenance() if env else {"name": self.env_name}

    @property
    def env_name(self) -> str:
        return self.env or environments.default().name

    @property
    def number(self) -> int:
        """Its repetition in its series (a run of its own is the first of none: 0)."""
        return self.repetition or 0

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
    def processor(self) -> str:
        """The processor it ran on, as its numbers name it ("" before it was stored)."""
        stored = (self.provenance or {}).get("cpu", {}).get("identity")
        return cpu_power.Identity.from_dict(stored).described() if stored else ""

    @property
    def range_factors(self) -> cpu_power.Range | None:
        """How far its CPU energy may be from the figure, as fractions of it (None:
        measured by a counter, or not measured)."""
        return cpu_power.factors_of((self.provenance or {}).get("cpu", {}))

    @property
    def energy_range(self) -> cpu_power.Range | None:
        return cpu_power.ranged(self.energy_kwh, self.cpu_energy_kwh, self.range_factors)

    @property
    def cpu_range(self) -> cpu_power.Range | None:
        return cpu_power.ranged(self.cpu_energy_kwh, self.cpu_energy_kwh, self.range_factors)

    @property
    def machine_range(self) -> cpu_power.Range | None:
        """The whole machine's: CodeCarbon priced its CPU as it priced the snippet's
        (runs.figures.measure.forced_cpu_watts), so the same range holds."""
        return cpu_power.ranged(
            self.machine_energy_kwh, self.machine_cpu_energy_kwh, self.range_factors
        )

    @property
    def emissions_range(self) -> cpu_power.Range | None:
        return cpu_power.scaled_range(self.energy_range, self.carbon_intensity_g_per_kwh)

    def range_of(self, part: dict[str, Any]) -> cpu_power.Range | None:
        """A section's or a line's energy range: its share of the CPU energy by its CPU
        time, as its figure was (runs.figures.breakdown)."""
        if not self.cpu_seconds or self.cpu_energy_kwh is None:
            return None
        cpu_kwh = self.cpu_energy_kwh * part["cpu_seconds"] / self.cpu_seconds
        return cpu_power.ranged(part["energy_kwh"], cpu_kwh, self.range_factors)

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
        if self.status in (
            self.Status.TIMED_OUT,
            self.Status.LIMIT_EXCEEDED,
            self.Status.CANCELLED,
        ):
            return self.last_line
        return None

    @property
    def hints(self) -> list[str]:
        if self.status != self.Status.FAILED:
            return []
        return failures.hints(self.stderr, self.env_name, had_input=bool(self.stdin))

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

    def mark_running(self, worker: str) -> bool:
        """Queued → running on `worker`; False where it is queued no more (stopped
        meanwhile): a final status never changes."""
        now = timezone.now()
        queued = Run.objects.filter(pk=self.pk, status=self.Status.QUEUED)
        if not queued.update(status=self.Status.RUNNING, started_at=now, worker=worker):
            return False
        self.status, self.started_at, self.worker = self.Status.RUNNING, now, worker
        return True

    class Progress(enum.Enum):
        """What record_progress found."""

        WRITTEN = "written"
        STOP = "stop"  # its author asked to stop it
        OVER = "over"  # it is no longer running

    def record_progress(
        self, appended: list[OutputChunk], power_samples: list[list[float]]
    ) -> Run.Progress:
        """Append what a running run has printed since the last call, and its power
        samples so far (a few per second of its limit): WRITTEN; or, when nothing is
        written, STOP once its author has asked to stop it, OVER once it is no longer
        running (a reaper failed it, or its end is written). This object is its
        worker's, which sets its end: the row is not saved whole."""
        with transaction.atomic(using=self._state.db):
            # The row's lock orders this against the run's end (Run.store): chunks are
            # never added after the end has gathered them.
            running = Run.objects.filter(pk=self.pk, status=self.Status.RUNNING)
            if not running.filter(cancel_requested_at=None).update(power_samples=power_samples):
                return self.Progress.STOP if running.exists() else self.Progress.OVER
            OutputChunk.objects.bulk_create(appended)
        return self.Progress.WRITTEN

    def drop_live_output(self) -> None:
        """Forget what a running run's worker appended of a go it dropped (see
        runs.queue.execution): the next go's output starts from the beginning."""

        def drop() -> None:
            OutputChunk.objects.filter(run_id=self.pk).delete()

        write_patiently(drop, self._state.db, f"run {self.public_id}")

    def stoppable_by(self, session_key: str | None, client: str) -> bool:
        return sent_by(self, session_key, client)

    STOPPED_BEFORE_START = "Stopped on request before it started."
    ABANDONED = "Not run: the terminal (runsnippet) that queued it went away before it started."

    def cancel(self, reason: str = STOPPED_BEFORE_START) -> bool:
        """Stop this run for its author: a queued run at once (Cancelled, nothing ran,
        `reason` its error); a running one by its worker, which ends its sandbox within
        a second and keeps what it printed and used until then. False if it is over
        already."""
        now = timezone.now()
        with transaction.atomic():
            if Run.objects.filter(pk=self.pk, status=self.Status.QUEUED).update(
                status=self.Status.CANCELLED, finished_at=now, error=reason
            ):
                StoredBytes.charge(self.client, self.stored_bytes())  # its code and input
                return True
        return bool(
            Run.objects.filter(pk=self.pk, status=self.Status.RUNNING).update(
                cancel_requested_at=now
            )
        )

    def output_after(self, seen: Offsets) -> tuple[str, str, Offsets]:
        """What a viewer who has seen `seen` of each stream has not: from the run's
        chunks while it runs, from its row once it is over."""
        if self.status == self.Status.QUEUED:
            return "", "", seen
        if self.status != self.Status.RUNNING:
            out, err = self.stdout, self.stderr
            return out[seen.stdout :], err[seen.stderr :], Offsets(len(out), len(err))
        return self._appended_after(seen)

    def _appended_after(self, seen: Offsets) -> tuple[str, str, Offsets]:
        """What its worker has appended past `seen`, whatever the row's status says."""
        new: dict[str, list[str]] = {"stdout": [], "stderr": []}
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
        self.stdout_digest = outputs.digest(outcome.stdout)
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
        elif outcome.limit == sandbox_contract.CANCELLED:
            self.status, self.error = self.Status.CANCELLED, outcome.limit_message
        elif outcome.limit:
            self.status = self.Status.LIMIT_EXCEEDED
            self.error = outcome.limit_message
        elif outcome.exit_code == 0:
            self.status = self.Status.SUCCEEDED
        else:
            self.status = self.Status.FAILED
            self.error = failures.failure_message(outcome.exit_code, outcome.stderr)
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
        {"public_id", "code", "stdin", "session_key", "client", "source", "created_at"}
        | {"timeout_s", "env", "series", "variant", "repetition"}
        | {"dispatched_at", "started_at", "worker"}
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
        self.stdout, self.stderr, _ = self._appended_after(Offsets())  # what it printed
        self.status = self.Status.ERROR
        self.error = message
        self.finished_at = timezone.now()
        try:
            self.store(["status", "error", "finished_at", "stdout", "stderr"])
        except (Run.AlreadyEnded, Run.NotUpdated):
            logger.warning("run %s ended or went already; %r not stored", self.public_id, message)

    def store(self, fields: list[str]) -> None:
        """Save `fields` of a run's end, waiting out a busy database (busy)."""

        def write() -> None:
            self._store_if_in_flight(fields)
            # Its output is in the row now (gathered once, here at its end).
            OutputChunk.objects.filter(run_id=self.pk).delete()
            StoredBytes.charge(self.client, self.stored_bytes(), using=self._state.db)

        write_patiently(write, self._state.db, f"run {self.public_id}")

    def _store_if_in_flight(self, fields: list[str]) -> None:
        """Write `fields` where the run is still queued or running: once it has ended
        (succeeded, failed, timed out, stopped, error), nothing changes its status or
        figures. Run.NotUpdated where it has, or its row is gone."""
        attnames = {field.name: field.attname for field in self._meta.concrete_fields}
        values = {name: getattr(self, attnames[name]) for name in fields}
        runs = Run.objects.using(self._state.db).filter(pk=self.pk)
        if not runs.filter(status__in=Run.IN_FLIGHT).update(**values):
            if runs.exists():
                raise Run.AlreadyEnded(f"run {self.public_id} has ended already")
            raise Run.NotUpdated(f"run {self.public_id} is gone")

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
            self.stdout, self.stderr, _ = self._appended_after(Offsets())
            Run.objects.filter(pk=self.pk).update(stdout=self.stdout, stderr=self.stderr)
            OutputChunk.objects.filter(run_id=self.pk).delete()
            StoredBytes.charge(self.client, self.stored_bytes(), using=self._state.db)
        return 1

    def stored_bytes(self) -> int:
        """What this run keeps in the database, roughly to the byte: its code, input and
        output in UTF-8, and its figures as JSON (power samples, sections, lines)."""
        texts = (self.code, self.stdin, self.stdout, self.stderr)
        figures = (self.power_samples, self.sections, self.lines, self.provenance)
        return sum(len(t.encode(errors="replace")) for t in texts) + len(
            json.dumps(figures, separators=(",", ":"), default=str)
        )
