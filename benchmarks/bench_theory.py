"""The theory lab's t_gamma solvers against a fixed-step RK4 given the coarsest step that is accurate enough.

Run from the repository root (``--quick``: |Y| = 10 and 10^3 only and a 100-instance sweep, for a smoke check):

    .venv/bin/python benchmarks/bench_theory.py [--repeats 3] [--max-spread 0.1] [--quick]

1. ``rmteacher.theory.time_to_gamma`` (``solve_ivp`` DOP853, ``rtol=1e-10``, a terminal event) against a plain
   fixed-step RK4 loop written here, for |Y| in {10, 10^3, 10^5}. RK4 gets the *coarsest* step whose t_gamma
   agrees with the solver's to ``--agreement`` (1e-4): the number of steps is searched (doubling, then bisection to
   within 3%) before anything is timed, so RK4 is timed at the step a user who knew the answer would pick. Its
   crossing inside the last step is found by the Illinois method on the step length (a few RK4 steps), not a long
   bisection, so RK4 pays no avoidable cost either.
2. The batched solver ``time_to_gamma_batch`` (one call for 1000 instances) against a Python loop of 1000
   ``time_to_gamma`` calls.

Timing as every benchmark here (``benchmarks/_timing.py``): variants alternate, each timed run repeats a call
enough times to last about 0.5 s, at least 3 runs per variant; medians and spreads are printed, and a ratio only
when both spreads are under ``--max-spread``. numpy/BLAS run on one thread.
"""

from __future__ import annotations

import _timing

# isort: split
import argparse
import math
import time
from collections.abc import Callable

import numpy as np
from scipy.special import log_softmax, softmax

from rmteacher.theory import tabular_gradient, time_to_gamma, time_to_gamma_batch

GAMMA = 0.1


