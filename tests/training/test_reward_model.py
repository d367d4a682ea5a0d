"""`rmteacher train-rm`: the on/off-policy mixing by hand, bad input, and short real runs on the sandbox task
(files, reloading, the tokens the model is trained on, resume, two processes)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file

from rmteacher.commands.train_rm import run_train_rm
from rmteacher.rendering import render_conversation
from rmteacher.rewards import ModelReward, load_reward
from rmteacher.rundir import RunDirError
from rmteacher.sandbox import GROUND_TRUTH, SandboxTask
from rmteacher.sandbox.tokenizer import build_tokenizer
from rmteacher.tables import TableError, load_pairs
from rmteacher.training.preferences import label_pairs, mix_preferences, on_policy_rows
from rmteacher.training.reward_model import TrainRMConfig, encode_preferences

SHORT = {"max_steps": 6, "save_steps": 3, "logging_steps": 1, "batch_size": 8, "progress": False}


# --- mixing, by hand ----------------------------------------------------------------------------------------------


def test_on_policy_rows_are_the_first_floor_f_n_of_the_seed_182_permutation() -> None:
    permutation = np.random.RandomState(182).permutation(10)
    np.testing.assert_array_equal(on_policy_rows(10, 0.35), np.sort(permutation[:3]))  # floor(3.5) = 3
    assert on_policy_rows(10, 0.0).size == 0
    np.testing.assert_array_equal(on_policy_rows(10, 1.0), np.arange(10))
    # One permutation for every F: the on-policy rows of a smaller share are a subset of a larger share's.
    assert set(on_policy_rows(2000, 0.25)) <= set(on_policy_rows(2000, 0.5)) <= set(on_policy_rows(2000, 0.75))


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_on_policy_fraction_outside_0_1_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match=rf"--on-policy-fraction must be in \[0, 1\]; got {fraction}"):
        on_policy_rows(10, fraction)
    with pytest.raises(ValueError, match=rf"--on-policy-fraction must be in \[0, 1\]; got {fraction}"):
        TrainRMConfig(out=Path("x"), on_policy_fraction=fraction)


def test_pairs_are_labelled_by_the_higher_ground_truth_and_ties_keep_sample_order() -> None:
    labelled = label_pairs(["a", "b", "c"], ["x", "y", "z"], np.array([0.1, 0.9, 0.5]), np.array([0.7, 0.2, 0.5]))
    assert labelled["chosen"].tolist() == ["x", "b", "c"]
    assert labelled["rejected"].tolist() == ["a", "y", "z"]
    assert labelled["score_chosen"].tolist() == [0.7, 0.9, 0.5]
    assert labelled["tie"].tolist() == [False, False, True]


@pytest.mark.parametrize(("ties", "kept_rows"), [("drop", ["p0", "p1", "p3"]), ("keep", ["p0", "p1", "p2", "p3"])])
def test_mixing_replaces_exactly_the_chosen_rows(ties: str, kept_rows: list[str]) -> None:
    off = pd.DataFrame(
        {
            "prompt_id": ["p0", "p1", "p2", "p3"],
            "prompt": list("wxyz"),
            "chosen": list("ABCD"),
            "rejected": list("abcd"),
        }
    )
    on = label_pairs(["s", "t"], ["u", "v"], np.array([0.0, 1.0]), np.array([1.0, 1.0]))  # row 2's samples tie
    mixed = mix_preferences(off, np.array([0, 2]), on, ties=ties)  # type: ignore[arg-type]
    assert mixed["prompt_id"].tolist() == kept_rows
    by_id = mixed.set_index("prompt_id")
    assert (by_id.loc["p0", "chosen"], by_id.loc["p0", "rejected"], by_id.loc["p0", "source"]) == (
        "u",
        "s",
        "on_policy",
    )
    assert (by_id.loc["p1", "chosen"], by_id.loc["p1", "source"]) == ("B", "off_policy")
    assert np.isnan(by_id.loc["p1", "score_chosen"])  # off-policy pairs without scores keep NaN
    assert by_id["tie"].sum() == (1 if ties == "keep" else 0)


# --- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"center_rewards_coefficient": -1.0}, "--center-rewards-coefficient must be >= 0; got -1.0"),
        ({"max_steps": 0}, "--max-steps must be -1 or >= 1; got 0"),
        ({"learning_rate": 0.0}, "--learning-rate must be a finite number > 0; got 0.0"),
        ({"learning_rate": float("inf")}, "--learning-rate must be a finite number > 0; got inf"),
        ({"ties": "coin"}, "--ties must be drop or keep; got 'coin'"),
        ({"resume": True, "overwrite": True}, "--resume and --overwrite exclude each other"),
        ({"stop": ["\\n", ""]}, r"--stop must not be empty \(an empty string stops nothing\); got ''"),
    ],
)
def test_bad_options_name_the_flag_and_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainRMConfig(out=Path("x"), **kwargs)


def test_pairs_without_needed_columns_name_found_and_expected(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    pd.DataFrame({"prompt": ["sort: ba"], "good": ["ab"], "bad": ["ba"]}).to_json(path, orient="records", lines=True)
    with pytest.raises(TableError, match=r"missing column\(s\) 'chosen', 'rejected'; found 'prompt', 'good', 'bad'"):
        load_pairs(path)
    with pytest.raises(TableError, match="missing column"):
        run_train_rm(TrainRMConfig(out=tmp_path / "run", pairs=path, init="unused", progress=False))


# --- tokens -------------------------------------------------------------------------------------------------------


def test_pairs_are_tokenized_as_the_reward_model_scores_them() -> None:
    tokenizer = build_tokenizer()
    prefs = pd.DataFrame(
        {"prompt": ["sort: dcba", "sort: zyxwvut"], "chosen": ["abcd", "tuvwxyz"], "rejected": ["", "z"]}
    )
    encoded, too_long = encode_preferences(prefs, tokenizer, max_length=18)
    assert too_long == 1  # the second chosen side renders to 22 tokens
    expected = tokenizer(render_conversation(tokenizer, "sort: dcba", "abcd"), add_special_tokens=False)["input_ids"]
    assert encoded["chosen_ids"] == [expected]
    assert expected[-1] == tokenizer.eos_token_id  # the head reads the reward at the closing EOS


# --- real runs on the sandbox -------------------------------------------------------------------------------------


# --stop as a shell passes "\n" (a backslash and an n): decoded to a newline. The tests below that reuse or redo
# the `trained` run pass the same options, so that only what they change differs.
TRAINED: dict[str, Any] = {"on_policy_fraction": 0.5, "stop": ["\\n"]}


@pytest.fixture(scope="module")
def trained(sandbox_task: SandboxTask, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("train-rm") / "run"
    text = run_train_rm(TrainRMConfig(out=out, **TRAINED, **SHORT))  # type: ignore[arg-type]
    return out, text


@pytest.mark.slow
def test_a_run_writes_a_loadable_model_the_preferences_and_the_logs(
    sandbox_task: SandboxTask, trained: tuple[Path, str]
) -> None:
    out, text = trained
    assert "6 steps" in text and "on-policy" in text
    prefs = pd.read_parquet(out / "preferences.parquet")
    pairs = pd.read_json(sandbox_task.pairs, lines=True)
    on = prefs["source"] == "on_policy"
    tied = int(len(pairs) * 0.5) - int(on.sum())
    assert set(prefs["source"]) == {"on_policy", "off_policy"} and tied >= 0 and not prefs["tie"].any()
    assert (prefs.loc[on, "score_chosen"] > prefs.loc[on, "score_rejected"]).all()
    expected_on = set(pairs["prompt_id"].to_numpy()[on_policy_rows(len(pairs), 0.5)])
    assert set(prefs.loc[on, "prompt_id"]) <= expected_on
    off = prefs[~on].merge(pairs, on="prompt_id", suffixes=("", "_given"))
    assert (off["chosen"] == off["chosen_given"]).all()  # off-policy rows keep their pair

    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [row for row in logs if "loss" in row]
    assert [row["step"] for row in steps] == [1, 2, 3, 4, 5, 6]
    assert all({"accuracy", "margin", "mean_reward", "learning_rate"} <= set(row) for row in steps)
    config = json.loads((out / "config.json").read_text())
    assert config["command"] == "train-rm" and config["center_rewards_coefficient"] == 0.01
    assert config["stop"] == ["\n"] and config["stop_as_typed"] == ["\\n"]
    assert config["resolved_inputs"]["init"] == str(sandbox_task.policy_dir)  # the RM starts from the policy

    reward = load_reward(f"rm={out / 'model'}")
    assert isinstance(reward, ModelReward)
    sandbox_tokenizer = build_tokenizer()  # our character tokenizer survives the round trip, not a byte-level one
    assert reward.tokenizer.get_vocab() == sandbox_tokenizer.get_vocab()
    assert reward.tokenizer.chat_template == sandbox_tokenizer.chat_template
    assert reward.tokenizer.decode(reward.tokenizer("sort: qdamz")["input_ids"]) == "sort: qdamz"
    before, after = (
        load_file(str(sandbox_task.policy_dir / "model.safetensors")),
        load_file(str(out / "model" / "model.safetensors")),
    )
    assert any(not np.array_equal(before[k], after[k]) for k in after if k in before)
    # What load_reward scores equals the model read on the ids it was trained on.
    encoded, _ = encode_preferences(prefs.head(3), reward.tokenizer, max_length=64)
    with torch.inference_mode():
        direct = [reward.model(input_ids=torch.tensor([ids])).logits[0, 0].item() for ids in encoded["chosen_ids"]]
    scored = reward.score(prefs["prompt"].head(3).tolist(), prefs["chosen"].head(3).tolist())
    np.testing.assert_allclose(scored, direct, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_an_occupied_run_directory_is_refused_unless_resume_or_overwrite(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    out, _ = trained
    with pytest.raises(RunDirError, match=r"holds a previous train-rm run .*; pass --resume to continue it"):
        run_train_rm(TrainRMConfig(out=out, **TRAINED, **SHORT))  # type: ignore[arg-type]
    changed = {**TRAINED, "on_policy_fraction": 0.25}
    with pytest.raises(RunDirError, match=r"holds a different train-rm run: on_policy_fraction \(0.5 there, 0.25 now"):
        run_train_rm(TrainRMConfig(out=out, **changed, resume=True, **SHORT))  # type: ignore[arg-type]
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not an rmteacher run"):
        run_train_rm(TrainRMConfig(out=tmp_path, overwrite=True, **SHORT))  # type: ignore[arg-type]
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint_and_appends_the_log(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    finished, _ = trained
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    # As if killed while the trainer wrote checkpoint 6: only its config is there, and no final model.
    for path in (out / "checkpoints" / "checkpoint-6").iterdir():
        if path.name != "config.json":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(out / "model")
    lines_before = len((out / "metrics.jsonl").read_text().splitlines())
    with pytest.warns(UserWarning, match="skipped the incomplete checkpoint checkpoint-6"):
        text = run_train_rm(TrainRMConfig(out=out, **TRAINED, resume=True, **SHORT))  # type: ignore[arg-type]
    assert "6 steps" in text
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(logs) > lines_before
    assert logs[lines_before] == {"event": "resume", "checkpoint": "checkpoint-3", "step": 3}
    assert [row["step"] for row in logs[lines_before + 1 :] if "loss" in row] == [4, 5, 6]
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == "checkpoint-3"
    # Same seed, same data order, restored optimizer and RNG: the resumed run ends where the uninterrupted one did.
    resumed, uninterrupted = (load_file(str(d / "model" / "model.safetensors")) for d in (out, finished))
    for key in uninterrupted:
        np.testing.assert_allclose(resumed[key], uninterrupted[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.slow
def test_two_processes_under_accelerate_launch(
    sandbox_task: SandboxTask, trained: tuple[Path, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu", "-m"]
    command += ["rmteacher.cli", "train-rm", "--out", str(out), "--on-policy-fraction", "0.5", "--stop", "\\n"]
    command += ["--policy", str(sandbox_task.policy_dir), "--pairs", str(sandbox_task.pairs)]
    command += ["--ground-truth", GROUND_TRUTH, "--max-steps", "3", "--batch-size", "4", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("train-rm:") == 1  # only the main process prints
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    assert load_reward(f"rm={out / 'model'}").score(["sort: ba"], ["ab"]).shape == (1,)
    # Sampling is sharded by batch with per-batch seeds, so two processes draw the same pairs as one.
    two, one = pd.read_parquet(out / "preferences.parquet"), pd.read_parquet(trained[0] / "preferences.parquet")
    pd.testing.assert_frame_equal(two, one)


def test_every_on_policy_pair_tied_says_so(
    sandbox_task: SandboxTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "flat_rewards.py").write_text(
        "def zero(prompts, completions, **kw):\n    return [0.0] * len(prompts)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(sandbox_task.pairs.read_text().splitlines(keepends=True)[:8]))
    config = TrainRMConfig(
        out=tmp_path / "run", on_policy_fraction=1.0, policy=str(sandbox_task.policy_dir), pairs=pairs,
        ground_truth="flat_rewards:zero", **SHORT,  # type: ignore[arg-type]
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"every on-policy pair tied under the ground truth.*--ties keep"):
        run_train_rm(config)
    assert not (tmp_path / "run").exists()  # a failed start leaves --out as it was
