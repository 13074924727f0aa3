"""What each page shows: the context its template reads, gathered from the models
and the figures (the views in runs.views handle the request around it)."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils.html import escape

from . import sandbox
from .clients import may_stop
from .figures import (
    breakdown,
    charts,
    comparisons,
    cpu_power,
    equivalents,
    formatting,
    grids,
    stats,
)
from .models import (
    MAX_REPETITIONS,
    MIN_PAGE_TIMEOUT,
    REPEATABILITY_MAX_AGE,
    REPEATABILITY_RUNS,
    UNSTABLE_HOST_CV,
    VARIANTS,
    Baseline,
    ControlRun,
    Offsets,
    Run,
    Series,
    Worker,
)
from .sandbox import environments
from .snippets import diffs, examples, failures

HISTORY_PAGE_SIZE = 25
# What the pages say of how a comparison runs until clear.
STOPPING_RULE = {"round_pairs": stats.ROUND_PAIRS, "margin": stats.EQUIVALENCE_MARGIN}
MAX_HISTORY_PAGE = 1000


def run_context(run: Run, seen: Offsets | None = None, request: HttpRequest | None = None) -> dict:
    """What the run's page or fragment shows: its whole output so far, or (`seen`)
    only what a poll has not seen yet, as `new_stdout` and `new_stderr`; a Stop for
    the `request`'s browser where it may stop the run."""
    new_stdout, new_stderr, since = run.output_after(seen or Offsets())
    if seen is None:
        run.stdout, run.stderr = new_stdout, new_stderr  # a running run's, from its chunks
    position = run.queue_position()
    environment = run.environment  # from its provenance, or the declaration: read once
    context = {
        "run": run,
        "since": since,
        "new_stdout": new_stdout,
        "new_stderr": new_stderr,
        "chart": charts.power_chart(run.power_samples, run.duration_s),
        "queue_position": position,
        "can_stop": request is not None and not run.is_over and may_stop(request, run),
        "worker_alive": run.is_over or Worker.objects.queue_workers().alive().exists(),
        "poll_ms": _poll_interval_ms(run, position),
        "grid": grids.grid_of(run.country_iso_code, run.region),
        "environment": environment,
        "environment_packages": ", ".join(
            f"{name} {version}" for name, version in environment.get("packages", {}).items()
        ),
        "stderr": failures.linked_traceback(run.stderr) if run.stderr else "",
        "sample_seconds": settings.LIVE_SAMPLE_SECONDS,
        "first_sample_seconds": sandbox.FIRST_TICK_SECONDS,
        "profile_interval_ms": settings.PROFILE_INTERVAL_MS,
        # The snippet's figures in the units its own energy, CO₂e and time fit (the
        # headline reads "724 µWh", as admin, exports and runsnippet print it; the
        # whole machine's card has its own); durations with its CPU time, which threads
        # may make the longer.
        "units": formatting.units_for(
            [run], energy_kwh="energy", emissions_g="mass", machine_energy_kwh="energy"
        )
        | formatting.units_for([run, _CpuTime(run)], duration_s="duration"),
    }
    if run.lines or run.sections:
        context |= breakdown.for_page(run)
    if run.is_over and request is not None:
        context["previous"] = Run.objects.previous_of(run, request.session.session_key)
        context["share"] = share(run, request)
        named = every_environment()
        context["every_environment"] = named if len(named) > 1 else []
    if run.is_over and run.energy_kwh is not None:
        context["repeatability"] = run.repeatability  # as it was when the run ran
        context["unstable_cv"] = UNSTABLE_HOST_CV
        context["everyday"] = equivalents.for_figures(
            run.energy_kwh, run.emissions_g, run.energy_range
        )
        context["what_if"] = grids.what_if(run.energy_kwh, run.country_iso_code, run.region)
    return context


def every_environment() -> list[str]:
    """The environments "Compare on every environment" compares: the first four."""
    return [env.name for env in environments.available()][: len(VARIANTS)]


# An embed's frame, as the snippet to paste sets it: the width of a column of text, the
# height of a short snippet and its figures (it scrolls within).
EMBED_WIDTH, EMBED_HEIGHT = 640, 420


def share(shared: Run | Series, request: HttpRequest) -> dict[str, str]:
    """What Share offers: the short link, and the HTML that embeds the read-only view."""
    embed = request.build_absolute_uri(shared.embed_url())
    kind = "Run" if isinstance(shared, Run) else shared.get_kind_display()
    title = f"{kind} {shared.public_id.hex[:8]} on CodeCarbon Playground"
    offered = {
        "key": str(shared.public_id),
        "link": request.build_absolute_uri(shared.short_url()),
        "embed": f'<iframe src="{embed}" title="{escape(title)}" width="{EMBED_WIDTH}" '
        f'height="{EMBED_HEIGHT}" loading="lazy" style="border: 1px solid #ccc"></iframe>',
    }
    if isinstance(shared, Run):
        offered["code_link"] = request.build_absolute_uri(reverse("runs:playground")) + (
            code_fragment(shared.code, shared.env_name, shared.stdin)
        )
    return offered


