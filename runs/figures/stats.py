"""Statistics for repeated runs: summaries, and A/B comparisons that refuse to call noise.

Pure Python (no SciPy): the only non-trivial piece is Student's t distribution, from
the regularised incomplete beta function (Numerical Recipes' continued fraction).

A comparison works on logarithms: energy and time are positive and their noise is
multiplicative, so a t-test on log values compares geometric means, and its interval
turns back into a percentage difference "B vs A". Runs interleaved A, B, A, B are
compared in pairs (paired t-test on log(B/A)). Welch's test on unpaired samples is
kept as the benchmarks' reference: `make bench` shows what pairing gains over it.
A comparison runs until its answer is clear (`decide`: a group-sequential design).
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from typing import Any

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    q1: float
    q3: float
    mean: float
    stdev: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def cv(self) -> float:
        """Coefficient of variation (stdev / mean); 0 for a single value."""
        return self.stdev / self.mean if self.mean else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "median": self.median,
            "q1": self.q1,
            "q3": self.q3,
            "mean": self.mean,
            "stdev": self.stdev,
            "cv": self.cv,
        }


def summarize(values: list[float]) -> Summary | None:
    if not values:
        return None
    if len(values) == 1:
        (v,) = values
        return Summary(1, v, v, v, v, 0.0)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(
        n=len(values),
        median=statistics.median(values),
        q1=q1,
        q3=q3,
        mean=statistics.fmean(values),
        stdev=statistics.stdev(values),
    )


@dataclass(frozen=True)
class Comparison:
    """B relative to A: `change` is B/A - 1 (-0.23 means B is 23% lower)."""

    n_a: int
    n_b: int
    change: float
    low: float
    high: float
    p_value: float
    confidence: float = CONFIDENCE
    method: str = "welch"  # or "paired": t-test on log(B/A) of runs made side by side
    # The coverage of this one interval: the confidence, or a sequential design's
    # stricter nominal level that keeps `confidence` over all its looks.
    level: float = CONFIDENCE

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "change": self.change,
            "ci_low": self.low,
            "ci_high": self.high,
            "confidence": self.confidence,
            "p_value": self.p_value,
            "significant": self.significant,
            "method": self.method,
            "pairs": self.n_a,
            "nominal_level": self.level,
        }

    def interval(self) -> str:
        """'95% CI −4.0% to +6.0%'."""
        low, high = _pct(self.low, signed=True), _pct(self.high, signed=True)
        return f"{self.confidence:.0%} CI {low} to {high}"

    def verdict(
        self, quantity: str, verb: str = "uses", names: tuple[str, ...] = ("A", "B")
    ) -> str:
        """Plain words: 'B uses 23% less energy (95% CI 19–27%)' or no clear difference;
        `names` say which is which where A and B ran in different environments."""
        a, b = names
        level = f"{self.confidence:.0%}"
        if not self.significant:
            return f"No clear difference in {quantity} at this sample size ({self.interval()})."
        word = "less" if self.change < 0 else "more"
        bounds = sorted([abs(self.low), abs(self.high)])
        return (
            f"{b} {verb} {_pct(abs(self.change))} {word} {quantity} than {a} "
            f"({level} CI {_pct(bounds[0])}–{_pct(bounds[1])})."
        )


def signed_percent(value: float) -> str:
    """'+9.2%', '−23%'."""
    return _pct(value, signed=True)


def _pct(value: float, signed: bool = False) -> str:
    digits = 1 if abs(value) < 0.1 else 0
    text = f"{value * 100:+.{digits}f}%" if signed else f"{value * 100:.{digits}f}%"
    return text.replace("-", "−")


def compare(a: list[float], b: list[float], confidence: float = CONFIDENCE) -> Comparison | None:
    """Welch's t-test on log values; None when either side has fewer than 2 positives."""
    log_a = [math.log(v) for v in a if v > 0]
    log_b = [math.log(v) for v in b if v > 0]
    if len(log_a) < 2 or len(log_b) < 2:
        return None
    mean_a, mean_b = statistics.fmean(log_a), statistics.fmean(log_b)
    var_a, var_b = statistics.variance(log_a), statistics.variance(log_b)
    se2_a, se2_b = var_a / len(log_a), var_b / len(log_b)
    diff = mean_b - mean_a
    se = math.sqrt(se2_a + se2_b)
    if se == 0:  # no spread at all: the difference is exact
        change = math.expm1(diff)
        p_value = 1.0 if diff == 0 else 0.0
        return Comparison(len(a), len(b), change, change, change, p_value, confidence)
    # Welch–Satterthwaite degrees of freedom.
    df = (se2_a + se2_b) ** 2 / (se2_a**2 / (len(log_a) - 1) + se2_b**2 / (len(log_b) - 1))
    t = diff / se
    p_value = 2 * (1 - t_cdf(abs(t), df))
    margin = t_ppf(1 - (1 - confidence) / 2, df) * se
    return Comparison(
        n_a=len(log_a),
        n_b=len(log_b),
        change=math.expm1(diff),
        low=math.expm1(diff - margin),
        high=math.expm1(diff + margin),
        p_value=p_value,
        confidence=confidence,
    )


