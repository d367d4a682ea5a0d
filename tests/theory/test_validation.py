"""Bad input to the simulators: every error names the argument, the value and what would be valid."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rmteacher.theory import best_of_n_reward, flow_curves, rloo_ascent, time_to_gamma, time_to_gamma_batch

PI = [0.5, 0.3, 0.2]
R = [1.0, 0.0, -1.0]


@pytest.mark.parametrize(
    ("pi0", "message"),
    [
        ([0.5, 0.0, 0.5], r"pi0\[1\] = 0.0; every probability must be in \(0, 1\]"),
        ([0.7, -0.1, 0.4], r"pi0\[1\] = -0.1; every probability must be in \(0, 1\]"),
        ([0.5, 0.3, 0.3], r"pi0 sums to 1.1; probabilities must sum to 1"),
        ([0.5, math.nan, 0.5], r"pi0\[1\] is NaN"),
        ([1.0], r"pi0 needs at least 2 outputs"),
        ([[0.5, 0.5]], r"pi0 must have 1 dimension\(s\); got shape \(1, 2\)"),
    ],
)
def test_bad_initial_policy(pi0: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        time_to_gamma(pi0, [0.0] * np.shape(pi0)[-1], [0.0] * np.shape(pi0)[-1], 0.1)


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match=r"train_reward has length 2 but pi0 has length 3"):
        time_to_gamma(PI, [0.0, 1.0], R, 0.1)
    with pytest.raises(ValueError, match=r"eval_reward\[2\] is NaN"):
        time_to_gamma(PI, R, [0.0, 1.0, math.nan], 0.1)
    with pytest.raises(ValueError, match=r"gamma must be a finite number > 0; got 0.0"):
        time_to_gamma(PI, R, R, 0.0)
    with pytest.raises(ValueError, match=r"gamma must be a finite number > 0; got -0.5"):
        time_to_gamma(PI, R, R, -0.5)
    with pytest.raises(ValueError, match=r"kl_coef must be a finite number >= 0 \(lambda in Eq. 1\); got -0.1"):
        time_to_gamma(PI, R, R, 0.1, kl_coef=-0.1)
    with pytest.raises(ValueError, match=r"num_prompts must be an integer >= 1; got 0"):
        time_to_gamma(PI, R, R, 0.1, num_prompts=0)
    with pytest.raises(ValueError, match=r"t_max must be a finite number > 0; got -1"):
        time_to_gamma(PI, R, R, 0.1, t_max=-1)
    with pytest.raises(ValueError, match=r"train_reward\[0\] = inf lies outside \[-1, 1\]"):
        time_to_gamma(PI, [math.inf, 0.0, 0.0], R, 0.1)


def test_rewards_outside_the_unit_interval_warn_in_simulation() -> None:
    with pytest.warns(UserWarning, match=r"train_reward\[0\] = 2.0 lies outside \[-1, 1\]; the simulation runs"):
        t = time_to_gamma(PI, [2.0, 0.0, -1.0], R, 0.1)
    assert math.isfinite(t)


def test_batch_and_curve_errors() -> None:
    pi0 = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"pi0\[1, :\] sums to 0.9"):
        time_to_gamma_batch(np.array([[1 / 3] * 3, [0.3, 0.3, 0.3]]), pi0, pi0, 0.1)
    with pytest.raises(ValueError, match=r"gamma must be a scalar or have shape \[B\] = \(2,\)"):
        time_to_gamma_batch(pi0, pi0, pi0, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"gamma must be a finite number > 0; got -0.2"):
        time_to_gamma_batch(pi0, pi0, pi0, [0.1, -0.2])
    with pytest.raises(ValueError, match=r"pi0 must have shape \[B, Y\] or \[B, P, Y\]"):
        time_to_gamma_batch(pi0[0], pi0[0], pi0[0], 0.1)
    with pytest.raises(ValueError, match=r"times must be a non-empty, non-decreasing"):
        flow_curves(pi0, pi0, pi0, [0.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"num_prompts must be an integer >= 2; got 1"):
        flow_curves(pi0, pi0, pi0, [0.0, 1.0], num_prompts=1)


def test_sampling_and_best_of_n_errors() -> None:
    pi0 = np.full((1, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"k \(samples per prompt\) must be an integer >= 2"):
        rloo_ascent(pi0, pi0, pi0, learning_rate=0.1, num_steps=2, k=1)
    with pytest.raises(ValueError, match=r"learning_rate must be a finite number > 0"):
        rloo_ascent(pi0, pi0, pi0, learning_rate=0.0, num_steps=2)
    with pytest.raises(ValueError, match=r"num_steps must be an integer >= 0; got -1"):
        rloo_ascent(pi0, pi0, pi0, learning_rate=0.1, num_steps=-1)
    with pytest.raises(ValueError, match=r"num_runs must be an integer >= 1"):
        rloo_ascent(pi0, pi0, pi0, learning_rate=0.1, num_steps=1, num_runs=0)
    with pytest.raises(ValueError, match=r"n must be an integer >= 1; got 0"):
        best_of_n_reward(PI, R, R, 0)
    with pytest.raises(ValueError, match=r"proxy has length 2 but probs has length 3"):
        best_of_n_reward(PI, [0.0, 1.0], R, 2)
