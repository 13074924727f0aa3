from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError
from django.db.models.functions import Substr
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url, reswap, retarget
from django_htmx.middleware import HtmxDetails

from . import export, limits, sandbox
from .clients import client_of
from .figures import breakdown, charts, equivalents, formatting, measure, stats
from .models import (
    MAX_REPETITIONS,
    REPEATABILITY_MAX_AGE,
    REPEATABILITY_RUNS,
    UNSTABLE_HOST_CV,
    Baseline,
    ControlRun,
    Offsets,
    Run,
    Series,
    Worker,
    clean_code,
)
from .queue import waiting
from .queue.tasks import enqueue, store_and_enqueue
from .snippets import diffs, examples, failures

HISTORY_PAGE_SIZE = 25
# What the pages say of how a comparison runs until clear.
STOPPING_RULE = {"round_pairs": stats.ROUND_PAIRS, "margin": stats.EQUIVALENCE_MARGIN}
MAX_HISTORY_PAGE = 1000


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _session_key(request: HttpRequest) -> str:
    if not request.session.session_key:
        request.session.save()
    return request.session.session_key


def _run_context(run: Run, seen: Offsets | None = None) -> dict:
    """What the run's page or fragment shows: its whole output so far, or (`seen`)
    only what a poll has not seen yet, as `new_stdout` and `new_stderr`."""
    new_stdout, new_stderr, since = run.output_after(seen or Offsets())
    if seen is None:
        run.stdout, run.stderr = new_stdout, new_stderr  # a running run's, from its chunks
    position = run.queue_position()
    context = {
        "run": run,
        "since": since,
        "new_stdout": new_stdout,
        "new_stderr": new_stderr,
        "chart": charts.power_chart(run.power_samples, run.duration_s),
        "queue_position": position,
        "worker_alive": run.is_over or Worker.objects.queue_workers().alive().exists(),
        "poll_ms": _poll_interval_ms(run, position),
        "grid": measure.grid_of(run.country_iso_code, run.region),
        "stderr": failures.linked_traceback(run.stderr) if run.stderr else "",
        "sample_seconds": settings.LIVE_SAMPLE_SECONDS,
        "first_sample_seconds": sandbox.FIRST_TICK_SECONDS,
        "profile_interval_ms": settings.PROFILE_INTERVAL_MS,
        "units": formatting.units_for(
            [run, _Machine(run)], energy_kwh="energy", emissions_g="mass", duration_s="duration"
        ),
    }
    if run.lines or run.sections:
        context |= breakdown.for_page(run)
    if run.is_over and run.energy_kwh is not None:
        context["repeatability"] = run.repeatability  # as it was when the run ran
        context["unstable_cv"] = UNSTABLE_HOST_CV
        context["equivalents"] = equivalents.for_figures(run.energy_kwh, run.emissions_g)
        context["at_scale"] = equivalents.at_scale(run.energy_kwh, run.emissions_g)
        context["what_if"] = measure.what_if(run.energy_kwh, run.country_iso_code, run.region)
    return context


class _Machine:
    """The whole machine's figures of a run, read as a row next to the snippet's own."""

    def __init__(self, run: Run):
        self.energy_kwh = run.machine_energy_kwh
        self.emissions_g = run.machine_emissions_g
        self.duration_s = run.cpu_seconds


def _poll_interval_ms(run: Run, position: int | None) -> int:
    """Look again soon while a run is young, less often as it goes on, and seldom
    while it waits behind others."""
    if run.status == Run.Status.QUEUED:
        return 400 if (position or 0) <= 1 else 1000
    age = run.elapsed_s
    return 150 if age < 2 else 400 if age < 10 else 1000


def _editor_context(request: HttpRequest, code: str, **extra) -> dict:
    """What the playground's editor form needs, on the playground and on a run's page."""
    return {
        "examples": examples.EXAMPLES,
        "code": code,
        "max_code_bytes": settings.MAX_CODE_BYTES,
        "max_repetitions": MAX_REPETITIONS,
        "python_version": sandbox.python_version(settings.SNIPPET_PYTHON),
        "installed_modules": failures.installed_modules(),
        "grids": measure.grids().values(),
        "chosen_grid": request.session.get("grid", _default_grid()),
    } | extra


