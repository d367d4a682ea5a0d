"""`rmteacher train-rm` and `rmteacher rl` through the CLI on real architectures (tests/zoo.py).

train-rm: a policy of one architecture samples the on-policy pairs, a causal LM of another (its own tokenizer and
prompt format) becomes the reward model; conversational prompts with a system prompt; a reference-answer ground
truth fed by the prompts table's ``answer`` column. rl: RLOO and GRPO on the template-less GPTNeoX policy (TRL's
standard prompt format) and on the ChatML Qwen2 policy, with a zoo reward model.

The ground truth records what it is given (``ZOO_RECORD``), so the tests see what reward functions see.
"""

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file, save_file

from rmteacher.cli import main
from rmteacher.commands.sft import sft_rows
from rmteacher.loading import load_policy, load_tokenizer
from rmteacher.rendering import encode_rendered, render_conversation, render_prompt
from rmteacher.rewards import ModelReward, load_reward
from rmteacher.sampling import end_token_ids, sample_completions
from rmteacher.tables import TableError
from rmteacher.threads import torch_threads
from rmteacher.training.reward_model import TrainRMConfig, encode_preferences

pytestmark = pytest.mark.slow

REWARDS = '''
import json
import os


def match_answer(prompts, completions, answer, **kwargs):
    """Reference-answer ground truth: 1 when the completion holds the row's answer, minus a length cost. Writes each
    call's inputs to $ZOO_RECORD."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    with open(os.environ["ZOO_RECORD"], "a") as handle:
        for prompt, text, reference in zip(prompts, texts, answer, strict=True):
            row = {"prompt": prompt, "completion": text, "answer": reference, "trl": "trainer_state" in kwargs}
            handle.write(json.dumps(row) + "\\n")
    ids = kwargs.get("completion_ids")  # TRL's: each completion's token ids, up to and including its end token
    if ids is not None:
        with open(os.environ["ZOO_RECORD"] + ".ids", "a") as handle:
            handle.write("".join(json.dumps(list(i)) + "\\n" for i in ids))
    return [float(a in t) - 0.01 * len(t.split()) for t, a in zip(texts, answer, strict=True)]
'''
WORDS = ["road", "sky", "cat", "dog", "fox", "river", "mill", "bird"]
SYSTEM = "Be brief."


