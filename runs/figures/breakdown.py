"""Where a run's energy went: its named sections and its lines.

Both are measured by the sandbox's supervisor (runs/sandbox/launcher.py), a process the
snippet cannot write to. A section's CPU and wall time are read there, from the run's own
kernel accounting (its cgroup's CPU counter, or the supervisor's count of every process
of the run), at the moments the snippet says it enters and leaves it: a snippet chooses
the moments, not the figures, and everything the run did while a section was open is in
it, its threads and child processes included. The line profile's stacks are written by
the snippet's process (faulthandler, at each sample): self-reported by necessity, so they
only share out what was measured. Each sample is filed under the section the main thread
was in, and the lines of a section share out that section's own figure (what it measured
less its inner sections'); the lines outside every section share out the rest of the run.
So no line reads more than the section it ran in, nor the lines more than the run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..sandbox import launcher
from . import formatting

# Below this much CPU time a profile is a handful of samples, and a line's share noise.
MIN_PROFILE_CPU_SECONDS = 0.05
MAX_SECTIONS = 100
PROFILE_STOPPED = (
    "The line profile stopped early: the snippet took its signal (SIGPROF) or its "
    "timer, so the lines show only the part of the run before that."
)
SECTIONS_UNSYNCHRONIZED = (
    "The snippet sent section events without waiting for them to be measured (not "
    "through playground.section): its sections are not shown."
)
SECTIONS_CLIPPED = (
    "Some sections measured more time than the run did (they overlapped in threads): "
    "they are clipped to the run's total."
)
SECTIONS_OVERLAP = (
    "The top-level sections add up to more CPU time than the run used: they overlap "
    "(sections in two threads at once each count the CPU time of both), so their "
    "shares add up to more than 100%."
)
PROFILE_UNSUPPORTED = (
    "No line profile: this interpreter (PyPy) writes only approximate line numbers in "
    "its stacks, which would blame the wrong lines. Sections are measured as usual."
)
PROFILE_UNSAFE = (
    "No line profile: this CPython release's faulthandler can crash a process sampled "
    "while C code calls back into Python (CPython gh-123967, fixed in 3.12.8 and 3.13.1), "
    "and measuring must never change how a run ends. Sections are measured as usual."
)
PROFILE_CRASHED = (
    "No line profile: a first go of this run ended when the line profile's own sampler "
    "crashed the interpreter (CPython before 3.13 can be sampled in the instant it starts "
    "Python code called from C, and faulthandler then reads a frame not made yet). It was "
    "run again from the start, without the profile: what it printed and every figure here "
    "are that second go's."
)
SECTIONS_FLOODED = (
    f"The snippet entered and left sections more than {launcher.MAX_EVENTS // 2:,} times: "
    "measuring each costs CPU time (charged to the run, as all measuring is), so sections "
    "stopped there and the ones still open are not shown."
)
PROFILE_FLOODED = (
    "More arrived on the line profile's pipe than its timer can write: the snippet wrote "
    "there itself, so no line profile is shown (the time spent reading it is in the run's "
    "CPU time)."
)
LINES_OUTSIDE_SECTIONS = (
    "The lines could not be shared out section by section (sections overlapped in "
    "threads, or one was left open): each line is its share of the sampled CPU time of "
    "the whole run, so one inside a section may read more than that section."
)
NOTES = {
    launcher.PROFILE_STOPPED: PROFILE_STOPPED,
    launcher.PROFILE_UNSAFE: PROFILE_UNSAFE,
    launcher.PROFILE_UNSUPPORTED: PROFILE_UNSUPPORTED,
    launcher.PROFILE_CRASHED: PROFILE_CRASHED,
    launcher.SECTIONS_UNSYNCHRONIZED: SECTIONS_UNSYNCHRONIZED,
    launcher.SECTIONS_FLOODED: SECTIONS_FLOODED,
    launcher.PROFILE_FLOODED: PROFILE_FLOODED,
}
# Python numbers lines at these breaks only: a form feed, or U+2028 in a comment, is
# not one (str.splitlines would count them).
LINE_BREAK = re.compile(r"\r\n|\r|\n")


def source_lines(code: str) -> list[str]:
    """The lines of `code` numbered as Python numbers them (tracebacks, the profile)."""
    lines = LINE_BREAK.split(code)
    return lines[:-1] if lines and lines[-1] == "" else lines


# A section as the supervisor reported it: its name, calls, wall and CPU seconds.
RawSection = tuple[str, float, float, float]
# The line profile: (section, line) -> (samples, CPU seconds they share).
Samples = dict[tuple[str, int], tuple[float, float]]


@dataclass
class Breakdown:
    sections: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def of(measurements: str, run: Any) -> Breakdown:
    """Sections and per-line figures of a finished `run` (its figures set) from what
    the supervisor reported."""
    result = Breakdown()
    if not measurements or run.cpu_seconds is None or run.energy_kwh is None:
        return result
    raw_sections: list[RawSection] = []
    samples: Samples = {}
    notes: list[str] = []
    code_lines = len(source_lines(run.code))
    for line in measurements.split("\n"):
        parts = line.split("\t", 4)
        if parts[0] == launcher.SECTION and len(parts) == 5 and len(raw_sections) < MAX_SECTIONS:
            numbers = [_number(p) for p in parts[1:4]]
            calls, wall, cpu = numbers
            if parts[4] and calls is not None and wall is not None and cpu is not None:
                raw_sections.append((parts[4], calls, wall, cpu))
        elif parts[0] == launcher.LINE and len(parts) == 5 and parts[1].isdigit():
            number, count, weight = int(parts[1]), _number(parts[2]), _number(parts[3])
            if 1 <= number <= code_lines and count and weight is not None:
                samples[(parts[4], number)] = (count, weight)
        elif parts[0] == launcher.NOTE and len(parts) == 2 and parts[1] in NOTES:
            notes.append(NOTES[parts[1]])
    if SECTIONS_UNSYNCHRONIZED not in notes:
        result.sections = _sections(raw_sections, run, result.notes)
    result.notes += notes
    if run.cpu_seconds >= MIN_PROFILE_CPU_SECONDS:
        result.lines = _lines(samples, run, result.sections, result.notes)
    return result


def _sections(raw: list[RawSection], run: Any, notes: list[str]) -> list[dict[str, Any]]:
    cpu_total, wall_total = run.cpu_seconds, run.duration_s or 0.0
    sections: list[dict[str, Any]] = []
    clipped = False
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


def _energy(run: Any, cpu_seconds: float, wall_seconds: float) -> float:
    """A part's energy by the run's own model: its CPU share of the CPU energy, its
    share of the run's time of the RAM (and GPU) energy."""
    cpu_share = cpu_seconds / run.cpu_seconds if run.cpu_seconds else 0.0
    time_share = wall_seconds / run.duration_s if run.duration_s else 0.0
    return (
        (run.cpu_energy_kwh or 0.0) * cpu_share
        + (run.ram_energy_kwh or 0.0) * time_share
        + (run.gpu_energy_kwh or 0.0) * time_share
    )