def _default_grid() -> str:
    return measure.grid_of(settings.CODECARBON_COUNTRY, settings.CODECARBON_REGION).key


def _grid_fields(request: HttpRequest) -> dict:
    """The grid chosen in the form (remembered for the visitor's next runs), as Run
    fields; an unknown one falls back to the server's default."""
    grid = measure.grids().get(request.POST.get("grid", ""))
    if grid is None:
        return {}
    request.session["grid"] = grid.key
    return {"country_iso_code": grid.country, "region": grid.region}


@require_GET
def playground(request: HtmxHttpRequest) -> HttpResponse:
    code = ""
    source = request.GET.get("from")
    if source:
        # "Open in editor" from history or a shared run.
        run = (
            Run.objects.filter(public_id=source).only("code").first() if _is_uuid(source) else None
        )
        code = run.code if run else ""
    return render(request, "runs/playground.html", _editor_context(request, code))


@require_POST
def create(request: HtmxHttpRequest) -> HttpResponse:
    code = request.POST.get("code", "")
    client = client_of(request)
    try:
        clean_code(code)  # before any query: PostgreSQL cannot even compare NUL bytes
    except ValidationError as exc:
        return _refused(request, code, exc.messages)
    session_key = _session_key(request)
    # The same code sent twice within a second from one browser is one press too many.
    run = Run.objects.recent_duplicate(session_key, code)
    if run is None:
        refusal = limits.check(client)
        if refusal:
            return _over_limit(request, code, refusal)
        fields = _grid_fields(request)
        try:
            run = Run.objects.new(code, session_key=session_key, client=client, **fields)
        except ValidationError as exc:
            return _refused(request, code, exc.messages)
        store_and_enqueue(run, watch=bool(request.htmx))
    if request.htmx:
        # A short run is answered finished (no "Queued" flash, no first poll to wait
        # for); a longer one as soon as it has printed something.
        waiting.wait_for(run, settings.PAGE_WAIT_SECONDS, until_output=True)
        context = _run_context(run) | {"clear_errors": True}
        response = render(request, "runs/detail.html#run", context, status=201)
        return push_url(response, run.get_absolute_url())
    return redirect(run)


@require_POST
def rerun(request: HtmxHttpRequest, public_id) -> HttpResponse:
    original = get_object_or_404(Run, public_id=public_id)
    client = client_of(request)
    refusal = limits.check(client)
    if refusal:
        return _over_limit(request, original.code, refusal)
    run = Run.objects.submit(original.code, session_key=_session_key(request), client=client)
    enqueue(run)
    if request.htmx:
        return HttpResponseClientRedirect(run.get_absolute_url())
    return redirect(run)


@never_cache
@require_GET
def detail(request: HtmxHttpRequest, public_id) -> HttpResponse:
    run = get_object_or_404(Run, public_id=public_id)
    # A poll is how a user notices a dead worker soonest: check this run now.
    if run.status == Run.Status.RUNNING and Run.objects.filter(pk=run.pk).fail_orphans():
        run.refresh_from_db()
    seen = Offsets.parse(request.GET.get("since"))
    if request.htmx and seen is not None and run.status == Run.Status.RUNNING:
        # A running run's poll: only what this viewer has not seen yet.
        return render(request, "runs/detail.html#progress", _run_context(run, seen))
    if request.htmx:
        response = render(request, "runs/detail.html#run", _run_context(run))
        if "since" in request.GET:  # the poller asked: the whole run replaces its section
            retarget(response, f"#run-{run.public_id}")
            reswap(response, "outerHTML")
        return response
    context = _run_context(run)
    context |= _editor_context(
        request, run.code, error_line=run.failing_line, chosen_grid=context["grid"].key
    )
    return render(request, "runs/detail.html", context)


