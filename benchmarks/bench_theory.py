"""Benchmark of the theory lab's t_gamma solvers.

Run from the repository root:

    .venv/bin/python benchmarks/bench_theory.py

Prints, in one run and on the same instances:
1. ``rmteacher.theory.time_to_gamma`` (``solve_ivp`` DOP853 with a terminal event) against a plain fixed-step RK4
   loop written here, for |Y| in {10, 10^3, 10^5}: both t_gamma values, their relative difference (must be < 1e-4)
   and the speed ratio;
2. the batched solver ``time_to_gamma_batch`` (one call for 1000 instances) against a Python loop of 1000
   ``time_to_gamma`` calls.
Takes under a minute on two CPU cores.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.special import log_softmax, softmax

from rmteacher.theory import tabular_gradient, time_to_gamma, time_to_gamma_batch

GAMMA = 0.1
RK4_STEPS = 1000  # steps per a-priori time scale of the instance (see rk4_step_size)


def instance(num_outputs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random initial policy and a reward in [-0.5, 0.5]; the flow maximizes the reward it is timed on."""
    rng = np.random.default_rng(seed)
    return softmax(rng.normal(size=num_outputs)), 0.5 * rng.uniform(-1, 1, num_outputs)


def rk4_step_size(pi0: np.ndarray, reward: np.ndarray, gamma: float) -> float:
    """``gamma / (dV/dt at t = 0) / RK4_STEPS``: for a tabular flow ``dV/dt = sum_y pi^2 (r - V)^2`` (about Var/|Y|).

    Known before solving (no peeking at the event solver); the flow accelerates, so ``t_gamma`` is below the estimate.
    """
    rate = float(np.sum(pi0**2 * (reward - pi0 @ reward) ** 2))
    return gamma / rate / RK4_STEPS


def rk4_time_to_gamma(pi0: np.ndarray, reward: np.ndarray, gamma: float, h: float) -> float:
    """Fixed-step classical RK4 on the logits; the crossing inside the last step is found by bisection on the
    length of one RK4 step taken from that step's start (linear interpolation would cost accuracy: the flow
    accelerates sharply near t_gamma at large |Y|)."""
    theta = np.log(pi0)[None]
    ref = theta.copy()
    rewards = reward[None]
    target = float(pi0 @ reward) + gamma

    def step(state: np.ndarray, size: float) -> np.ndarray:
        k1 = tabular_gradient(state, rewards, ref)
        k2 = tabular_gradient(state + 0.5 * size * k1, rewards, ref)
        k3 = tabular_gradient(state + 0.5 * size * k2, rewards, ref)
        k4 = tabular_gradient(state + size * k3, rewards, ref)
        return state + size / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)

    def gap(state: np.ndarray) -> float:
        return float(np.exp(log_softmax(state[0])) @ reward) - target

    t = 0.0
    while True:
        new_theta = step(theta, h)
        if gap(new_theta) >= 0:
            low, high = 0.0, h
            for _ in range(60):
                middle = 0.5 * (low + high)
                low, high = (low, middle) if gap(step(theta, middle)) >= 0 else (middle, high)
            return t + 0.5 * (low + high)
        theta, t = new_theta, t + h


def main() -> None:
    print(f"t_gamma for gamma = {GAMMA}: solve_ivp (DOP853, event) vs fixed-step RK4 (h = t_estimate / {RK4_STEPS})")
    header = (
        f"{'|Y|':>7} {'t_gamma ivp':>12} {'t_gamma RK4':>12} {'rel diff':>9} {'RK4 h':>9} {'ivp s':>8} {'RK4 s':>8} "
        f"{'RK4/ivp':>8}"
    )
    print(header)
    for num_outputs in (10, 1_000, 100_000):
        pi0, reward = instance(num_outputs, seed=num_outputs)
        start = time.perf_counter()
        t_ivp = time_to_gamma(pi0, reward, reward, GAMMA)
        ivp_seconds = time.perf_counter() - start
        start = time.perf_counter()
        step = rk4_step_size(pi0, reward, GAMMA)
        t_rk4 = rk4_time_to_gamma(pi0, reward, GAMMA, step)
        rk4_seconds = time.perf_counter() - start
        diff = abs(t_ivp - t_rk4) / t_rk4
        assert diff < 1e-4, f"solvers disagree at |Y| = {num_outputs}: {t_ivp} vs {t_rk4}"
        print(
            f"{num_outputs:>7} {t_ivp:>12.6g} {t_rk4:>12.6g} {diff:>9.1e} {step:>9.3g} {ivp_seconds:>8.3f} "
            f"{rk4_seconds:>8.3f} "
            f"{rk4_seconds / ivp_seconds:>7.1f}x"
        )

    rng = np.random.default_rng(0)
    pi0 = softmax(1.5 * rng.normal(size=(1000, 20)), axis=-1)
    truth = rng.uniform(-1, 1, (1000, 20))
    train = truth * 10 ** rng.uniform(-2, 0, (1000, 1))
    start = time.perf_counter()
    batch = time_to_gamma_batch(pi0, train, truth, GAMMA, t_max=1e5)
    batch_seconds = time.perf_counter() - start
    start = time.perf_counter()
    loop = np.array([time_to_gamma(p, r, e, GAMMA, t_max=1e5) for p, r, e in zip(pi0, train, truth, strict=True)])
    loop_seconds = time.perf_counter() - start
    finite = np.isfinite(loop)
    assert np.array_equal(finite, np.isfinite(batch))
    worst = float(np.max(np.abs(batch[finite] / loop[finite] - 1)))
    print()
    print("sweep of 1000 instances (|Y| = 20, reward scales in [0.01, 1]):")
    print(f"  one time_to_gamma_batch call: {batch_seconds:.3f} s")
    print(f"  loop of 1000 time_to_gamma:   {loop_seconds:.3f} s  ({loop_seconds / batch_seconds:.1f}x slower)")
    print(f"  {int(finite.sum())} reached; largest relative difference {worst:.1e}")


if __name__ == "__main__":
    main()
