"""Scoring with reward models of other architectures and tokenizers (ModelReward) and reward functions
(CallableReward), on the zoo: batched scores equal one-at-a-time scores, truncation, pad ids, TRL's kwargs."""

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rmteacher.loading import ModelLoadError
from rmteacher.rendering import render_conversation
from rmteacher.rewards import CallableReward, ModelReward, RewardError, load_reward

PROMPTS = [
    "the cat sat on the mat",
    [{"role": "user", "content": "big red dog jumps over"}],
    [{"role": "system", "content": "be brief."}, {"role": "user", "content": "we walk home"}],
    "light falls through green leaves",
]
# Several completions per prompt (prefix sharing), of different lengths, one empty.
COMPLETIONS = ["sat.", "the cat ran off then", "", "a bird sings at dawn over the river"]


def _rows() -> tuple[list[Any], list[str]]:
    prompts = [p for p in PROMPTS for _ in COMPLETIONS]
    completions = [c for _ in PROMPTS for c in COMPLETIONS]
    return prompts, completions


def _one_at_a_time(reward: ModelReward, prompts: list[Any], completions: list[str]) -> np.ndarray:
    return np.array([reward.score([p], [c])[0] for p, c in zip(prompts, completions, strict=True)])


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2"])
@pytest.mark.parametrize("share_prefix", [True, False])
def test_batched_scores_equal_one_at_a_time_scores(zoo: Any, name: str, share_prefix: bool) -> None:
    reward = load_reward(f"{name}={zoo.reward_models[name]}", share_prefix=share_prefix, max_tokens_per_batch=200)
    assert isinstance(reward, ModelReward)
    prompts, completions = _rows()
    batched = reward.score(prompts, completions)
    np.testing.assert_allclose(batched, _one_at_a_time(reward, prompts, completions), atol=1e-5, rtol=0)
    assert batched.std() > 0.05  # the scores differ, so agreeing says something
    assert reward.num_truncated == 0 and reward.num_scored == 2 * len(prompts)


def test_the_model_reads_the_last_token_of_the_rendered_conversation(zoo: Any) -> None:
    """The score is the head's output at the last token of exactly the text render_conversation gives."""
    import torch

    reward = load_reward(f"rm={zoo.reward_models['qwen2']}")
    assert isinstance(reward, ModelReward)
    text = render_conversation(reward.tokenizer, PROMPTS[2], COMPLETIONS[1])
    ids = reward.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected = float(reward.model(input_ids=ids).logits[0, 0])
    assert reward.score([PROMPTS[2]], [COMPLETIONS[1]])[0] == pytest.approx(expected, abs=1e-5)


def test_config_pad_id_is_used_when_the_tokenizer_disagrees(zoo: Any) -> None:
    """rm-llama's config.pad_token_id is not its tokenizer's pad id: padding with the tokenizer's would make the head
    read pad positions (issue 10, item 5)."""
    reward = load_reward(f"rm={zoo.reward_models['llama']}", share_prefix=False)
    assert isinstance(reward, ModelReward)
    assert reward.pad_token_id == reward.model.config.pad_token_id != reward.tokenizer.pad_token_id
    prompts, completions = _rows()
    single = _one_at_a_time(reward, prompts, completions)
    np.testing.assert_allclose(reward.score(prompts, completions), single, atol=1e-5, rtol=0)
    reward.pad_token_id = reward.tokenizer.pad_token_id  # what rmteacher did before: wrong scores, silently
    assert np.abs(reward.score(prompts, completions) - single).max() > 1e-2


def test_a_config_without_pad_id_gets_the_tokenizers_as_trl_sets_it(zoo: Any) -> None:
    reward = load_reward(f"rm={zoo.reward_models['gpt2']}")  # GPT-2: no pad token anywhere; EOS pads
    assert isinstance(reward, ModelReward)
    assert reward.model.config.pad_token_id == reward.pad_token_id == reward.tokenizer.eos_token_id


def test_position_overflow_truncates_the_prompt_from_the_left_and_counts(zoo: Any) -> None:
    """rm-gpt2 has 64 learned positions: a long prompt used to end in IndexError (issue 10, item 6)."""
    reward = load_reward(f"rm={zoo.reward_models['gpt2']}")
    assert isinstance(reward, ModelReward)
    assert reward.max_length == 64  # from config.n_positions
    long_prompt = " ".join(["the road was warm and the sky stays small"] * 30)
    prompts = [long_prompt, long_prompt, "short one"]
    completions = ["a bird sings at dawn.", "we walk home.", "ok."]
    scores = reward.score(prompts, completions)
    assert np.isfinite(scores).all()
    assert (reward.num_truncated, reward.num_scored) == (2, 3)
    # The kept tokens are the last 64: the completion whole, the prompt cut from the left.
    ids = reward.tokenizer(render_conversation(reward.tokenizer, long_prompt, "we walk home."))["input_ids"][-64:]
    assert reward.tokenizer.decode(ids).endswith("sky stays small\nwe walk home.<|endoftext|>")
    direct = reward.model(input_ids=__import__("torch").tensor([ids])).logits[0, 0].item()
    assert scores[1] == pytest.approx(direct, abs=1e-5)


