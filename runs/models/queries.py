"""The questions asked of runs: a visitor's history, the queue, the orphans of a dead
worker; and a new run from its author's input. (Run is `self.model` here: this module
comes before runs.models.run, which imports it.)"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from ..sandbox import environments
from .fleet import Worker
from .rules import clean_code, clean_env, clean_stdin


class RunQuerySet(models.QuerySet):
    def submit(self, code: object, **fields) -> models.Model:
        """Create a queued run from input nobody has checked yet (runsnippet, a re-run,
        scripts); requests are checked by runs.forms, which calls the same rules."""
        fields["env"] = clean_env(fields.get("env"))
        fields["stdin"] = clean_stdin(fields.get("stdin"))
        return self.add(clean_code(code), **fields)

    def add(self, code: str, **fields) -> models.Model:
        """Create a queued run from checked input (`new`, saved)."""
        run = self.new(code, **fields)
        run.save(force_insert=True, using=self.db)
        return run

    def new(self, code: str, **fields) -> models.Model:
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
    ) -> models.Model | None:
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

    def previous_of(self, run: models.Model, session_key: str | None) -> models.Model | None:
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
        return self.filter(status=self.model.Status.QUEUED)

    def undispatched(self) -> RunQuerySet:
        """Queued runs not yet handed to the workers (runs.queue.tasks)."""
        return self.queued().filter(dispatched_at__isnull=True)

    def waiting_or_running(self) -> RunQuerySet:
        return self.filter(status__in=self.model.IN_FLIGHT)

    def of_client(self, client: str) -> RunQuerySet:
        return self.filter(client=client)

    def running(self) -> RunQuerySet:
        return self.filter(status=self.model.Status.RUNNING)

    def finished(self) -> RunQuerySet:
        return self.exclude(status__in=[self.model.Status.QUEUED, self.model.Status.RUNNING])

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