@require_GET
def history(request: HtmxHttpRequest) -> HttpResponse:
    runs = (
        Run.objects.for_session(request.session.session_key)
        .history_rows()
        .annotate(preview=Substr("code", 1, 120))
        .select_related("series")
        .defer("code", "stdout", "stderr", "provenance", "power_samples", "sections", "lines")
        .defer("series__code_a", "series__code_b")
    )
    # No COUNT(*) and an index in query order: "older/newer" pages cost the same with
    # 100,000 runs in the table as with 100.
    page = _history_page(runs, request.GET.get("page", "1"))
    rows = [HistoryRow(run) for run in page["runs"]]
    _summarize_series([row for row in rows if row.series])
    page |= {
        "rows": rows,
        "units": formatting.units_for(
            rows, energy_kwh="energy", emissions_g="mass", duration_s="duration"
        ),
    }
    template = "runs/history.html#rows" if request.htmx else "runs/history.html"
    return render(request, template, page)


class HistoryRow:
    """One line of the history: a single run, or a whole repeat or comparison (shown
    by its first run) with its medians and verdict."""

    def __init__(self, run: Run):
        self.run, self.series = run, run.series
        self.energy_kwh, self.emissions_g = run.energy_kwh, run.emissions_g
        self.duration_s = run.duration_s
        self.summary = ""

    def summarize(self, runs: list[Run]) -> None:
        results = self.series.results(runs)
        first = results["variants"]["A"]
        self.energy_kwh = first["energy"].median if first["energy"] else None
        self.emissions_g = first["emissions"].median if first["emissions"] else None
        self.duration_s = first["duration"].median if first["duration"] else None
        self.finished, self.total = results["finished"], results["total"]
        if self.series.kind == Series.Kind.COMPARE:
            self.summary = self.series.headline(results) or "No verdict yet."


def _summarize_series(rows: list[HistoryRow]) -> None:
    """Medians and verdicts of the page's series, from one query for all their runs."""
    if not rows:
        return
    runs: dict[int, list[Run]] = {row.series.pk: [] for row in rows}
    for run in (
        Run.objects.filter(series__in=runs)
        .order_by("repetition", "variant")
        .only(*Series.RESULT_FIELDS)
    ):
        runs[run.series_id].append(run)
    for row in rows:
        row.summarize(runs[row.series.pk])


def _history_page(runs, raw_page: str) -> dict:
    try:
        number = max(int(raw_page), 1)
    except ValueError:
        number = 1
    if number > MAX_HISTORY_PAGE:
        # Beyond any history retention keeps (and past what a database's OFFSET takes).
        raise Http404("There is no such page of the history.")
    start = (number - 1) * HISTORY_PAGE_SIZE
    rows = list(runs[start : start + HISTORY_PAGE_SIZE + 1])
    return {
        "runs": rows[:HISTORY_PAGE_SIZE],
        "page": number,
        "has_next": len(rows) > HISTORY_PAGE_SIZE,
        "has_previous": number > 1,
    }


@require_GET
def methodology(request: HttpRequest) -> HttpResponse:
    context = {
        "constants": equivalents.CONSTANTS,
        "baseline": Baseline.objects.first(),
        "sample_seconds": settings.LIVE_SAMPLE_SECONDS,
        "first_sample_seconds": sandbox.FIRST_TICK_SECONDS,
        "profile_interval_ms": settings.PROFILE_INTERVAL_MS,
        "min_profile_ms": breakdown.MIN_PROFILE_CPU_SECONDS * 1000,
        "repeatabilities": [
            spread
            for host in ControlRun.objects.hosts()
            if (spread := ControlRun.objects.repeatability(host))
        ],
        "unstable_cv": UNSTABLE_HOST_CV,
        "control_interval": settings.CONTROL_INTERVAL_SECONDS,
        "repeatability_runs": REPEATABILITY_RUNS,
        "repeatability_hours": round(REPEATABILITY_MAX_AGE.total_seconds() / 3600),
        **STOPPING_RULE,
        "nominal_levels": sorted(stats.NOMINAL_LEVELS.items()),
        "default_watts_per_thread": measure.codecarbon_default_watts_per_thread(),
    }
    return render(request, "runs/methodology.html", context)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# --- repeats, comparisons and exports ------------------------------------------------


