"""`rmteacher rl`'s model options and defaults: --dtype, --device-map, --rm-max-length, --gradient-accumulation-steps
and --gradient-checkpointing reach TRL's trainer (a bfloat16 run on a zoo model, tests/zoo.py); TRL's learning rate
and completion length for a user's policy, the sandbox's own on the sandbox, written to config.json; the zero-variance
prompt groups per step against a hand-constructed reward, next to TRL's frac_reward_zero_std; the warnings for
unfinished completions and for 16-bit weights a step cannot move; bad values exit with 2."""

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from safetensors.torch import load_file as load_torch

import rmteacher.training.rl as rl_module
from rmteacher.cli import main
from rmteacher.training.rl import RLConfig, frozen_share, resolve_defaults, trl_arguments, trl_default

REWARDS = '''
import json
import os


def half_flat(prompts, completions, flat, **kwargs):
    """0 on the prompts flagged ``flat``; elsewhere 0, 1, 0, 1, ... over the batch, so that each of TRL's groups
    (consecutive completions of one prompt) varies. Writes the flags of each training call to $TOY_RECORD."""
    if "trainer_state" in kwargs:
        with open(os.environ["TOY_RECORD"], "a") as handle:
            handle.write(json.dumps({"step": kwargs["trainer_state"].global_step + 1, "flat": list(flat)}) + "\\n")
    return [0.0 if f else float(i % 2) for i, f in enumerate(flat)]


def answer(prompts, completions, answer, **kwargs):
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [float(a in t) for t, a in zip(texts, answer, strict=True)]
'''
WORDS = ["road", "sky", "cat", "dog", "fox", "river", "mill", "bird"]
FLAT = 6  # the first six prompts get a constant proxy reward


@pytest.fixture
def task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    (tmp_path / "toy_rl_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TOY_RECORD", str(tmp_path / "record.jsonl"))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(
        json.dumps({"prompt_id": f"p{i}", "prompt": [{"role": "user", "content": f"say {w}"}], "answer": w,
                    "flat": i < FLAT}) + "\n" for i, w in enumerate(WORDS)
    ))  # fmt: skip
    return {"prompts": prompts, "record": tmp_path / "record.jsonl"}


def rl_args(out: Path, policy: Path, reward: str, prompts: Path, *extra: str) -> list[str]:
    return ["rl", "--out", str(out), "--policy", str(policy), "--reward-model", reward, "--prompts", str(prompts),
            "--eval-prompts", str(prompts), "--eval-num-prompts", "4", "--eval-samples", "2", "--no-progress",
            *extra]  # fmt: skip


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def train_steps(out: Path) -> list[dict[str, Any]]:
    return [r for r in records(out) if r["event"] == "train" and "reward" in r]


# ------------------------------------------------------------------------------------------------ defaults


@pytest.mark.parametrize("algo", ["rloo", "grpo"])
def test_unset_options_take_trls_defaults_or_the_sandboxs(tmp_path: Path, algo: str) -> None:
    from trl import GRPOConfig, RLOOConfig

    trl_config = (RLOOConfig if algo == "rloo" else GRPOConfig)(output_dir=str(tmp_path), use_cpu=True)
    assert (trl_default(algo, "learning_rate"), trl_default(algo, "max_new_tokens")) == (1e-6, 512)
    assert trl_config.learning_rate == 1e-6 and trl_config.max_completion_length == 512

    config = RLConfig(out=tmp_path, algo=algo)  # type: ignore[arg-type]
    users, defaults = resolve_defaults(config)
    assert (users.learning_rate, users.max_new_tokens, users.dtype) == (1e-6, 512, None)
    trainer = "RLOOConfig" if algo == "rloo" else "GRPOConfig"
    assert defaults["learning_rate"] == {"value": 1e-6, "source": f"TRL's {trainer}.learning_rate default"}
    assert defaults["max_new_tokens"]["value"] == 512
    assert defaults["dtype"]["value"] == "float32"  # the policy; the reward models keep their checkpoint's
    sandbox, defaults = resolve_defaults(config, sandbox=True)
    assert (sandbox.learning_rate, sandbox.max_new_tokens) == (5e-5, 16)
    assert defaults["learning_rate"]["source"] == "the sandbox task's default"

    given = RLConfig(out=tmp_path, algo=algo, learning_rate=3e-4, max_new_tokens=7, dtype="bfloat16")  # type: ignore[arg-type]
    resolved, defaults = resolve_defaults(given, sandbox=True)
    assert (resolved.learning_rate, resolved.max_new_tokens) == (3e-4, 7) and defaults == {}


