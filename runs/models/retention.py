"""What the playground keeps, and for how long (docs/public.md, "Retention").

Runs older than RUN_RETENTION_DAYS are deleted (a repeat or comparison with all its
runs, never half of one); the output of runs older than RUN_OUTPUT_RETENTION_DAYS is
cut to OUTPUT_KEPT_CHARACTERS per stream; expired sessions are cleared. Workers do it
once an hour for the whole fleet (a conditional update on one row decides who), and
`manage.py purge_runs` does it from cron.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models.functions import Length, Substr
from django.utils import timezone

from .run import Run
from .series import Series
from .service import LoginFailure, Maintenance, StoredBytes

BATCH = 500
PURGE_EVERY = timedelta(hours=1)
OUTPUT_KEPT_CHARACTERS = 4096


def purge(now: datetime | None = None) -> dict[str, int]:
    """Delete and trim what is past its retention; returns how much of each."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.RUN_RETENTION_DAYS)
    done = {
        "series": _delete_in_batches(Series.objects.filter(created_at__lt=cutoff)),
        "runs": _delete_in_batches(
            Run.objects.filter(series__isnull=True, created_at__lt=cutoff).exclude(
                status__in=Run.IN_FLIGHT
            )
        ),
        "trimmed": _trim_output(now - timedelta(days=settings.RUN_OUTPUT_RETENTION_DAYS)),
    }
    LoginFailure.objects.filter(at__lt=now - timedelta(days=1)).delete()
    StoredBytes.objects.filter(day__lt=(now - timedelta(days=1)).date()).delete()
    engine = import_module(settings.SESSION_ENGINE)
    engine.SessionStore.clear_expired()
    return done


def _delete_in_batches(queryset: models.QuerySet[Any]) -> int:
    # Bounded work per statement: a year of runs is not one transaction.
    deleted = 0
    while ids := list(queryset.values_list("pk", flat=True)[:BATCH]):
        deleted += len(ids)
        queryset.model.objects.filter(pk__in=ids).delete()
    return deleted


def _trim_output(cutoff: datetime) -> int:
    trimmed = 0
    for stream in ("stdout", "stderr"):
        long = Run.objects.annotate(length=Length(stream)).filter(
            created_at__lt=cutoff, length__gt=OUTPUT_KEPT_CHARACTERS
        )
        trimmed += long.update(
            **{
                stream: Substr(stream, 1, OUTPUT_KEPT_CHARACTERS),
                f"{stream}_truncated": models.Value(True),
            }
        )
    return trimmed


def claim(name: str, every: timedelta, now: datetime | None = None) -> bool:
    """True for exactly one caller in the fleet per `every`, whoever asks first."""
    now = now or timezone.now()
    try:
        with transaction.atomic():
            Maintenance.objects.get_or_create(name=name)
    except IntegrityError:
        pass  # created by another worker a moment ago
    due = models.Q(last_run_at__isnull=True) | models.Q(last_run_at__lt=now - every)
    return Maintenance.objects.filter(due, name=name).update(last_run_at=now) == 1


def purge_if_due() -> dict[str, int] | None:
    return purge() if claim("purge", PURGE_EVERY) else None
