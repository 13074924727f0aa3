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
from django.db.models import Sum
from django.utils import timezone

from .models import Run


@dataclass(frozen=True)
class Refusal:
    message: str
    status: int  # 429 for this client's limits, 503 for the whole queue
    retry_after: int  # seconds


def check(client: str, runs: int = 1) -> Refusal | None:
    """Why `client` may not queue `runs` more runs now, or None."""
    mine = Run.objects.of_client(client)
    waiting = mine.waiting_or_running().count()
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
    now = timezone.now()
    minute_ago = now - timedelta(minutes=1)
    recent = list(
        mine.filter(created_at__gte=minute_ago)
        .order_by("created_at")
        .values_list("created_at", flat=True)[: settings.LIMIT_RUNS_PER_MINUTE + 1]
    )
    per_minute = settings.LIMIT_RUNS_PER_MINUTE
    if len(recent) + runs > per_minute:
        # Come back when enough of the last minute's runs have aged out of it.
        index = min(len(recent) + runs - per_minute, len(recent)) - 1
        wait = (recent[index] - minute_ago).total_seconds() if index >= 0 else 60
        return Refusal(
            f"Too many runs: at most {per_minute} a minute. Try again in {math.ceil(wait)} s.",
            429,
            max(math.ceil(wait), 1),
        )
    used = (
        mine.filter(finished_at__gte=now - timedelta(hours=1)).aggregate(Sum("cpu_seconds"))[
            "cpu_seconds__sum"
        ]
        or 0.0
    )
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
