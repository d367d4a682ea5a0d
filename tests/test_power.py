"""Power of the findings' tests (rmteacher.power): the Welch seeds against textbook values and a hand-computed
normal approximation, a Monte Carlo check of the noncentral t, the resampled Spearman test against the permutation
test of rmteacher.significance, and the cases where no number of seeds is the answer."""

import math

import numpy as np
import pytest
from scipy import stats

from rmteacher.power import (
    TARGET_POWER,
    difference_seeds_needed,
    resampled_power,
    spearman_critical,
    spearman_p_values,
    spearman_seeds_needed,
    welch_power,
    welch_seeds_needed,
    with_power,
)
from rmteacher.significance import (
    Power,
    SeedInterval,
    correlation_with_uncertainty,
    finding_low_variance_vs_ground_truth,
    increase_interval,
)


def interval(mean: float, std: float, seeds: int = 8) -> SeedInterval:
    return SeedInterval(mean, std, math.nan, math.nan, 0.95, seeds, defined=seeds >= 2)


# ------------------------------------------------------------------------------------------------------- Welch


@pytest.mark.parametrize(("d", "textbook"), [(0.5, 51), (0.8, 21), (1.0, 14)])
def test_welch_seeds_match_the_textbook_two_sample_t(d: float, textbook: int) -> None:
    """Equal stds and equal n: Welch's df is Student's 2(n - 1), so the seeds per arm are the two-sample t-test's
    at Cohen's d, one-sided alpha 0.05, power 0.8: 51, 21 and 14 (G*Power; Cohen 1988, Table 2.4.1 gives 50, 20
    and 13 from its normal approximation plus a correction)."""
    power = welch_seeds_needed(interval(0.0, 1.0), interval(d, 1.0))
    assert (power.status, power.seeds_needed) == ("reached", textbook)
    assert power.power is not None and TARGET_POWER <= power.power < 0.83
    # Guenther's (1981) normal approximation by hand, n = 2 (z_0.95 + z_0.8)^2 / d^2 + z_0.95^2 / 4 rounded up,
    # is the exact answer or one seed short of it.
    z_alpha, z_beta = 1.6448536, 0.8416212
    approximation = math.ceil(2 * (z_alpha + z_beta) ** 2 / d**2 + z_alpha**2 / 4)
    assert 0 <= power.seeds_needed - approximation <= 1


def test_welch_power_by_hand_at_two_seeds() -> None:
    # s_a = s_b = 1, effect 2, n = 2: df = 1 * 4 / 2 = 2, noncentrality 2 / sqrt(2 / 2) = 2, critical t_{0.95, 2}.
    expected = stats.nct.sf(stats.t.ppf(0.95, 2), 2, 2.0)
    assert welch_power(2.0, 1.0, 1.0, [2])[0] == pytest.approx(expected)
    # The noncentral t by its definition, (Z + 2) / sqrt(chi2_2 / 2), sampled: 0.384.
    rng = np.random.default_rng(0)
    draws = (rng.standard_normal(400_000) + 2.0) / np.sqrt(rng.chisquare(2, 400_000) / 2)
    assert welch_power(2.0, 1.0, 1.0, [2])[0] == pytest.approx(np.mean(draws > 2.919986), abs=0.003)


def test_welch_power_agrees_with_a_monte_carlo_of_the_test() -> None:
    """Unequal stds, the study's scale: the predicted power at the seeds found matches simulated Welch tests."""
    low, truth = interval(0.038, 0.022), interval(0.056, 0.026)
    power = welch_seeds_needed(low, truth)
    assert power.status == "reached" and power.seeds_needed is not None
    n, rng, trials = power.seeds_needed, np.random.default_rng(0), 4000
    a = rng.normal(low.mean, low.std, size=(trials, n))
    b = rng.normal(truth.mean, truth.std, size=(trials, n))
    rejected = stats.ttest_ind(a, b, axis=1, equal_var=False, alternative="less").pvalue < 0.05
    assert rejected.mean() == pytest.approx(power.power, abs=0.03)  # 3 standard errors of 4000 trials
    fewer = stats.ttest_ind(a[:, : n - 4], b[:, : n - 4], axis=1, equal_var=False, alternative="less").pvalue
    assert (fewer < 0.05).mean() < TARGET_POWER


def test_welch_cases_without_a_number() -> None:
    assert welch_seeds_needed(interval(0.2, 0.1), interval(0.1, 0.1)).status == "other way"
    assert welch_seeds_needed(interval(0.1, math.nan, 1), interval(0.2, math.nan, 1)).status == "too few seeds"
    assert welch_seeds_needed(interval(0.0, 1.0), interval(0.01, 1.0), max_seeds=50).cell() == "> 50"
    exact = welch_seeds_needed(interval(0.1, 0.0), interval(0.2, 0.0))  # no spread: two seeds decide
    assert (exact.status, exact.seeds_needed) == ("reached", 2)
    # A Bonferroni-adjusted test needs more seeds: its raw p must pass alpha / 5.
    plain = welch_seeds_needed(interval(0.0, 1.0), interval(0.5, 1.0))
    adjusted = welch_seeds_needed(interval(0.0, 1.0), interval(0.5, 1.0), alpha=0.01)
    assert adjusted.seeds_needed is not None and plain.seeds_needed is not None
    assert adjusted.seeds_needed > plain.seeds_needed
    with pytest.raises(ValueError, match=r"seeds must have shape \[k\] with every value >= 2"):
        welch_power(1.0, 1.0, 1.0, [1, 2])


