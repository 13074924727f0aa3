from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError
from django.db.models.functions import Substr
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csp import csp_override
from django.views.decorators.http import require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect, push_url, reswap, retarget
from django_htmx.middleware import HtmxDetails

from . import api, export, pages
from .clients import client_of, may_stop
from .figures import formatting, grids
from .forms import CodeForm, CompareForm, RepeatForm, RunForm
from .models import (
    MAX_REPETITIONS,
    Offsets,
    Run,
    Series,
    limits,
    links,
    run_json,
    series_json,
)
from .queue import tasks
from .queue.direct import waiting
from .queue.tasks import enqueue, store_and_enqueue
from .sandbox import environments
from .snippets import examples, tidy


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _session_key(request: HttpRequest) -> str:
    if not request.session.session_key:
        request.session.save()
    return str(request.session.session_key)


def _opened_in(run: Run) -> dict:
    """The editor's context for a run opened in it: its environment chosen, or, where
    that is gone, a message naming the ones there are."""
    if environments.named(run.env_name) is None:
        return {"errors": [environments.unknown(run.env_name)], "stdin": run.stdin}
    return {"chosen_env": run.env_name, "stdin": run.stdin}


@require_safe
def playground(request: HtmxHttpRequest) -> HttpResponse:
    code, opened = "", {}
    source = request.GET.get("from")
    if source:
        # "Open in editor" from history or a shared run: its code, in its environment.
        run = (
            Run.objects.filter(public_id=source).only("code", "env", "stdin").first()
            if _is_uuid(source)
            else None
        )
        if run:
            code, opened = run.code, _opened_in(run)
    return render(request, "runs/playground.html", pages.editor_context(request, code, **opened))


@require_POST
def create(request: HtmxHttpRequest) -> HttpResponse:
    # Checked before any query: PostgreSQL cannot even compare NUL bytes.
    form = RunForm(request.POST)
    if not form.is_valid():
        return _refused(request, form, form.messages())
    code, fields = form.cleaned_data["code"], form.run_fields()
    session_key = _session_key(request)
    # The same code sent twice within a second from one browser is one press too many.
    run = Run.objects.recent_duplicate(session_key, code, fields["env"], fields["stdin"])
    handed = None
    if run is None:
        client = client_of(request)
        refusal = limits.check(client)
        if refusal:
            return _over_limit(request, form, refusal)
        form.remember(request.session)
        run = Run.objects.new(code, session_key=session_key, client=client, **fields)
        handed = store_and_enqueue(run, watch=bool(request.htmx))
    if request.htmx:
        # A short run is answered finished (no "Queued" flash, no first poll to wait
        # for); a longer one as soon as it has printed something.
        waiting.wait_for(run, settings.PAGE_WAIT_SECONDS, until_output=True, handed=handed)
        context = pages.run_context(run, request=request)
        response = render(request, "runs/detail.html#created", context, status=201)
        return push_url(response, run.get_absolute_url())
    return redirect(run)


@require_POST
def rerun(request: HtmxHttpRequest, public_id) -> HttpResponse:
    original = get_object_or_404(Run, public_id=public_id)
    client = client_of(request)
    refusal = limits.check(client)
    if refusal:
        return _over_limit(request, RunForm({"code": original.code}), refusal)
    try:
        # In its own environment, with its own input: a re-run measures the same again.
        run = Run.objects.submit(
            original.code,
            session_key=_session_key(request),
            client=client,
            env=original.env_name,
            stdin=original.stdin,
        )
    except ValidationError as exc:
        return _refused(request, RunForm({"code": original.code}), exc.messages)
    enqueue(run)
    if request.htmx:
        return HttpResponseClientRedirect(run.get_absolute_url())
    return redirect(run)


@require_POST
def cancel(request: HtmxHttpRequest, public_id) -> HttpResponse:
    """The run page's Stop: the run as it ends (waiting up to a few seconds for it)."""
    run = get_object_or_404(Run, public_id=public_id)
    if not may_stop(request, run):
        return HttpResponse("Only the browser that started this run may stop it.", status=403)
    if tasks.cancel(run):
        waiting.wait_for(run, api.STOP_WAIT_SECONDS)
    if request.htmx:
        return render(request, "runs/detail.html#run", pages.run_context(run, request=request))
    return redirect(run)


