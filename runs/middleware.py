"""A busy or unreachable database costs the client a retry, never a server error.

A lock held past SQLite's busy timeout, or a PostgreSQL connection that dropped, raises
OperationalError (or InterfaceError) wherever the request was: the answer is 503 with
Retry-After, as JSON on the API and as a plain message elsewhere (the playground's
forms keep the code that was sent). Nothing was stored: trying again is safe.
"""

from __future__ import annotations

import logging
from typing import cast

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

from . import api, views

logger = logging.getLogger(__name__)

DATABASE_BUSY = "The database is busy right now; nothing was stored. Try again in a few seconds."
RETRY_AFTER_SECONDS = 5


class DatabaseBusyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception):
        if not isinstance(exc, OperationalError | InterfaceError):
            return None
        logger.warning("database unavailable for %s %s: %s", request.method, request.path, exc)
        if api.is_api(request):
            return api.json_error(DATABASE_BUSY, 503, RETRY_AFTER_SECONDS)
        # django-htmx's middleware, before this one, gave the request its `htmx`.
        htmx_request = cast(views.HtmxHttpRequest, request)
        return views.database_busy(htmx_request, DATABASE_BUSY, RETRY_AFTER_SECONDS)
