"""Per-client limits and the total queue cap, checked before a submission is stored.

Each limit counts runs (a repeat or comparison counts as its number of runs), reads
only indexed rows of one client, and answers with what to tell the client and when
to come back. `runsnippet` is the operator's tool and is never limited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone

from .models import Run


@dataclass(frozen=True)
class Refusal:
    message: str
    status: int  # 429 for this client's limits, 503 for the whole queue
    retry_after: int  # seconds


def check(client: str, runs: int = 1) -> Refusal | None:
    """Why `client` may not queue `runs` more runs now, or None."""
    now = timezone.now()
    minute_ago, hour_ago = now - timedelta(minutes=1), now - timedelta(hours=1)
    # One read of this client's rows in flight or of the last two hours (a run that
    # finished in the last hour started in them): at most what the limits let in.
    mine = Run.objects.of_client(client)
    counts = mine.filter(
        Q(status__in=Run.IN_FLIGHT) | Q(created_at__gte=now - timedelta(hours=2))
    ).aggregate(
        waiting=Count("pk", filter=Q(status__in=Run.IN_FLIGHT)),
        recent=Count("pk", filter=Q(created_at__gte=minute_ago)),
        used=Sum("cpu_seconds", filter=Q(finished_at__gte=hour_ago)),
    )
    waiting = counts["waiting"]
    cap = settings.LIMIT_QUEUED_RUNS_PER_CLIENT
    if waiting + runs > cap:
        if runs > cap:
            message = f"This submission has {runs} runs; at most {cap} may be queued at once."
        else:
            message = (
                f"You have {waiting} runs waiting or running, and at most {cap} may be queued "
                f"at once: this one will be accepted when {waiting + runs - cap} of them "
                "finish."
            )
        return Refusal(message, 429, 5)
    per_minute = settings.LIMIT_RUNS_PER_MINUTE
    if counts["recent"] + runs > per_minute:
        recent = list(
            mine.filter(created_at__gte=minute_ago)
            .order_by("created_at")
            .values_list("created_at", flat=True)[: per_minute + 1]
        )
        # Come back when enough of the last minute's runs have aged out of it.
        index = min(len(recent) + runs - per_minute, len(recent)) - 1
        wait = (recent[index] - minute_ago).total_seconds() if index >= 0 else 60
        return Refusal(
            f"Too many runs: at most {per_minute} a minute. Try again in {math.ceil(wait)} s.",
            429,
            max(math.ceil(wait), 1),
        )
    used = counts["used"] or 0.0
    budget = settings.LIMIT_CPU_SECONDS_PER_HOUR
    if used >= budget:
        return Refusal(
            f"Your runs used {used:.0f} CPU-seconds in the last hour; the limit is "
            f"{budget:g}. Try again later.",
            429,
            300,
        )
    total = Run.objects.queued().count()
    if total + runs > settings.LIMIT_QUEUED_RUNS_TOTAL:
        return Refusal(
            "The playground is busy: too many runs are waiting. Try again in a minute.",
            503,
            60,
        )
    return None
