"""The statistics behind repeats and comparisons, on inputs whose answer is known."""

import random

import pytest

from runs import stats


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
