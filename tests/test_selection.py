"""rmteacher.selection: keep rules and the noise estimate, against values computed by hand and a Monte Carlo run."""

import math

import numpy as np
import pytest

from rmteacher.selection import (
    BetaPrior,
    KeepRule,
    expected_wrongly_dropped,
    fit_beta_prior,
    flat_probability,
    keep_prompts,
    kept_counts,
    posterior_variance,
    split_half,
    successes,
    zero_variance,
)


def test_zero_variance_is_decided_on_the_rewards_as_given() -> None:
    rewards = [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.1, 0.1, 0.1], [0.3, 0.3, 0.30000000000000004]]
    assert zero_variance(rewards).tolist() == [True, False, True, False]


def test_keep_rules_by_hand() -> None:
    variance = np.array([0.0, 2.0, 2.0, 1.0])
    flat = np.array([True, False, False, False])
    assert keep_prompts(variance, flat, KeepRule("nonzero")).tolist() == [False, True, True, True]
    assert keep_prompts(variance, flat, KeepRule("min_variance", 1.0)).tolist() == [False, True, True, True]  # >=
    assert keep_prompts(variance, flat, KeepRule("min_variance", 1.5)).tolist() == [False, True, True, False]
    assert keep_prompts(variance, flat, KeepRule("top_fraction", 0.5)).tolist() == [False, True, True, False]
    # ceil(0.6 * 4) = 3 prompts
    assert keep_prompts(variance, flat, KeepRule("top_fraction", 0.6)).tolist() == [False, True, True, True]
    assert keep_prompts(variance, flat, KeepRule("top_fraction", 1.0)).all()
    # ties at the cut: the earlier prompts win
    assert keep_prompts(np.ones(4), np.zeros(4, bool), KeepRule("top_fraction", 0.5)).tolist() == [
        True, True, False, False,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "value", "match"),
    [
        ("top_fraction", 0.0, r"top_fraction must be in \(0, 1\]; got 0.0"),
        ("top_fraction", 1.5, r"top_fraction must be in \(0, 1\]; got 1.5"),
        ("min_variance", 0.0, "min_variance must be a finite number > 0; got 0.0"),
        ("min_variance", math.inf, "min_variance must be a finite number > 0; got inf"),
        ("nonzero", 1.0, "takes no value"),
    ],
)
def test_bad_rules(kind: str, value: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KeepRule(kind, value)  # type: ignore[arg-type]


def test_keep_prompts_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"variance has shape \(3,\) but flat has shape \(2,\)"):
        keep_prompts(np.zeros(3), np.zeros(2, bool), KeepRule("nonzero"))


def test_flat_probability_by_hand() -> None:
    assert flat_probability(0.5, 4) == pytest.approx(2 / 16)
    assert flat_probability(0.2, 3) == pytest.approx(0.008 + 0.512)
    assert flat_probability([0.0, 1.0], 5).tolist() == [1.0, 1.0]


def test_successes_of_a_two_valued_reward() -> None:
    counts, low, high = successes([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])  # type: ignore[misc]
    assert counts.tolist() == [2, 0] and (low, high) == (0.0, 1.0)
    assert successes([[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]]) is None  # three values
    assert successes([[1.0, 1.0], [1.0, 1.0]]) is None  # constant


def test_kept_counts_by_hand() -> None:
    # Normalized values one step of 2 apart: a prompt with s of 4 successes has variance 4 (s/4)(1 - s/4).
    assert kept_counts(4, 2.0, KeepRule("nonzero")).tolist() == [False, True, True, True, False]
    assert kept_counts(4, 2.0, KeepRule("min_variance", 0.8)).tolist() == [False, False, True, False, False]
    assert kept_counts(4, 2.0, KeepRule("min_variance", 0.8), unbiased=True).tolist() == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert kept_counts(4, 2.0, KeepRule("top_fraction", 0.5), cut=0.75).tolist() == [False, True, True, True, False]
    assert kept_counts(4, 2.0, KeepRule("top_fraction", 0.5), cut=0.0).all()
    with pytest.raises(ValueError, match="needs the cut"):
        kept_counts(4, 2.0, KeepRule("top_fraction", 0.5))