def test_max_length_can_be_set(zoo: Any) -> None:
    reward = load_reward(f"rm={zoo.reward_models['qwen2']}", max_length=40)
    assert isinstance(reward, ModelReward)
    prompts, completions = _rows()
    scores = reward.score(prompts, completions)
    np.testing.assert_allclose(scores, _one_at_a_time(reward, prompts, completions), atol=1e-5, rtol=0)
    assert 0 < reward.num_truncated < reward.num_scored


def test_conversational_and_plain_prompts_give_the_same_scores(zoo: Any) -> None:
    for path in zoo.reward_models.values():
        reward = load_reward(f"rm={path}")
        plain = reward.score(["we walk home", "we walk home"], ["ok.", "slowly."])
        conversation = [{"role": "user", "content": "we walk home"}]
        np.testing.assert_array_equal(reward.score([conversation, conversation], ["ok.", "slowly."]), plain)


def test_system_prompt_reaches_the_reward_model(zoo: Any) -> None:
    plain = load_reward(f"rm={zoo.reward_models['qwen2']}")
    with_system = load_reward(f"rm={zoo.reward_models['qwen2']}", system_prompt="be brief.")
    conversation = [{"role": "system", "content": "be brief."}, {"role": "user", "content": "hi"}]
    assert with_system.score(["hi"], ["ok."])[0] == pytest.approx(plain.score([conversation], ["ok."])[0], abs=1e-6)
    assert with_system.score(["hi"], ["ok."])[0] != pytest.approx(plain.score(["hi"], ["ok."])[0], abs=1e-3)


def test_bfloat16_scores_are_close_to_float32(zoo: Any) -> None:
    import torch

    full = load_reward(f"rm={zoo.reward_models['llama']}")
    half = load_reward(f"rm={zoo.reward_models['llama']}", dtype="bfloat16")
    assert isinstance(half, ModelReward)
    assert next(half.model.parameters()).dtype == torch.bfloat16
    prompts, completions = _rows()
    np.testing.assert_allclose(half.score(prompts, completions), full.score(prompts, completions), atol=0.3)


def test_free_releases_the_model(zoo: Any) -> None:
    with load_reward(f"rm={zoo.reward_models['gpt2']}") as reward:  # type: ignore[attr-defined]
        assert reward.score(["a"], ["b"]).shape == (1,)
    assert reward.model is None
    with pytest.raises(RuntimeError, match="reward model 'rm' was freed"):
        reward.score(["a"], ["b"])


