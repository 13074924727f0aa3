"""The statistics behind repeats and comparisons, on inputs whose answer is known."""

import random

import pytest

from runs.figures import stats


def test_t_distribution_matches_published_tables():
    # Two-sided 95% critical values: df=1 12.706, df=9 2.262, df=30 2.042, large 1.960.
    assert stats.t_ppf(0.975, 1) == pytest.approx(12.706, abs=1e-3)
    assert stats.t_ppf(0.975, 9) == pytest.approx(2.262, abs=1e-3)
    assert stats.t_ppf(0.975, 30) == pytest.approx(2.042, abs=1e-3)
    assert stats.t_ppf(0.975, 1e6) == pytest.approx(1.960, abs=1e-3)
    assert stats.t_cdf(0, 5) == pytest.approx(0.5)
    assert stats.t_cdf(2.015, 5) == pytest.approx(0.95, abs=1e-3)


def test_summary_gives_median_and_spread():
    summary = stats.summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert summary.n == 5
    assert summary.median == 3.0  # one outlier does not decide
    assert (summary.q1, summary.q3) == (2.0, 4.0)
    assert summary.iqr == 2.0
    assert stats.summarize([]) is None
    single = stats.summarize([7.0])
    assert (single.median, single.iqr, single.cv) == (7.0, 0.0, 0.0)


def test_identical_samples_show_no_difference():
    result = stats.compare([1.0, 1.02, 0.98, 1.01, 0.99], [1.0, 1.02, 0.98, 1.01, 0.99])
    assert result.change == pytest.approx(0.0, abs=1e-12)
    assert not result.significant
    assert result.p_value == pytest.approx(1.0)
    assert result.verdict("energy").startswith("No clear difference in energy")


def test_a_clear_shift_is_called_with_the_right_sign():
    rng = random.Random(1)
    a = [1.0 * (1 + rng.gauss(0, 0.02)) for _ in range(10)]
    b = [0.77 * (1 + rng.gauss(0, 0.02)) for _ in range(10)]
    lower = stats.compare(a, b)
    assert lower.significant and lower.p_value < 0.001
    assert lower.change == pytest.approx(-0.23, abs=0.02)
    assert lower.low < lower.change < lower.high < 0
    assert lower.verdict("energy").startswith("B uses 23% less energy than A (95% CI")

    higher = stats.compare(b, a)
    assert higher.change > 0 and higher.significant
    assert " more energy than A" in higher.verdict("energy")


def test_noise_is_not_called_a_difference_more_than_5_percent_of_the_time():
    rng = random.Random(7)
    called = 0
    for _ in range(400):
        a = [1 + rng.gauss(0, 0.05) for _ in range(10)]
        b = [1 + rng.gauss(0, 0.05) for _ in range(10)]
        called += stats.compare(a, b).significant
    assert called / 400 <= 0.07  # nominal 5%, with room for sampling error


def test_too_few_values_give_no_comparison():
    assert stats.compare([1.0], [1.0, 2.0]) is None
    assert stats.compare([0.0, 0.0], [1.0, 2.0]) is None


def test_pairs_cancel_a_drift_that_hides_the_difference_from_welch():
    # The machine's speed drifts by ±25% between pairs; B always does 10% more work.
    rng = random.Random(3)
    pairs = []
    for _ in range(10):
        speed = rng.uniform(0.75, 1.25)
        pairs.append((speed * (1 + rng.gauss(0, 0.01)), 1.1 * speed * (1 + rng.gauss(0, 0.01))))
    paired = stats.compare_paired(pairs)
    assert paired.method == "paired" and paired.significant
    assert paired.change == pytest.approx(0.10, abs=0.02)
    assert " more energy than A (95% CI " in paired.verdict("energy")
    welch = stats.compare([a for a, _ in pairs], [b for _, b in pairs])
    assert not welch.significant


def test_identical_pairs_show_no_difference_and_noise_is_rarely_called():
    assert not stats.compare_paired([(1.0, 1.0), (2.0, 2.0)]).significant
    rng = random.Random(11)
    called = sum(
        stats.compare_paired(
            [(1 + rng.gauss(0, 0.05), 1 + rng.gauss(0, 0.05)) for _ in range(10)]
        ).significant
        for _ in range(400)
    )
    assert called / 400 <= 0.07
    assert stats.compare_paired([(1.0, 2.0)]) is None


