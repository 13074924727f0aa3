"""The JSON API: every answer is JSON, bad requests included, and no request can hold
a server thread, or read a body, beyond a bound.

`api_view` checks the method and, for POST, reads and parses the body once (size,
encoding, JSON, nesting) before the view runs; views get the parsed object.
"""

from __future__ import annotations

import functools
import json
import uuid

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from .clients import client_of, may_stop
from .forms import CompareForm, RunForm
from .models import (
    VARIANTS,
    ControlRun,
    Offsets,
    Run,
    Series,
    Worker,
    clean_variants,
    limits,
    run_json,
    series_json,
)
from .queue import tasks
from .queue.direct import sockets, waiting
from .queue.tasks import enqueue, store_and_enqueue
from .sandbox import environments

# A JSON body holds one snippet and its input: their largest escaped forms and some
# room. Bodies past this are read and thrown away up to DISCARD_BYTES, so the client
# reads our 413.
MAX_BODY_BYTES = (settings.MAX_CODE_BYTES + settings.MAX_STDIN_BYTES) * 6 + 1024
# A comparison's body: up to four snippets and one input.
MAX_COMPARISON_BYTES = (
    len(VARIANTS) * settings.MAX_CODE_BYTES + settings.MAX_STDIN_BYTES
) * 6 + 1024
DISCARD_BYTES = 16 * 1024 * 1024
# How long a stop request waits for the run to end (its worker ends it within a second).
STOP_WAIT_SECONDS = 3