def compare_paired(
    pairs: list[tuple[float, float]],
    confidence: float = CONFIDENCE,
    interval: float | None = None,
) -> Comparison | None:
    """Paired t-test on log(B/A) of runs made back to back.

    Interleaving A, B, A, B puts each pair in the same moment of the machine; its speed
    drifts (on shared VMs by tens of percent within seconds), and pairing takes that
    drift out of the comparison where Welch's test would count it as noise.

    `interval` is the coverage of one look's interval where it differs from the
    `confidence` it stands for (a sequential design's nominal level, see `decide`).
    """
    level = confidence if interval is None else interval
    ratios = _log_ratios(pairs)
    if len(ratios) < 2:
        return None
    n = len(ratios)
    mean = statistics.fmean(ratios)
    se = statistics.stdev(ratios) / math.sqrt(n)
    if se == 0:
        change = math.expm1(mean)
        return Comparison(
            n, n, change, change, change, 1.0 if mean == 0 else 0.0, confidence, "paired", level
        )
    df = n - 1
    p_value = 2 * (1 - t_cdf(abs(mean / se), df))
    margin = t_ppf(1 - (1 - level) / 2, df) * se
    return Comparison(
        n_a=n,
        n_b=n,
        change=math.expm1(mean),
        low=math.expm1(mean - margin),
        high=math.expm1(mean + margin),
        p_value=p_value,
        confidence=confidence,
        method="paired",
        level=level,
    )


def _log_ratios(pairs: list[tuple[float, float]]) -> list[float]:
    """log(B/A) of each pair both of whose figures are positive."""
    return [math.log(b / a) for a, b in pairs if a > 0 and b > 0]


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1 - tail if t > 0 else tail


@functools.lru_cache(maxsize=1024)
def t_ppf(p: float, df: float) -> float:
    """The t with P(T <= t) = p (bisection, remembered: comparisons ask for the same
    few levels and degrees of freedom again and again)."""
    low, high = -1e3, 1e3
    for _ in range(200):
        mid = (low + high) / 2
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1 + aa * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-12:
            break
    return h


# --- run until clear: a group-sequential design ---------------------------------------
#
# A comparison looks at its pairs after every round (ROUND_PAIRS pairs) and stops as soon
# as the answer is clear, up to its cap. Looking again and again at a test at 5% would
# call noise a difference far more often than 5% of the time (six looks: ~12%), so every
# look tests at one stricter nominal level (Pocock's design), chosen so that all the
# looks together keep 5%; and the interval shown at a look is a repeated confidence
# interval, at that same level: it covers the true difference with 95% probability
# whenever the comparison stops.

ROUND_PAIRS = 5
# "Clear" is also "the same within this much": an interval inside ±5% settles it.
EQUIVALENCE_MARGIN = 0.05
# The nominal level of each of K looks taken every ROUND_PAIRS pairs. Pocock's levels
# come from normal theory (z = 2.178, 2.289, 2.361, 2.413, 2.453 for K = 2..6: 0.0294
# ... 0.0142) and give 5.3-5.4% with t-tests on 5, 10, ... pairs; these are calibrated
# for the t-test, so that the looks together keep 5.0% (a million simulated comparisons
# per K: `benchmarks/sequential.py` recomputes them). A last look after a shorter round
# is more correlated with the one before it, so the same level is on the safe side.
NOMINAL_LEVELS = {1: 0.0500, 2: 0.0277, 3: 0.0205, 4: 0.0169, 5: 0.0146, 6: 0.0131}

DIFFERENT, SAME, UNSETTLED, CONTINUE = "different", "same", "unsettled", "continue"


