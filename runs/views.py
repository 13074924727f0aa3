from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models.functions import Substr
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget
from django_htmx.middleware import HtmxDetails

from . import (
    charts,
    equivalents,
    examples,
    export,
    formatting,
    limits,
    measure,
    sandbox,
    waiting,
)
from .clients import client_of
from .models import MAX_REPETITIONS, Baseline, Run, Series, Worker, clean_code
from .tasks import enqueue

HISTORY_PAGE_SIZE = 25


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _session_key(request: HttpRequest) -> str:
    if not request.session.session_key:
        request.session.save()
    return request.session.session_key


def _run_context(run: Run) -> dict:
    context = {
        "run": run,
        "chart": charts.power_chart(run.power_samples),
        "queue_position": run.queue_position(),
        "worker_alive": run.is_over or Worker.objects.queue_workers().alive().exists(),
    }
    if run.is_over and run.energy_kwh is not None:
        context["equivalents"] = equivalents.for_figures(run.energy_kwh, run.emissions_g)
        context["what_if"] = measure.what_if(run.energy_kwh, run.country_iso_code, run.region)
    return context


@require_GET
def playground(request: HtmxHttpRequest) -> HttpResponse:
    code = ""
    source = request.GET.get("from")
    if source:
        # "Load into editor" from history or a shared run.
        run = (
            Run.objects.filter(public_id=source).only("code").first() if _is_uuid(source) else None
        )
        code = run.code if run else ""
    return render(
        request,
        "runs/playground.html",
        {
            "examples": examples.EXAMPLES,
            "code": code,
            "max_code_bytes": settings.MAX_CODE_BYTES,
            "python_version": sandbox.python_version(settings.SNIPPET_PYTHON),
        },
    )


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
        try:
            run = Run.objects.submit(code, session_key=session_key, client=client)
        except ValidationError as exc:
            return _refused(request, code, exc.messages)
        enqueue(run)
    if request.htmx:
        # A short run is answered finished: no "Queued" flash, no first poll to wait for.
        if waiting.wait_for(run, settings.PAGE_WAIT_SECONDS):
            run.refresh_from_db()
        context = _run_context(run) | {"clear_errors": True}
        return render(request, "runs/detail.html#run", context, status=201)
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
    template = "runs/detail.html#run" if request.htmx else "runs/detail.html"
    return render(request, template, _run_context(run))


@require_GET
def history(request: HtmxHttpRequest) -> HttpResponse:
    runs = (
        Run.objects.for_session(request.session.session_key)
        .annotate(preview=Substr("code", 1, 120))
        .defer("code", "stdout", "stderr", "provenance", "power_samples")
    )
    # No COUNT(*) and an index in query order: "older/newer" pages cost the same with
    # 100,000 runs in the table as with 100.
    page = _history_page(runs, request.GET.get("page", "1"))
    template = "runs/history.html#rows" if request.htmx else "runs/history.html"
    return render(request, template, page)


def _history_page(runs, raw_page: str) -> dict:
    try:
        number = max(int(raw_page), 1)
    except ValueError:
        number = 1
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
    context = {"constants": equivalents.CONSTANTS, "baseline": Baseline.objects.first()}
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
    energies = {
        variant: [r.energy_kwh for r in data["runs"] if r.status == Run.Status.SUCCEEDED]
        for variant, data in results["variants"].items()
    }
    context = {
        "series": series,
        "results": results,
        "strip": charts.strip_chart(energies, formatting.watt_hours),
    }
    if series.kind == Series.Kind.COMPARE:
        context["verdicts"] = [
            (compared.label, comparison, verdict)
            for compared, comparison, verdict in series.verdicts(results)
        ]
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
        )
    except ValidationError as exc:
        return _refused(request, code, exc.messages)
    enqueue(*series.ordered_runs())
    if request.htmx:
        context = _series_context(series) | {"clear_errors": True}
        return render(request, "runs/series.html#series", context, status=201)
    return redirect(series)


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
    context = {
        "examples": examples.EXAMPLES,
        "code": code if len(code) <= settings.MAX_CODE_BYTES * 4 else "",
        "errors": messages,
        "max_code_bytes": settings.MAX_CODE_BYTES,
        "python_version": sandbox.python_version(settings.SNIPPET_PYTHON),
    }
    if request.htmx:
        response = render(request, "runs/playground.html#form-errors", context, status=status)
        response = reswap(retarget(response, "#form-errors"), "outerHTML")
    else:
        response = render(request, "runs/playground.html", context, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    context = {
        "code_a": examples.COMPARE_A,
        "code_b": examples.COMPARE_B,
        "repetitions": 10,
        "max_repetitions": MAX_REPETITIONS,
    }
    return render(request, "runs/compare.html", context)


@require_POST
def compare_create(request: HttpRequest) -> HttpResponse:
    code_a, code_b = request.POST.get("code_a", ""), request.POST.get("code_b", "")
    repetitions = _repetitions(request.POST.get("repetitions"), default=10)
    client = client_of(request)
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
        )
    except ValidationError as exc:
        context = {
            "code_a": code_a[: settings.MAX_CODE_BYTES * 4],
            "code_b": code_b[: settings.MAX_CODE_BYTES * 4],
            "repetitions": repetitions if repetitions > 0 else 10,
            "max_repetitions": MAX_REPETITIONS,
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
