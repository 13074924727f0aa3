"""Statistics for repeated runs: summaries, and A/B comparisons that refuse to call noise.

Pure Python (no SciPy): the only non-trivial piece is Student's t distribution, from
the regularised incomplete beta function (Numerical Recipes' continued fraction).

A comparison works on logarithms: energy and time are positive and their noise is
multiplicative, so a t-test on log values compares geometric means, and its interval
turns back into a percentage difference "B vs A". Runs interleaved A, B, A, B are
compared in pairs (paired t-test on log(B/A)). Welch's test on unpaired samples is
kept as the benchmarks' reference: `make bench` shows what pairing gains over it.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

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

    def as_dict(self) -> dict:
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

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {
            "change": self.change,
            "ci_low": self.low,
            "ci_high": self.high,
            "confidence": self.confidence,
            "p_value": self.p_value,
            "significant": self.significant,
            "method": self.method,
            "pairs": self.n_a,
        }

    def verdict(self, quantity: str, verb: str = "uses") -> str:
        """Plain words: 'B uses 23% less energy (95% CI 19–27%)' or no clear difference."""
        level = f"{self.confidence:.0%}"
        if not self.significant:
            return (
                f"No clear difference in {quantity} at this sample size "
                f"({level} CI {_pct(self.low, signed=True)} to {_pct(self.high, signed=True)})."
            )
        word = "less" if self.change < 0 else "more"
        bounds = sorted([abs(self.low), abs(self.high)])
        return (
            f"B {verb} {_pct(abs(self.change))} {word} {quantity} than A "
            f"({level} CI {_pct(bounds[0])}–{_pct(bounds[1])})."
        )


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
    pairs: list[tuple[float, float]], confidence: float = CONFIDENCE
) -> Comparison | None:
    """Paired t-test on log(B/A) of runs made back to back.

    Interleaving A, B, A, B puts each pair in the same moment of the machine; its speed
    drifts (on shared VMs by tens of percent within seconds), and pairing takes that
    drift out of the comparison where Welch's test would count it as noise.
    """
    ratios = _log_ratios(pairs)
    if len(ratios) < 2:
        return None
    n = len(ratios)
    mean = statistics.fmean(ratios)
    se = statistics.stdev(ratios) / math.sqrt(n)
    if se == 0:
        change = math.expm1(mean)
        return Comparison(
            n, n, change, change, change, 1.0 if mean == 0 else 0.0, confidence, "paired"
        )
    df = n - 1
    p_value = 2 * (1 - t_cdf(abs(mean / se), df))
    margin = t_ppf(1 - (1 - confidence) / 2, df) * se
    return Comparison(
        n_a=n,
        n_b=n,
        change=math.expm1(mean),
        low=math.expm1(mean - margin),
        high=math.expm1(mean + margin),
        p_value=p_value,
        confidence=confidence,
        method="paired",
    )


def _log_ratios(pairs: list[tuple[float, float]]) -> list[float]:
    """log(B/A) of each pair both of whose figures are positive."""
    return [math.log(b / a) for a, b in pairs if a > 0 and b > 0]


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The t with P(T <= t) = p (bisection: plenty fast for a handful of calls)."""
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


# The power a comparison aims at when it says how many more pairs would settle it.
SETTLING_POWER_Z = 0.8416  # 80% power
SETTLING_CONFIDENCE_Z = 1.96  # 95% two-sided


def pairs_to_settle(pairs: list[tuple[float, float]]) -> int | None:
    """About how many pairs in all would show the observed difference at 95% confidence
    (80% power), at the observed spread; None with no difference at all to show."""
    ratios = _log_ratios(pairs)
    if len(ratios) < 2:
        return None
    mean, spread = statistics.fmean(ratios), statistics.stdev(ratios)
    if mean == 0:
        return None
    needed = ((SETTLING_CONFIDENCE_Z + SETTLING_POWER_Z) * spread / abs(mean)) ** 2
    return max(math.ceil(needed), len(ratios) + 1)