def code_fragment(code: str, env: str, stdin: str = "") -> str:
    """A playground link's fragment that opens the editor with `code`, in `env`, reading
    `stdin` (static/js/playground.js reads it): in the fragment, the server never sees
    it, so nothing is stored and no request line grows with the code."""
    fields = {"code": code, "env": env} | ({"stdin": stdin} if stdin else {})
    return "#" + urlencode(
        {
            name: base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
            for name, text in fields.items()
        }
    )


def embed_context(run: Run, request: HttpRequest) -> dict:
    """A run's embed: its code, status and figures, read only, and the link to its page."""
    return {
        "run": run,
        "link": request.build_absolute_uri(run.get_absolute_url()),
        "environment": run.environment,
        "grid": grids.grid_of(run.country_iso_code, run.region),
        "units": formatting.units_for(
            [run], energy_kwh="energy", emissions_g="mass", duration_s="duration"
        ),
    }


def series_embed_context(series: Series, request: HttpRequest) -> dict:
    """A repeat's or a comparison's embed: each side's code and medians, and its verdict."""
    context = series_context(series)
    context["link"] = request.build_absolute_uri(series.get_absolute_url())
    context["codes"] = {variant: series.code_of(variant) for variant in series.variants}
    return context


class _CpuTime:
    """A run's CPU time, read as a duration beside its wall time."""

    def __init__(self, run: Run):
        self.duration_s = run.cpu_seconds


def _poll_interval_ms(run: Run, position: int | None) -> int:
    """Look again soon while a run is young, less often as it goes on, and seldom
    while it waits behind others."""
    if run.status == Run.Status.QUEUED:
        return 400 if (position or 0) <= 1 else 1000
    age = run.elapsed_s
    return 150 if age < 2 else 400 if age < 10 else 1000


def editor_context(request: HttpRequest, code: str, **extra) -> dict:
    """What the playground's editor form needs, on the playground and on a run's page."""
    return {
        "examples": examples.EXAMPLES,
        "comparisons": examples.COMPARISONS,
        "code": code,
        "max_code_bytes": settings.MAX_CODE_BYTES,
        "max_stdin_bytes": settings.MAX_STDIN_BYTES,
        "stdin": "",
        "max_repetitions": MAX_REPETITIONS,
        "environments": environments.available(),
        "chosen_env": request.session.get("env") or environments.default().name,
        "grids": grids.grids().values(),
        "chosen_grid": request.session.get("grid", default_grid()),
        # Nobody chose one yet: the page proposes the grid of the browser's time zone.
        "propose_grid": "grid" not in request.session,
        "timeout": request.session.get("timeout", settings.EXECUTION_TIMEOUT),
        "min_timeout": MIN_PAGE_TIMEOUT,
        "max_timeout": settings.MAX_EXECUTION_TIMEOUT,
    } | extra


def grid_note_context(grid: grids.Grid, run: Run | None, zone: str = "") -> dict:
    """What the editor says when the grid changes: new runs use it, and the shown run
    (when it has figures) priced at it, beside what is stored."""
    intensity = grids.intensity_for(grid.country, grid.region)
    context = {"note_grid": grid, "intensity": intensity, "shown": None, "proposed_zone": zone}
    if run is not None and run.energy_kwh is not None and run.emissions_g is not None:
        repriced = run.energy_kwh * intensity
        unit = formatting.Unit.fitting([repriced, run.emissions_g], formatting.MASS_UNITS)
        context |= {
            "shown": run,
            "repriced": unit(repriced),
            "repriced_range": unit.range(cpu_power.scaled_range(run.energy_range, intensity)),
            "stored": unit(run.emissions_g),
            "stored_grid": (stored := grids.grid_of(run.country_iso_code, run.region)),
            "same_grid": stored == grid,
        }
    return context


def default_grid() -> str:
    return grids.grid_of(settings.CODECARBON_COUNTRY, settings.CODECARBON_REGION).key