@never_cache
@require_safe
def detail(request: HtmxHttpRequest, public_id) -> HttpResponse:
    run = get_object_or_404(Run, public_id=public_id)
    # A poll is how a user notices a dead worker soonest: check this run now.
    if run.status == Run.Status.RUNNING and Run.objects.filter(pk=run.pk).fail_orphans():
        run.refresh_from_db()
    seen = Offsets.parse(request.GET.get("since"))
    if request.htmx and seen is not None and run.status == Run.Status.RUNNING:
        # A running run's poll: only what this viewer has not seen yet.
        return render(request, "runs/detail.html#progress", pages.run_context(run, seen, request))
    if request.htmx:
        response = render(request, "runs/detail.html#run", pages.run_context(run, request=request))
        if "since" in request.GET:  # the poller asked: the whole run replaces its section
            retarget(response, f"#run-{run.public_id}")
            reswap(response, "outerHTML")
        return response
    context = pages.run_context(run, request=request)
    context |= pages.editor_context(
        request, run.code, error_line=run.failing_line, chosen_grid=context["grid"].key
    ) | _opened_in(run)
    return render(request, "runs/detail.html", context)


def _code_refused(form: CodeForm) -> JsonResponse:
    return JsonResponse(
        {"error": " ".join(form.messages())}, status=413 if form.too_large() else 422
    )


TIDY_BUSY = "Busy with other snippets; try again in a moment."


@require_POST
def format_code(request: HttpRequest) -> JsonResponse:
    """The editor's Format: the code as ruff formats it, or why it cannot be."""
    form = CodeForm(request.POST)
    if not form.is_valid():
        return _code_refused(form)
    try:
        return JsonResponse({"code": tidy.formatted(form.cleaned_data["code"])})
    except tidy.Busy:
        return JsonResponse({"error": TIDY_BUSY}, status=503, headers={"Retry-After": "1"})
    except tidy.NotFormatted as exc:
        return JsonResponse({"error": str(exc), "line": exc.line}, status=422)


@require_POST
def check_code(request: HttpRequest) -> JsonResponse:
    """The editor's checks as one types: what would fail when the code runs, by line."""
    form = CodeForm(request.POST)
    if not form.is_valid():
        return _code_refused(form)
    try:
        found = tidy.diagnostics(form.cleaned_data["code"])
    except tidy.Busy:
        return JsonResponse({"error": TIDY_BUSY}, status=503, headers={"Retry-After": "1"})
    return JsonResponse({"diagnostics": [asdict(d) for d in found]})


# Any site may frame an embed (and nothing else: X_FRAME_OPTIONS, SECURE_CSP). It shows
# what its link shows, read only: no form, no session, nothing to click but the link.
EMBED_CSP: dict[str, Any] = {**settings.SECURE_CSP, "frame-ancestors": ["*"]}