def test_help_states_trls_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """The numbers --help gives for a user's policy are the installed TRL's (not drifted)."""
    with pytest.raises(SystemExit):
        main(["rl", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    learning_rate = re.search(r"--learning-rate LEARNING_RATE .*?with your --policy, TRL's default, ([0-9.e-]+)", text)
    tokens = re.search(r"--max-new-tokens MAX_NEW_TOKENS .*?TRL's default max_completion_length, (\d+)", text)
    assert learning_rate and tokens, text
    for algo in ("rloo", "grpo"):
        assert float(learning_rate.group(1)) == trl_default(algo, "learning_rate")
        assert int(tokens.group(1)) == trl_default(algo, "max_new_tokens")
    assert "default: 5e-5 on the built-in sandbox task" in text and "default: 16 on the built-in sandbox task" in text
    assert "(default: off; TRL's: on)" in text


@pytest.mark.parametrize("algo", ["rloo", "grpo"])
def test_options_reach_trls_config(tmp_path: Path, algo: str) -> None:
    config = RLConfig(out=tmp_path, algo=algo, prompts_per_step=4, samples_per_prompt=2,  # type: ignore[arg-type]
                      gradient_accumulation_steps=2, gradient_checkpointing=True, dtype="bfloat16",
                      trust_remote_code=True)  # fmt: skip
    args = trl_arguments(config, num_rewards=2)
    assert args.gradient_accumulation_steps == 2
    assert args.per_device_train_batch_size == 4  # completions per micro-batch: 4 prompts x 2 samples in 2 parts
    assert args.generation_batch_size == 8 and args.steps_per_generation == 2  # a step still samples 4 prompts
    assert args.activation_checkpointing is True and args.gradient_checkpointing is True
    assert (args.learning_rate, args.max_completion_length) == (1e-6, 512)  # TRL's, the options being unset
    assert args.bf16 is False  # 16-bit weights train as they are (and this is a CPU)
    assert args.trust_remote_code is True  # TRL loads its reference model itself
    plain = trl_arguments(RLConfig(out=tmp_path, algo=algo, learning_rate=0.1), num_rewards=1)  # type: ignore[arg-type]
    assert plain.activation_checkpointing is False and plain.gradient_accumulation_steps == 1
    assert plain.learning_rate == 0.1


def test_frozen_share_by_hand_and_against_bfloat16_arithmetic() -> None:
    class Model(torch.nn.Module):
        def __init__(self, weights: torch.Tensor) -> None:
            super().__init__()
            self.weights = torch.nn.Parameter(weights)

    # bfloat16 keeps 8 significant bits: at |w| = 1 the spacing is 2**-7, so a step below 2**-8 rounds away; at
    # 2**-10 the spacing is 2**-17; an exact zero moves with any step.
    weights = torch.tensor([1.0, 0.0, 2.0**-10, -1.0], dtype=torch.bfloat16)
    assert frozen_share(Model(weights), 0.99 * 2.0**-8) == 0.5
    assert frozen_share(Model(weights), 1.01 * 2.0**-8) == 0.0
    # Random weights: the share equals the share that a step away from zero leaves unchanged in bfloat16.
    generator = torch.Generator().manual_seed(0)
    random = (torch.randn(4096, generator=generator) * 0.05).to(torch.bfloat16)
    for step in (1e-6, 1e-4, 1e-3):
        moved = random + torch.sign(random) * torch.tensor(step, dtype=torch.float32)
        unchanged = ((moved.to(torch.bfloat16) == random) & (random != 0)).float().mean().item()
        assert frozen_share(Model(random), step) == pytest.approx(unchanged, abs=2e-3), step
    assert frozen_share(Model(random.float()), 1e-6) == 0.0  # float32: 24 bits


# --------------------------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gradient-accumulation-steps", "0"], "--gradient-accumulation-steps must be >= 1; got 0"),
        (["--gradient-accumulation-steps", "3"], "--gradient-accumulation-steps 3 must divide the step's 8 "
         "completions (--prompts-per-step 4 x --samples-per-prompt 2) into equal micro-batches"),
        (["--rm-max-length", "4"], "--rm-max-length must be >= 8; got 4"),
        (["--learning-rate", "0"], "--learning-rate must be a finite number > 0; got 0.0"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1; got 0"),
    ],
)  # fmt: skip
def test_bad_values_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str) -> None:
    args = ["rl", "--out", str(tmp_path / "rl"), "--prompts-per-step", "4", "--samples-per-prompt", "2", *flags]
    assert main(args) == 2
    assert f"rmteacher rl: error: {message}" in capsys.readouterr().err
    assert not (tmp_path / "rl").exists()