class HistoryRow:
    """One line of the history: a single run, or a whole repeat or comparison (shown
    by its first run) with its medians and verdict."""

    def __init__(self, run: Run):
        self.run, self.series = run, run.series
        self.energy_kwh, self.emissions_g = run.energy_kwh, run.emissions_g
        self.duration_s = run.duration_s
        self.summary = ""

    def summarize(self, runs: list[Run]) -> None:
        """The medians and verdict of this row's series (a row of one has none)."""
        series = self.series
        assert series is not None, "only a series' row is summarized"
        results = series.results(runs)
        first = results.variants["A"]
        self.energy_kwh = first.energy.median if first.energy else None
        self.emissions_g = first.emissions.median if first.emissions else None
        self.duration_s = first.duration.median if first.duration else None
        self.finished, self.total = results.finished, results.total
        if series.kind == Series.Kind.COMPARE:
            self.summary = series.headline(results) or "No verdict yet."


def summarize_series(rows: list[HistoryRow]) -> None:
    """Medians and verdicts of the page's series, from one query for all their runs."""
    if not rows:
        return
    runs: dict[int | None, list[Run]] = {row.run.series_id: [] for row in rows}
    for run in (
        Run.objects.filter(series__in=runs)
        .order_by("repetition", "variant")
        .only(*Series.RESULT_FIELDS)
    ):
        runs[run.series_id].append(run)
    for row in rows:
        row.summarize(runs[row.run.series_id])


def history_page(runs, raw_page: str) -> dict:
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


def series_context(series: Series, request: HttpRequest | None = None) -> dict:
    """What a repeat's or a comparison's page shows (`request`: whether its viewer may
    stop it)."""
    runs = series.ordered_runs()
    results = series.results(runs)
    measured = [m for data in results.variants.values() for m in data.measured.values()]
    units = formatting.units_for(
        measured + [r for r in runs if r.status == Run.Status.SUCCEEDED],
        energy_kwh="energy",
        emissions_g="mass",
        duration_s="duration",
    )
    energies = {
        variant: [m.energy_kwh for m in data.measured.values() if m.energy_kwh is not None]
        for variant, data in results.variants.items()
    }
    context = {
        "series": series,
        "results": results,
        "can_stop": request is not None and not results.is_over and may_stop(request, series),
        "waiting_behind": 0 if results.is_over else series.waiting_behind(),
        "warnings": results.warnings,
        "units": units,
        "strip": charts.strip_chart(energies, units["energy_kwh"], series.variant_labels),
        "host_spreads": series.host_spreads(),
        "share": share(series, request) if request is not None and results.is_over else None,
        "outputs": (agreement := series.outputs(runs)),
        "outputs_sentence": agreement.sentence(series.kind == Series.Kind.COMPARE)
        if agreement
        else "",
        # Each side's environment, as its runs stored it (or as declared, before they ran).
        "environments": {
            variant: next(
                (r.environment for r in runs if r.variant == variant and r.provenance), {}
            )
            or {"name": series.env_of(variant)}
            for variant in series.variants
        },
    }
    if series.kind == Series.Kind.COMPARE:
        context["decision"] = results.decision
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
        context["variant_codes"] = [
            (variant, series.env_of(variant), series.code_of(variant))
            for variant in series.variants
        ]
    if series.is_n_way:
        context["outputs"] = None  # each variant's against A's, in the ranking instead
        context["against_count"] = len(series.variants) - 1
        context["ranking"] = [
            {
                "row": row,
                "comparison": row.against.decision.comparison
                if row.against and row.against.decision
                else None,
                "outputs": series.outputs(runs, row.variant) if row.against else None,
            }
            for row in comparisons.ranking(results)
        ]
    return context


def with_more_variants(context: dict) -> dict:
    """The compare form's optional variants (C, D), from its context's code_c, env_c…"""
    return context | {
        "more_variants": [
            {
                "key": key,
                "name": key.upper(),
                "code": context.get(f"code_{key}", ""),
                "env": context.get(f"env_{key}") or context["env_a"],
                "env_id": f"env_{key}",
                "env_label": f"Environment of {key.upper()}",
            }
            for key in VARIANTS[2:].lower()
        ]
    }


def compare_form_context() -> dict:
    default = environments.default().name
    return {
        "repetitions": MAX_REPETITIONS,  # runs until clear, at most this many pairs
        "max_repetitions": MAX_REPETITIONS,
        "environments": environments.available(),
        "env_a": default,
        "env_b": default,
        "env_c": default,
        "env_d": default,
        "max_stdin_bytes": settings.MAX_STDIN_BYTES,
        **STOPPING_RULE,
    }


def methodology_context() -> dict:
    """What the methodology page states, from where each figure is owned."""
    return {
        "constants": equivalents.CONSTANTS,
        "baseline": Baseline.objects.first(),
        "environments": environments.available(),
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
        "published": cpu_power.published_table(),
    }
