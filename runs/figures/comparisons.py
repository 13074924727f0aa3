"""What a repeat's or a comparison's runs say: each side's summaries, B against A under
the stopping rule (runs.figures.stats), and the words the pages use for them — the
warnings, the headline and what it rests on. Plain figures in, no database: the
Series model gathers its runs' figures and asks here.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import stats
from .cpu_power import Range

# A side of a series whose energy varies more than this, run to run, is called noisy.
NOISY_CV = 0.10
# Runs using less CPU than this are mostly start-up (pyperf warns likewise).
SHORT_RUN_CPU_SECONDS = 0.05


class Measured(NamedTuple):
    """The figures of a run that a series compares: the run's, or one section's."""

    energy_kwh: float | None
    net_energy_kwh: float | None
    duration_s: float | None
    emissions_g: float | None
    cpu_seconds: float | None
    # The CPU time of the snippet's own work: beyond the measured start-up for a whole
    # run, all of it for a section (which holds no start-up).
    own_cpu_seconds: float | None = None
    # The power model's range of its energy (runs.figures.cpu_power; None: measured).
    energy_range: Range | None = None


class Compared(NamedTuple):
    """One figure an A/B comparison states: its key, Measured field, and how it reads."""

    key: str
    field: str
    label: str
    quantity: str
    verb: str

    def verdict(self, comparison: stats.Comparison, names: tuple[str, ...] = ("A", "B")) -> str:
        return comparison.verdict(self.quantity, self.verb, names)


# The first is the headline, which decides when the comparison stops; the others are
# its breakdown, at the same look and with intervals of the same level.
COMPARED = [
    Compared("energy", "energy_kwh", "Energy", "energy", "uses"),
    Compared(
        "net_energy", "net_energy_kwh", "Energy beyond start-up", "energy beyond start-up", "uses"
    ),
    Compared("cpu", "cpu_seconds", "CPU time", "CPU time", "uses"),
    Compared("duration", "duration_s", "Duration", "time", "takes"),
]
HEADLINE = COMPARED[0]
# Each compared figure, B against A, and its verdict in words (None: not measured).
Verdicts = list[tuple[Compared, stats.Comparison | None, str | None]]


def _known(values: Iterable[float | None]) -> list[float]:
    return [value for value in values if value is not None]


@dataclass
class Side:
    """One side of a series (a repeat has one, A): its runs, and the summaries of those
    that were measured. A figure no run has is None, not a zero."""

    runs: list[Any]  # its Run rows, for the pages (this module knows no model)
    measured: dict[int, Measured]  # by repetition, the runs that reported the figures
    without_section: int  # runs that did not report the series' section
    energy: stats.Summary | None
    net_energy: stats.Summary | None
    duration: stats.Summary | None
    emissions: stats.Summary | None
    cpu: stats.Summary | None
    own_cpu: stats.Summary | None
    succeeded: int  # measured runs that succeeded
    failed: int  # counted runs that are over and did not succeed
    ended_badly: set[int]  # repetitions whose snippet itself ended badly
    counted: int  # measured runs, warm-up left out
    # The median's range by the power model: the medians of its runs' lows and highs
    # (None: any run measured by a counter, or none measured).
    energy_range: Range | None = None
    emissions_range: Range | None = None


def _median_ranges(ok: list[Measured]) -> tuple[Range | None, Range | None]:
    """The median's energy and CO₂e ranges (None: any run without one)."""
    if not ok or any(not m.energy_range or not m.energy_kwh for m in ok):
        return None, None
    lows, highs, grams_low, grams_high = [], [], [], []
    for m in ok:
        low, high = m.energy_range or (0.0, 0.0)
        intensity = (m.emissions_g or 0.0) / (m.energy_kwh or 1.0)
        lows.append(low)
        highs.append(high)
        grams_low.append(low * intensity)
        grams_high.append(high * intensity)
    return (
        (statistics.median(lows), statistics.median(highs)),
        (statistics.median(grams_low), statistics.median(grams_high)),
    )