def _lines(
    samples: Samples, run: Any, sections: list[dict[str, Any]], notes: list[str]
) -> list[dict[str, Any]]:
    """Each sampled line's figures: within each section the main thread was in (and
    outside them all), the lines share out that part's own measured figure (less its
    inner sections') by their sampled CPU time. Where sections overlapped, or a sample
    names a section not shown, the lines share out the whole run instead, and say so."""
    whole = {"": (run.cpu_seconds, run.energy_kwh)}
    measured = {s["name"]: (s["cpu_seconds"], s["energy_kwh"]) for s in sections}
    own = _own_figures(whole | measured)
    if own is None or not {context for context, _ in samples} <= own.keys():
        if any(context for context, _ in samples):
            notes.append(LINES_OUTSIDE_SECTIONS)
        samples = _merged(samples)
        own = whole
    weights: dict[str, float] = {}
    for (context, _), (_, weight) in samples.items():
        weights[context] = weights.get(context, 0.0) + weight
    lines: dict[int, dict[str, Any]] = {}
    for (context, number), (count, weight) in samples.items():
        if not weights[context]:
            continue
        cpu, energy = own[context]
        part = weight / weights[context]
        line = lines.setdefault(
            number, {"line": number, "samples": 0.0, "cpu_seconds": 0.0, "energy_kwh": 0.0}
        )
        line["samples"] += count
        line["cpu_seconds"] += cpu * part
        line["energy_kwh"] += energy * part
    for line in lines.values():
        line["samples"] = round(line["samples"], 2)
        line["share"] = line["energy_kwh"] / run.energy_kwh if run.energy_kwh else 0.0
    return [lines[number] for number in sorted(lines)]