def test_bad_dtype_and_device_map_exit_2(
    zoo, task: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_info:
        main(["rl", "--out", str(tmp_path / "a"), "--dtype", "float64"])
    assert exit_info.value.code == 2
    assert "argument --dtype: 'float64' is not one of auto, bfloat16, float16, float32" in capsys.readouterr().err
    out = tmp_path / "b"
    args = rl_args(out, zoo.policies["neox"], f"rm={zoo.reward_models['gpt2']}", task["prompts"], "--device-map",
                   "bogus", "--max-new-tokens", "4")  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"rmteacher rl: error: policy '{zoo.policies['neox']}': cannot be loaded" in err
    assert "found bogus" in err
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- zoo runs


@pytest.mark.slow
def test_bfloat16_run_with_accumulation_and_checkpointing(
    zoo, task: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    """GRPO with a KL term (so TRL builds its reference model) on the ChatML Qwen2 policy in bfloat16, placed with
    --device-map, two micro-batches per step with gradient checkpointing, and a reward model reading 8 tokens."""
    from transformers import TrainerCallback

    trainers: list[Any] = []
    checkpointing: list[bool] = []
    real_class = rl_module._trainer_class

    def recording_class(algo: str) -> Any:
        def build(**kwargs: Any) -> Any:
            trainers.append(real_class(algo)(**kwargs))
            return trainers[-1]

        return build

    class SeesCheckpointing(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            checkpointing.append(bool(model.is_gradient_checkpointing))

    monkeypatch.setattr(rl_module, "_trainer_class", recording_class)
    out = tmp_path / "rl"
    args = rl_args(out, zoo.policies["qwen2"], f"rm={zoo.reward_models['gpt2']}", task["prompts"],
                   "--algo", "grpo", "--kl-coef", "0.05", "--ground-truth", "toy_rl_rewards:answer",
                   "--max-steps", "2", "--prompts-per-step", "2", "--samples-per-prompt", "2", "--eval-every", "1",
                   "--max-new-tokens", "12",
                   "--dtype", "bfloat16", "--device-map", "cpu", "--gradient-accumulation-steps", "2",
                   "--gradient-checkpointing", "--rm-max-length", "8")  # fmt: skip
    original = rl_module.make_callbacks
    monkeypatch.setattr(rl_module, "make_callbacks", lambda *a, **k: [*original(*a, **k), SeesCheckpointing()])
    with pytest.warns(
        UserWarning, match="AdamW's steps of about --learning-rate 1e-06 per weight round away"
    ) as caught:
        assert main(args) == 0, capsys.readouterr().err

    (trainer,) = trainers
    assert trainer.args.gradient_accumulation_steps == 2 and trainer.args.per_device_train_batch_size == 2
    assert trainer.args.activation_checkpointing is True and checkpointing and all(checkpointing)
    assert trainer.args.learning_rate == 1e-6  # TRL's, for a policy of the user's
    assert trainer.model.dtype == torch.bfloat16 and trainer.ref_model.dtype == torch.bfloat16
    assert {p.device.type for p in trainer.model.parameters()} == {"cpu"}  # --device-map reaches from_pretrained:
    # test_bad_dtype_and_device_map_exit_2 shows transformers' own refusal of a bad map

    config = json.loads((out / "config.json").read_text())
    assert (config["dtype"], config["device_map"], config["rm_max_length"]) == ("bfloat16", "cpu", 8)
    assert (config["learning_rate"], config["max_new_tokens"]) == (1e-6, 12)
    assert config["defaults"] == {"learning_rate": {"value": 1e-6, "source": "TRL's GRPOConfig.learning_rate default"}}
    steps = train_steps(out)
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["proxy/truncated"] > 0 for r in steps)  # chat prompt + completion exceed 8 tokens
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["kl"]) for r in steps)

    # AdamW moves a weight by about the learning rate; in bfloat16 that rounds away for nearly all of them, which
    # the run said, and which the saved policy shows.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy_dtype"] == "bfloat16"
    below = summary["weights_below_learning_rate_resolution"]
    assert below > 0.99
    assert any(f"round away for {below:.1%} of them" in str(w.message) for w in caught)
    before = load_torch(str(zoo.policies["qwen2"] / "model.safetensors"))
    after = load_torch(str(out / "policy" / "model.safetensors"))
    assert all(t.dtype == torch.bfloat16 for t in after.values())
    changed = sum(int((after[k] != before[k].to(torch.bfloat16)).sum()) for k in after)
    total = sum(t.numel() for t in after.values())
    assert 0 < changed / total <= 1 - below + 1e-3