def instance(num_outputs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random initial policy and a reward in [-0.5, 0.5]; the flow maximizes the reward it is timed on."""
    rng = np.random.default_rng(seed)
    return softmax(rng.normal(size=num_outputs)), 0.5 * rng.uniform(-1, 1, num_outputs)


def time_scale(pi0: np.ndarray, reward: np.ndarray, gamma: float) -> float:
    """``gamma / (dV/dt at t = 0)``, known before solving: for a tabular flow ``dV/dt = sum_y pi^2 (r - V)^2``.
    The flow accelerates, so t_gamma is below it; RK4's step is this divided by a number of steps."""
    return gamma / float(np.sum(pi0**2 * (reward - pi0 @ reward) ** 2))


def rk4_time_to_gamma(pi0: np.ndarray, reward: np.ndarray, gamma: float, h: float) -> float:
    """Fixed-step classical RK4 on the logits. The crossing inside the last step is the root of
    ``s -> V(one RK4 step of length s from that step's start) - target`` on ``[0, h]``, found by the Illinois
    method to ``1e-7 h`` (linear interpolation would cost accuracy: the flow accelerates sharply near t_gamma at
    large |Y|)."""
    theta = np.log(pi0)[None]  # [1, Y]
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
        high_gap = gap(new_theta)
        if high_gap >= 0:
            return t + _illinois(lambda s, start=theta: gap(step(start, s)), 0.0, gap(theta), h, high_gap, tol=1e-7 * h)
        theta, t = new_theta, t + h


def _illinois(f: Callable[[float], float], a: float, fa: float, b: float, fb: float, *, tol: float) -> float:
    """A root of ``f`` in ``[a, b]`` with ``fa < 0 <= fb``: regula falsi, halving a stale end's value."""
    side = 0
    for _ in range(100):
        c = b - fb * (b - a) / (fb - fa)
        fc = f(c)
        if fc >= 0:
            b, fb = c, fc
            if side == 1:
                fa /= 2
            side = 1
        else:
            a, fa = c, fc
            if side == -1:
                fb /= 2
            side = -1
        if b - a < tol or fc == 0:
            return c
    return c


def coarsest_steps(pi0: np.ndarray, reward: np.ndarray, reference: float, agreement: float) -> float:
    """The fewest RK4 steps per :func:`time_scale` (a real number) whose t_gamma agrees with ``reference`` to
    ``agreement``: halving or doubling from 1 until the answer is bracketed, then bisection (geometric) to within
    3%."""
    scale = time_scale(pi0, reward, GAMMA)

    def passes(steps: float) -> bool:
        value = rk4_time_to_gamma(pi0, reward, GAMMA, scale / steps)
        return abs(value - reference) / reference < agreement

    low, high = 0.5, 1.0  # low fails, high passes, once bracketed
    if passes(high):
        while passes(low):
            low, high = low / 2, low
            if low < 2**-20:
                return high
    else:
        low, high = high, 2 * high
        while not passes(high):
            low, high = high, 2 * high
            if high > 2**24:
                raise RuntimeError("RK4 does not reach the agreement with 2^24 steps per time scale")
    while high / low > 1.03:
        middle = math.sqrt(low * high)
        low, high = (low, middle) if passes(middle) else (middle, high)
    return high


def repeated(call: Callable[[], object], target: float = 0.5) -> tuple[Callable[[], None], int]:
    """``call`` wrapped to run ``n`` times per timed run, ``n`` chosen so a run lasts about ``target`` seconds."""
    start = time.perf_counter()
    call()
    once = time.perf_counter() - start
    n = max(1, math.ceil(target / max(once, 1e-9)))

    def run() -> None:
        for _ in range(n):
            call()

    return run, n


def solvers(sizes: list[int], agreement: float, repeats: int, max_spread: float) -> None:
    print(f"\n## t_gamma for gamma = {GAMMA}: solve_ivp (DOP853, event) vs fixed-step RK4 at its coarsest step")
    print(f"RK4's step: the fewest steps whose t_gamma agrees with solve_ivp's to {agreement:g} (searched, not timed)")
    rows = []
    for num_outputs in sizes:
        pi0, reward = instance(num_outputs, seed=num_outputs)
        t_ivp = time_to_gamma(pi0, reward, reward, GAMMA)
        steps = coarsest_steps(pi0, reward, t_ivp, agreement)
        h = time_scale(pi0, reward, GAMMA) / steps
        t_rk4 = rk4_time_to_gamma(pi0, reward, GAMMA, h)
        ivp_run, ivp_n = repeated(lambda p=pi0, r=reward: time_to_gamma(p, r, r, GAMMA))
        rk4_run, rk4_n = repeated(lambda p=pi0, r=reward, step=h: rk4_time_to_gamma(p, r, GAMMA, step))
        search_run, search_n = repeated(lambda p=pi0, r=reward, t=t_ivp: coarsest_steps(p, r, t, agreement))
        variants = {"solve_ivp": ivp_run, "RK4": rk4_run, "search": search_run}
        results = _timing.alternate(variants, repeats=repeats, progress=False)
        ivp, rk4, search = (results[name]["wall"] for name in variants)
        for measure, n in ((ivp, ivp_n), (rk4, rk4_n), (search, search_n)):
            measure.runs = [v / n for v in measure.runs]
        taken = math.ceil(t_rk4 / h)
        print(f"\n|Y| = {num_outputs}: t_gamma {t_ivp:.6g} (RK4 {t_rk4:.6g}, relative difference "
              f"{abs(t_rk4 - t_ivp) / t_ivp:.1e}); RK4 h = {h:.3g}, {taken} steps to t_gamma")  # fmt: skip
        _timing.print_measures(
            {"solve_ivp, per call": ivp, "RK4 at that step, per call": rk4, "the step search, per call": search}
        )
        rows.append(
            (
                num_outputs,
                _timing.print_ratio("RK4 / solve_ivp", rk4, ivp, max_spread=max_spread),
                _timing.print_ratio("step search / solve_ivp", search, ivp, max_spread=max_spread),
            )
        )
    print("\nsummary, time relative to solve_ivp (median; < 1: faster than solve_ivp):")
    for num_outputs, *ratios in rows:
        rk4_ratio, search_ratio = ("withheld (busy machine)" if r is None else f"{r:.2f}x" for r in ratios)
        print(f"  |Y| = {num_outputs:>7}: RK4 at its coarsest step {rk4_ratio}; finding that step {search_ratio}")


def sweep(count: int, repeats: int, max_spread: float) -> None:
    rng = np.random.default_rng(0)
    pi0 = softmax(1.5 * rng.normal(size=(count, 20)), axis=-1)
    truth = rng.uniform(-1, 1, (count, 20))
    train = truth * 10 ** rng.uniform(-2, 0, (count, 1))
    batch = time_to_gamma_batch(pi0, train, truth, GAMMA, t_max=1e5)
    loop = np.array([time_to_gamma(p, r, e, GAMMA, t_max=1e5) for p, r, e in zip(pi0, train, truth, strict=True)])
    finite = np.isfinite(loop)
    if not np.array_equal(finite, np.isfinite(batch)):
        raise SystemExit("the batched and the single solver disagree on which instances reach gamma")
    worst = float(np.max(np.abs(batch[finite] / loop[finite] - 1)))
    print(f"\n## sweep of {count} instances (|Y| = 20, reward scales in [0.01, 1]): {int(finite.sum())} reach gamma, "
          f"largest relative difference {worst:.1e}")  # fmt: skip

    def batched() -> None:
        time_to_gamma_batch(pi0, train, truth, GAMMA, t_max=1e5)

    def looped() -> None:
        for p, r, e in zip(pi0, train, truth, strict=True):
            time_to_gamma(p, r, e, GAMMA, t_max=1e5)

    variants = {"one time_to_gamma_batch call": batched, f"loop of {count} time_to_gamma": looped}
    results = _timing.alternate(variants, repeats=repeats, progress=False)
    measures = {name: r["wall"] for name, r in results.items()}
    _timing.print_measures(measures)
    batch_measure, loop_measure = measures.values()
    _timing.print_ratio("loop / batch", loop_measure, batch_measure, max_spread=max_spread)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (>= 3), alternating")
    parser.add_argument("--max-spread", type=float, default=_timing.MAX_SPREAD, help="withhold ratios above this")
    parser.add_argument("--agreement", type=float, default=1e-4, help="relative t_gamma agreement RK4 must meet")
    parser.add_argument("--quick", action="store_true", help="|Y| = 10, 10^3 and a 100-instance sweep")
    args = parser.parse_args()
    sizes = [10, 1_000] if args.quick else [10, 1_000, 100_000]
    count = 100 if args.quick else 1000
    _timing.header(
        "bench_theory: t_gamma solvers", threads=None, settings=f"|Y| in {sizes}, sweep of {count}, gamma {GAMMA}"
    )
    solvers(sizes, args.agreement, args.repeats, args.max_spread)
    sweep(count, args.repeats, args.max_spread)
    _timing.footer()


if __name__ == "__main__":
    main()
