"""rmteacher.trl: within-prompt variance by hand, the wrapper leaves rewards alone, and the warning fires once."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from rmteacher.trl import FlatObjectiveWarning, RewardVarianceCallback, within_prompt_stats


def test_within_prompt_stats_by_hand() -> None:
    # Prompt a: 0, 2 -> var 1; prompt b: 5, 5 -> var 0. All four: mean 3, var (9 + 1 + 4 + 4) / 4 = 4.5.
    stats = within_prompt_stats(["a", "a", "b", "b"], [0.0, 2.0, 5.0, 5.0])
    assert stats.within_prompt == pytest.approx(0.5)
    assert stats.total == pytest.approx(4.5)
    assert stats.within_share == pytest.approx(0.5 / 4.5)
    assert stats.zero_variance_prompts == pytest.approx(0.5)
    assert stats.num_prompts == 2
    # Chat-message prompts are grouped by content; a prompt seen once carries no within-prompt information.
    messages = [[{"role": "user", "content": "x"}]] * 2 + [[{"role": "user", "content": "y"}]]
    assert within_prompt_stats(messages, [1.0, 3.0, 9.0]).within_prompt == pytest.approx(1.0)
    with pytest.raises(ValueError, match="got 2 prompts but 3 rewards"):
        within_prompt_stats(["a", "b"], [1.0, 2.0, 3.0])


def reward(prompts: list[str], completions: list[str], **kwargs: object) -> list[float]:
    return [float(len(c)) for c in completions]


def test_watch_keeps_name_and_values_and_logs() -> None:
    monitor = RewardVarianceCallback()
    watched = monitor.watch(reward)
    logged: dict[str, float] = {}
    values = watched(prompts=["p", "p"], completions=["a", "abc"], log_metric=logged.__setitem__)
    assert values == [1.0, 3.0]
    assert watched.__name__ == "reward"  # TRL names the logged reward after the function
    assert logged["reward_variance/within_prompt"] == pytest.approx(1.0)
    assert logged["reward_variance/zero_variance_prompts"] == 0.0


def test_warns_once_with_the_numbers_when_flat() -> None:
    monitor = RewardVarianceCallback(min_ratio=0.05, patience=2)
    watched = monitor.watch(lambda prompts, completions, **kw: [10.0 * (p == "b") + 0.001 * len(c) for p, c in
                                                                 zip(prompts, completions, strict=True)])  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(1, 6):
            watched(prompts=["a", "a", "b", "b"], completions=["x", "xy", "x", "xy"])
            monitor.on_log(None, SimpleNamespace(global_step=step), None, logs={})
    flat = [w for w in caught if issubclass(w.category, FlatObjectiveWarning)]
    assert len(flat) == 1
    assert "flat objective at step 2" in str(flat[0].message)
    assert "within-prompt reward variance is 2.5e-07" in str(flat[0].message)
    assert monitor.warned_at_step == 2
    assert len(monitor.history) == 5


def test_no_warning_when_variance_is_within_prompts() -> None:
    monitor = RewardVarianceCallback(patience=1)
    watched = monitor.watch(reward)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlatObjectiveWarning)
        for step in range(3):
            watched(prompts=["a", "a", "b", "b"], completions=["x", "xyz", "x", "xyz"])
            monitor.on_log(None, SimpleNamespace(global_step=step), None, logs={})
    assert monitor.warned_at_step is None
    assert np.isclose(monitor.history[-1]["within_share"], 1.0)


def test_callback_option_errors() -> None:
    with pytest.raises(ValueError, match=r"min_ratio must be in \[0, 1\]; got 2"):
        RewardVarianceCallback(min_ratio=2)
    with pytest.raises(ValueError, match="patience must be >= 1; got 0"):
        RewardVarianceCallback(patience=0)


def test_groups_are_trls_consecutive_runs_of_num_generations() -> None:
    """With TRL's group size a prompt drawn twice in one batch makes two groups (TRL's advantages are per group);
    grouped by content it would be one. Groups (1, 1) and (0, 2): one zero-variance group of 2 rollouts."""
    prompts, rewards = ["a"] * 4, [1.0, 1.0, 0.0, 2.0]
    grouped = within_prompt_stats(prompts, rewards, group_size=2)
    assert (grouped.num_prompts, grouped.zero_variance_groups, grouped.zero_variance_rollouts) == (2, 1, 2)
    assert grouped.zero_variance_prompts == 0.5
    assert grouped.within_prompt == pytest.approx((0.0 + 1.0) / 2)
    by_content = within_prompt_stats(prompts, rewards)
    assert (by_content.num_prompts, by_content.zero_variance_groups) == (1, 0)
    with pytest.raises(ValueError, match="group_size 3: 4 completions do not split into groups of that size"):
        within_prompt_stats(prompts, rewards, group_size=3)


def test_watch_logs_counts_of_zero_variance_groups_and_totals() -> None:
    monitor = RewardVarianceCallback()
    monitor.on_train_begin(SimpleNamespace(num_generations=2), None, None)
    assert monitor.group_size == 2
    watched = monitor.watch(lambda prompts, completions, **kw: [float(c == "x") for c in completions])
    logged: dict[str, float] = {}
    # Three groups of two: (x, x) flat, (x, y) varies, (y, y) flat.
    watched(prompts=["p"] * 6, completions=["x", "x", "x", "y", "y", "y"], log_metric=logged.__setitem__)
    assert logged["reward_variance/zero_variance_groups"] == 2
    assert logged["reward_variance/zero_variance_rollouts"] == 4
    assert logged["reward_variance/groups"] == 3
    assert logged["reward_variance/zero_variance_prompts"] == pytest.approx(2 / 3)
    watched(prompts=["p"] * 2, completions=["x", "y"])
    assert monitor.totals == {"groups": 4, "zero_variance_groups": 2, "zero_variance_rollouts": 4}
    with pytest.raises(ValueError, match="group_size must be >= 1; got 0"):
        RewardVarianceCallback(group_size=0)