@pytest.mark.slow
def test_gradient_accumulation_gives_the_same_update(zoo, task: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One plain gradient step (--optimizer sgd) over 4 prompts x 2 samples, in 1 or 2 micro-batches: the same
    completions (sampled at once either way) and the same update, up to float rounding."""
    weights = {}
    for parts in ("1", "2"):
        out = tmp_path / f"ga{parts}"
        args = rl_args(out, zoo.policies["neox"], f"rm={zoo.reward_models['gpt2']}", task["prompts"], "--max-steps",
                       "1", "--eval-every", "1", "--prompts-per-step", "4", "--samples-per-prompt", "2",
                       "--max-new-tokens", "8", "--optimizer", "sgd", "--learning-rate", "0.01", "--max-grad-norm",
                       "0", "--gradient-accumulation-steps", parts)  # fmt: skip
        assert main(args) == 0
        weights[parts] = load_file(str(out / "policy" / "model.safetensors"))
    before = load_file(str(zoo.policies["neox"] / "model.safetensors"))

    def distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
        return float(np.sqrt(sum(((a[k].astype(np.float64) - b[k]) ** 2).sum() for k in a)))

    moved = distance(weights["1"], before)
    assert moved > 1e-3
    assert distance(weights["2"], weights["1"]) < 1e-4 * moved


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["rloo", "grpo"])
def test_zero_variance_groups_per_step_and_in_total(
    zoo, task: dict[str, Path], tmp_path: Path, algo: str, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    """A proxy constant on 6 of the 8 prompts and varying within every group of the others: each step's
    zero-variance groups are the flat prompts TRL drew, their rollouts those groups x k, and the summary their sum.
    TRL's frac_reward_zero_std agrees for GRPO; for RLOO it is taken after the KL penalty, which differs between
    completions once the policy moved, so it reads 0 from step 2 on while a flat prompt still teaches nothing.
    --max-new-tokens 1 cuts every completion: a warning says so before training."""
    out, k, prompts_per_step = tmp_path / "rl", 2, 4
    args = rl_args(out, zoo.policies["neox"], "flat=toy_rl_rewards:half_flat", task["prompts"], "--algo", algo,
                   "--max-steps", "3", "--eval-every", "3", "--prompts-per-step", str(prompts_per_step),
                   "--samples-per-prompt", str(k), "--max-new-tokens", "1", "--learning-rate", "1e-3",
                   "--kl-coef", "0.05")  # fmt: skip
    with pytest.warns(UserWarning, match="of the completions of the initial evaluation ran into --max-new-tokens 1 "
                      "without an end token"):  # fmt: skip
        assert main(args) == 0
    captured = capsys.readouterr()

    calls = [json.loads(line) for line in task["record"].read_text().splitlines()]
    steps = train_steps(out)
    assert [c["step"] for c in calls] == [r["step"] for r in steps] == [1, 2, 3]
    for call, record in zip(calls, steps, strict=True):
        groups = [call["flat"][i : i + k] for i in range(0, len(call["flat"]), k)]
        assert all(len(set(g)) == 1 for g in groups)  # TRL passes each prompt's k completions together
        flat = sum(g[0] for g in groups)
        assert record["reward_variance/groups"] == prompts_per_step
        assert record["reward_variance/zero_variance_groups"] == flat
        assert record["reward_variance/zero_variance_rollouts"] == flat * k
        assert record["reward_variance/zero_variance_prompts"] == flat / prompts_per_step
        if algo == "grpo" or record["step"] == 1:  # RLOO's first step: the policy is its reference, KL 0
            assert record["frac_reward_zero_std"] == pytest.approx(flat / prompts_per_step)
        else:
            assert record["kl"] != 0 and record["frac_reward_zero_std"] < flat / prompts_per_step
    flat_total = int(sum(r["reward_variance/zero_variance_groups"] for r in steps))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["zero_variance"] == {"groups": flat_total, "of_groups": 3 * prompts_per_step,
                                        "share": flat_total / (3 * prompts_per_step), "rollouts": flat_total * k,
                                        "of_rollouts": 3 * prompts_per_step * k}  # fmt: skip
    assert (f"zero-variance prompt groups (the proxy equal on all of a prompt's samples, so no gradient): "
            f"{flat_total} of 12") in captured.out  # fmt: skip

    assert summary["unfinished"]["warning_step"] == 0 and summary["unfinished"]["max_new_tokens"] == 1
    assert summary["unfinished"]["initial_share"] > 0.5
    assert all("completions/clipped_ratio" in r for r in steps)