def recorded(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Conversational prompts with an ``answer`` column, pairs referring to them by prompt_id, the ground truth."""
    (tmp_path / "zoo_training_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ZOO_RECORD", str(tmp_path / "record.jsonl"))
    ids = [f"p{i}" for i in range(len(WORDS))]
    rows = [{"prompt_id": i, "prompt": [{"role": "user", "content": f"say {w}"}], "answer": w} for i, w in
            zip(ids, WORDS, strict=True)]  # fmt: skip
    pairs = [{"prompt_id": i, "chosen": f"{w}.", "rejected": "the lazy fox ran off."} for i, w in
             zip(ids, WORDS, strict=True)]  # fmt: skip
    files = {"prompts": tmp_path / "prompts.jsonl", "pairs": tmp_path / "pairs.jsonl"}
    for name, table in (("prompts", rows), ("pairs", pairs)):
        files[name].write_text("".join(json.dumps(r) + "\n" for r in table))
    return {**files, "record": tmp_path / "record.jsonl"}


@pytest.mark.parametrize(("policy", "init"), [("llama", "neox"), ("neox", "qwen2")])
def test_train_rm_with_a_reward_model_of_another_architecture(
    zoo, task: dict[str, Path], tmp_path: Path, policy: str, init: str, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "rm"
    args = ["train-rm", "--out", str(out), "--policy", str(zoo.policies[policy]), "--init", str(zoo.policies[init]),
            "--prompts", str(task["prompts"]), "--pairs", str(task["pairs"]), "--system-prompt", SYSTEM,
            "--ground-truth", "gold=zoo_training_rewards:match_answer", "--on-policy-fraction", "1.0", "--ties", "keep",
            "--max-new-tokens", "12", "--max-steps", "3", "--batch-size", "4", "--logging-steps", "1",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert "LOAD REPORT" not in capsys.readouterr().err  # the new head on a causal LM is expected, not reported

    # Every prompt was sampled twice, as evaluate samples (same stopping, the system prompt), and labelled by the
    # ground truth with its own row's answer.
    calls = recorded(task["record"])
    assert len(calls) == 2 * len(WORDS)
    for call in calls:
        assert call["prompt"] == [{"role": "user", "content": f"say {call['answer']}"}]
        assert "<|" not in call["completion"]
    model, tokenizer = load_policy(str(zoo.policies[policy]), device="cpu")
    conversations = [[{"role": "user", "content": f"say {w}"}] for w in WORDS]
    with torch_threads(1):  # as train-rm's --cpu-threads 1 (other thread counts may round differently)
        samples = sample_completions(model, tokenizer, conversations, samples_per_prompt=2, max_new_tokens=12,
                                     seed=0, prompts_per_batch=64, system_prompt=SYSTEM, progress=False)  # fmt: skip
    assert sorted(c["completion"] for c in calls) == sorted(c.text for c in samples)
    assert any(c.finished for c in samples) and any(c.text for c in samples)
    prefs = pd.read_parquet(out / "preferences.parquet")
    assert (prefs["source"] == "on_policy").all() and len(prefs) == len(WORDS)
    answers = dict(zip([f"p{i}" for i in range(len(WORDS))], WORDS, strict=True))
    for _, row in prefs.iterrows():
        for side in ("chosen", "rejected"):
            text, answer = row[side], answers[row["prompt_id"]]
            assert row[f"score_{side}"] == pytest.approx(float(answer in text) - 0.01 * len(text.split()))

    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "loss" in s]
    assert [s["step"] for s in steps] == [1, 2, 3] and all(math.isfinite(s["loss"]) for s in steps)

    # The trained model scores what it was trained on: its own tokenizer and format, the system prompt included.
    reward = load_reward(f"rm={out / 'model'}", system_prompt=SYSTEM)
    assert isinstance(reward, ModelReward)
    assert reward.tokenizer.get_vocab() == load_tokenizer(str(zoo.policies[init]), kind="init").get_vocab()
    encoded, too_long = encode_preferences(prefs, reward.tokenizer, max_length=64, system_prompt=SYSTEM)
    assert too_long == 0
    first = render_conversation(reward.tokenizer, prefs["prompt"][0], prefs["chosen"][0], system_prompt=SYSTEM)
    assert encode_rendered(reward.tokenizer, [first])[0] == encoded["chosen_ids"][0]
    assert reward.tokenizer.decode(encoded["chosen_ids"][0]).count(SYSTEM) == 1
    with torch.inference_mode():
        direct = [reward.model(input_ids=torch.tensor([ids])).logits[0, 0].item() for ids in encoded["chosen_ids"]]
    scored = reward.score(prefs["prompt"].tolist(), prefs["chosen"].tolist())
    np.testing.assert_allclose(scored, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algo", ["rloo", "grpo"])
@pytest.mark.parametrize("policy", ["neox", "qwen2"])
def test_rl_trains_template_less_and_chat_policies(
    zoo, task: dict[str, Path], tmp_path: Path, policy: str, algo: str, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    out, steps, prompts_per_step, k = tmp_path / "rl", 2, 2, 2
    args = ["rl", "--algo", algo, "--out", str(out), "--policy", str(zoo.policies[policy]),
            "--reward-model", f"rm={zoo.reward_models['gpt2']}", "--ground-truth", "zoo_training_rewards:match_answer",
            "--prompts", str(task["prompts"]), "--eval-prompts", str(task["prompts"]), "--system-prompt", SYSTEM,
            "--max-steps", str(steps), "--prompts-per-step", str(prompts_per_step), "--samples-per-prompt", str(k),
            "--eval-every", "1", "--eval-num-prompts", "4", "--eval-samples", "2", "--max-new-tokens", "12",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert "Loading weights" not in capsys.readouterr().err  # --no-progress: no bars at all

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["event"] == "train" and "reward" in r]
    assert [r["step"] for r in train] == list(range(1, steps + 1))
    for record in train:
        for key in ("loss", "reward", "rewards/proxy/mean", "rewards/ground_truth/mean", "entropy"):
            assert math.isfinite(record[key]), (key, record)
        assert record["completions/mean_length"] <= 12
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in evals] == list(range(steps + 1))
    assert all(math.isfinite(r[key]) for r in evals for key in ("kl", "proxy_mean", "ground_truth_mean"))
    before = load_file(str(zoo.policies[policy] / "model.safetensors"))
    after = load_file(str(out / "policy" / "model.safetensors"))
    assert any(not np.array_equal(before[name], after[name]) for name in after)  # the steps trained

    # What the reward functions saw in training (TRL's calls) and in rmteacher's evaluations: the user's prompt,
    # its own row's answer, completions without special or end-of-turn text.
    calls = recorded(task["record"])
    in_training = [c for c in calls if c["trl"]]
    assert len(in_training) == steps * prompts_per_step * k
    assert len(calls) - len(in_training) == (steps + 1) * 4 * 2  # evaluations at steps 0..steps
    for call in calls:
        assert call["prompt"] == [{"role": "user", "content": f"say {call['answer']}"}]
        assert "<|" not in call["completion"], call["completion"]  # no special-token text
    # TRL stopped at the policy's end tokens (ChatML's <|im_end|> too): an end id only ever ends a completion.
    model, tokenizer = load_policy(str(zoo.policies[policy]), device="cpu")
    ends = set(end_token_ids(model, tokenizer))
    completion_ids = [json.loads(line) for line in Path(f"{task['record']}.ids").read_text().splitlines()]
    assert len(completion_ids) == len(in_training)
    assert all(not ends & set(ids[:-1]) for ids in completion_ids)
    assert any(ids and ids[-1] in ends for ids in completion_ids)  # some finished within 12 tokens


def test_rl_has_no_stop_strings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """TRL's trainers stop only on end tokens, so rl offers no --stop (the README says why and what to do)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["rl", "--out", str(tmp_path / "rl"), "--stop", "\n"])
    assert exit_info.value.code == 2 and "--stop" in capsys.readouterr().err


def test_train_rm_input_errors_name_the_argument(
    zoo, task: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="--prompt-column 'question' names a column of --prompts, and no --prompts"):
        TrainRMConfig(out=tmp_path / "x", prompt_column="question")
    base = ["train-rm", "--policy", str(zoo.policies["neox"]), "--prompts", str(task["prompts"]), "--no-progress"]

    # Pairs with their own prompts but no prompt_id cannot refer to --prompts.
    unlinked = tmp_path / "unlinked.jsonl"
    unlinked.write_text(json.dumps({"prompt": "say sky", "chosen": "sky.", "rejected": "dog."}) + "\n")
    assert main([*base, "--out", str(tmp_path / "a"), "--pairs", str(unlinked)]) == 2
    assert "row 1 (prompt_id 0) does not refer to a prompt of --prompts" in capsys.readouterr().err

    # A reward model's body must come from the checkpoint; only the new head may be missing.
    broken = tmp_path / "broken"
    shutil.copytree(zoo.policies["neox"], broken)
    weights = load_file(str(broken / "model.safetensors"))
    dropped = next(name for name in weights if name.startswith("gpt_neox.layers.0."))
    save_file({k: v for k, v in weights.items() if k != dropped}, str(broken / "model.safetensors"))
    args = [*base, "--out", str(tmp_path / "b"), "--pairs", str(task["pairs"]), "--init", str(broken)]
    assert main(args) == 2
    assert f"lacks 1 weight(s) of the model's body, e.g. {dropped!r}" in capsys.readouterr().err


def test_sft_rows_are_what_sampling_renders(zoo) -> None:  # type: ignore[no-untyped-def]
    """sft trains on the prompt text the policy is later sampled from: plain text without a chat template,
    the conversation (system prompt included) for TRL to template with one."""
    plain, chat = (load_tokenizer(str(zoo.policies[n]), kind="policy") for n in ("neox", "qwen2"))
    conversation = [{"role": "user", "content": "say sky"}]
    frame = pd.DataFrame({"q": [conversation, "say dog"], "a": ["sky.", "dog."]})
    rows = sft_rows(frame, plain, prompt_column="q", completion_column="a", system_prompt=SYSTEM)
    assert rows == [
        {"prompt": f"{SYSTEM}\n\nsay sky", "completion": "sky."},
        {"prompt": f"{SYSTEM}\n\nsay dog", "completion": "dog."},
    ]
    assert rows[0]["prompt"] == render_prompt(plain, conversation, system_prompt=SYSTEM)
    rows = sft_rows(frame, chat, prompt_column="q", completion_column="a", system_prompt=SYSTEM)
    assert rows[0] == {
        "prompt": [{"role": "system", "content": SYSTEM}, *conversation],
        "completion": [{"role": "assistant", "content": "sky."}],
    }
    rendered = chat.apply_chat_template(rows[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert rendered == render_prompt(chat, conversation, system_prompt=SYSTEM)

    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, *conversation]
    with pytest.raises(TableError, match=r"--data row 1, column 'q': tokenizer .* has no chat template"):
        sft_rows(pd.DataFrame({"q": [turns], "a": ["sky."]}), plain, prompt_column="q", completion_column="a")