def side(measured: dict[int, Measured | None], runs: list[Any], **counts: Any) -> Side:
    """One side's figures, from its measured runs by repetition (None: a run that did
    not report the series' section), with `counts` (Side's succeeded, failed,
    ended_badly, counted)."""
    ok = [m for m in measured.values() if m is not None]
    energy_range, emissions_range = _median_ranges(ok)
    return Side(
        runs=runs,
        measured={k: m for k, m in measured.items() if m is not None},
        without_section=len(measured) - len(ok),
        energy=stats.summarize(_known(m.energy_kwh for m in ok)),
        net_energy=stats.summarize(_known(m.net_energy_kwh for m in ok)),
        duration=stats.summarize(_known(m.duration_s for m in ok)),
        emissions=stats.summarize(_known(m.emissions_g for m in ok)),
        cpu=stats.summarize(_known(m.cpu_seconds for m in ok)),
        own_cpu=stats.summarize(_known(m.own_cpu_seconds for m in ok)),
        energy_range=energy_range,
        emissions_range=emissions_range,
        **counts,
    )


class Failures(NamedTuple):
    """Where one side of a comparison ended badly more often than the other."""

    worse: str  # "A" or "B"
    sentence: str  # said first, before any verdict


@dataclass
class Results:
    """What a series' runs say (runs.models.Series.results): each side, and for a
    comparison B against A at its last completed look; for one of more than two
    variants, each against A (`against`), as a two-sided Results of its own."""

    names: tuple[str, ...]  # how verdicts name each variant, A first
    variants: dict[str, Side]
    finished: int
    total: int
    is_over: bool
    decision: stats.Decision | None = None  # the headline's, at the last look
    # Each compared figure (COMPARED's keys), at the decision's level.
    compared: dict[str, stats.Comparison | None] = field(default_factory=dict)
    pairs: int = 0  # complete pairs counted
    look: int = 0  # the pairs the last completed look saw
    failures: Failures | None = None
    warnings: list[str] = field(default_factory=list)
    # An N-way comparison's variants after A, each against A (key "B" in each: the other).
    against: dict[str, Results] = field(default_factory=dict)

    @property
    def _decisions(self) -> list[stats.Decision | None]:
        """Each comparison's decision: B's, or each variant's against A."""
        if self.against:
            return [sub.decision for sub in self.against.values()]
        return [self.decision]

    @property
    def settled(self) -> bool:
        """Whether no more pairs are wanted: every comparison's look says it is clear,
        or that it cannot become so (False before the first look)."""
        return all(d is not None and d.outcome != stats.CONTINUE for d in self._decisions)

    @property
    def wants_more(self) -> bool:
        """Whether a look was taken and some comparison asks for more pairs."""
        return any(d is not None and d.outcome == stats.CONTINUE for d in self._decisions)


def pairs(variants: dict[str, Side], look: int) -> list[tuple[Measured, Measured]]:
    a, b = variants["A"].measured, variants["B"].measured
    return [(a[k], b[k]) for k in sorted(a.keys() & b.keys()) if k <= look]


def energy_pairs(variants: dict[str, Side], look: int) -> list[tuple[float, float]]:
    """The headline's figures of each pair up to `look`: what the verdict tests."""
    field = HEADLINE.field
    return [(getattr(a, field) or 0.0, getattr(b, field) or 0.0) for a, b in pairs(variants, look)]


def compare(results: Results, look: int, pair_cap: int, comparisons: int = 1) -> None:
    """B against A at the last completed look, on `results`: the headline's decision
    (which says when a comparison that runs until clear stops) and every compared
    figure, each interval at the decision's level.

    Runs of the same repetition ran back to back: compare them in pairs (the
    machine's drift cancels); with fewer than two complete pairs, no verdict yet.
    """
    paired = pairs(results.variants, look)
    decision = None
    if look:
        decision = stats.decide(energy_pairs(results.variants, look), look, pair_cap, comparisons)
        if results.is_over and decision.outcome == stats.CONTINUE:
            # Stopped before it was clear (failed runs, a limit): not settled.
            decision = dataclasses.replace(decision, outcome=stats.UNSETTLED)
    level = decision.comparison.level if decision and decision.comparison else None

    def of(field: str) -> stats.Comparison | None:
        values = [(getattr(a, field), getattr(b, field)) for a, b in paired]
        if not values or any(a is None or b is None for a, b in values):
            return None  # not measured for a section: the start-up is the run's
        return stats.compare_paired(values, interval=level)

    results.compared = {c.key: of(c.field) for c in COMPARED}
    results.decision, results.pairs, results.look = decision, len(paired), look