def test_a_model_without_a_usable_cache_falls_back_to_whole_sequences_and_says_so(
    zoo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reward = load_reward(f"rm={zoo.reward_models['qwen2']}")
    assert isinstance(reward, ModelReward) and reward.share_prefix

    def no_cache(*args: Any, **kwargs: Any) -> None:  # as a model returning a legacy tuple cache fails
        raise AttributeError("'tuple' object has no attribute 'batch_select_indices'")

    monkeypatch.setattr(reward, "_score_shared", no_cache)
    prompts, completions = _rows()
    with pytest.warns(
        UserWarning,
        match=r"reward model 'rm' \(Qwen2ForSequenceClassification\): scoring on a shared "
        r"prompt prefix failed \(AttributeError: 'tuple' .*\); it scores whole sequences from now on",
    ):
        scores = reward.score(prompts, completions)
    whole = load_reward(f"rm={zoo.reward_models['qwen2']}", share_prefix=False)
    np.testing.assert_allclose(scores, whole.score(prompts, completions), atol=1e-5, rtol=0)
    assert not reward.share_prefix  # said once: the next call does not try again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reward.score(prompts, completions)


def test_every_reward_can_be_freed() -> None:
    """``Reward.free()``: a function holds no model, so freeing it changes nothing and it still scores."""
    reward = load_reward("gold=rmteacher.sandbox.task:ground_truth")
    assert isinstance(reward, CallableReward)
    reward.free()
    assert reward.score(["sort: cba"], ["abc"]).shape == (1,)


def test_bad_reward_model_settings_are_errors(zoo: Any) -> None:
    with pytest.raises(ValueError, match="max_tokens_per_batch must be >= 1; got 0"):
        load_reward(f"rm={zoo.reward_models['gpt2']}", max_tokens_per_batch=0)
    with pytest.raises(ValueError, match="max_length must be >= 2; got 1"):
        load_reward(f"rm={zoo.reward_models['gpt2']}", max_length=1)
    reward = load_reward(f"rm={zoo.reward_models['gpt2']}")
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        reward.score(["a", "b"], ["c"])


def test_pad_id_outside_the_vocabulary_is_an_error(zoo: Any) -> None:
    reward = load_reward(f"rm={zoo.reward_models['qwen2']}")
    assert isinstance(reward, ModelReward)
    reward.model.config.pad_token_id = 10**6
    with pytest.raises(ValueError, match=r"config\.pad_token_id 1000000 is outside its vocabulary"):
        ModelReward("rm", reward.model, reward.tokenizer)


def test_a_model_without_any_pad_or_eos_is_an_error(zoo: Any) -> None:
    from types import SimpleNamespace

    reward = load_reward(f"rm={zoo.reward_models['gpt2']}")
    assert isinstance(reward, ModelReward)
    reward.model.config.pad_token_id = None
    with pytest.raises(ValueError, match="reward model 'rm': no pad token in its config or tokenizer, and no EOS"):
        ModelReward("rm", reward.model, SimpleNamespace(pad_token_id=None, eos_token_id=None, model_max_length=64))


# ------------------------------------------------------------------------------------------- reward functions


def _recording(calls: list[dict[str, Any]]) -> Any:
    def reward_fn(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        calls.append({"prompts": prompts, "completions": completions, **kwargs})
        return [None if c == "none" else float(len(str(c))) for c in completions]

    return reward_fn


def test_reward_functions_get_per_sample_columns_as_trl_passes_them() -> None:
    calls: list[dict[str, Any]] = []
    reward = CallableReward("f", _recording(calls), batch_size=2)
    answers = pd.Series(["a", "b", "c"])
    values = reward.score(
        ["p0", "p1", "p2"], ["x", "yy", "none"], answer=answers, weight=np.array([1, 2, 3]), scale=0.5, tags=["t"]
    )
    np.testing.assert_array_equal(values, [1.0, 2.0, np.nan])
    assert [c["answer"] for c in calls] == [["a", "b"], ["c"]]
    assert [c["weight"] for c in calls] == [[1, 2], [3]] and type(calls[0]["weight"][0]) is int
    assert all(c["scale"] == 0.5 and c["tags"] == ["t"] for c in calls)  # not per sample: passed as given
    assert calls[0]["prompts"] == ["p0", "p1"] and calls[0]["completions"] == ["x", "yy"]


def test_reward_functions_get_conversational_completions_for_conversational_prompts() -> None:
    """TRL's GRPOTrainer passes [{"role": "assistant", "content": text}] when the prompt is a conversation."""
    calls: list[dict[str, Any]] = []
    conversation = [{"role": "user", "content": "hi"}]
    CallableReward("f", _recording(calls)).score([conversation, "plain"], ["ok", "fine"])
    assert calls[0]["prompts"] == [conversation, "plain"]
    assert calls[0]["completions"] == [[{"role": "assistant", "content": "ok"}], "fine"]


def test_reference_answer_ground_truth() -> None:
    def match_answer(prompts: list[Any], completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
        return [float(c.strip() == a) for c, a in zip(completions, answer, strict=True)]

    reward = CallableReward("gt", match_answer)
    assert reward.score(["2+2?", "3+3?"], [" 4", "5"], answer=["4", "6"]).tolist() == [1.0, 0.0]


def test_reward_function_errors_name_the_reward() -> None:
    def broken(prompts: list[Any], completions: list[Any], answer: list[str]) -> list[float]:
        return [0.0]

    with pytest.raises(RewardError, match=r"reward 'gt' raised TypeError: .*missing 1 required .*'answer'"):
        CallableReward("gt", broken).score(["a"], ["b"])
    with pytest.raises(RewardError, match="reward 'gt' returned 1 values for 2 completions"):
        CallableReward("gt", broken).score(["a", "b"], ["c", "d"], answer=["x", "y"])
    with pytest.raises(ValueError, match="reward 'gt': 2 prompts but 1 completions"):
        CallableReward("gt", broken).score(["a", "b"], ["c"])


@pytest.mark.parametrize(
    ("value", "match"),
    [("high", r"returned 'high' \(a string\) for completion 1"), ("1.5", r"returned '1\.5' \(a string\)"),
     ([1.0], r"returned \[1\.0\] \(list\) for completion 1")],
)  # fmt: skip
def test_a_reward_returning_text_is_refused_by_name(value: object, match: str) -> None:

    reward = CallableReward(name="judge", fn=lambda prompts, completions, **kwargs: [0.5, value])
    with pytest.raises(RewardError, match=f"reward 'judge' {match}"):
        reward.score(["a", "b"], ["x", "y"])


def test_a_reward_module_in_the_current_directory_gets_the_path_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    (tmp_path / "myrewards_hint.py").write_text("def r(prompts, completions, **kw):\n    return [0.0] * len(prompts)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    with pytest.raises(ModelLoadError, match=r"myrewards_hint\.py is in the current directory.*PYTHONPATH=\."):
        load_reward("myrewards_hint:r")
