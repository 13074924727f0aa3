"""History as CSV whose columns follow CodeCarbon's emissions.csv where they overlap."""

from __future__ import annotations

import csv
import json
import unicodedata
from collections.abc import Iterable, Iterator

from .figures import grids

# CodeCarbon's own names and units (emissions in kg, energy in kWh, duration in s),
# filled with the snippet's own figures; our extra columns follow.
CODECARBON_COLUMNS = [
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions",
    "emissions_rate", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed",
    "country_name", "country_iso_code", "region", "codecarbon_version", "cpu_count",
    "cpu_model", "gpu_count", "gpu_model", "ram_total_size", "tracking_mode", "pue",
]  # fmt: skip
EXTRA_COLUMNS = [
    "status", "exit_code", "cpu_seconds", "carbon_intensity_g_per_kwh",
    "machine_energy_consumed", "machine_emissions", "baseline_energy", "net_energy_consumed",
    "cpu_method", "isolation", "series_id", "variant", "repetition", "url_path",
    "python_version", "env", "code", "stdin", "sections", "lines",
    "energy_consumed_low", "energy_consumed_high", "emissions_low", "emissions_high",
    "cpu_power_source", "cpu_generation",
]  # fmt: skip
PROJECT = "codecarbon-playground"
# A spreadsheet reads a cell that begins with one of these as a formula (CSV injection),
# in their full-width and small forms too (which NFKC folds into them), and after any
# leading space or line break it trims: such a text cell gets a leading apostrophe, as
# OWASP recommends. Numbers are ours.
FORMULA_STARTS = ("=", "+", "-", "@")


class _Echo:
    def write(self, value: str) -> str:
        return value


def _row(run) -> dict:
    """One run as CSV: a value for every column, keyed by the column's name."""
    provenance = run.provenance or {}
    cpu, gpu = provenance.get("cpu", {}), provenance.get("gpu", {})
    emissions_kg = run.emissions_g / 1000 if run.emissions_g is not None else None
    rate = emissions_kg / run.duration_s if emissions_kg is not None and run.duration_s else None
    machine_kg = run.machine_emissions_g / 1000 if run.machine_emissions_g is not None else None
    series_id = run.series.public_id if run.series_id else ""
    energy_range, emissions_range = run.energy_range, run.emissions_range
    return {
        "timestamp": (run.started_at or run.created_at).isoformat(timespec="seconds"),
        "project_name": PROJECT,
        "run_id": run.public_id,
        "experiment_id": series_id,
        "duration": run.duration_s,
        "emissions": emissions_kg,
        "emissions_rate": rate,
        "cpu_energy": run.cpu_energy_kwh,
        "gpu_energy": run.gpu_energy_kwh,
        "ram_energy": run.ram_energy_kwh,
        "energy_consumed": run.energy_kwh,
        "country_name": grids.countries().get(run.country_iso_code, ""),
        "country_iso_code": run.country_iso_code,
        "region": run.region,
        "codecarbon_version": provenance.get("codecarbon_version", ""),
        "cpu_count": cpu.get("threads", ""),
        "cpu_model": cpu.get("model", ""),
        "gpu_count": gpu.get("count", ""),
        "gpu_model": gpu.get("model", ""),
        "ram_total_size": round(provenance.get("ram", {}).get("total_bytes", 0) / 2**30, 3) or "",
        "tracking_mode": "machine",
        "pue": provenance.get("pue", ""),
        "status": run.status,
        "exit_code": run.exit_code,
        "cpu_seconds": run.cpu_seconds,
        "carbon_intensity_g_per_kwh": run.carbon_intensity_g_per_kwh,
        "machine_energy_consumed": run.machine_energy_kwh,
        "machine_emissions": machine_kg,
        "baseline_energy": run.baseline_energy_kwh,
        "net_energy_consumed": run.net_energy_kwh,
        "cpu_method": cpu.get("method", ""),
        "isolation": run.isolation,
        "series_id": series_id,
        "variant": run.variant,
        "repetition": run.repetition,
        "url_path": run.get_absolute_url(),
        "python_version": run.python_version or "",
        "env": run.env_name,
        "code": run.code,
        "stdin": run.stdin,
        # As JSON, the same objects as the run's JSON export.
        "sections": json.dumps(run.sections, separators=(",", ":")) if run.sections else "",
        "lines": json.dumps(run.lines, separators=(",", ":")) if run.lines else "",
        # The power model's range (runs.figures.cpu_power); empty where a counter measured.
        "energy_consumed_low": energy_range[0] if energy_range else None,
        "energy_consumed_high": energy_range[1] if energy_range else None,
        "emissions_low": emissions_range[0] / 1000 if emissions_range else None,
        "emissions_high": emissions_range[1] / 1000 if emissions_range else None,
        "cpu_power_source": cpu.get("power_source", ""),
        "cpu_generation": cpu.get("generation") or "",
    }


def history_csv(runs: Iterable) -> Iterator[str]:
    """Stream the rows: memory stays flat however long the history is."""
    # extrasaction="raise": a value without a column (or a column without a value,
    # through restval) cannot slip by unnoticed.
    writer = csv.DictWriter(_Echo(), CODECARBON_COLUMNS + EXTRA_COLUMNS, extrasaction="raise")
    yield writer.writeheader()
    for run in runs.iterator(chunk_size=500) if hasattr(runs, "iterator") else runs:
        row = _row(run)
        missing = set(writer.fieldnames) - set(row)
        if missing:
            raise KeyError(f"no value for CSV columns {sorted(missing)}")
        yield writer.writerow({k: _cell(v) for k, v in row.items()})


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, str) and value and _may_be_read_as_a_formula(value[0]):
        return "'" + value
    return value


def _may_be_read_as_a_formula(first: str) -> bool:
    return (
        first.isspace()
        or not first.isprintable()
        or unicodedata.normalize("NFKC", first).startswith(FORMULA_STARTS)
    )