def embeddable(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    return xframe_options_exempt(csp_override(EMBED_CSP)(require_safe(view)))


@embeddable
def embed(request: HttpRequest, public_id) -> HttpResponse:
    run = get_object_or_404(Run, public_id=public_id)
    return render(request, "runs/embed.html", pages.embed_context(run, request))


@embeddable
def series_embed(request: HttpRequest, public_id) -> HttpResponse:
    series = get_object_or_404(Series, public_id=public_id)
    return render(request, "runs/embed.html", pages.series_embed_context(series, request))


@require_safe
def history(request: HtmxHttpRequest) -> HttpResponse:
    runs = (
        Run.objects.for_session(request.session.session_key)
        .history_rows()
        .annotate(preview=Substr("code", 1, 120))
        .select_related("series")
        .defer("code", "stdin", "stdout", "stderr", "provenance", "power_samples")
        .defer("sections", "lines", "series__code_a", "series__code_b")
        .defer("series__stdin_a", "series__stdin_b")
    )
    # No COUNT(*) and an index in query order: "older/newer" pages cost the same with
    # 100,000 runs in the table as with 100.
    page = pages.history_page(runs, request.GET.get("page", "1"))
    rows = [pages.HistoryRow(run) for run in page["runs"]]
    pages.summarize_series([row for row in rows if row.series])
    page |= {
        "rows": rows,
        "default_env": environments.default().name,
        "units": formatting.units_for(
            rows, energy_kwh="energy", emissions_g="mass", duration_s="duration"
        ),
    }
    template = "runs/history.html#rows" if request.htmx else "runs/history.html"
    return render(request, template, page)


@require_safe
def grid_note(request: HttpRequest) -> HttpResponse:
    """The editor's word on a grid just chosen, and the shown run priced at it."""
    grid = grids.grids().get(request.GET.get("grid", ""))
    if grid is None:
        return HttpResponse("Unknown grid.", status=400, content_type="text/plain")
    source = request.GET.get("run", "")
    run = (
        Run.objects.filter(public_id=source)
        .only(
            "energy_kwh",
            "cpu_energy_kwh",
            "emissions_g",
            "country_iso_code",
            "region",
            "carbon_intensity_g_per_kwh",
            "provenance",  # the power model's range, repriced with the rest
        )
        .first()
        if _is_uuid(source)
        else None
    )
    # Proposed from the browser's time zone (runs:grid-zone), it says so.
    zone = request.GET.get("zone", "")[:MAX_ZONE]
    context = pages.grid_note_context(grid, run, zone if grids.for_time_zone(zone) == grid else "")
    return render(request, "runs/_grid_note.html", context)


MAX_ZONE = 64  # the longest IANA time zone name is 32 characters


@require_safe
def grid_zone(request: HttpRequest) -> JsonResponse:
    """The grid of the country a browser's time zone (`?tz=`) lies in; null where the
    zone names no one country CodeCarbon has data for (the server's default stays)."""
    grid = grids.for_time_zone(request.GET.get("tz", "")[:MAX_ZONE])
    return JsonResponse({"grid": grid.key if grid else None, "name": grid.name if grid else None})


@require_safe
def methodology(request: HttpRequest) -> HttpResponse:
    return render(request, "runs/methodology.html", pages.methodology_context())


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# --- repeats, comparisons and exports ------------------------------------------------


@require_POST
def series_create(request: HtmxHttpRequest) -> HttpResponse:
    """Repeat the playground's snippet N times."""
    form = RepeatForm(request.POST)
    if not form.is_valid():
        return _refused(request, form, form.messages())
    client = client_of(request)
    data = form.cleaned_data
    refusal = limits.check(client, data["repetitions"])
    if refusal:
        return _over_limit(request, form, refusal)
    form.remember(request.session)
    fields = form.run_fields()
    env, stdin = fields.pop("env"), fields.pop("stdin")
    series = Series.objects.start(
        Series.Kind.REPEAT,
        [data["code"]],
        data["repetitions"],
        fields,
        [env],
        [stdin],
        session_key=_session_key(request),
        client=client,
        warmup=data["warmup"],
    )
    enqueue(*series.ordered_runs())
    if request.htmx:
        context = pages.series_context(series, request)
        response = render(request, "runs/series.html#series", context, status=201)
        return push_url(response, series.get_absolute_url())
    return redirect(series)


def database_busy(request: HtmxHttpRequest, message: str, retry_after: int) -> HttpResponse:
    """The answer to a request the database could not serve (runs.middleware): a form's
    code kept, as for any refusal; elsewhere (or if the form needs the database too)
    the message alone."""
    response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
    try:
        if request.method == "POST" and "code_a" in request.POST:
            response = _compare_refused(request, CompareForm(request.POST), [message], 503)
        elif request.method == "POST" and "code" in request.POST:
            response = _refused(request, RunForm(request.POST), [message], 503)
    except (OperationalError, InterfaceError):
        pass  # the session, say: the message alone
    response["Retry-After"] = str(retry_after)
    return response


def _over_limit(request: HtmxHttpRequest, form: RunForm, refusal: limits.Refusal) -> HttpResponse:
    return _refused(request, form, [refusal.message], refusal.status, refusal.retry_after)


def _refused(
    request: HtmxHttpRequest,
    form: RunForm,
    messages: list[str],
    status: int = 422,
    retry_after: int | None = None,
) -> HttpResponse:
    """The playground again, with the code kept and what to do about it where the
    result would have appeared."""
    typed = form.redisplay()
    context = pages.editor_context(request, typed["code"], errors=messages, stdin=typed["stdin"])
    if request.htmx:
        response = render(request, "runs/playground.html#refusal", context, status=status)
        response = reswap(retarget(response, "#result"), "innerHTML")
    else:
        response = render(request, "runs/playground.html", context, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def _compare_refused(
    request: HttpRequest,
    form: CompareForm,
    messages: list[str],
    status: int = 422,
    retry_after: int | None = None,
) -> HttpResponse:
    """The compare page again, as it was sent, with what to do about it above the form."""
    context = pages.compare_form_context() | form.redisplay() | {"errors": messages}
    response = render(
        request, "runs/compare.html", pages.with_more_variants(context), status=status
    )
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


@require_safe
def compare(request: HttpRequest) -> HttpResponse:
    context = pages.compare_form_context() | {
        "code_a": examples.COMPARE_A,
        "code_b": examples.COMPARE_B,
    }
    # "Compare with your previous run" (a run page's ?a=&b=): those two runs' code, each
    # in its environment and with its input.
    sides = [request.GET.get(side, "") for side in "ab"]
    if all(_is_uuid(side) for side in sides):
        runs = Run.objects.filter(public_id__in=sides).only("public_id", "code", "env", "stdin")
        found = {str(run.public_id): run for run in runs}
        if all(side in found for side in sides):
            a, b = (found[side] for side in sides)
            context |= {
                "code_a": a.code,
                "code_b": b.code,
                "env_a": a.env_name,
                "env_b": b.env_name,
                "stdin_a": a.stdin,
                "stdin_b": b.stdin,
                "stdin_apart": a.stdin != b.stdin,
                "from_runs": (a, b),
            }
    # A starter that opens a comparison (the playground's picker).
    starter = examples.comparison(request.GET.get("example", ""))
    if starter:
        default = environments.default().name
        others = [env.name for env in environments.available() if env.name != default]
        context |= {
            "code_a": starter["code_a"],
            "code_b": starter["code_b"],
            "env_a": default,
            "env_b": others[0] if starter["other_env"] and others else default,
            "from_example": starter,
        }
    source = request.GET.get("from", "")
    # "Edit and compare again": the comparison's two snippets, ready to change.
    earlier = (
        Series.objects.filter(public_id=source, kind=Series.Kind.COMPARE).first()
        if _is_uuid(source)
        else None
    )
    if earlier:
        context |= {
            f"{name}_{variant.lower()}": value
            for variant in earlier.variants
            for name, value in (
                ("code", earlier.code_of(variant)),
                ("env", earlier.env_of(variant)),
            )
        } | {
            "stdin_a": earlier.stdin_a,
            "stdin_b": earlier.stdin_b,
            "stdin_apart": earlier.inputs_apart,
            "repetitions": earlier.pair_cap,
            "warmup": earlier.warmup,
            "section": earlier.section,
            "from_series": earlier,
        }
    return render(request, "runs/compare.html", pages.with_more_variants(context))


@require_POST
def compare_create(request: HttpRequest) -> HttpResponse:
    form = CompareForm(request.POST)
    if not form.is_valid():
        return _compare_refused(request, form, form.messages())
    data = form.cleaned_data
    client = client_of(request)
    # Admitted by its first round; later rounds wait their turn in the queue and answer
    # only to the hourly CPU budget (runs.queue.tasks.continue_comparison).
    codes = data["codes"]
    refusal = limits.check(client, len(codes) * Series.first_round(data["repetitions"]))
    if refusal:
        return _compare_refused(
            request, form, [refusal.message], refusal.status, refusal.retry_after
        )
    series = Series.objects.start(
        Series.Kind.COMPARE,
        codes,
        data["repetitions"],
        None,
        data["envs"],
        [data["stdin_a"], data["stdin_b"]],
        session_key=_session_key(request),
        client=client,
        warmup=data["warmup"],
        section=data["section"],
    )
    enqueue(*series.ordered_runs())
    return redirect(series)


@require_POST
def compare_environments(request: HttpRequest, public_id) -> HttpResponse:
    """A run page's "Compare on every environment": its code and input, once per
    environment (up to four), run until the answer is clear."""
    run = get_object_or_404(Run.objects.only("code", "stdin", "env"), public_id=public_id)
    names = pages.every_environment()
    if len(names) < 2:
        return HttpResponse("This server has one environment: nothing to compare.", status=409)
    # Its own environment first: the others are compared with what it ran on.
    names.sort(key=lambda name: name != run.env_name)
    client = client_of(request)
    pairs = MAX_REPETITIONS
    refusal = limits.check(client, len(names) * Series.first_round(pairs))
    if refusal:
        response = HttpResponse(refusal.message, status=refusal.status)
        if refusal.retry_after is not None:
            response["Retry-After"] = str(refusal.retry_after)
        return response
    series = Series.objects.start(
        Series.Kind.COMPARE,
        [run.code] * len(names),
        pairs,
        None,
        names,
        [run.stdin],
        session_key=_session_key(request),
        client=client,
    )
    enqueue(*series.ordered_runs())
    return redirect(series)


@require_POST
def series_cancel(request: HtmxHttpRequest, public_id) -> HttpResponse:
    """A repeat's or a comparison's Stop: no new round, and its runs in flight stopped
    (waiting up to a few seconds for them to end)."""
    series = get_object_or_404(Series, public_id=public_id)
    if not may_stop(request, series):
        return HttpResponse("Only the browser that started this may stop it.", status=403)
    for run in tasks.cancel_series(series):
        waiting.wait_for(run, api.STOP_WAIT_SECONDS)
    if request.htmx:
        return render(request, "runs/series.html#series", pages.series_context(series, request))
    return redirect(series)


@require_safe
def short_link(request: HttpRequest, prefix: str, kind: str) -> HttpResponse:
    """The short id a title shows (`/runs/9ab9f4b5/`): to the run or series it starts,
    while exactly one does. A range on the unique index, whatever the table's size."""
    found = list(links.starting((Run if kind == "run" else Series).objects.all(), prefix)[:2])
    if len(found) != 1:
        raise Http404("No such id." if not found else "More than one id starts so.")
    return redirect(found[0])


@never_cache
@require_safe
def series_detail(request: HtmxHttpRequest, public_id) -> HttpResponse:
    series = get_object_or_404(Series, public_id=public_id)
    if request.resolver_match and request.resolver_match.url_name != (
        "compare-detail" if series.kind == Series.Kind.COMPARE else "series-detail"
    ):
        return redirect(series)
    template = "runs/series.html#series" if request.htmx else "runs/series.html"
    return render(request, template, pages.series_context(series, request))


def _download(data: dict, filename: str) -> JsonResponse:
    response = JsonResponse(data, json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@never_cache
@require_safe
def run_export(request: HttpRequest, public_id) -> JsonResponse:
    run = get_object_or_404(Run, public_id=public_id)
    run.stdout, run.stderr, _ = run.output_after(Offsets())  # a running run's so far
    return _download(run_json(run), f"run-{run.public_id}.json")


@never_cache
@require_safe
def series_export(request: HttpRequest, public_id) -> JsonResponse:
    series = get_object_or_404(Series, public_id=public_id)
    return _download(series_json(series), f"{series.kind}-{series.public_id}.json")


@never_cache
@require_safe
def history_export(request: HttpRequest) -> StreamingHttpResponse:
    """The visitor's history as CSV; columns follow CodeCarbon's emissions.csv."""
    runs = Run.objects.for_session(request.session.session_key).select_related("series")
    response = StreamingHttpResponse(export.history_csv(runs), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="codecarbon-playground-runs.csv"'
    return response
