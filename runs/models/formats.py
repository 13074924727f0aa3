"""The JSON of a run and of a series: one contract for the API, `runsnippet --json` and
the downloads (what each key means: docs/measurement.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..figures import comparisons

if TYPE_CHECKING:
    from .run import Run
    from .series import Series


def _listed(values: tuple[float, float] | None) -> list[float] | None:
    return list(values) if values else None


def run_json(run: Run) -> dict[str, Any]:
    """A run as the API, `runsnippet --json` and its download give it."""
    return {
        "id": str(run.public_id),
        "status": run.status,
        "exit_code": run.exit_code,
        "stdout": run.stdout,
        "stderr": run.stderr,
        "stdout_truncated": run.stdout_truncated,
        "stderr_truncated": run.stderr_truncated,
        "duration_s": run.duration_s,
        "cpu_seconds": run.cpu_seconds,
        "energy_kwh": run.energy_kwh,
        "cpu_energy_kwh": run.cpu_energy_kwh,
        "ram_energy_kwh": run.ram_energy_kwh,
        "gpu_energy_kwh": run.gpu_energy_kwh,
        "machine_energy_kwh": run.machine_energy_kwh,
        "emissions_g": run.emissions_g,
        # [low, high] by the power model's range; null where a counter measured it.
        "energy_kwh_range": _listed(run.energy_range),
        "emissions_g_range": _listed(run.emissions_range),
        "machine_energy_kwh_range": _listed(run.machine_range),
        "carbon_intensity_g_per_kwh": run.carbon_intensity_g_per_kwh,
        "country_iso_code": run.country_iso_code,
        "region": run.region,
        "isolation": run.isolation,
        "error": run.error or None,
        "provenance": run.provenance,
        "power_samples": run.power_samples,
        "sections": run.sections,
        "lines": run.lines,
        "measurement_notes": run.measurement_notes,
        "last_line": run.last_line,
        "host_repeatability": run.host_repeatability,
        "net_energy_kwh": run.net_energy_kwh,
        "baseline": None
        if run.baseline_energy_kwh is None
        else {
            "energy_kwh": run.baseline_energy_kwh,
            "duration_s": run.baseline_duration_s,
            "cpu_seconds": run.baseline_cpu_seconds,
        },
        "startup_cpu_seconds": run.startup_cpu_seconds,
        "python_version": run.python_version,
        "env": run.env_name,
        "code": run.code,
        "stdin": run.stdin,
        "series_id": str(run.series.public_id) if run.series else None,
        "variant": run.variant or None,
        "repetition": run.repetition,
        "created_at": run.created_at.isoformat(),
    }


def _side_json(side: comparisons.Side) -> dict[str, Any]:
    """One side's summaries, their units, and the power model's range of its medians."""
    data: dict[str, Any] = {
        name: summary.as_dict() if (summary := getattr(side, name)) else None
        for name in ("energy", "net_energy", "duration", "emissions")
    }
    return data | {
        "energy_range": _listed(side.energy_range),
        "emissions_range": _listed(side.emissions_range),
        "unit": {"energy": "kWh", "net_energy": "kWh", "duration": "s", "emissions": "g"},
    }


def series_json(series: Series) -> dict[str, Any]:
    """The JSON export of a series: its runs, summaries and comparison."""
    runs = series.ordered_runs()
    results = series.results(runs)

    data = {
        "id": str(series.public_id),
        "kind": series.kind,
        "repetitions": series.repetitions,
        "warmup": series.warmup,
        "section": series.section or None,
        "warnings": results.warnings,
        "created_at": series.created_at.isoformat(),
        "code": {v: series.code_of(v) for v in series.variants},
        "env": {v: series.env_of(v) for v in series.variants},
        "stdin": {v: series.stdin_of(v) for v in series.variants},
        "finished": results.finished,
        "total": results.total,
        "is_over": results.is_over,
        "host_repeatability": [spread.as_dict() for spread in series.host_spreads()],
        "summary": {v: _side_json(results.variants[v]) for v in series.variants},
        "runs": [run_json(run) for run in runs],
    }
    agreement = series.outputs(runs)
    data["outputs"] = (
        agreement.as_dict() | {"sentence": agreement.sentence(series.kind == series.Kind.COMPARE)}
        if agreement
        else None
    )
    if series.is_n_way:
        data["comparison"] = _ranking_json(series, results, runs)
    elif series.kind == series.Kind.COMPARE:
        decision = results.decision
        data["comparison"] = {
            compared.key: comparison.as_dict() | {"verdict": verdict} if comparison else None
            for compared, comparison, verdict in series.verdicts(results)
        } | {
            "verdict": series.headline(results),
            # Where one side failed in runs where the other did not (said first).
            "failures": results.failures.sentence if results.failures else None,
            "outcome": decision.outcome if decision else None,
            "pairs": results.pairs,
            "max_pairs": series.pair_cap,
            "runs_until_clear": series.runs_until_clear,
        }
    return data


def _ranking_json(series: Series, results: comparisons.Results, runs: list[Run]) -> dict[str, Any]:
    """An N-way comparison: its verdict, and its variants by median energy, each
    against A with every compared figure (its intervals corrected for the number of
    comparisons), and whether its output matched A's."""

    def against(sub: comparisons.Results | None) -> dict[str, Any] | None:
        if sub is None:
            return None
        decision = sub.decision
        return {
            compared.key: comparison.as_dict() | {"verdict": verdict} if comparison else None
            for compared, comparison, verdict in comparisons.verdicts(sub)
        } | {
            "outcome": decision.outcome if decision else None,
            "failures": sub.failures.sentence if sub.failures else None,
        }

    return {
        "verdict": series.headline(results),
        "variants": list(series.variants),
        "correction": f"Bonferroni, {len(series.variants) - 1} comparisons with A",
        "ranking": [
            {
                "variant": row.variant,
                "name": row.name,
                "standing": row.standing or "reference",
                "verdict": row.verdict,
                "against_a": against(row.against),
                "outputs": agreement.as_dict()
                if row.against and (agreement := series.outputs(runs, row.variant))
                else None,
            }
            for row in comparisons.ranking(results)
        ],
        "pairs": results.pairs,
        "max_pairs": series.pair_cap,
        "runs_until_clear": series.runs_until_clear,
    }
