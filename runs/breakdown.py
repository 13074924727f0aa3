"""Where a run's energy went: its named sections and its lines.

Both come from inside the snippet's own process (runs/launcher.py), so a snippet could
forge them. They are never taken on trust: a section claiming more CPU or wall time
than the run's measured total is clipped to it and flagged, and the line profile only
shares out the CPU time the supervisor measured, by its samples.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from . import formatting

# Below this much CPU time a profile is a handful of samples, and a line's share noise.
MIN_PROFILE_CPU_SECONDS = 0.05
MAX_SECTIONS = 100
PROFILE_STOPPED = (
    "The snippet installed its own handler for SIGPROF, the signal the line profiler "
    "samples with, so profiling stopped there."
)
SECTIONS_CLIPPED = (
    "Some sections reported more time than the run measured (overlapping threads, or "
    "figures the snippet made up): they are clipped to the run's total."
)
SECTIONS_OVERLAP = (
    "The top-level sections add up to more CPU time than the run used: they overlap "
    "(threads) or were made up, so their shares add up to more than 100%."
)


@dataclass
class Breakdown:
    sections: list[dict] = field(default_factory=list)
    lines: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def of(measurements: str, run) -> Breakdown:
    """Sections and per-line figures of a finished `run` (its figures set) from the
    snippet's raw measurements."""
    result = Breakdown()
    if not measurements or run.cpu_seconds is None or run.energy_kwh is None:
        return result
    raw_sections, samples, stopped = [], {}, False
    code_lines = len(run.code.splitlines())
    for line in measurements.splitlines():
        parts = line.split("\t")
        if parts[0] == "S" and len(parts) == 5 and len(raw_sections) < MAX_SECTIONS:
            numbers = [_number(p) for p in parts[2:]]
            if parts[1] and None not in numbers:
                raw_sections.append((parts[1], *numbers))
        elif parts[0] == "L" and len(parts) == 4 and parts[1].isdigit():
            number, count, weight = int(parts[1]), _number(parts[2]), _number(parts[3])
            if 1 <= number <= code_lines and count and weight is not None:
                samples[number] = (count, weight)
        elif parts[0] == "P" and parts[1:] == ["stopped"]:
            stopped = True
    result.sections = _sections(raw_sections, run, result.notes)
    if stopped:
        result.notes.append(PROFILE_STOPPED)
    if run.cpu_seconds >= MIN_PROFILE_CPU_SECONDS:
        result.lines = _lines(samples, run)
    return result


def _sections(raw: list[tuple], run, notes: list[str]) -> list[dict]:
    cpu_total, wall_total = run.cpu_seconds, run.duration_s or 0.0
    sections, clipped = [], False
    for name, calls, wall, cpu in raw:
        if cpu > cpu_total or wall > wall_total:
            clipped = True
            cpu, wall = min(cpu, cpu_total), min(wall, wall_total)
        energy = _energy(run, cpu, wall)
        sections.append(
            {
                "name": name,
                "calls": int(calls),
                "duration_s": wall,
                "cpu_seconds": cpu,
                "energy_kwh": energy,
                "share": energy / run.energy_kwh if run.energy_kwh else 0.0,
            }
        )
    if clipped:
        notes.append(SECTIONS_CLIPPED)
    top_cpu = sum(s["cpu_seconds"] for s in sections if "/" not in s["name"])
    if top_cpu > cpu_total * 1.02:
        notes.append(SECTIONS_OVERLAP)
    return sections


def _energy(run, cpu_seconds: float, wall_seconds: float) -> float:
    """A part's energy by the run's own model: its CPU share of the CPU energy, its
    share of the run's time of the RAM (and GPU) energy."""
    cpu_share = cpu_seconds / run.cpu_seconds if run.cpu_seconds else 0.0
    time_share = wall_seconds / run.duration_s if run.duration_s else 0.0
    return (
        (run.cpu_energy_kwh or 0.0) * cpu_share
        + (run.ram_energy_kwh or 0.0) * time_share
        + (run.gpu_energy_kwh or 0.0) * time_share
    )


def _lines(samples: dict[int, tuple[float, float]], run) -> list[dict]:
    """Each sampled line's share of the sampled CPU time, applied to the run's measured
    CPU time and energy: the profile only shares out what the supervisor measured."""
    total = sum(weight for _, weight in samples.values())
    if not total:
        return []
    return [
        {
            "line": number,
            "samples": round(count, 2),
            "cpu_seconds": run.cpu_seconds * weight / total,
            "energy_kwh": run.energy_kwh * weight / total,
            "share": weight / total,
        }
        for number, (count, weight) in sorted(samples.items())
    ]


def defines_section(code: str, name: str) -> bool:
    """Whether `code` names a section `name` (its last part, for a nested one): a
    check before runs are spent, not a parse; the runs report what really ran."""
    last = name.split("/")[-1]
    return re.search(rf"""section\(\s*(['"]){re.escape(last)}\1\s*\)""", code) is not None


def section_figures(run, name: str) -> dict | None:
    """One named section of a run, as compared across runs (None if it has none)."""
    return next((s for s in run.sections if s["name"] == name), None)


HOTTEST_LINES = 5


def for_page(run) -> dict:
    """What the run page shows: the sections, and the code with each line's share."""
    shares = {line["line"]: line for line in run.lines}
    top = max((line["share"] for line in run.lines), default=0) or 1
    listing = [
        {
            "number": number,
            "text": text,
            "line": shares.get(number),
            "heat": _heat(shares, number, top),
        }
        for number, text in enumerate(run.code.splitlines(), start=1)
    ]
    hottest = sorted(run.lines, key=lambda line: -line["share"])[:HOTTEST_LINES]
    sections = [s | {"depth": s["name"].count("/")} for s in run.sections]
    return {
        "listing": listing if run.lines else [],
        "hottest": [line | {"text": listing[line["line"] - 1]["text"]} for line in hottest],
        "section_rows": sections,
        "section_units": formatting.units_for(
            [_Figures(s) for s in run.sections],
            energy_kwh="energy",
            duration_s="duration",
        ),
    }


def _heat(shares: dict, number: int, top: float) -> int:
    """0–100: how hot a line is against the hottest one, for its bar."""
    line = shares.get(number)
    return round(100 * line["share"] / top) if line else 0


class _Figures:
    def __init__(self, figures: dict):
        self.energy_kwh = figures["energy_kwh"]
        self.duration_s = max(figures["duration_s"], figures["cpu_seconds"])