class BadRequest(Exception):
    """A request we refuse, with the status and (for limits) when to come back."""

    def __init__(self, message: str, status: int = 400, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def json_error(message: str, status: int, retry_after: int | None = None) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def _read_json(request: HttpRequest, expects: str, limit: int) -> dict:
    if request.content_type != "application/json":
        raise BadRequest("Send JSON with Content-Type: application/json.", 415)
    try:
        length = int(request.headers.get("content-length") or 0)
    except ValueError:
        raise BadRequest("Bad Content-Length.") from None
    if length > limit:
        _discard(request, length)
        raise BadRequest(f"Request body too large: at most {limit:,} bytes.", 413)
    try:
        payload = json.loads(request.body.decode("utf-8"))
    except RequestDataTooBig:
        raise BadRequest(f"Request body too large: at most {limit:,} bytes.", 413) from None
    except UnicodeDecodeError:
        raise BadRequest("The body is not valid UTF-8.") from None
    except RecursionError:
        raise BadRequest("The JSON is nested too deeply.") from None
    except ValueError:
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(payload, dict) or expects not in payload:
        raise BadRequest(f"Expected an object like {EXAMPLES[expects]}.")
    return payload


# What a body must hold, by the key it must have: the example its refusal shows.
EXAMPLES = {
    "code": '{"code": "print(1)"}',
    "variants": '{"variants": [{"code": "sorted(x)"}, {"code": "x.sort()", "env": "pypy"}]}',
}


def _discard(request: HttpRequest, length: int) -> None:
    # Read what the client sends (up to a bound) so that it gets to read the answer
    # instead of a connection reset.
    stream = request.META.get("wsgi.input")
    left = min(length, DISCARD_BYTES)
    while stream is not None and left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        left -= len(chunk)


def api_view(*methods: str, body: bool = True, expects: str = "code", limit: int = MAX_BODY_BYTES):
    """Method check and, for POST with a `body`, the parsed body passed to the view as
    `payload` (a POST without one reads nothing of it): an object with the key
    `expects`, of at most `limit` bytes."""

    # HEAD is GET without a body (monitors and link checkers ask with it).
    allowed = (*methods, "HEAD") if "GET" in methods else methods

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if request.method not in allowed:
                response = json_error(f"Method {request.method} not allowed.", 405)
                response["Allow"] = ", ".join(allowed)
                return response
            try:
                if request.method == "POST" and body:
                    kwargs["payload"] = _read_json(request, expects, limit)
                return view(request, *args, **kwargs)
            except BadRequest as exc:
                return json_error(str(exc), exc.status, exc.retry_after)

        return csrf_exempt(wrapper)

    return decorator


def _csrf_refused(request: HttpRequest) -> bool:
    """Django's own CSRF check, for an API view that a session may authenticate."""
    check = CsrfViewMiddleware(lambda _: HttpResponse())
    return check.process_view(request, lambda: HttpResponse(), (), {}) is not None


def _submit(
    request: HttpRequest, payload: dict, watch: bool = False
) -> tuple[Run, sockets.Handed | None]:
    """The run a body asks for, stored and queued; with `watch`, the connection to the
    worker it was handed to, if it was (runs.queue.direct.waiting follows it)."""
    client = client_of(request)
    refusal = limits.check(client)
    if refusal:
        raise BadRequest(refusal.message, refusal.status, refusal.retry_after)
    form = RunForm({name: payload.get(name) for name in ("code", "env", "stdin")})
    if not form.is_valid():
        raise BadRequest(" ".join(form.messages()), 413 if form.too_large() else 400)
    fields = form.run_fields()
    run = Run.objects.new(form.cleaned_data["code"], source=Run.Source.API, client=client, **fields)
    return run, store_and_enqueue(run, watch=watch)


def _accepted(request: HttpRequest, run: Run) -> JsonResponse:
    url = reverse("runs:api-detail", args=[run.public_id])
    response = JsonResponse(
        {
            "id": str(run.public_id),
            "status": run.status,
            "url": request.build_absolute_uri(url),
            "page": request.build_absolute_uri(run.get_absolute_url()),
        },
        status=202,
    )
    response["Location"] = url
    return response


@api_view("POST")
def run(request: HttpRequest, payload: dict) -> JsonResponse:
    """POST /run: the original design's endpoint; waits for the run to finish."""
    submitted, handed = _submit(request, payload, watch=True)
    # Waiters are bounded (runs.queue.direct.waiting): past the bound the answer is 202 at once.
    if not waiting.wait_for(submitted, settings.API_WAIT_SECONDS, handed=handed):
        return _accepted(request, submitted)
    return JsonResponse(run_json(submitted))


@api_view("POST")
def create(request: HttpRequest, payload: dict) -> JsonResponse:
    return _accepted(request, _submit(request, payload)[0])


@api_view("POST", body=False)
def cancel(request: HttpRequest, public_id: str) -> JsonResponse:
    """POST /api/runs/<id>/cancel: stop a queued or running run, for the client that
    sent it; answers the run once it has stopped (202 while it is stopping)."""
    try:
        found = Run.objects.get(public_id=uuid.UUID(public_id))
    except (ValueError, Run.DoesNotExist):
        return json_error("No such run.", 404)
    if not may_stop(request, found):
        return json_error("Only the client that sent this run may stop it.", 403)
    if found.source != Run.Source.API and _csrf_refused(request):
        # Its author is known by the browser's session cookie, which any site's form
        # would send along: the page's CSRF token is asked for, as the pages ask it.
        return json_error(
            "Stopping a run of the web pages needs the page's CSRF token (X-CSRFToken).", 403
        )
    if not tasks.cancel(found):
        return json_error(f"The run is over ({found.status}): there is nothing to stop.", 409)
    if not waiting.wait_for(found, STOP_WAIT_SECONDS):
        return _accepted(request, found)
    return JsonResponse(run_json(found))


@never_cache
@api_view("GET")
def detail(request: HttpRequest, public_id: str) -> JsonResponse:
    try:
        found = Run.objects.get(public_id=uuid.UUID(public_id))
    except (ValueError, Run.DoesNotExist):
        return json_error("No such run.", 404)
    # `?since=` (the last answer's `since`): stdout and stderr hold only what follows.
    seen = Offsets.parse(request.GET.get("since"))
    if seen is None and "since" in request.GET:
        return json_error("since must be two offsets, as in a previous answer's since.", 400)
    found.stdout, found.stderr, since = found.output_after(seen or Offsets())
    return JsonResponse(run_json(found) | {"since": str(since)})


@api_view("POST", expects="variants", limit=MAX_COMPARISON_BYTES)
def comparison_create(request: HttpRequest, payload: dict) -> JsonResponse:
    """POST /api/comparisons: 2 to 4 variants, each {"code", "env"}, run in rounds until
    the answer is clear; "stdin", "max_pairs", "section" and "warmup" as on the page."""
    variants = payload["variants"]
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise BadRequest(f"variants must be a list of objects like {EXAMPLES['variants']}.")
    try:
        codes = clean_variants([variant.get("code") for variant in variants])
    except ValidationError as exc:
        raise BadRequest(" ".join(exc.messages), 413 if exc.code == "too_large" else 400) from None
    fields = {f"code_{key}": code for key, code in zip("abcd", codes, strict=False)}
    fields |= {f"env_{key}": v.get("env") or "" for key, v in zip("abcd", variants, strict=False)}
    form = CompareForm(
        fields
        | {
            "stdin_a": payload.get("stdin") or "",
            "repetitions": payload.get("max_pairs") or "",
            "section": payload.get("section") or "",
            "warmup": bool(payload.get("warmup")),
        }
    )
    if not form.is_valid():
        raise BadRequest(" ".join(form.messages()))
    data, client = form.cleaned_data, client_of(request)
    refusal = limits.check(client, len(codes) * Series.first_round(data["repetitions"]))
    if refusal:
        raise BadRequest(refusal.message, refusal.status, refusal.retry_after)
    series = Series.objects.start(
        Series.Kind.COMPARE,
        data["codes"],
        data["repetitions"],
        None,
        data["envs"],
        [data["stdin_a"]],
        source=Run.Source.API,
        client=client,
        warmup=data["warmup"],
        section=data["section"],
    )
    enqueue(*series.ordered_runs())
    url = reverse("runs:api-comparison", args=[series.public_id])
    response = JsonResponse(
        {
            "id": str(series.public_id),
            "variants": list(series.variants),
            "url": request.build_absolute_uri(url),
            "page": request.build_absolute_uri(series.get_absolute_url()),
        },
        status=202,
    )
    response["Location"] = url
    return response


def _comparison(public_id: str) -> Series:
    try:
        return Series.objects.get(public_id=uuid.UUID(public_id), kind=Series.Kind.COMPARE)
    except (ValueError, Series.DoesNotExist):
        raise BadRequest("No such comparison.", 404) from None


@never_cache
@api_view("GET")
def comparison_detail(request: HttpRequest, public_id: str) -> JsonResponse:
    """GET /api/comparisons/<id>: its runs, summaries, ranking and verdict so far."""
    return JsonResponse(series_json(_comparison(public_id)))


@api_view("POST", body=False)
def comparison_cancel(request: HttpRequest, public_id: str) -> JsonResponse:
    """POST /api/comparisons/<id>/cancel: no new round, and its runs in flight stopped,
    for the client that sent it."""
    series = _comparison(public_id)
    if not may_stop(request, series):
        return json_error("Only the client that sent this comparison may stop it.", 403)
    if series.source != Run.Source.API and _csrf_refused(request):
        return json_error(
            "Stopping a comparison of the web pages needs the page's CSRF token (X-CSRFToken).",
            403,
        )
    for stopped in tasks.cancel_series(series):
        waiting.wait_for(stopped, STOP_WAIT_SECONDS)
    return JsonResponse(series_json(series))


@api_view("GET")
def environment_list(request: HttpRequest) -> JsonResponse:
    """GET /api/environments: what "env" may name, the default first."""
    return JsonResponse({"environments": [env.as_dict() for env in environments.available()]})


@never_cache
@api_view("GET")
def healthz(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception as exc:  # any driver error means the database is not usable
        database = f"error: {exc.__class__.__name__}"
    workers = Worker.objects.queue_workers().alive().count() if database == "ok" else 0
    body = {
        "status": "ok" if database == "ok" else "error",
        "database": database,
        "workers_alive": workers,
        "queued_runs": Run.objects.queued().count() if database == "ok" else None,
        # How much identical work varies on each worker host (its control runs).
        "repeatability": [
            s.as_dict()
            for host in (ControlRun.objects.hosts() if database == "ok" else [])
            if (s := ControlRun.objects.repeatability(host))
        ],
    }
    return JsonResponse(body, status=200 if database == "ok" else 503)


def is_api(request: HttpRequest) -> bool:
    return request.path == "/run" or request.path.startswith("/api/")


def handler404(request: HttpRequest, exception=None):
    """JSON on the API, the site's page elsewhere."""
    if is_api(request):
        return json_error("Not found.", 404)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest):
    if is_api(request):
        return json_error("Something went wrong on our side; it has been logged.", 500)
    return defaults.server_error(request)
