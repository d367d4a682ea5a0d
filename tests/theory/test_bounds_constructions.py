"""Bounds hold on random instances; the proofs' constructions have the stated accuracies, variances and times."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax

from rmteacher.metrics import accuracy, reward_variance
from rmteacher.theory import (
    prop3_lower_bound,
    theorem4_lower_bound,
    theorem5_construction,
    theorem5_fast_upper_bound,
    theorem5_slow_lower_bound,
    theorem6_construction,
    theorem6_fast_upper_bound,
    theorem6_slow_lower_bound,
    time_to_gamma,
)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    num_outputs=st.integers(2, 12),
    scale=st.floats(0.01, 1.0),
    gamma=st.floats(0.01, 1.0),
    kl_coef=st.sampled_from([0.0, 0.05]),
    num_prompts=st.integers(1, 4),
    timed=st.sampled_from(["train", "truth"]),
)
def test_prop3_bound_holds_on_random_instances(
    seed: int, num_outputs: int, scale: float, gamma: float, kl_coef: float, num_prompts: int, timed: str
) -> None:
    rng = np.random.default_rng(seed)
    pi0 = softmax(2.0 * rng.normal(size=num_outputs))
    truth = rng.uniform(-1, 1, num_outputs)
    train = scale * np.clip(truth + rng.normal(size=num_outputs), -1, 1)
    evaluation = train if timed == "train" else truth
    t = time_to_gamma(pi0, train, evaluation, gamma, kl_coef=kl_coef, num_prompts=num_prompts, t_max=1e4)
    assert t >= prop3_lower_bound(pi0, train, gamma, num_prompts=num_prompts)


def test_prop3_bound_by_hand() -> None:
    # pi0 = (1/2, 1/2), r = (1, -1): Var = 1, bound = 2 (1 - e^{-1/4}) for gamma = 1/2
    assert prop3_lower_bound([0.5, 0.5], [1.0, -1.0], 0.5) == pytest.approx(2 * (1 - math.exp(-0.25)))
    assert prop3_lower_bound([0.5, 0.5], [0.3, 0.3], 0.5) == math.inf


def test_theorem4_bound_by_hand() -> None:
    # lambda = 0: (1 - e^{-gamma/9}) / (8 L^2 J^2) Var^{-1/3}
    expected = (1 - math.exp(-0.9 / 9)) / (8 * 4 * 9) * 0.008 ** (-1 / 3)
    assert theorem4_lower_bound(0.9, mean_variance=0.008, length=2, jacobian_norm=3.0) == pytest.approx(expected)
    # a large lambda makes the KL branch the minimum
    kl = theorem4_lower_bound(0.9, mean_variance=0.008, length=2, jacobian_norm=3.0, kl_coef=100.0)
    assert kl == pytest.approx((1 - math.exp(-7 / 300)) / (8 * 4 * 9) * 5.0)
    assert theorem4_lower_bound(0.9, mean_variance=0.0, length=2, jacobian_norm=3.0) == math.inf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_theorem5_construction(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_outputs, gamma, T = 12, 0.2, 25.0
    truth = rng.uniform(-1, 1, num_outputs)
    truth[3] = truth[7]  # a tie in r_G: the slow model must tie too, the fast one must not
    pi0 = softmax(rng.normal(size=num_outputs))
    c = theorem5_construction(truth, pi0, gamma, T)
    assert accuracy(c.slow[None], truth[None])[0] == 1.0
    assert reward_variance(c.slow[None], probs=pi0[None])[0] <= 1 / T**2
    assert np.all((c.slow > 0) & (c.slow < 1 / T))
    assert accuracy(c.fast[None], truth[None])[0] <= 2 / num_outputs
    assert c.fast[c.y_gamma] == 1.0 and np.argmax(c.fast) == c.y_gamma
    assert np.all(np.delete(c.fast, c.y_gamma) < pi0[c.y_gamma])
    slow, fast = time_to_gamma(pi0, c.slow, truth, gamma), time_to_gamma(pi0, c.fast, truth, gamma)
    assert slow >= theorem5_slow_lower_bound(gamma, T)
    assert fast <= theorem5_fast_upper_bound(pi0, truth, c.y_gamma, gamma)
    assert fast < slow


def test_theorem6_construction() -> None:
    truth = np.linspace(-1, 1, 9)
    gamma, T, c, v0 = 0.3, 30.0, 0.2, -0.2
    con = theorem6_construction(truth, gamma, T, c, v0)
    for pi, favoured, starved in (
        (con.pi, con.y_gamma, con.y_gamma_prime),
        (con.pi_prime, con.y_gamma_prime, con.y_gamma),
    ):
        assert pi @ truth == pytest.approx(v0, abs=1e-10)
        assert pi[favoured] >= c and pi[starved] <= 1 / T**2
        assert np.all(pi > 0) and pi.sum() == pytest.approx(1.0)
    assert np.array_equal(np.flatnonzero(con.reward == 1), [con.y_gamma])
    assert np.array_equal(np.flatnonzero(con.reward_prime == 1), [con.y_gamma_prime])
    assert reward_variance(con.reward_prime[None], probs=con.pi[None])[0] <= 8 / T**2
    assert reward_variance(con.reward[None], probs=con.pi_prime[None])[0] <= 8 / T**2
    fast = time_to_gamma(con.pi, con.reward, truth, gamma)
    slow = time_to_gamma(con.pi, con.reward_prime, truth, gamma)
    assert fast <= theorem6_fast_upper_bound(con.pi, truth, con.y_gamma, gamma, c)
    assert slow >= theorem6_slow_lower_bound(gamma, T)
    swapped_fast = time_to_gamma(con.pi_prime, con.reward_prime, truth, gamma)
    swapped_slow = time_to_gamma(con.pi_prime, con.reward, truth, gamma)
    assert swapped_fast <= theorem6_fast_upper_bound(con.pi_prime, truth, con.y_gamma_prime, gamma, c)
    assert swapped_slow >= theorem6_slow_lower_bound(gamma, T)


def test_construction_errors_name_the_argument() -> None:
    truth = np.array([-1.0, 0.0, 0.2])
    pi0 = np.array([0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match=r"no output has r_G > V_G\(0\) \+ gamma"):
        theorem5_construction(truth, pi0, 0.5, 10)
    with pytest.raises(ValueError, match=r"T must be a finite number >= 1; got 0.5"):
        theorem5_construction(truth, pi0, 0.05, 0.5)
    with pytest.raises(ValueError, match=r"y_gamma must be an output index in \[0, 3\)"):
        theorem5_construction(truth, pi0, 0.05, 10, y_gamma=0)
    with pytest.raises(ValueError, match=r"c must be in \(0, 1\); got 1.5"):
        theorem6_construction(np.linspace(-1, 1, 5), 0.1, 10, 1.5, 0.0)
    with pytest.raises(ValueError, match=r"v0 must be in \(-1, 1\); got 1.0"):
        theorem6_construction(np.linspace(-1, 1, 5), 0.1, 10, 0.2, 1.0)
    with pytest.raises(ValueError, match=r"y_gamma_prime must be an output index"):
        theorem6_construction(np.array([-1.0, -0.5, 0.0, 0.9]), 0.3, 10, 0.2, 0.0)
    with pytest.raises(ValueError, match=r"no policy with E\[r_G\] = v0"):
        theorem6_construction(np.array([-1.0, -0.9, 0.9, 1.0]), 0.1, 10, 0.6, 0.0)


def test_bound_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"train_reward\[1\] = 1.5 lies outside \[-1, 1\]; the paper's bounds"):
        prop3_lower_bound([0.5, 0.5], [0.0, 1.5], 0.1)
    with pytest.raises(ValueError, match=r"gamma must be a finite number > 0; got 0"):
        prop3_lower_bound([0.5, 0.5], [0.0, 1.0], 0)
    with pytest.raises(ValueError, match=r"mean_variance must be in \[0, 1\]"):
        theorem4_lower_bound(0.1, mean_variance=2.0, length=2, jacobian_norm=1.0)
    with pytest.raises(ValueError, match=r"length must be an integer >= 1"):
        theorem4_lower_bound(0.1, mean_variance=0.1, length=0, jacobian_norm=1.0)
    with pytest.raises(ValueError, match=r"jacobian_norm must be a finite number > 0"):
        theorem4_lower_bound(0.1, mean_variance=0.1, length=2, jacobian_norm=-1.0)
    with pytest.raises(ValueError, match=r"kl_coef must be a finite number >= 0"):
        theorem4_lower_bound(0.1, mean_variance=0.1, length=2, jacobian_norm=1.0, kl_coef=-0.1)
    with pytest.raises(ValueError, match=r"kl_coef = 1.0 exceeds Theorem 5's condition"):
        theorem5_fast_upper_bound([0.5, 0.5], [1.0, -1.0], 0, 0.1, kl_coef=1.0)
    with pytest.raises(ValueError, match=r"y_gamma = 1 has r_G = -1"):
        theorem5_fast_upper_bound([0.5, 0.5], [1.0, -1.0], 1, 0.1)
    with pytest.raises(ValueError, match=r"pi0\[0\] = 0.5 is below c = 0.6"):
        theorem6_fast_upper_bound([0.5, 0.5], [1.0, -1.0], 0, 0.1, 0.6)
    with pytest.raises(ValueError, match=r"kl_coef = 1.0 exceeds Theorem 6's condition"):
        theorem6_fast_upper_bound([0.5, 0.5], [1.0, -1.0], 0, 0.1, 0.4, kl_coef=1.0)
    with pytest.raises(ValueError, match=r"T must be a finite number >= 1"):
        theorem6_slow_lower_bound(0.1, 0.0)
    with pytest.raises(ValueError, match=r"num_prompts must be an integer >= 1; got 0"):
        theorem5_slow_lower_bound(0.1, 2.0, num_prompts=0)
