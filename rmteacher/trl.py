"""A callback for any TRL GRPO/RLOO run: within-prompt reward variance, and a warning when the objective is flat.

TRL logs ``reward_std``, the spread over the whole batch, which mixes differences *between* prompts (which policy
gradient cannot use: the baseline removes them) with differences *within* a prompt (which drive the gradient).
The paper (Razin et al., 2025, Theorem 1 and Prop. 3) shows the time policy gradient needs to raise the reward
grows as the within-prompt reward variance shrinks (``t_gamma = Omega(Var^-1/2)`` for tabular policies), so a
reward model that induces little variance under the policy is a slow teacher however accurate it is.

Usage::

    from rmteacher.trl import RewardVarianceCallback
    monitor = RewardVarianceCallback(min_ratio=0.05)
    trainer = GRPOTrainer(model=model, reward_funcs=monitor.watch(my_reward), args=args,
                          train_dataset=dataset, callbacks=[monitor])
    trainer.train()   # logs reward_variance/within_prompt, .../within_share, .../zero_variance_prompts
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from transformers import TrainerCallback

__all__ = ["FlatObjectiveWarning", "RewardVarianceCallback", "VarianceStats", "within_prompt_stats"]


class FlatObjectiveWarning(UserWarning):
    """The reward varies little within prompts: policy gradient will be slow (the objective is flat)."""


@dataclass(frozen=True)
class VarianceStats:
    """Within-prompt statistics of one batch of rewards."""

    within_prompt: float  # mean over prompts of the population variance of their completions' rewards
    total: float  # population variance over all completions of the batch
    zero_variance_prompts: float  # share of prompts whose completions all got the same reward
    num_prompts: int

    @property
    def within_share(self) -> float:
        """Share of the batch's variance that lies within prompts (1 when prompts do not differ on average)."""
        return self.within_prompt / self.total if self.total > 0 else 0.0


def within_prompt_stats(prompts: Sequence[Any], rewards: Sequence[float]) -> VarianceStats:
    """Groups completions by their prompt and averages the per-prompt reward variance (Definition 2).

    Args:
        prompts: ``[batch]`` the prompt of each completion, as TRL passes them (repeated once per generation);
            strings or message lists.
        rewards: ``[batch]`` one reward per completion.
    """
    values = np.asarray(rewards, dtype=np.float64)
    if len(values) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(values)} rewards; need one reward per completion")
    groups: dict[str, list[float]] = {}
    for prompt, value in zip(prompts, values, strict=True):
        groups.setdefault(repr(prompt), []).append(float(value))
    # A prompt seen once (its group split across processes) carries no within-prompt information.
    variances = [float(np.var(v)) for v in groups.values() if len(v) > 1 and all(map(math.isfinite, v))]
    if not variances:
        return VarianceStats(math.nan, math.nan, math.nan, 0)
    finite = values[np.isfinite(values)]
    return VarianceStats(
        within_prompt=float(np.mean(variances)),
        total=float(np.var(finite)),
        zero_variance_prompts=float(np.mean([v < 1e-12 for v in variances])),
        num_prompts=len(variances),
    )


@dataclass
class RewardVarianceCallback(TrainerCallback):
    """Logs the within-prompt reward variance of a watched reward and warns once when the objective looks flat.

    ``watch(reward_fn)`` returns the reward function unchanged in behaviour (same name, same values) that also
    records the variance of each batch; the numbers go through TRL's ``log_metric`` into the trainer's logs
    (TensorBoard, ``state.log_history``) under ``reward_variance/...``.

    Args:
        min_ratio: warn when the within-prompt share of the batch's reward variance stays below this (scale-free).
        min_variance: also warn when the within-prompt variance, in the reward's own units, is below this. With
            rewards normalized by the initial policy's mean and std (the paper's protocol) a value such as 0.05 says
            the policy sees a twentieth of the initial spread.
        patience: consecutive logged steps below a threshold before the warning.
    """

    min_ratio: float = 0.05
    min_variance: float | None = None
    patience: int = 3
    history: list[dict[str, float]] = field(default_factory=list)
    warned_at_step: int | None = None
    _pending: list[VarianceStats] = field(default_factory=list)
    _below: int = 0

    def __post_init__(self) -> None:
        if not (0.0 <= self.min_ratio <= 1.0):
            raise ValueError(f"min_ratio must be in [0, 1]; got {self.min_ratio}")
        if self.min_variance is not None and not self.min_variance >= 0:
            raise ValueError(f"min_variance must be >= 0; got {self.min_variance}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1; got {self.patience}")

    def watch(self, reward_fn: Callable[..., Sequence[float | None]]) -> Callable[..., list[float | None]]:
        """Wraps a TRL reward function so each batch's within-prompt variance is recorded and logged."""

        @functools.wraps(reward_fn)
        def watched(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
            values = list(reward_fn(prompts=prompts, completions=completions, **kwargs))
            stats = within_prompt_stats(prompts, [math.nan if v is None else float(v) for v in values])
            if stats.num_prompts:
                self._pending.append(stats)
                log_metric = kwargs.get("log_metric")
                if log_metric is not None:  # TRL >= 1.x: averaged per logging step, logged next to `kl`
                    log_metric("reward_variance/within_prompt", stats.within_prompt)
                    log_metric("reward_variance/within_share", stats.within_share)
                    log_metric("reward_variance/zero_variance_prompts", stats.zero_variance_prompts)
            return values

        return watched

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not self._pending:
            return
        batches, self._pending = self._pending, []
        within = float(np.mean([b.within_prompt for b in batches]))
        share = float(np.mean([b.within_share for b in batches]))
        zero = float(np.mean([b.zero_variance_prompts for b in batches]))
        self.history.append({"step": state.global_step, "within_prompt": within, "within_share": share,
                             "zero_variance_prompts": zero})  # fmt: skip
        flat = share < self.min_ratio or (self.min_variance is not None and within < self.min_variance)
        self._below = self._below + 1 if flat else 0
        if self._below >= self.patience and self.warned_at_step is None:
            self.warned_at_step = int(state.global_step)
            limit = f"min_ratio {self.min_ratio}" + (
                f" or min_variance {self.min_variance}" if self.min_variance is not None else ""
            )
            warnings.warn(
                f"flat objective at step {state.global_step}: the within-prompt reward variance is {within:.4g} "
                f"({share:.1%} of the batch's variance; {zero:.0%} of prompts got identical rewards), below {limit} "
                f"for {self._below} logged steps. Policy gradient learns slowly when the reward barely varies "
                "within a prompt, however accurate the reward model (Razin et al., 2025).",
                FlatObjectiveWarning,
                stacklevel=2,
            )
