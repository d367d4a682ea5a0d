"""``t_gamma`` for a batch of tabular instances in one call: a vectorized Dormand-Prince integrator.

Each instance is its own gradient flow (Eq. 4) with its own clock, step size and error control; the batch advances
in lockstep, one numpy operation per Runge-Kutta stage for all active instances, so a sweep of 1000 instances costs
about as many Python iterations as the slowest single instance. Per-instance event detection: when an accepted step
crosses ``E[r_eval] = E_0[r_eval] + gamma``, safeguarded Newton iterations on the step length (each a fresh RK step
from the step's start, so the root is as accurate as the integrator) locate the crossing.

The tableau is Dormand-Prince 5(4), read from :class:`scipy.integrate.RK45` (the method ``solve_ivp`` calls RK45).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.integrate import RK45
from scipy.special import softmax

from rmteacher.theory.tabular import ZERO_GRADIENT, KLCeiling, tabular_gradient
from rmteacher.theory.validation import (
    check_distribution,
    check_gamma,
    check_kl_coef,
    check_num_prompts,
    check_positive,
    check_rewards,
)

__all__ = ["time_to_gamma_batch"]

_A, _B, _C, _E = RK45.A, RK45.B, RK45.C, RK45.E  # [6, 5], [6], [6], [7]
_MAX_ROOT_ITERATIONS = 40


def time_to_gamma_batch(
    pi0: Any,
    train_reward: Any,
    eval_reward: Any,
    gamma: float | Any,
    *,
    kl_coef: float = 0.0,
    num_prompts: int | None = None,
    t_max: float = 1e6,
    rtol: float = 1e-9,
    atol: float = 1e-12,
) -> np.ndarray:
    """``t_gamma`` of many independent tabular gradient flows, vectorized over instances and prompts.

    Instance ``b`` follows the flow of ``train_reward[b]`` from ``pi0[b]`` and is timed on the mean over its prompts
    of ``E[eval_reward[b]]`` (as :func:`rmteacher.theory.tabular.flow_time_to_gamma`, which it matches).

    Args:
        pi0: ``[B, Y]`` or ``[B, P, Y]`` initial policies.
        train_reward: same shape, the rewards the flows maximize.
        eval_reward: same shape, the rewards whose increase is timed.
        gamma: scalar or ``[B]`` increases, ``> 0``.
        kl_coef: ``lambda >= 0``, shared by the batch.
        num_prompts: ``|S| >= P``; defaults to ``P``.
        t_max: horizon; instances not there by then get ``inf``.
        rtol, atol: per-instance error tolerances on the logits.

    Returns:
        ``[B]`` times ``t_gamma`` (``inf`` where not reached).
    """
    p0 = check_distribution(pi0, "pi0")
    if p0.ndim not in (2, 3):
        raise ValueError(f"pi0 must have shape [B, Y] or [B, P, Y]; got shape {p0.shape}")
    train = check_rewards(train_reward, "train_reward", p0.shape)
    evaluation = check_rewards(eval_reward, "eval_reward", p0.shape)
    if p0.ndim == 2:
        p0, train, evaluation = p0[:, None], train[:, None], evaluation[:, None]
    batch, prompts = p0.shape[0], p0.shape[1]
    gammas = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (batch,)) if np.ndim(gamma) == 0 else None
    if gammas is None:
        gammas = np.asarray(gamma, dtype=np.float64)
        if gammas.shape != (batch,):
            raise ValueError(f"gamma must be a scalar or have shape [B] = ({batch},); got shape {gammas.shape}")
    for value in np.unique(gammas):
        check_gamma(float(value))
    lam = check_kl_coef(kl_coef)
    size = prompts if num_prompts is None else check_num_prompts(num_prompts, at_least=prompts)
    horizon = check_positive(t_max, "t_max")

    ref_log = np.log(p0)  # [B, P, Y]
    target = np.sum(p0 * evaluation, axis=-1).mean(axis=-1) + gammas  # [B]

    def rhs(theta: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return tabular_gradient(theta, train[idx], ref_log[idx], kl_coef=lam, num_prompts=size)

    def gap(theta: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return np.sum(softmax(theta, axis=-1) * evaluation[idx], axis=-1).mean(axis=-1) - target[idx]

    def gap_rate(theta: np.ndarray, velocity: np.ndarray, idx: np.ndarray) -> np.ndarray:
        # d/dt E_pi[r] = sum_y pi(y) (r(y) - E_pi r) dtheta(y)/dt, averaged over prompts
        pi = softmax(theta, axis=-1)
        r = evaluation[idx]
        centered = r - np.sum(pi * r, axis=-1, keepdims=True)
        return np.sum(pi * centered * velocity, axis=-1).mean(axis=-1)

    def rk_step(y: np.ndarray, k1: np.ndarray, h: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        hb = h[:, None, None]
        stages = [k1]
        for s in range(1, 6):
            increment = sum(_A[s, j] * stages[j] for j in range(s) if _A[s, j] != 0.0)
            stages.append(rhs(y + hb * increment, idx))
        y_new = y + hb * sum(_B[j] * stages[j] for j in range(6) if _B[j] != 0.0)
        return y_new, stages

    t_gamma = np.full(batch, math.inf)
    t = np.zeros(batch)
    theta = ref_log.copy()
    all_idx = np.arange(batch)
    k1 = rhs(theta, all_idx)
    active = np.max(np.abs(k1), axis=(1, 2)) > ZERO_GRADIENT  # zero variance: the policy never moves
    ceiling = KLCeiling(ref_log, train, evaluation, lam) if lam > 0 else None
    if ceiling is not None:
        active &= ceiling.margin(theta, target) <= 0  # the KL optimum provably stays below the target
    scale0 = atol + rtol * np.abs(theta)
    d0 = np.sqrt(np.mean((k1 / scale0) ** 2, axis=(1, 2)))
    h = np.where(d0 > 0, 0.01 / np.maximum(d0, 1e-300), 1.0)
    h = np.minimum(h, horizon)
    while active.any():
        idx = np.flatnonzero(active)
        y, f1, step, now = theta[idx], k1[idx], np.minimum(h[idx], horizon - t[idx]), t[idx]
        y_new, stages = rk_step(y, f1, step, idx)
        f7 = rhs(y_new, idx)
        error = step[:, None, None] * sum(_E[j] * s for j, s in enumerate([*stages, f7]) if _E[j] != 0.0)
        scale = atol + rtol * np.maximum(np.abs(y), np.abs(y_new))
        norm = np.sqrt(np.mean((error / scale) ** 2, axis=(1, 2)))  # [n]
        accept = norm <= 1.0
        with np.errstate(divide="ignore"):
            factor = np.clip(0.9 * np.where(norm > 0, norm, 1e-10) ** -0.2, 0.2, 10.0)
        h[idx] = step * np.where(accept, factor, np.minimum(factor, 0.9))

        crossed_local = accept & (gap(y_new, idx) >= 0)
        if crossed_local.any():
            sel = np.flatnonzero(crossed_local)
            t_gamma[idx[sel]] = now[sel] + _locate(y[sel], f1[sel], step[sel], idx[sel], rk_step, rhs, gap, gap_rate)
            active[idx[sel]] = False
        moving = accept & ~crossed_local
        keep = idx[moving]
        theta[keep], k1[keep], t[keep] = y_new[moving], f7[moving], now[moving] + step[moving]
        done = t[keep] >= horizon
        if ceiling is not None:
            done |= ceiling.margin(theta[keep], target[keep], keep) > 0
        active[keep[done]] = False
    return t_gamma


def _locate(
    y: np.ndarray,
    f1: np.ndarray,
    step: np.ndarray,
    idx: np.ndarray,
    rk_step: Any,
    rhs: Any,
    gap: Any,
    gap_rate: Any,
) -> np.ndarray:
    """Step lengths ``tau`` in ``(0, step]`` where the gap crosses zero, by Newton safeguarded with a bracket."""
    low, high = np.zeros_like(step), step.copy()
    tau = step.copy()
    for _ in range(_MAX_ROOT_ITERATIONS):
        state, _stages = rk_step(y, f1, tau, idx)
        value = gap(state, idx)
        rate = gap_rate(state, rhs(state, idx), idx)
        high = np.where(value >= 0, tau, high)
        low = np.where(value < 0, tau, low)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = tau - value / rate
        inside = np.isfinite(newton) & (newton > low) & (newton < high)
        update = np.where(inside, newton, 0.5 * (low + high))
        converged = np.all(np.abs(update - tau) <= 1e-13 * step)
        tau = update
        if converged:
            break
    return tau
