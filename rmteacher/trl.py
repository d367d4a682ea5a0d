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
    trainer.train()   # logs reward_variance/within_prompt, .../within_share, .../zero_variance_prompts, ...

Zero-variance groups. TRL samples ``num_generations`` completions per prompt and passes them to the reward functions
as consecutive groups; a group whose rewards are all equal gets zero advantage in GRPO and RLOO alike, so its
rollouts teach nothing (the per-prompt reading of Theorem 1). The callback counts those groups per generation batch,
over all processes, on the watched reward alone: ``.../zero_variance_prompts`` is their share of the groups,
``.../zero_variance_groups`` and ``.../zero_variance_rollouts`` (groups x ``num_generations``) their numbers, what
prompt selection would save. TRL's own ``frac_reward_zero_std`` (trl 1.16) is not that number in every setting:

- it is computed on the weighted sum of all reward functions (``reward_weights``), not on one reward;
- GRPO: the share of *completions* whose group std is zero (each group's std repeated per completion), which equals
  the share of groups as the groups are of equal size; with ``scale_rewards="batch"`` or
  ``multi_objective_aggregation="normalize_then_sum"`` it tests the std of the whole batch instead, so it is 0 or 1;
- RLOO: the share of groups, but of the rewards *after* the KL penalty ``beta * sum_t (log pi - log pi_ref)`` is
  subtracted, which differs between completions once the policy has moved: with ``beta > 0`` it reads about 0 after
  the first step even where the reward is constant on a prompt.
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

__all__ = ["ZERO_VARIANCE", "FlatObjectiveWarning", "RewardVarianceCallback", "VarianceStats", "within_prompt_stats"]


class FlatObjectiveWarning(UserWarning):
    """The reward varies little within prompts: policy gradient will be slow (the objective is flat)."""


#: A group whose rewards have a population variance below this (a std below 1e-6) counts as zero-variance.
ZERO_VARIANCE = 1e-12


@dataclass(frozen=True)
class VarianceStats:
    """Within-prompt statistics of one batch of rewards; a group is the completions of one prompt."""

    within_prompt: float  # mean over groups of the population variance of their completions' rewards
    total: float  # population variance over all completions of the batch
    zero_variance_prompts: float  # share of groups whose completions all got the same reward
    num_prompts: int  # groups counted: two or more completions, every reward finite
    zero_variance_groups: int  # groups whose completions all got the same reward
    zero_variance_rollouts: int  # completions in those groups (the rollouts that taught nothing)

    @property
    def within_share(self) -> float:
        """Share of the batch's variance that lies within prompts (1 when prompts do not differ on average)."""
        return self.within_prompt / self.total if self.total > 0 else 0.0


def within_prompt_stats(
    prompts: Sequence[Any], rewards: Sequence[float], *, group_size: int | None = None
) -> VarianceStats:
    """Groups completions by their prompt and averages the per-prompt reward variance (Definition 2).

    Args:
        prompts: ``[batch]`` the prompt of each completion, as TRL passes them (repeated once per generation);
            strings or message lists.
        rewards: ``[batch]`` one reward per completion.
        group_size: TRL's ``num_generations``: the groups are then consecutive runs of this many completions, TRL's
            layout (a prompt drawn twice in one batch makes two groups). None: completions are grouped by their
            prompt's content.
    """
    values = np.asarray(rewards, dtype=np.float64)
    if len(values) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(values)} rewards; need one reward per completion")
    if group_size is not None:
        if group_size < 1 or len(values) % group_size:
            raise ValueError(
                f"group_size {group_size}: {len(values)} completions do not split into groups of that size (TRL "
                "passes num_generations completions per prompt)"
            )
        groups = [values[i : i + group_size].tolist() for i in range(0, len(values), group_size)]
    else:
        by_prompt: dict[str, list[float]] = {}
        for prompt, value in zip(prompts, values, strict=True):
            by_prompt.setdefault(repr(prompt), []).append(float(value))
        groups = list(by_prompt.values())
    # A prompt seen once (its group split across processes) carries no within-prompt information.
    counted = [v for v in groups if len(v) > 1 and all(map(math.isfinite, v))]
    if not counted:
        return VarianceStats(math.nan, math.nan, math.nan, 0, 0, 0)
    variances = [float(np.var(v)) for v in counted]
    flat = [variance < ZERO_VARIANCE for variance in variances]
    finite = values[np.isfinite(values)]
    return VarianceStats(
        within_prompt=float(np.mean(variances)),
        total=float(np.var(finite)),
        zero_variance_prompts=float(np.mean(flat)),
        num_prompts=len(counted),
        zero_variance_groups=int(sum(flat)),
        zero_variance_rollouts=int(sum(len(v) for v, f in zip(counted, flat, strict=True) if f)),
    )