def looks(max_pairs: int) -> list[int]:
    """After how many pairs a comparison of at most `max_pairs` pairs looks."""
    return sorted({*range(ROUND_PAIRS, max_pairs, ROUND_PAIRS), max_pairs})


def nominal_level(n_looks: int) -> float:
    """The two-sided significance level of each of `n_looks` looks (5% at one)."""
    return NOMINAL_LEVELS[n_looks]


@dataclass(frozen=True)
class Decision:
    """What a look at a comparison's pairs says: different, the same (within the
    margin), not settled at the cap, or not yet (more pairs to come)."""

    outcome: str
    comparison: Comparison | None
    pairs: int  # the pairs this look counted
    look: int  # after how many pairs of the schedule it was taken
    max_pairs: int

    @property
    def clear(self) -> bool:
        return self.outcome in (DIFFERENT, SAME)

    def verdict(
        self, quantity: str = "energy", verb: str = "uses", names: tuple[str, ...] = ("A", "B")
    ) -> str:
        """The comparison's headline, in plain words."""
        a, b = names
        c = self.comparison
        if c is None:
            return "The verdict comes once two A/B pairs have both succeeded."
        interval = c.interval()
        if self.outcome == DIFFERENT:
            return c.verdict(quantity, verb, names)
        if self.outcome == SAME:
            return (
                f"{a} and {b} {verb.removesuffix('s')} the same {quantity} within "
                f"±{EQUIVALENCE_MARGIN:.0%} ({interval})."
            )
        if self.outcome == UNSETTLED:
            return (
                f"No clear difference in {quantity} after {self.pairs} pairs: {b} against {a} is "
                f"somewhere from {_pct(c.low, signed=True)} to {_pct(c.high, signed=True)} "
                f"({c.confidence:.0%} CI)."
            )
        return (
            f"Not clear yet after {self.pairs} pairs ({interval} so far): more pairs are "
            f"running, up to {self.max_pairs}."
        )


def decide(
    pairs: list[tuple[float, float]], look: int, max_pairs: int, comparisons: int = 1
) -> Decision:
    """The sequential rule at the look taken after `look` pairs of at most `max_pairs`:
    `pairs` are the (A, B) figures of the complete pairs up to that look. One of
    `comparisons` made at once (each variant of an N-way comparison against A) tests
    at its share of the error (Bonferroni), so that all of them together call a
    difference that is not there at most 5% of the time."""
    schedule = looks(max_pairs)
    level = 1 - nominal_level(len(schedule)) / comparisons
    comparison = compare_paired(pairs, interval=level)
    last = look >= max_pairs
    if comparison is None:
        outcome = UNSETTLED if last else CONTINUE
    elif comparison.significant:
        outcome = DIFFERENT
    elif comparison.low >= -EQUIVALENCE_MARGIN and comparison.high <= EQUIVALENCE_MARGIN:
        outcome = SAME
    else:
        outcome = UNSETTLED if last else CONTINUE
    return Decision(outcome, comparison, len(pairs), look, max_pairs)


def drift(pairs: list[tuple[float, float]]) -> tuple[float, float] | None:
    """B against A in the first and in the second half of the pairs, where the log
    ratio trends with the pair's order (a regression slope with p < 0.01): the
    difference moved while the comparison ran. None where it did not."""
    ratios = _log_ratios(pairs)
    n = len(ratios)
    if n < 6:
        return None
    xs = range(n)
    mean_x, mean_y = (n - 1) / 2, statistics.fmean(ratios)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ratios, strict=True)) / sxx
    residual = sum(
        (y - mean_y - slope * (x - mean_x)) ** 2 for x, y in zip(xs, ratios, strict=True)
    )
    if residual == 0:
        return None
    se = math.sqrt(residual / (n - 2) / sxx)
    if 2 * (1 - t_cdf(abs(slope / se), n - 2)) >= 0.01:
        return None
    half = n // 2
    return math.expm1(statistics.fmean(ratios[:half])), math.expm1(statistics.fmean(ratios[half:]))


def agreeing(pairs: list[tuple[float, float]], change: float) -> tuple[int, int]:
    """How many pairs point the way of `change` (B higher if positive), of how many."""
    ratios = _log_ratios(pairs)
    return sum(1 for r in ratios if (r > 0) == (change > 0) and r != 0), len(ratios)


# A clear verdict with this share of its pairs or more pointing the other way rests
# on a small difference against a wide spread between pairs: it is called fragile.
DISAGREEING_SHARE = 1 / 3
