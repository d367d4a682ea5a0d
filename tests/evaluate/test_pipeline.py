"""`rmteacher evaluate` end to end on tiny local models: outputs, agreement with `rmteacher metrics`, caching,
resume, sharding over two processes, and every bad-input path."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rmteacher.cli import main

GT = "rmteacher.sandbox.task:ground_truth"


def evaluate_args(tiny: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--out", str(out),
        "--policy", str(tiny["policy"]),
        "--reward-model", f"same={tiny['rm_same']}",
        "--reward-model", f"plain={tiny['rm_plain']}",
        "--ground-truth", GT,
        "--prompts", str(tiny["prompts"]),
        "--pairs", str(tiny["pairs"]),
        "--num-prompts", "8",
        "--samples-per-prompt", "4",
        "--max-new-tokens", "16",
        "--num-resamples", "200",
        "--no-progress",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tiny: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "run"
    assert main(evaluate_args(tiny, out, "--reward-model", f"gt_copy={GT}", "--scale-reward", "gt_copy")) == 0
    return out


def test_outputs_written(run_dir: Path) -> None:
    for name in ("config.json", "samples.parquet", "metrics.json", "metrics.md", "variance_vs_accuracy.png"):
        assert (run_dir / name).stat().st_size > 0, name
    samples = pd.read_parquet(run_dir / "samples.parquet")
    assert {"prompt_id", "sample_id", "prompt", "completion", "same", "plain", "gt_copy", "gt_copy_scaled",
            "ground_truth"} <= set(samples.columns)  # fmt: skip
    assert len(samples) == 8 * 4
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(metrics["reward_models"]) == ["same", "plain", "gt_copy", "gt_copy_scaled", "ground_truth"]
    assert set(metrics["ranking"]["order"]) == {"same", "plain", "gt_copy", "gt_copy_scaled"}
    config = json.loads((run_dir / "config.json").read_text())
    assert config["samples_per_prompt"] == 4
    assert "Ranking as teachers" in (run_dir / "metrics.md").read_text()


def test_scaled_ground_truth_is_perfectly_accurate_with_lower_variance(run_dir: Path) -> None:
    models = json.loads((run_dir / "metrics.json").read_text())["reward_models"]
    scaled, truth = models["gt_copy_scaled"], models["ground_truth"]
    assert scaled["on_policy_accuracy"]["estimate"] == 1.0
    assert scaled["off_policy_accuracy"]["estimate"] == 1.0
    # Half of the 8 prompts (the seeded choice among all prompts) keep ~1e-6 of their variance.
    samples = pd.read_parquet(run_dir / "samples.parquet")
    per_prompt = samples.groupby("prompt_id")["gt_copy_scaled"].var(ddof=0)
    assert (per_prompt < 1e-5).sum() >= 2
    assert scaled["reward_variance"]["estimate"] < 0.8 * truth["reward_variance"]["estimate"]


def test_metrics_command_gives_the_same_numbers(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_dir.parent / "m.json"
    argv = ["metrics", str(run_dir / "samples.parquet"), "--truth", "ground_truth", "--prenormalized",
            "gt_copy_scaled", "--reward-column", "same", "--reward-column", "plain", "--reward-column",
            "gt_copy_scaled", "--num-resamples", "200", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    from_metrics = json.loads(out.read_text())["reward_models"]
    from_evaluate = json.loads((run_dir / "metrics.json").read_text())["reward_models"]
    for name in ("same", "plain", "gt_copy_scaled"):
        for key in ("reward_variance", "raw_reward_variance", "on_policy_accuracy"):
            for part in ("estimate", "low", "high"):
                assert from_metrics[name][key][part] == pytest.approx(from_evaluate[name][key][part]), (name, key)


def test_resume_reuses_cache_and_refuses_without_flag(
    tiny: dict[str, Path], run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = evaluate_args(tiny, run_dir, "--reward-model", f"gt_copy={GT}", "--scale-reward", "gt_copy")
    assert main(args) == 2
    assert "holds a previous evaluate run (complete); pass --resume" in capsys.readouterr().err
    before = pd.read_parquet(run_dir / "samples.parquet")

    def no_sampling(*args: object, **kwargs: object) -> None:
        raise AssertionError("resume must not sample again")

    monkeypatch.setattr("rmteacher.evaluate.sample_completions", no_sampling)
    assert main([*args, "--resume"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "samples.parquet"), before)
    changed = evaluate_args(tiny, run_dir, "--resume", "--temperature", "0.7")
    assert main(changed) == 2
    assert "holds a different evaluate run: temperature (1.0 there, 0.7 now)" in capsys.readouterr().err


def test_same_seed_same_samples_and_budget_auto(tiny: dict[str, Path], tmp_path: Path, run_dir: Path) -> None:
    assert main(evaluate_args(tiny, tmp_path / "again", "--reward-model", f"gt_copy={GT}")) == 0
    a = pd.read_parquet(run_dir / "samples.parquet")["completion"]
    b = pd.read_parquet(tmp_path / "again" / "samples.parquet")["completion"]
    pd.testing.assert_series_equal(a, b)
    assert main(evaluate_args(tiny, tmp_path / "auto", "--budget", "auto", "--round-prompts", "4")) == 0
    budget = json.loads((tmp_path / "auto" / "metrics.json").read_text())["budget"]
    assert budget["mode"] == "auto"
    assert budget["prompts"] in (4, 8)
    assert budget["samples_per_reward_model"] == budget["prompts"] * 4
    assert budget["rounds"] == budget["prompts"] // 4


def test_tokenizer_without_pad_token_is_handled(tiny: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from rmteacher.loading import load_policy

    policy = tmp_path / "policy"
    model, tokenizer = load_policy(str(tiny["policy"]))
    model.save_pretrained(policy)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(policy)
    assert AutoTokenizer.from_pretrained(policy).pad_token is None
    _, reloaded = load_policy(str(policy))
    assert reloaded.pad_token == reloaded.eos_token


@pytest.fixture
def bad_rewards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "bad_rewards.py").write_text(
        "def nan_reward(prompts, completions, **kwargs):\n"
        "    return [float('nan') if i == 3 else 0.0 for i in range(len(completions))]\n"
        "def raising_reward(prompts, completions, **kwargs):\n"
        "    raise RuntimeError('boom')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "bad_rewards"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--reward-model", "nan=bad_rewards:nan_reward"],
            r"reward 'nan' returned nan for prompt_id='p0', sample_id=3; rewards must be finite",
        ),
        (["--reward-model", "boom=bad_rewards:raising_reward"], r"reward 'boom' raised RuntimeError: boom"),
        (["--reward-model", "x=bad_rewards:missing"], r"module 'bad_rewards' has no function 'missing'"),
        (["--reward-model", "x=no_such_module_xyz:f"], r"cannot import module 'no_such_module_xyz'"),
        (["--reward-model", "x=/no/such/dir"], r"reward model 'x' tokenizer '/no/such/dir': no such directory"),
        (["--reward-model", "ground_truth=bad_rewards:nan_reward"], r"the name 'ground_truth' is reserved"),
        (["--samples-per-prompt", "1"], r"--samples-per-prompt must be >= 2"),
        (["--scale-reward", "nope"], r"--scale-reward 'nope': not a reward model"),
        (["--scale-fraction", "2"], r"--scale-fraction must be in \[0, 1\]; got 2.0"),
    ],
)
def test_bad_input(
    tiny: dict[str, Path],
    tmp_path: Path,
    bad_rewards: str,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    assert main(evaluate_args(tiny, tmp_path / "run", *extra)) == 2
    err = capsys.readouterr().err
    assert pytest.importorskip("re").search(message, err), err
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("name", "content", "flag", "message"),
    [
        ("empty.jsonl", "", "--prompts", "the table has no rows"),
        ("broken.jsonl", '{"prompt": "sort: abc"}\n{"prompt": \n', "--prompts", r"broken.jsonl:2: not valid JSON"),
        ("blank.jsonl", '{"prompt": "sort: abc"}\n{"prompt": " "}\n', "--prompts",
         r"row 2, column 'prompt': the prompt is empty"),
        ("nocol.jsonl", '{"text": "sort: abc"}\n', "--prompts", r"missing column\(s\) 'prompt'; found 'text'"),
        ("pairs.jsonl", '{"prompt_id": "zz", "chosen": "a", "rejected": "b"}\n', "--pairs",
         r"1 pair\(s\) refer to prompt_ids not in the prompts, e.g. 'zz'"),
    ],
)  # fmt: skip
def test_bad_files(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, flag: str,
    message: str,
) -> None:  # fmt: skip
    path = tmp_path / name
    path.write_text(content)
    args = evaluate_args(tiny, tmp_path / "run")
    args[args.index(flag) + 1] = str(path)
    assert main(args) == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)


def test_missing_policy(tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = evaluate_args(tiny, tmp_path / "run")
    args[args.index("--policy") + 1] = str(tmp_path / "nope")
    assert main(args) == 2
    assert "policy tokenizer" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_give_the_same_samples_and_metrics(tiny: dict[str, Path], run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rmteacher.cli",
               *evaluate_args(tiny, out, "--reward-model", f"gt_copy={GT}", "--scale-reward", "gt_copy")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("# Teacher evaluation") == 1  # only rank 0 prints
    single = pd.read_parquet(run_dir / "samples.parquet")
    double = pd.read_parquet(out / "samples.parquet")
    pd.testing.assert_frame_equal(single, double, check_exact=False, rtol=1e-5)
    m1 = json.loads((run_dir / "metrics.json").read_text())["reward_models"]
    m2 = json.loads((out / "metrics.json").read_text())["reward_models"]
    for name in m1:
        assert m2[name]["reward_variance"]["estimate"] == pytest.approx(m1[name]["reward_variance"]["estimate"])
    assert np.isfinite(m2["same"]["raw_reward_variance"]["low"])


def test_shared_prefix_scoring_gives_the_same_numbers(tiny: dict[str, Path]) -> None:
    from rmteacher.rewards import ModelReward, load_reward

    reward = load_reward(f"rm={tiny['rm_same']}")
    assert isinstance(reward, ModelReward)
    prompts = ["sort: dcba"] * 5 + ["sort: zyxwv"] * 3 + ["sort: q"]
    completions = ["abcd", "abdc", "", "dcba", "abcdabcd", "vwxyz", "v", "zz", "q"]
    shared = reward.score(prompts, completions)
    reward.share_prefix = False
    separate = reward.score(prompts, completions)
    np.testing.assert_allclose(shared, separate, rtol=1e-5, atol=1e-6)
    assert np.isfinite(shared).all()


def test_a_reward_model_retrained_in_place_is_scored_again(
    tiny: dict[str, Path], run_dir: Path, tmp_path: Path
) -> None:
    """The score cache is keyed by the model's content, not its path (issue 12: a stale 0.436 for a fresh 0.153)."""
    model = tmp_path / "rm"
    shutil.copytree(tiny["rm_same"], model)
    out = tmp_path / "run"
    assert main(evaluate_args(tiny, out, "--reward-model", f"mine={model}")) == 0
    before = json.loads((out / "metrics.json").read_text())["reward_models"]
    shutil.rmtree(model)
    shutil.copytree(tiny["rm_plain"], model)  # "retrained" at the same path
    assert main(evaluate_args(tiny, out, "--reward-model", f"mine={model}", "--resume")) == 0
    after = json.loads((out / "metrics.json").read_text())["reward_models"]
    assert before["mine"]["reward_variance"] == before["same"]["reward_variance"]
    assert after["mine"]["reward_variance"] == after["plain"]["reward_variance"]
    assert after["mine"]["reward_variance"] != before["mine"]["reward_variance"]