def compare_each(results: Results, look: int, pair_cap: int) -> None:
    """Each variant after A against A, on `results.against`: the same two-sided rule,
    each at its share of the error (`stats.decide`), so that together they keep it."""
    first, *others = results.variants
    for index, variant in enumerate(others, start=1):
        sub = Results(
            names=(results.names[0], results.names[index]),
            variants={"A": results.variants[first], "B": results.variants[variant]},
            finished=results.finished,
            total=results.total,
            is_over=results.is_over,
        )
        compare(sub, look, pair_cap, comparisons=len(others))
        sub.failures = failures(sub.variants, sub.names)
        if sub.decision:
            sub.warnings = fragility(sub.decision, sub.variants, look, sub.names)
        results.against[variant] = sub
    results.look = look
    results.pairs = min((sub.pairs for sub in results.against.values()), default=0)


# A variant's place in an N-way comparison's ranking, in words (its verdict against A).
LESS, MORE, SAME_AS_A, NOT_CLEAR, FAILED_MORE = "less", "more", "same", "unclear", "failed"
STANDING_WORDS = {
    LESS: "clearly less",
    MORE: "clearly more",
    SAME_AS_A: "the same",
    NOT_CLEAR: "not clear",
    FAILED_MORE: "failed more",
}


@dataclass(frozen=True)
class Ranked:
    """One variant of an N-way comparison, in the ranking: by median energy, lowest
    first, each with its verdict against A (None for A itself)."""

    variant: str
    name: str
    side: Side
    against: Results | None

    @property
    def standing(self) -> str:
        if self.against is None:
            return ""
        decision, failed = self.against.decision, self.against.failures
        if failed and failed.worse == "B":
            return FAILED_MORE
        if decision is None or decision.comparison is None:
            return NOT_CLEAR
        if decision.outcome == stats.DIFFERENT:
            return LESS if decision.comparison.change < 0 else MORE
        return SAME_AS_A if decision.outcome == stats.SAME else NOT_CLEAR

    @property
    def standing_words(self) -> str:
        """Its standing in two words, for a narrow cell ("" for A)."""
        return STANDING_WORDS.get(self.standing, "")

    @property
    def verdict(self) -> str:
        """Its comparison with A in a sentence (A's own row: "the reference")."""
        if self.against is None:
            return "The reference the others are compared with."
        return headline(self.against) or "The verdict comes after the first pairs."


def ranking(results: Results) -> list[Ranked]:
    """An N-way comparison's variants, lowest median energy first ([] for two)."""
    if not results.against:
        return []
    rows = [
        Ranked(variant, name, results.variants[variant], results.against.get(variant))
        for variant, name in zip(results.variants, results.names, strict=True)
    ]

    def median(row: Ranked) -> float:
        return row.side.energy.median if row.side.energy else float("inf")

    return sorted(rows, key=median)