def test_power_sentences_and_cells() -> None:
    reached = welch_seeds_needed(interval(0.0, 1.0), interval(0.5, 1.0))
    assert reached.cell() == "51"
    assert reached.text() == (
        "At the observed effect (gap +0.500, 0.50 seed stds) its test would reach 80% power with 51 seeds per reward "
        "model (noncentral t at the observed means and stds, alpha 0.05)."
    )
    other = welch_seeds_needed(interval(0.2, 0.1), interval(0.1, 0.1))
    assert other.text() == "The observed effect points the other way (gap -0.100)."
    finding = with_power(finding_low_variance_vs_ground_truth([0.1, 0.2], [0.12, 0.25]), reached)
    assert finding.sentence.endswith(": inconclusive at this budget. " + reached.text())
    assert finding.to_dict()["power"]["seeds_needed"] == 51
    assert Power(**finding.to_dict()["power"]) == reached  # the report rebuilds it from analysis.json


# ------------------------------------------------------------------------------------------- resampling seeds


def test_spearman_p_values_agree_with_the_permutation_test() -> None:
    rng = np.random.default_rng(1)
    for models in (4, 6):
        x = rng.normal(size=models)
        y = rng.normal(size=(models, 3)) + x[:, None]
        expected = correlation_with_uncertainty(x, y, method="spearman", num_resamples=10).p_positive
        assert spearman_p_values(x, y.mean(axis=1)[None])[0] == pytest.approx(expected)


def test_spearman_critical_values_by_hand() -> None:
    # Over 6 models Spearman 0.829 is the textbook one-sided 5% critical value (29 of the 720 orderings reach it:
    # p = 0.029 < 0.05, the next value down, 0.771, has p = 0.051); over 5 models 0.9 (p = 5/120 = 0.042).
    assert spearman_critical(6) == pytest.approx(29 / 35)
    assert spearman_critical(5) == pytest.approx(0.9)
    assert spearman_critical(3) == math.inf  # 3! = 6 orderings: p >= 1/6 always


def test_spearman_seeds_needed() -> None:
    rng = np.random.default_rng(0)
    x = np.arange(6.0)
    y = 0.1 * x[:, None] + rng.normal(0, 0.3, size=(6, 8))  # Spearman of the means 0.89: passes, noisily
    power = spearman_seeds_needed(x, y)
    assert power.status == "reached" and power.seeds_needed is not None and power.power is not None
    assert power.power >= TARGET_POWER

    # The search's answer is the first number of seeds whose resampled power reaches the target.
    def rejects(drawn: np.ndarray) -> np.ndarray:
        return spearman_p_values(x, drawn.mean(axis=-1)) < 0.05

    previous = power.seeds_needed - 1
    assert resampled_power(y, previous, rejects, num_resamples=400) < TARGET_POWER
    assert resampled_power(y, power.seeds_needed, rejects, num_resamples=400) == pytest.approx(power.power)
    # Seed means ranked 0.60 against the variance: no number of seeds passes a test that needs 0.83 over 6 models.
    flat = np.array([[0.1, 0.1], [0.3, 0.3], [0.2, 0.2], [0.5, 0.5], [0.6, 0.6], [0.4, 0.4]])
    stuck = spearman_seeds_needed(x, flat)
    assert stuck.status == "not by seeds" and "needs Spearman >= 0.83 for p < 0.05" in stuck.note
    assert stuck.cell() == "not by more seeds (needs more reward models)"
    assert spearman_seeds_needed(x, -y).status == "other way"
    assert spearman_seeds_needed(x, 0.1 * x[:, None]).status == "too few seeds"  # passes, but one seed


def test_difference_seeds_needed() -> None:
    x = np.arange(6.0)
    accuracy = np.array([5.0, 0.0, 4.0, 1.0, 3.0, 2.0])
    y = np.array([[v, v + 0.01] for v in x])
    power = difference_seeds_needed(x, accuracy, y, num_resamples=50, inner_resamples=200)
    assert power.status in ("reached", "not by seeds") and power.effect > 0
    assert difference_seeds_needed(accuracy, x, y, num_resamples=20).status == "other way"


def test_increase_interval_feeds_welch() -> None:
    a, b = increase_interval([0.1, 0.12, 0.14]), increase_interval([0.15, 0.16, 0.2])
    assert welch_seeds_needed(a, b).effect == pytest.approx(b.mean - a.mean)
