"""`rmteacher select-prompts` through the real CLI: on evaluate runs made by hand (variances computed by hand), each
keep rule, the output formats, bad input (exit 2), and on the sandbox: from an evaluate run, from scratch, and the
selected file fed to `rmteacher rl` unchanged."""

import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rmteacher.sandbox import SandboxTask
from rmteacher.tables import load_prompts

Run = Callable[[list[str]], tuple[int, str, str]]  # the `cli` fixture of tests/commands/conftest.py

# Three prompts, K = 4 samples of a 0/1 reward "r": 5 ones and 7 zeros in all. The run's normalization (the paper's):
# mean 5/12, variance with the n - 1 denominator (5 (7/12)^2 + 7 (5/12)^2) / 11 = 35/132, std sqrt(35/132 + 1e-8).
REWARDS = {"p0": [0, 0, 0, 0], "p1": [0, 1, 0, 1], "p2": [1, 1, 1, 0]}
STD = math.sqrt(35 / 132 + 1e-8)
# Normalized population variance: the raw one over std^2. p1: 0.25, p2: 3/16.
VARIANCE = {"p0": 0.0, "p1": 0.25 / STD**2, "p2": (3 / 16) / STD**2}
MEAN = {"p0": 0.0, "p1": 0.5, "p2": 0.75}


