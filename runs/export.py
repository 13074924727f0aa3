"""History as CSV whose columns follow CodeCarbon's emissions.csv where they overlap."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from . import measure

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
]  # fmt: skip
PROJECT = "codecarbon-playground"


class _Echo:
    def write(self, value: str) -> str:
        return value


def _row(run) -> list:
    provenance = run.provenance or {}
    cpu, gpu = provenance.get("cpu", {}), provenance.get("gpu", {})
    emissions_kg = run.emissions_g / 1000 if run.emissions_g is not None else None
    rate = emissions_kg / run.duration_s if emissions_kg is not None and run.duration_s else None
    machine_kg = run.machine_emissions_g / 1000 if run.machine_emissions_g is not None else None
    return [
        (run.started_at or run.created_at).isoformat(timespec="seconds"),
        PROJECT,
        run.public_id,
        run.series.public_id if run.series_id else "",
        run.duration_s,
        emissions_kg,
        rate,
        run.cpu_energy_kwh,
        run.gpu_energy_kwh,
        run.ram_energy_kwh,
        run.energy_kwh,
        measure.countries().get(run.country_iso_code, ""),
        run.country_iso_code,
        run.region,
        provenance.get("codecarbon_version", ""),
        cpu.get("threads", ""),
        cpu.get("model", ""),
        gpu.get("count", ""),
        gpu.get("model", ""),
        round(provenance.get("ram", {}).get("total_bytes", 0) / 2**30, 3) or "",
        "machine",
        provenance.get("pue", ""),
        run.status,
        run.exit_code,
        run.cpu_seconds,
        run.carbon_intensity_g_per_kwh,
        run.machine_energy_kwh,
        machine_kg,
        run.baseline_energy_kwh,
        run.net_energy_kwh,
        cpu.get("method", ""),
        run.isolation,
        run.series.public_id if run.series_id else "",
        run.variant,
        run.repetition,
        run.get_absolute_url(),
    ]


def history_csv(runs: Iterable) -> Iterator[str]:
    """Stream the rows: memory stays flat however long the history is."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CODECARBON_COLUMNS + EXTRA_COLUMNS)
    for run in runs.iterator(chunk_size=500) if hasattr(runs, "iterator") else runs:
        yield writer.writerow(["" if v is None else v for v in _row(run)])
