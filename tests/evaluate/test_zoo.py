"""`rmteacher evaluate` through the CLI on real architectures (tests/zoo.py): each policy of the zoo (template-less
GPTNeoX, ChatML Qwen2, Llama-3-style Llama with two end tokens) with reward models of other architectures and
tokenizers, conversational prompts with a system prompt, a reference-answer ground truth fed by an extra column, and
``--samples`` giving the same metrics as the run that generated the samples."""

import json
from pathlib import Path

import pandas as pd
import pytest

from rmteacher.cli import main

pytestmark = pytest.mark.slow

REWARDS = '''
def match_answer(prompts, completions, answer, **kwargs):
    """Reference-answer ground truth: 1 when the completion contains the row's answer word. Completions of
    conversational prompts come as TRL passes them, ``[{"role": "assistant", "content": ...}]``."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [float(a in t) - 0.1 * len(t.split()) / 10 for t, a in zip(texts, answer, strict=True)]
'''


@pytest.fixture
def task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    (tmp_path / "zoo_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    words = ["road", "sky", "cat", "dog", "fox", "river"]
    rows = [{"prompt": [{"role": "user", "content": f"say {w}"}], "answer": w} for w in words]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # Unlabelled pairs that refer to the prompts: the ground truth needs each prompt's `answer` to label them.
    pairs = [{"prompt_id": i, "chosen": w, "rejected": "no"} for i, w in enumerate(words)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    return {"prompts": tmp_path / "prompts.jsonl", "pairs": tmp_path / "pairs.jsonl"}


@pytest.mark.parametrize("policy", ["neox", "qwen2", "llama"])
def test_evaluate_on_real_architectures(
    zoo, task: dict[str, Path], tmp_path: Path, policy: str, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    common = [
        "--reward-model", f"gpt2={zoo.reward_models['gpt2']}", "--reward-model", f"qwen2={zoo.reward_models['qwen2']}",
        "--ground-truth", "gold=zoo_rewards:match_answer", "--num-resamples", "200", "--no-progress",
    ]  # fmt: skip
    args = ["evaluate", "--out", str(out), "--policy", str(zoo.policies[policy]), "--prompts", str(task["prompts"])]
    args += ["--samples-per-prompt", "3", "--max-new-tokens", "12", "--pairs", str(task["pairs"])]
    if policy != "neox":  # the template-less policy renders one user message as its text; no system turn
        args += ["--system-prompt", "Be brief."]
    assert main([*args, *common]) == 0, capsys.readouterr().err
    samples = pd.read_parquet(out / "samples.parquet")
    assert set(samples["answer"]) == {"road", "sky", "cat", "dog", "fox", "river"}  # extra column kept per sample
    for text in samples["completion"]:
        assert "<|" not in text, text  # no special-token text (a tiny policy may still write words like "assistant")
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["finished_share"] <= 1.0
    assert set(metrics["reward_models"]) == {"gpt2", "qwen2", "gold"}  # the ground truth keeps the user's name
    assert metrics["ground_truth"] == {"name": "gold", "spec": "zoo_rewards:match_answer"}
    # Each pair's chosen is its prompt's answer: the ground truth, given `answer`, orders every pair.
    assert metrics["reward_models"]["gold"]["off_policy_accuracy"]["estimate"] == 1.0

    # The same samples brought from elsewhere: no policy loaded, the same metrics.
    given = tmp_path / "given.parquet"
    samples[["prompt_id", "sample_id", "prompt", "completion", "answer"]].to_parquet(given)
    again = tmp_path / "again"
    extra = ["--system-prompt", "Be brief."] if policy != "neox" else []
    assert main(["evaluate", "--out", str(again), "--samples", str(given), *extra, *common]) == 0
    second = json.loads((again / "metrics.json").read_text())
    for name, entry in metrics["reward_models"].items():
        for key in ("reward_variance", "on_policy_accuracy"):
            assert second["reward_models"][name][key]["estimate"] == pytest.approx(entry[key]["estimate"], abs=1e-9)
