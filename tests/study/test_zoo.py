"""`rmteacher study --quick` through the CLI on real architectures (tests/zoo.py): the template-less GPTNeoX policy
(TRL's standard prompt format in the RL stage, where a Pythia-like policy used to crash), GPT2 and Qwen2 reward
models with tokenizers of their own as the candidates (no reward-model training), conversational prompts and a
reference-answer ground truth fed by the prompts table's ``answer`` column in every stage."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from rmteacher.cli import main

pytestmark = pytest.mark.slow

REWARDS = '''
import json
import os


def match_answer(prompts, completions, answer, **kwargs):
    """Reference-answer ground truth; writes each call's inputs to $ZOO_RECORD."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    with open(os.environ["ZOO_RECORD"], "a") as handle:
        for prompt, text, reference in zip(prompts, texts, answer, strict=True):
            row = {"prompt": prompt, "completion": text, "answer": reference, "trl": "trainer_state" in kwargs}
            handle.write(json.dumps(row) + "\\n")
    return [float(a in t) - 0.01 * len(t.split()) for t, a in zip(texts, answer, strict=True)]
'''
WORDS = ["road", "sky", "cat", "dog", "fox", "river", "mill", "bird", "leaves", "dawn", "home", "light"]


def test_study_quick_on_real_architectures(
    zoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "zoo_study_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("ZOO_RECORD", str(record))
    ids = [f"p{i}" for i in range(len(WORDS))]
    prompts = [{"prompt_id": i, "prompt": [{"role": "user", "content": f"say {w}"}], "answer": w}
               for i, w in zip(ids, WORDS, strict=True)]  # fmt: skip
    # Labelled pairs (the paper's convention): the ground truth's labels are the off-policy accuracy's reference.
    pairs = [{"prompt_id": i, "chosen": f"{w}.", "rejected": "the lazy fox ran off.", "score_chosen": 1.0,
              "score_rejected": 0.0} for i, w in zip(ids, WORDS, strict=True)]  # fmt: skip
    for name, rows in (("prompts", prompts), ("pairs", pairs)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    out = tmp_path / "study"
    # --learning-rate 1e-3 moves the tiny policy within 2 steps, so the teachers' increases differ and the
    # correlations over them are defined.
    args = ["study", "--quick", "--out", str(out), "--policy", str(zoo.policies["neox"]),
            "--prompts", str(tmp_path / "prompts.jsonl"), "--eval-prompts", str(tmp_path / "prompts.jsonl"),
            "--pairs", str(tmp_path / "pairs.jsonl"), "--ground-truth", "zoo_study_rewards:match_answer",
            "--reward-model", f"gpt2={zoo.reward_models['gpt2']}",
            "--reward-model", f"qwen2={zoo.reward_models['qwen2']}",
            "--eval-num-prompts", "8", "--eval-samples", "3", "--rl-steps", "2", "--rl-evals", "1",
            "--max-new-tokens", "10", "--learning-rate", "1e-3", "--no-progress"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert (out / "report.md").is_file()

    table = pd.read_csv(out / "table1.csv").set_index("reward_model")
    assert set(table.index) == {"gpt2", "qwen2", "ground_truth_scaled", "ground_truth"}
    assert table[["reward_variance", "on_policy_accuracy", "off_policy_accuracy"]].notna().all().all()
    for teacher in ("gpt2", "qwen2", "ground_truth_scaled", "ground_truth"):  # one RLOO run each, both steps
        lines = (out / "rl" / teacher / "seed0" / "metrics.jsonl").read_text().splitlines()
        train = [r for r in map(json.loads, lines) if r["event"] == "train" and "reward" in r]
        assert [r["step"] for r in train] == [1, 2], teacher
        assert all(math.isfinite(r[k]) for r in train for k in ("loss", "reward", "rewards/ground_truth/mean"))

    # The ground truth got each prompt's own answer in evaluation and in TRL's training calls; no special text.
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert any(c["trl"] for c in calls) and any(not c["trl"] for c in calls)
    for call in calls:
        assert call["prompt"] == [{"role": "user", "content": f"say {call['answer']}"}]
        assert "<|" not in call["completion"]
    samples = pd.read_parquet(out / "evaluate" / "samples.parquet")
    assert dict(zip(samples["prompt_id"], samples["answer"], strict=True)) == {
        i: w for i, w in zip(ids, WORDS, strict=True) if i in set(samples["prompt_id"])
    }


@pytest.mark.parametrize("policy", ["neox", "qwen2", "llama"])
def test_system_prompt_check_passes_on_real_templates(zoo, tmp_path: Path, policy: str) -> None:  # type: ignore[no-untyped-def]
    """The study's early check renders --system-prompt through the policy's own template (none for GPTNeoX, ChatML,
    Llama-3): each takes a system message, so the check passes; the sandbox's, which does not, is refused in
    tests/study/test_reward_models.py."""
    from rmteacher.study.reward_models import check_policy_renders
    from rmteacher.study.stages import StudyConfig

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": [{"role": "user", "content": "say road"}]}) + "\n")
    config = StudyConfig(out=tmp_path / "run", system_prompt="Be brief.")
    check_policy_renders(str(zoo.policies[policy]), prompts, config)
    assert not (tmp_path / "run").exists()