def ranking_headline(results: Results) -> str | None:
    """An N-way comparison's one answer: which variant uses the least energy, if any
    clearly does, against A (None before the first look)."""
    rows = ranking(results)
    if not rows or all(row.against is None or row.against.decision is None for row in rows):
        return None
    others = [row for row in rows if row.against is not None]
    less = [row for row in others if row.standing == LESS]
    first, m = results.names[0], len(others)
    corrected = f"intervals corrected for {m} comparisons with A"
    if less:
        best = min(less, key=_change)
        sub = best.against
        assert sub is not None and sub.decision is not None  # a LESS standing has both
        said = sub.decision.verdict(HEADLINE.quantity, HEADLINE.verb, sub.names).rstrip(".")
        if len(less) == 1:
            return f"{said}: the only variant clearly below {first} ({corrected})."
        # Those below A are not tested against each other: the largest saving is named,
        # not called the least, which the data may not tell.
        also = [row.name for row in less if row is not best]
        verb = "uses" if len(also) == 1 else "use"
        return (
            f"{said}: the largest saving against {first}; {' and '.join(also)} also {verb} "
            "clearly less "
            f"({corrected}; those below {first} are not compared with each other)."
        )
    if all(row.standing == MORE for row in others):
        return (
            f"{first} uses the least energy: every other variant uses clearly more ({corrected})."
        )
    if all(row.standing == SAME_AS_A for row in others):
        margin = f"±{stats.EQUIVALENCE_MARGIN:.0%}"
        return f"All {m + 1} use the same energy as {first} within {margin} ({corrected})."
    if results.wants_more:
        return (
            f"Not clear yet: no variant uses clearly less energy than {first} so far; "
            "more rounds are running."
        )
    return f"No variant uses clearly less energy than {first} ({corrected})."


def _change(row: Ranked) -> float:
    decision = row.against.decision if row.against else None
    return decision.comparison.change if decision and decision.comparison else 0.0


def warnings(
    results: Results, *, repeat: bool, labels: dict[str, str], section: str, stop_reason: str
) -> list[str]:
    """What makes a series' figures less sure than they look."""
    found = []
    if repeat and results.variants["A"].ended_badly:
        data = results.variants["A"]
        found.append(
            f"{len(data.ended_badly)} of {data.counted} runs failed or hit a limit: "
            "their energy was spent and is counted in the figures above."
        )
    for variant, data in results.variants.items():
        if data.without_section:
            found.append(
                f"{data.without_section} of {labels[variant]}'s runs did not report "
                f"the section “{section}” (they ended inside it) and are left out."
            )
        who = "The runs" if repeat else f"{labels[variant]}'s runs"
        energy, own_cpu = data.energy, data.own_cpu
        # A repeat's spread is its answer's uncertainty; a comparison's sides spread
        # with the machine's drift, which the pairs cancel (its own warnings below).
        if repeat and energy and energy.n >= 3 and energy.cv > NOISY_CV:
            found.append(
                f"{who} vary by {energy.cv:.0%} (coefficient of variation), more than "
                f"{NOISY_CV:.0%}: a noisy machine or code whose work changes from run to "
                "run. Treat the median as rough; more runs help."
            )
        if own_cpu and own_cpu.median < SHORT_RUN_CPU_SECONDS:
            used = f"{own_cpu.median * 1000:.0f} ms of CPU"
            under = f"under {SHORT_RUN_CPU_SECONDS * 1000:.0f} ms"
            if section:
                found.append(
                    f"{who} spend {used} each in the section “{section}”, {under}: work "
                    "this small is within the noise of the clocks and the machine. Put the "
                    "work in a loop so that it dominates."
                )
            else:
                found.append(
                    f"{who} use {used} each beyond the interpreter's start-up, {under}: "
                    "the runs are mostly the interpreter and the sandbox, not your code. "
                    "Put the work in a loop so that it dominates."
                )
    if results.decision:
        found += fragility(results.decision, results.variants, results.look, results.names)
    for sub in results.against.values():
        found += sub.warnings
    if stop_reason:
        found.append(stop_reason)
    return found


def fragility(
    decision: stats.Decision, variants: dict[str, Side], look: int, names: tuple[str, ...]
) -> list[str]:
    """Where the pairs themselves make the verdict fragile: the difference moved
    while the comparison ran, or many pairs point the other way."""
    a, b = names[0], names[1]
    energy = energy_pairs(variants, look)
    found = []
    moved = stats.drift(energy)
    if moved:
        first, second = (stats.signed_percent(value) for value in moved)
        found.append(
            f"The difference moved while this ran: {b} against {a} was {first} in the first "
            f"half of the pairs and {second} in the second. The verdict is an average "
            "over a moving target; run it again at a quieter moment to see which holds."
        )
    if decision.outcome == stats.DIFFERENT and decision.comparison:
        change = decision.comparison.change
        agree, total = stats.agreeing(energy, change)
        if total and (total - agree) / total >= stats.DISAGREEING_SHARE:
            way = "more" if change > 0 else "less"
            found.append(
                f"{b} used {way} energy than {a} in only {agree} of {total} pairs: the "
                "difference is small against the spread between pairs, so the verdict "
                "is fragile. Running the comparison again would tell whether it holds."
            )
    return found