def test_noise_estimate_by_hand() -> None:
    """Uniform prior, K = 2. A prompt with 0 successes has posterior Beta(1, 3); a fresh draw is flat with probability
    E[p^2] + E[(1-p)^2] = B(3, 3)/B(1, 3) + B(1, 5)/B(1, 3) = (1/30)/(1/3) + (1/5)/(1/3) = 0.1 + 0.6, so it would be
    kept with probability 0.3; by symmetry the same for 2 successes. A kept prompt (1 success) adds nothing."""
    uniform = BetaPrior(1.0, 1.0, at_bound=False)
    keep = kept_counts(2, 2.0, KeepRule("nonzero"))
    counts, dropped = np.array([0, 2, 1]), np.array([True, True, False])
    assert expected_wrongly_dropped(counts, 2, dropped, uniform, keep) == pytest.approx(0.6)
    # E[p(1-p)] under Beta(1, 3) = 1 * 3 / (4 * 5); under Beta(2, 2) = 4 / (4 * 5)
    assert posterior_variance(counts, 2, uniform).tolist() == pytest.approx([0.15, 0.15, 0.2])
    assert uniform.flat_share(2) == pytest.approx(2 / 3)  # E[p^2] + E[(1-p)^2] = 1/3 + 1/3
    with pytest.raises(ValueError, match=r"kept_counts must have shape \(3,\)"):
        expected_wrongly_dropped(counts, 2, dropped, uniform, np.ones(4, bool))


def test_fitted_prior_recovers_the_simulated_one() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(0.5, 2.0, size=20000)
    counts = rng.binomial(8, p)
    prior = fit_beta_prior(counts, 8)
    assert prior.a == pytest.approx(0.5, rel=0.1) and prior.b == pytest.approx(2.0, rel=0.1)
    assert not prior.at_bound
    assert prior.flat_share(8) == pytest.approx(np.mean((counts == 0) | (counts == 8)), abs=0.01)


def test_fit_at_the_bound_when_every_prompt_is_flat() -> None:
    assert fit_beta_prior(np.zeros(50, dtype=int), 4).at_bound


@pytest.mark.parametrize("counts", [np.array([0, 5]), np.array([-1, 2]), np.array([], dtype=int)])
def test_fit_refuses_bad_counts(counts: np.ndarray) -> None:
    with pytest.raises(ValueError, match="counts must"):
        fit_beta_prior(counts, 4)


@pytest.mark.parametrize(("a", "b", "k"), [(0.3, 1.5, 4), (0.15, 4.0, 8), (2.0, 2.0, 3)])
def test_noise_estimate_agrees_with_a_simulation(a: float, b: float, k: int) -> None:
    """Prompts drawn from a Beta prior, K samples each, the flat ones dropped; a second, independent draw of K samples
    says which of them it would have kept. The estimate from the fitted prior matches that count."""
    rng = np.random.default_rng(1)
    p = rng.beta(a, b, size=40000)
    counts, fresh = rng.binomial(k, p), rng.binomial(k, p)
    dropped = (counts == 0) | (counts == k)
    actual = int(np.sum(dropped & (fresh > 0) & (fresh < k)))
    keep = kept_counts(k, 1.0, KeepRule("nonzero"))
    estimate = expected_wrongly_dropped(counts, k, dropped, fit_beta_prior(counts, k), keep)
    assert estimate == pytest.approx(actual, rel=0.06), (estimate, actual)


def test_split_half_by_hand() -> None:
    values = np.array([[0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    result = split_half(values, values, KeepRule("nonzero"))
    # halves: row 0 keeps both, rows 1 and 2 drop both, row 3 keeps the first half only
    assert result.samples_per_half == 2
    assert result.agreement == pytest.approx(3 / 4)
    assert result.dropped_by_one_kept_by_other == pytest.approx(0.5)  # one crossing, averaged over two directions
    # a half [0, 1] has K/2-1-denominator variance 0.5, times (K - 1)/K = 3/4: 0.375, kept by >= 0.375 only
    assert split_half(values, values, KeepRule("min_variance", 0.375)).agreement == pytest.approx(3 / 4)
    assert split_half(values, values, KeepRule("min_variance", 0.376)).agreement == 1.0  # every half dropped
    with pytest.raises(ValueError, match="at least 4 samples per prompt"):
        split_half(values[:, :3], values[:, :3], KeepRule("nonzero"))
