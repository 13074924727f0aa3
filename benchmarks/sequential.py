"""Run until clear, simulated: the stopping rule's own error rates, with no sandbox.

1. Recomputes the nominal level of each look (runs.figures.stats.NOMINAL_LEVELS) for K looks
   every ROUND_PAIRS pairs: the one level at which a million simulated comparisons of
   identical snippets (normal noise on log(B/A)) are called different 5.0% of the time
   by paired t-tests at every look.
2. Runs `stats.decide` itself, look by look, on simulated pairs: how often identical
   snippets are called different, and how many pairs a 10% difference takes, at a
   quiet host's spread and at this kind of VM's.

Needs numpy (requirements-dev.txt).
"""

import random
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import line

from runs.figures import stats

TRIALS = 1_000_000


def false_positive_rate(level: float, schedule: list[int], draws: np.ndarray) -> float:
    """Share of the simulated comparisons a paired t-test at `level` calls different
    at any look of `schedule`."""
    sums, squares = np.cumsum(draws, axis=1), np.cumsum(draws**2, axis=1)
    called = np.zeros(len(draws), dtype=bool)
    for n in schedule:
        mean = sums[:, n - 1] / n
        variance = (squares[:, n - 1] - n * mean**2) / (n - 1)
        t = mean / np.sqrt(variance / n)
        called |= np.abs(t) > stats.t_ppf(1 - level / 2, n - 1)
    return float(called.mean())


def calibrate(looks: int, draws: np.ndarray) -> float:
    schedule = [stats.ROUND_PAIRS * k for k in range(1, looks + 1)]
    low, high = 0.005, 0.05
    for _ in range(30):
        middle = (low + high) / 2
        if false_positive_rate(middle, schedule, draws) > 0.05:
            high = middle
        else:
            low = middle
    return low


def run_until_clear(rng: random.Random, change: float, spread: float) -> stats.Decision:
    cap = 30
    pairs: list[tuple[float, float]] = []
    for look in stats.looks(cap):
        while len(pairs) < look:
            pairs.append((1.0, (1 + change) * rng.lognormvariate(0, spread)))
        decision = stats.decide(pairs, look, cap)
        if decision.outcome != stats.CONTINUE:
            return decision
    return decision


def main() -> None:
    print("Run until clear, simulated (runs.figures.stats.decide)")
    draws = np.random.default_rng(12345).standard_normal((TRIALS, 30))
    for looks, level in sorted(stats.NOMINAL_LEVELS.items()):
        found = calibrate(looks, draws)
        line(
            f"nominal level of {looks} look(s), recomputed",
            f"{found:.4f}",
            f"= {level:.4f} ± 0.0005",
            abs(found - level) <= 0.0005,
        )
    rng = random.Random(7)
    for spread in (0.03, 0.10):
        decisions = [run_until_clear(rng, 0.0, spread) for _ in range(20_000)]
        share = sum(d.outcome == stats.DIFFERENT for d in decisions) / len(decisions)
        line(
            f"identical snippets called different, spread {spread:.0%} (20,000 trials)",
            f"{share:.2%}",
            "<= 5%",
            share <= 0.05,
        )
        decisions = [run_until_clear(rng, 0.10, spread) for _ in range(2_000)]
        pairs = statistics.median(
            d.pairs if d.outcome == stats.DIFFERENT else 99 for d in decisions
        )
        print(f"  a 10% difference at spread {spread:.0%}: called after {pairs:g} pairs (median)")


if __name__ == "__main__":
    main()