def failures(variants: dict[str, Side], names: tuple[str, ...]) -> Failures | None:
    """Where one side of a comparison ended badly (failed, timed out, hit a limit) in
    runs where the other did not: who failed more, and the sentence that says so first.
    None where both ended badly in the same repetitions, or neither did."""
    if len(variants) != 2:
        return None
    (a, a_data), (b, b_data) = zip(names, variants.values(), strict=True)
    if a_data.ended_badly == b_data.ended_badly:
        return None
    sides = [(b, b_data), (a, a_data)]
    if len(a_data.ended_badly) > len(b_data.ended_badly):
        sides.reverse()
    (worse, worse_data), (other, other_data) = sides
    other_count = len(other_data.ended_badly)
    return Failures(
        worse="A" if worse == a else "B",
        sentence=f"{worse} failed in {len(worse_data.ended_badly)} of "
        f"{worse_data.counted} runs; {other} in "
        f"{'none' if not other_count else f'{other_count} of {other_data.counted}'}.",
    )


def headline(results: Results) -> str | None:
    """A comparison's one answer, in plain words (None before its first look). Where one
    side failed more, that comes first; and that side is never called the cheaper one,
    since a run that fails may stop before its work is done."""
    decision = results.decision
    if decision is None:
        return None
    names = results.names
    verdict = decision.verdict(HEADLINE.quantity, HEADLINE.verb, names)
    failed = results.failures
    if not failed:
        return verdict
    comparison = decision.comparison
    cheaper = "B" if comparison and comparison.change < 0 else "A"
    if decision.outcome == stats.DIFFERENT and comparison and cheaper == failed.worse:
        name = names["AB".index(cheaper)]
        verdict = (
            f"No verdict on {HEADLINE.quantity}: {name} measured lower with every run "
            f"counted ({comparison.interval()} for B against A), but a run that fails may "
            "stop before its work is done, so that may only mean it did less."
        )
    return f"{failed.sentence} {verdict}"


def basis(results: Results, provenance: dict[str, Any]) -> str:
    """What the headline rests on (its runs' provenance), and why time may say
    otherwise."""
    cpu = provenance.get("cpu", {})
    if cpu.get("method") == "measured":
        rests = (
            "Energy here is the CPU's energy counter shared out by CPU time, plus a small "
            "share for memory"
        )
    elif cpu.get("power"):
        rests = (
            f"Energy here is CPU time × a constant ({cpu['power']}) plus a small share "
            "for memory: it follows CPU time, so the energy verdict is a CPU-time verdict, "
            "and the constant's range, which scales A and B alike, cancels out of it"
        )
    else:
        rests = "Energy here follows CPU time"
    decision, duration = results.decision, results.compared.get("duration")
    if decision and decision.comparison and duration:
        energy = decision.comparison
        if energy.significant != duration.significant or (
            energy.significant and (energy.change > 0) != (duration.change > 0)
        ):
            if duration.significant:
                time = duration.verdict("time", "takes", results.names).removesuffix(".")
            else:
                time = f"no clear difference in time ({duration.interval()})"
            return (
                f"{rests}. Time tells another story — {time} — because elapsed time "
                "also counts waiting (sleep, input and output, the machine's other work), "
                "which costs no CPU time and so almost no energy here."
            )
    return f"{rests}; time is shown below for comparison."


def verdicts(results: Results) -> Verdicts:
    """Each compared figure, B against A, for the page's breakdown and the export."""
    found: Verdicts = []
    for c in COMPARED:
        comparison = results.compared.get(c.key)
        found.append((c, comparison, c.verdict(comparison, results.names) if comparison else None))
    return found