def test_every_pair_of_a_prompt_counts(tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pairs per prompt are both used (issue 12: 80 rows given, 20 used). A reward preferring the longer response
    is right on one (sorted vs. one letter short) and wrong on the other (sorted vs. one letter too many) of each
    prompt's pairs: off-policy accuracy 0.5 over 16 pairs, where either pair alone would give 0 or 1."""
    (tmp_path / "length_reward.py").write_text(
        "def longer(prompts, completions, **kwargs):\n    return [float(len(c)) for c in completions]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    prompts = pd.read_json(tiny["prompts"], lines=True)
    target = ["".join(sorted(p.removeprefix("sort: "))) for p in prompts["prompt"]]
    pairs = pd.DataFrame(
        {
            "prompt_id": [*prompts["prompt_id"]] * 2,
            "chosen": target * 2,
            "rejected": [t[:-1] for t in target] + [t + t[-1] for t in target],
        }
    )
    pairs.to_json(tmp_path / "pairs.jsonl", orient="records", lines=True)
    args = evaluate_args(tiny, tmp_path / "run", "--reward-model", "longer=length_reward:longer")
    args[args.index("--pairs") + 1] = str(tmp_path / "pairs.jsonl")
    assert main(args) == 0
    longer = json.loads((tmp_path / "run" / "metrics.json").read_text())["reward_models"]["longer"]
    assert longer["off_policy_pairs"] == 16
    assert longer["off_policy_accuracy"]["estimate"] == 0.5


def test_budget_auto_ranks_each_round_and_computes_the_intervals_once(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--budget auto checks only the ranking after each round and computes every interval once, at the end: the same
    metrics.json numbers as computing everything (teacher_metrics without a ranking) on the final round's scores."""
    import rmteacher.evaluate
    from rmteacher.teachers import teacher_metrics, teacher_ranking

    rounds: list[tuple[tuple, dict]] = []
    calls = {"metrics": 0}

    def ranking(*args: object, **kwargs: object) -> object:
        rounds.append((args, kwargs))
        return teacher_ranking(*args, **kwargs)  # type: ignore[arg-type]

    def metrics(*args: object, **kwargs: object) -> object:
        calls["metrics"] += 1
        return teacher_metrics(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rmteacher.evaluate, "teacher_ranking", ranking)
    monkeypatch.setattr(rmteacher.evaluate, "teacher_metrics", metrics)
    # Two reward models of random weights on 2-prompt rounds: not separated after the first round.
    assert main(evaluate_args(tiny, tmp_path / "auto", "--budget", "auto", "--round-prompts", "2")) == 0
    written = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert written["budget"]["rounds"] == len(rounds) >= 2
    assert calls["metrics"] == 1
    args, kwargs = rounds[-1]
    assert len(args[1]) == written["budget"]["prompts"]  # type: ignore[arg-type]
    everything = json.loads(json.dumps(teacher_metrics(*args, **kwargs)))  # type: ignore[arg-type]
    assert written["reward_models"] == everything["reward_models"]
    assert written["ranking"] == everything["ranking"]


def test_evaluate_samples_and_scores_under_the_given_thread_count(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import rmteacher.evaluate

    seen: list[int] = []
    real = rmteacher.evaluate.sample_completions

    def sample(*args: object, **kwargs: object) -> object:
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    if torch.cuda.is_available():
        pytest.skip("--cpu-threads applies on a CPU-only machine")
    monkeypatch.setattr(rmteacher.evaluate, "sample_completions", sample)
    args = ["evaluate", "--policy", str(tiny["policy"]), "--prompts", str(tiny["prompts"]), "--reward-model",
            "gt=rmteacher.sandbox.task:ground_truth", "--num-prompts", "2", "--samples-per-prompt", "2",
            "--no-progress"]  # fmt: skip
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main([*args, "--out", str(tmp_path / "one")]) == 0
        assert torch.get_num_threads() == 2, "restored after the run"
        assert main([*args, "--out", str(tmp_path / "three"), "--cpu-threads", "3"]) == 0
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 3]


def test_finished_share_is_reported_and_a_low_one_warns(tiny: dict[str, Path], run_dir: Path, tmp_path: Path) -> None:
    share = json.loads((run_dir / "metrics.json").read_text())["finished_share"]
    assert (
        f"Finished samples (ended on an end token or a --stop string): {share:.1%}."
        in (run_dir / "metrics.md").read_text()
    )
    # One new token: no sandbox answer (4-7 letters) can end within it, so almost nothing finishes.
    out = tmp_path / "short"
    with pytest.warns(UserWarning, match=r"of the samples finished .* raise --max-new-tokens"):
        assert main(evaluate_args(tiny, out, "--max-new-tokens", "1")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finished_share"] < 0.9
    assert "**Warning:** only" in (out / "metrics.md").read_text()
    assert "raise --max-new-tokens" in metrics["finished_warning"]