# --- run until clear ------------------------------------------------------------------


def test_a_comparison_looks_after_every_round_and_at_its_cap():
    assert stats.looks(30) == [5, 10, 15, 20, 25, 30]
    assert stats.looks(12) == [5, 10, 12]
    assert stats.looks(3) == [3]
    # One look is an ordinary test; more looks, a stricter level each.
    assert stats.nominal_level(1) == 0.05
    levels = [stats.nominal_level(k) for k in range(1, len(stats.looks(30)) + 1)]
    assert levels == sorted(levels, reverse=True)


def pairs_with(ratios: list[float]) -> list[tuple[float, float]]:
    return [(1.0, ratio) for ratio in ratios]


def test_each_look_says_different_same_not_yet_or_not_settled():
    different = stats.decide(pairs_with([1.3, 1.31, 1.29, 1.3, 1.32]), 5, 30)
    assert different.outcome == stats.DIFFERENT and different.clear
    assert different.verdict().startswith("B uses 30% more energy than A (95% CI")
    same = stats.decide(pairs_with([1.001, 0.999, 1.002, 0.998, 1.0]), 5, 30)
    assert same.outcome == stats.SAME
    assert same.verdict().startswith("A and B use the same energy within ±5% (95% CI")
    noisy = pairs_with([1.2, 0.8, 1.1, 0.9, 1.05])
    assert stats.decide(noisy, 5, 30).outcome == stats.CONTINUE
    assert stats.decide(noisy, 5, 30).verdict().startswith("Not clear yet after 5 pairs")
    assert stats.decide(noisy, 5, 5).outcome == stats.UNSETTLED
    # The interval at a look of six is wider than an ordinary 95% one: it must hold
    # wherever the comparison stops.
    single = stats.compare_paired(noisy)
    sequential = stats.decide(noisy, 5, 30).comparison
    assert sequential.high - sequential.low > single.high - single.low
    assert sequential.confidence == 0.95 and sequential.level > 0.98


def run_until_clear(rng: random.Random, change: float, spread: float) -> stats.Decision:
    pairs: list[tuple[float, float]] = []
    for look in stats.looks(30):
        while len(pairs) < look:
            pairs.append((1.0, (1 + change) * rng.lognormvariate(0, spread)))
        decision = stats.decide(pairs, look, 30)
        if decision.outcome != stats.CONTINUE:
            break
    return decision


def test_looking_again_and_again_still_calls_noise_a_difference_at_most_5_percent():
    # Without the stricter levels, six looks at 5% would call ~12% of these different.
    rng = random.Random(20261205)
    trials = 5000
    called = sum(run_until_clear(rng, 0.0, 0.10).outcome == stats.DIFFERENT for _ in range(trials))
    assert called / trials <= 0.05 + 2.5 * (0.05 * 0.95 / trials) ** 0.5


def test_a_ten_percent_difference_is_found_at_a_vms_spread():
    rng = random.Random(3)
    decisions = [run_until_clear(rng, 0.10, 0.10) for _ in range(300)]
    found = [d for d in decisions if d.outcome == stats.DIFFERENT]
    assert len(found) / len(decisions) >= 0.9
    assert all(d.comparison.change > 0 for d in found)


def test_a_difference_that_moved_and_pairs_that_disagree_are_found():
    steady = pairs_with([1.1, 1.12, 1.09, 1.11, 1.1, 1.1, 1.08, 1.12])
    assert stats.drift(steady) is None
    moving = pairs_with([1.0, 1.01, 0.99, 1.02, 1.3, 1.31, 1.29, 1.32])
    first, second = stats.drift(moving)
    assert first == pytest.approx(0.005, abs=0.01) and second == pytest.approx(0.305, abs=0.01)
    assert stats.agreeing(steady, 0.1) == (8, 8)
    split = pairs_with([1.3, 1.25, 0.98, 1.2, 0.97, 1.28, 0.99])
    assert stats.agreeing(split, 0.1) == (4, 7)