def _own_figures(parts: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]] | None:
    """Each part's (CPU, energy) less its direct inner sections' ("" is the whole run,
    "a/b" is inside "a"); None where inner parts add up to more than their whole (they
    overlapped in threads), beyond the rounding of their figures."""
    own = {}
    for name, (cpu, energy) in parts.items():
        depth = name.count("/") + 1 if name else 0
        inner = [
            figures
            for other, figures in parts.items()
            if other and other.count("/") == depth and (not name or other.startswith(name + "/"))
        ]
        cpu_left = cpu - sum(c for c, _ in inner)
        energy_left = energy - sum(e for _, e in inner)
        if cpu_left < -0.02 * cpu - 1e-4:
            return None
        own[name] = (max(cpu_left, 0.0), max(energy_left, 0.0))
    return own


def _merged(samples: Samples) -> Samples:
    """The samples of each line across every section it was sampled in."""
    merged: Samples = {}
    for (_, number), (count, weight) in samples.items():
        seen_count, seen_weight = merged.get(("", number), (0.0, 0.0))
        merged[("", number)] = (seen_count + count, seen_weight + weight)
    return merged


def defines_section(code: str, name: str) -> bool:
    """Whether `code` names a section `name` (its last part, for a nested one): a
    check before runs are spent, not a parse; the runs report what really ran."""
    last = name.split("/")[-1]
    return re.search(rf"""section\(\s*(['"]){re.escape(last)}\1\s*\)""", code) is not None


def section_figures(run: Any, name: str) -> dict[str, Any] | None:
    """One named section of a run, as compared across runs (None if it has none)."""
    return next((s for s in run.sections if s["name"] == name), None)


HOTTEST_LINES = 5


def for_page(run: Any) -> dict[str, Any]:
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
        for number, text in enumerate(source_lines(run.code), start=1)
    ]
    hottest = sorted(run.lines, key=lambda line: -line["share"])[:HOTTEST_LINES]
    sections = [s | {"depth": s["name"].count("/"), "range": run.range_of(s)} for s in run.sections]
    return {
        "listing": listing if run.lines else [],
        # For the editor's gutter (static/js/playground.js): each profiled line's bar.
        "heat_lines": [
            {
                "line": line["line"],
                "heat": _heat(shares, line["line"], top),
                "label": f"Line {line['line']}: {formatting.percent(line['share'])} "
                "of the CPU time",
            }
            for line in run.lines
        ],
        "hottest": [
            line | {"text": listing[line["line"] - 1]["text"], "range": run.range_of(line)}
            for line in hottest
        ],
        # In the run page's units (runs.pages.run_context), as its cards and lines are.
        "section_rows": sections,
    }


def _heat(shares: dict[int, dict[str, Any]], number: int, top: float) -> int:
    """0–100: how hot a line is against the hottest one, for its bar."""
    line = shares.get(number)
    return round(100 * line["share"] / top) if line else 0