def conversation(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def make_run(
    root: Path, rewards: dict[str, list[float]] = REWARDS, *, conversational: bool = True,
    prompt_column: str = "prompt", unbiased: bool = False,
) -> Path:  # fmt: skip
    """An evaluate run directory as `rmteacher evaluate` writes it: samples.parquet (prompt columns repeated on every
    sample), metrics.json (the reward's normalization) and config.json."""
    rows = []
    for i, (pid, values) in enumerate(rewards.items()):
        for k, value in enumerate(values):
            text = f"sort: {'abcd'[i:]}"
            rows.append({
                "prompt_id": pid, "sample_id": k, "prompt": conversation(text) if conversational else text,
                "completion": f"c{k}", "num_tokens": 3, "finished": True, "answer": f"a{i}", "level": i,
                "r": float(value), "other": float(k),
            })  # fmt: skip
    root.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(root / "samples.parquet")
    flat = np.array([v for values in rewards.values() for v in values], dtype=float)
    stats = {"mean": flat.mean(), "std": math.sqrt(flat.var(ddof=1) + 1e-8), "method": "global",
             "num_prompts": len(rewards), "num_samples": len(next(iter(rewards.values())))}  # fmt: skip
    models = {name: {"normalization": stats, "scaled": False} for name in ("r", "other")}
    (root / "metrics.json").write_text(json.dumps({"reward_models": models}))
    (root / "config.json").write_text(json.dumps({"prompt_column": prompt_column, "unbiased": unbiased}))
    return root


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_default_rule_drops_zero_variance_with_hand_computed_values(cli: Run, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    out = tmp_path / "selected.jsonl"
    code, stdout, stderr = cli(["select-prompts", str(run), "--reward", "r", "--out", str(out)])
    assert code == 0, stderr
    rows = read_jsonl(out)
    assert [r["prompt_id"] for r in rows] == ["p1", "p2"]
    for row in rows:
        assert row["reward_variance"] == pytest.approx(VARIANCE[row["prompt_id"]], rel=1e-12)
        assert row["reward_mean"] == MEAN[row["prompt_id"]]
        assert row["num_samples"] == 4
    # The prompt's own format and columns; no sample column, no reward column.
    assert rows[0]["prompt"] == conversation("sort: bcd")
    assert (rows[0]["answer"], rows[0]["level"]) == ("a1", 1)
    assert set(rows[0]) == {"prompt_id", "prompt", "answer", "level", "reward_variance", "reward_mean", "num_samples"}
    summary = json.loads((tmp_path / "selected.summary.json").read_text())
    assert (summary["kept"], summary["dropped"], summary["zero_variance_prompts"]) == (2, 1, 1)
    assert summary["mean_variance"]["all"] == pytest.approx(sum(VARIANCE.values()) / 3)
    assert summary["noise"]["beta_binomial"]["observed_flat_share"] == pytest.approx(1 / 3)
    assert summary["noise"]["split_half"]["samples_per_half"] == 2
    assert stdout == ""
    assert "kept 2 (66.7%), dropped 1" in stderr and "selected.summary.json" in stderr
    # TRL's reader and rmteacher's read it back as the prompts they were.
    loaded = load_prompts(out)
    assert loaded["prompt"].tolist() == [conversation("sort: bcd"), conversation("sort: cd")]


def test_unbiased_run_uses_the_k_minus_1_estimator(cli: Run, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", unbiased=True)
    out = tmp_path / "selected.jsonl"
    assert cli(["select-prompts", str(run), "--reward", "r", "--out", str(out)])[0] == 0
    assert read_jsonl(out)[0]["reward_variance"] == pytest.approx(VARIANCE["p1"] * 4 / 3)


@pytest.mark.parametrize(
    ("flags", "kept"),
    [
        (["--min-variance", "0.8"], ["p1"]),  # p1 0.943, p2 0.707
        (["--min-variance", "0.5"], ["p1", "p2"]),
        (["--top-fraction", "0.3"], ["p1"]),  # ceil(0.9) = 1
        (["--top-fraction", "0.34"], ["p1", "p2"]),  # ceil(1.02) = 2
        (["--top-fraction", "1"], ["p0", "p1", "p2"]),
    ],
)
def test_keep_rules(cli: Run, tmp_path: Path, flags: list[str], kept: list[str]) -> None:
    run = make_run(tmp_path / "run")
    out = tmp_path / "selected.jsonl"
    code, _, stderr = cli(["select-prompts", str(run), "--reward", "r", "--out", str(out), *flags])
    assert code == 0, stderr
    assert [r["prompt_id"] for r in read_jsonl(out)] == kept
    if "p0" in kept:
        assert "1 kept prompt(s) have zero observed variance" in stderr


def test_parquet_output_and_plain_prompts_under_their_column(cli: Run, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", conversational=False, prompt_column="question")
    out = tmp_path / "selected.parquet"
    assert cli(["select-prompts", str(run), "--reward", "r", "--out", str(out)])[0] == 0
    table = pd.read_parquet(out)
    assert table["question"].tolist() == ["sort: bcd", "sort: cd"]
    assert "prompt" not in table.columns
    assert load_prompts(out, "question")["prompt"].tolist() == ["sort: bcd", "sort: cd"]


def test_few_samples_warn_and_columns_varying_within_a_prompt_are_named(cli: Run, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"p0": [0, 1], "p1": [1, 1]})
    frame = pd.read_parquet(run / "samples.parquet")
    frame["note"] = ["x", "y", "z", "z"]  # differs between p0's samples
    frame.to_parquet(run / "samples.parquet")
    out = tmp_path / "selected.jsonl"
    code, _, stderr = cli(["select-prompts", str(run), "--reward", "r", "--out", str(out)])
    assert code == 0, stderr
    assert "only K = 2 samples per prompt" in stderr
    assert "column(s) note vary between a prompt's samples; not written" in stderr
    assert "note" not in read_jsonl(out)[0]
    assert json.loads((tmp_path / "selected.summary.json").read_text())["noise"]["split_half"] is None


def test_an_existing_column_of_the_same_name_is_replaced_and_said(cli: Run, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    frame = pd.read_parquet(run / "samples.parquet")
    frame["reward_mean"] = 9.0
    frame.to_parquet(run / "samples.parquet")
    out = tmp_path / "selected.jsonl"
    code, _, stderr = cli(["select-prompts", str(run), "--reward", "r", "--out", str(out)])
    assert code == 0
    assert "the prompts' own column(s) reward_mean were replaced" in stderr
    assert read_jsonl(out)[0]["reward_mean"] == 0.5


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--reward", "nope"], "--reward 'nope': no such reward in .*; valid: 'r', 'other'"),
        (["--reward", "r", "--top-fraction", "0"], r"--top-fraction must be in \(0, 1\]; got 0.0"),
        (["--reward", "r", "--top-fraction", "1.5"], r"--top-fraction must be in \(0, 1\]; got 1.5"),
        (["--reward", "r", "--min-variance", "0"], "--min-variance must be a finite number > 0; got 0.0"),
        (["--reward", "r", "--min-variance", "0.1", "--top-fraction", "0.5"], "exclude each other"),
        (["--reward", "r", "--min-variance", "100"], "no prompt passes the rule .* the largest normalized variance"),
        (["--reward", "r=pkg.mod:fn"], "with EVAL_RUN give the reward's name in the run"),
        (["--reward", "r", "--policy", "x"], "give EVAL_RUN .* not both"),
        (["--reward", "r", "--prompts", "p.jsonl"], "--prompts p.jsonl: EVAL_RUN's prompts are in its samples"),
    ],
)
def test_bad_input_exits_2(cli: Run, tmp_path: Path, flags: list[str], message: str) -> None:
    run = make_run(tmp_path / "run")
    code, _, stderr = cli(["select-prompts", str(run), "--out", str(tmp_path / "s.jsonl"), *flags])
    assert code == 2
    assert re.search(message, stderr), stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "s.jsonl").exists()


def test_bad_output_and_missing_inputs_exit_2(cli: Run, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    code, _, stderr = cli(["select-prompts", str(run), "--reward", "r", "--out", str(tmp_path / "s.csv")])
    assert code == 2 and "must end in .jsonl or .parquet" in stderr
    code, _, stderr = cli(["select-prompts", "--reward", "r", "--out", str(tmp_path / "s.jsonl")])
    assert code == 2 and "not neither" in stderr
    code, _, stderr = cli(["select-prompts", "--policy", "p", "--reward", "r=m:f", "--out", str(tmp_path / "s.jsonl")])
    assert code == 2 and "--policy needs --prompts" in stderr


def test_a_run_without_samples_exits_2(cli: Run, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, stderr = cli(
        ["select-prompts", str(tmp_path / "empty"), "--reward", "r", "--out", str(tmp_path / "s.jsonl")]
    )
    assert code == 2
    assert "no samples.parquet; give the directory of a finished `rmteacher evaluate` run" in stderr


def test_every_prompt_flat_exits_2(cli: Run, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"p0": [0, 0, 0, 0], "p1": [1, 1, 1, 1]})
    code, _, stderr = cli(["select-prompts", str(run), "--reward", "r", "--out", str(tmp_path / "s.jsonl")])
    assert code == 2
    assert "the largest normalized variance is 0 over 2 prompts; every prompt's samples got the same reward" in stderr


def test_a_damaged_run_exits_2(cli: Run, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    (run / "metrics.json").write_text(json.dumps({"reward_models": {"r": {}}}))
    code, _, stderr = cli(["select-prompts", str(run), "--reward", "r", "--out", str(tmp_path / "s.jsonl")])
    assert code == 2 and "metrics.json has no usable normalization for 'r'" in stderr
    (run / "metrics.json").write_text("{")
    code, _, stderr = cli(["select-prompts", str(run), "--reward", "r", "--out", str(tmp_path / "s.jsonl")])
    assert code == 2 and "cannot read metrics.json" in stderr


def test_one_sample_per_prompt_exits_2(cli: Run, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"p0": [0], "p1": [1]})
    code, _, stderr = cli(["select-prompts", str(run), "--reward", "r", "--out", str(tmp_path / "s.jsonl")])
    assert code == 2
    assert "1 sample per prompt (K = 1); a variance needs K >= 2" in stderr


def test_selecting_from_a_run_loads_no_deep_learning_module(tmp_path: Path) -> None:
    """Selecting from an evaluate run is table work: a fresh interpreter never imports torch and its stack."""
    run = make_run(tmp_path / "run")
    code = f"""
import json, sys
from pathlib import Path
from rmteacher.commands.select_prompts import SelectPromptsConfig, run_select_prompts
out, run = Path({str(tmp_path / "s.jsonl")!r}), Path({str(run)!r})
run_select_prompts(SelectPromptsConfig(reward="r", out=out, eval_run=run))
print(json.dumps([m for m in ("torch", "transformers", "trl", "accelerate", "datasets") if m in sys.modules]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert (tmp_path / "s.jsonl").exists()


# ------------------------------------------------------------------------------------------------ on the sandbox


@pytest.mark.slow
def test_from_an_evaluate_run_agrees_with_evaluate_and_feeds_rl(
    cli: Run, tmp_path: Path, sandbox_task: SandboxTask
) -> None:
    """Two implementations agree: the mean of the per-prompt variances is evaluate's reward variance. The selected
    file then trains with `rmteacher rl --prompts` unchanged."""
    prompts = tmp_path / "prompts.jsonl"
    load_prompts(sandbox_task.train_prompts).head(24).to_json(prompts, orient="records", lines=True)
    run = tmp_path / "eval"
    code, _, stderr = cli([
        "evaluate", "--policy", str(sandbox_task.policy_dir), "--prompts", str(prompts), "--reward-model",
        "gt=rmteacher.sandbox.task:ground_truth", "--num-prompts", "24", "--samples-per-prompt", "4", "--out",
        str(run), "--no-progress", "--num-resamples", "200",
    ])  # fmt: skip
    assert code == 0, stderr
    out = tmp_path / "selected.jsonl"
    code, _, stderr = cli(["select-prompts", str(run), "--reward", "gt", "--out", str(out), "--top-fraction", "1"])
    assert code == 0, stderr
    rows = read_jsonl(out)
    metrics = json.loads((run / "metrics.json").read_text())
    expected = metrics["reward_models"]["gt"]["reward_variance"]["estimate"]
    assert np.mean([r["reward_variance"] for r in rows]) == pytest.approx(expected, rel=1e-12)
    code, _, stderr = cli(["select-prompts", str(run), "--reward", "gt", "--out", str(out)])
    assert code == 0, stderr
    kept = read_jsonl(out)
    assert 2 <= len(kept) <= 24
    assert all(r["reward_variance"] > 0 for r in kept)
    rl_out = tmp_path / "rl"
    code, _, stderr = cli([
        "rl", "--out", str(rl_out), "--policy", str(sandbox_task.policy_dir), "--reward-model",
        "gt=rmteacher.sandbox.task:ground_truth", "--prompts", str(out), "--eval-prompts",
        str(sandbox_task.eval_prompts), "--max-steps", "2", "--eval-every", "2", "--save-every", "2",
        "--eval-num-prompts", "4", "--eval-samples", "2", "--prompts-per-step", "2", "--samples-per-prompt", "2",
        "--no-progress",
    ])  # fmt: skip
    assert code == 0, stderr
    assert (rl_out / "policy" / "model.safetensors").exists()


@pytest.mark.slow
def test_from_scratch_samples_through_evaluate(cli: Run, tmp_path: Path, sandbox_task: SandboxTask) -> None:
    prompts = tmp_path / "prompts.jsonl"
    load_prompts(sandbox_task.train_prompts).head(12).to_json(prompts, orient="records", lines=True)
    out = tmp_path / "selected.parquet"
    code, _, stderr = cli([
        "select-prompts", "--policy", str(sandbox_task.policy_dir), "--prompts", str(prompts), "--reward",
        "gt=rmteacher.sandbox.task:ground_truth", "--samples-per-prompt", "4", "--out", str(out), "--no-progress",
    ])  # fmt: skip
    assert code == 0, stderr
    samples = pd.read_parquet(tmp_path / "selected-samples" / "samples.parquet")
    assert samples["prompt_id"].nunique() == 12 and len(samples) == 48  # every prompt, K samples, nothing resampled
    table = pd.read_parquet(out)
    per_prompt = samples.groupby("prompt_id")["gt"].agg(lambda v: np.ptp(v) > 0)
    assert sorted(table["prompt_id"]) == sorted(per_prompt[per_prompt].index)
    summary = json.loads((tmp_path / "selected.summary.json").read_text())
    assert summary["eval_run"] == str(tmp_path / "selected-samples")
    assert summary["noise"]["beta_binomial"] is None and summary["noise"]["split_half"] is not None
