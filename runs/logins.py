"""Admin logins: failures are counted per client, and past the limit the login form
answers 429 until the oldest failure of the hour has aged out."""

from __future__ import annotations

import functools
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .clients import client_of
from .models import LoginFailure

WINDOW = timedelta(hours=1)


@receiver(user_login_failed)
def record_failure(sender, credentials, request: HttpRequest | None = None, **kwargs) -> None:
    if request is not None:
        LoginFailure.objects.create(client=client_of(request))


def throttled(view):
    """Refuse login attempts from a client past LIMIT_ADMIN_LOGINS_PER_HOUR failures."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if request.method == "POST":
            since = timezone.now() - WINDOW
            failures = LoginFailure.objects.filter(client=client_of(request), at__gte=since)
            if failures.count() >= settings.LIMIT_ADMIN_LOGINS_PER_HOUR:
                response = HttpResponse(
                    "Too many failed logins from your address; try again in an hour.",
                    status=429,
                    content_type="text/plain; charset=utf-8",
                )
                response["Retry-After"] = str(int(WINDOW.total_seconds()))
                return response
        return view(request, *args, **kwargs)

    return wrapper