def _sum_over_processes(counts: list[int]) -> list[int]:
    """``counts`` summed over the processes of a distributed run (each scores its own share of the groups)."""
    from accelerate import PartialState

    if PartialState().num_processes == 1:
        return counts
    from accelerate.utils import gather_object

    gathered = gather_object([counts])
    return [int(sum(c[i] for c in gathered)) for i in range(len(counts))]


@dataclass
class RewardVarianceCallback(TrainerCallback):
    """Logs the within-prompt reward variance of a watched reward and warns once when the objective looks flat.

    ``watch(reward_fn)`` returns the reward function unchanged in behaviour (same name, same values) that also
    records the variance of each batch; the numbers go through TRL's ``log_metric`` into the trainer's logs
    (TensorBoard, ``state.log_history``) under ``reward_variance/...``. The groups are TRL's (``num_generations``
    consecutive completions, read from the trainer's arguments when training begins); ``totals`` sums the
    zero-variance groups and their rollouts over the run.

    Args:
        min_ratio: warn when the within-prompt share of the batch's reward variance stays below this (scale-free).
        min_variance: also warn when the within-prompt variance, in the reward's own units, is below this. With
            rewards normalized by the initial policy's mean and std (the paper's protocol) a value such as 0.05 says
            the policy sees a twentieth of the initial spread.
        patience: consecutive logged steps below a threshold before the warning.
        group_size: completions per prompt; None: TRL's ``num_generations`` when training begins (before that, or
            outside a trainer, completions are grouped by prompt).
    """

    min_ratio: float = 0.05
    min_variance: float | None = None
    patience: int = 3
    group_size: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    totals: dict[str, int] = field(
        default_factory=lambda: {"groups": 0, "zero_variance_groups": 0, "zero_variance_rollouts": 0}
    )
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
        if self.group_size is not None and self.group_size < 1:
            raise ValueError(f"group_size must be >= 1; got {self.group_size}")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.group_size is None:
            self.group_size = getattr(args, "num_generations", None)

    def watch(self, reward_fn: Callable[..., Sequence[float | None]]) -> Callable[..., list[float | None]]:
        """Wraps a TRL reward function so each batch's within-prompt variance is recorded and logged."""

        @functools.wraps(reward_fn)
        def watched(prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
            values = list(reward_fn(prompts=prompts, completions=completions, **kwargs))
            stats = within_prompt_stats(
                prompts, [math.nan if v is None else float(v) for v in values], group_size=self.group_size
            )
            # Every process takes part in the sum, also one that counted no group (it would wait for the others).
            groups, zero, rollouts = _sum_over_processes(
                [stats.num_prompts, stats.zero_variance_groups, stats.zero_variance_rollouts]
            )
            self.totals["groups"] += groups
            self.totals["zero_variance_groups"] += zero
            self.totals["zero_variance_rollouts"] += rollouts
            if stats.num_prompts:
                self._pending.append(stats)
            log_metric = kwargs.get("log_metric")
            if log_metric is not None and groups:  # TRL >= 1.x: averaged per logging step, logged next to `kl`
                if stats.num_prompts:
                    log_metric("reward_variance/within_prompt", stats.within_prompt)
                    log_metric("reward_variance/within_share", stats.within_share)
                log_metric("reward_variance/zero_variance_prompts", zero / groups)
                log_metric("reward_variance/zero_variance_groups", zero)
                log_metric("reward_variance/zero_variance_rollouts", rollouts)
                log_metric("reward_variance/groups", groups)
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
                f"({share:.1%} of the batch's variance; {zero:.0%} of prompt groups got identical rewards), below "
                f"{limit} for {self._below} logged steps. Policy gradient learns slowly when the reward barely varies "
                "within a prompt, however accurate the reward model (Razin et al., 2025).",
                FlatObjectiveWarning,
                stacklevel=2,
            )