def _repetitions(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw not in (None, "") else default
    except ValueError:
        return -1  # refused with a message by Series.objects.submit


def _valid(repetitions: int) -> bool:
    # Out of range is refused by Series.objects.submit, with its own message.
    return 1 <= repetitions <= MAX_REPETITIONS


def _series_context(series: Series) -> dict:
    runs = series.ordered_runs()
    results = series.results(runs)
    measured = [m for data in results["variants"].values() for m in data["measured"].values()]
    units = formatting.units_for(
        measured + [r for r in runs if r.status == Run.Status.SUCCEEDED],
        energy_kwh="energy",
        emissions_g="mass",
        duration_s="duration",
    )
    energies = {
        variant: [m.energy_kwh for m in data["measured"].values()]
        for variant, data in results["variants"].items()
    }
    context = {
        "series": series,
        "results": results,
        "warnings": results["warnings"],
        "units": units,
        "strip": charts.strip_chart(energies, units["energy_kwh"], series.variant_labels),
        "host_spreads": series.host_spreads(),
    }
    if series.kind == Series.Kind.COMPARE:
        context["decision"] = results["decision"]
        context |= STOPPING_RULE
        context["max_diff_lines"] = diffs.MAX_LINES
        context["headline"] = series.headline(results)
        context["basis"] = series.basis(results, runs)
        context["breakdown"] = [
            (compared.label, comparison)
            for compared, comparison, _ in series.verdicts(results)
            if comparison
        ]
        context["diff"] = diffs.from_storage(series.diff)  # computed when it was created
    return context


@require_POST
def series_create(request: HtmxHttpRequest) -> HttpResponse:
    """Repeat the playground's snippet N times."""
    code = request.POST.get("code", "")
    repetitions = _repetitions(request.POST.get("repetitions"), default=5)
    client = client_of(request)
    refusal = limits.check(client, repetitions) if _valid(repetitions) else None
    if refusal:
        return _over_limit(request, code, refusal)
    try:
        series = Series.objects.submit(
            Series.Kind.REPEAT,
            [code],
            repetitions,
            session_key=_session_key(request),
            client=client,
            run_fields=_grid_fields(request),
            warmup=request.POST.get("warmup") == "on",
        )
    except ValidationError as exc:
        return _refused(request, code, exc.messages)
    enqueue(*series.ordered_runs())
    if request.htmx:
        context = _series_context(series) | {"clear_errors": True}
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
            context = _compare_form_context() | {
                "code_a": request.POST.get("code_a", "")[: settings.MAX_CODE_BYTES * 4],
                "code_b": request.POST.get("code_b", "")[: settings.MAX_CODE_BYTES * 4],
                "errors": [message],
            }
            response = render(request, "runs/compare.html", context, status=503)
        elif request.method == "POST" and "code" in request.POST:
            response = _refused(request, request.POST["code"], [message], 503)
    except (OperationalError, InterfaceError):
        pass  # the session, say: the message alone
    response["Retry-After"] = str(retry_after)
    return response


def _over_limit(request: HtmxHttpRequest, code: str, refusal: limits.Refusal) -> HttpResponse:
    return _refused(request, code, [refusal.message], refusal.status, refusal.retry_after)


def _refused(
    request: HtmxHttpRequest,
    code: str,
    messages: list[str],
    status: int = 422,
    retry_after: int | None = None,
) -> HttpResponse:
    """The playground again, with the code kept and what to do about it."""
    kept = code if len(code) <= settings.MAX_CODE_BYTES * 4 else ""
    context = _editor_context(request, kept, errors=messages)
    if request.htmx:
        response = render(request, "runs/playground.html#form-errors", context, status=status)
        response = reswap(retarget(response, "#form-errors"), "outerHTML")
    else:
        response = render(request, "runs/playground.html", context, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def _compare_form_context() -> dict:
    return {
        "repetitions": MAX_REPETITIONS,  # runs until clear, at most this many pairs
        "max_repetitions": MAX_REPETITIONS,
        **STOPPING_RULE,
    }


@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    context = _compare_form_context() | {
        "code_a": examples.COMPARE_A,
        "code_b": examples.COMPARE_B,
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
            "code_a": earlier.code_a,
            "code_b": earlier.code_b,
            "repetitions": earlier.pair_cap,
            "warmup": earlier.warmup,
            "section": earlier.section,
            "from_series": earlier,
        }
    return render(request, "runs/compare.html", context)


@require_POST
def compare_create(request: HttpRequest) -> HttpResponse:
    code_a, code_b = request.POST.get("code_a", ""), request.POST.get("code_b", "")
    repetitions = _repetitions(request.POST.get("repetitions"), default=MAX_REPETITIONS)
    client = client_of(request)
    # Accepted whole: every pair it may run counts now (its later rounds answer only to
    # the hourly CPU budget, runs.queue.tasks.continue_comparison).
    refusal = limits.check(client, 2 * repetitions) if _valid(repetitions) else None
    try:
        if refusal:
            raise ValidationError(refusal.message)
        series = Series.objects.submit(
            Series.Kind.COMPARE,
            [code_a, code_b],
            repetitions,
            session_key=_session_key(request),
            client=client,
            warmup=request.POST.get("warmup") == "on",
            section=request.POST.get("section", "").strip()[:100],
        )
    except ValidationError as exc:
        context = _compare_form_context() | {
            "code_a": code_a[: settings.MAX_CODE_BYTES * 4],
            "code_b": code_b[: settings.MAX_CODE_BYTES * 4],
            "repetitions": repetitions if repetitions > 0 else MAX_REPETITIONS,
            "warmup": request.POST.get("warmup") == "on",
            "section": request.POST.get("section", "")[:100],
            "errors": exc.messages,
        }
        response = render(
            request, "runs/compare.html", context, status=refusal.status if refusal else 422
        )
        if refusal:
            response["Retry-After"] = str(refusal.retry_after)
        return response
    enqueue(*series.ordered_runs())
    return redirect(series)


@never_cache
@require_GET
def series_detail(request: HtmxHttpRequest, public_id) -> HttpResponse:
    series = get_object_or_404(Series, public_id=public_id)
    if request.resolver_match.url_name != (
        "compare-detail" if series.kind == Series.Kind.COMPARE else "series-detail"
    ):
        return redirect(series)
    template = "runs/series.html#series" if request.htmx else "runs/series.html"
    return render(request, template, _series_context(series))


def _download(data: dict, filename: str) -> JsonResponse:
    response = JsonResponse(data, json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@never_cache
@require_GET
def run_export(request: HttpRequest, public_id) -> JsonResponse:
    run = get_object_or_404(Run, public_id=public_id)
    run.stdout, run.stderr, _ = run.output_after(Offsets())  # a running run's so far
    return _download(run.as_dict(), f"run-{run.public_id}.json")


@never_cache
@require_GET
def series_export(request: HttpRequest, public_id) -> JsonResponse:
    series = get_object_or_404(Series, public_id=public_id)
    return _download(series.as_dict(), f"{series.kind}-{series.public_id}.json")


@never_cache
@require_GET
def history_export(request: HttpRequest) -> StreamingHttpResponse:
    """The visitor's history as CSV; columns follow CodeCarbon's emissions.csv."""
    runs = Run.objects.for_session(request.session.session_key).select_related("series")
    response = StreamingHttpResponse(export.history_csv(runs), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="codecarbon-playground-runs.csv"'
    return response
