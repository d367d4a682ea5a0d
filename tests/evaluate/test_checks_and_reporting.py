"""`rmteacher evaluate` through the CLI on tiny local models (tests/evaluate/conftest.py): every input checked before
anything is sampled; --stop typed with escapes; accuracy with ground-truth ties left out; a ground truth named by the
user; what the ranking is by without a ground truth; truncations counted; --max-new-tokens' defaults."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rmteacher.cli import main
from rmteacher.metrics import accuracy_without_ties, truth_tie_share

GT = "rmteacher.sandbox.task:ground_truth"
REWARDS = "def fine(prompts, completions, **kwargs):\n    return [0.0] * len(prompts)\nNOT_CALLABLE = 3\n"


def args_for(tiny: dict[str, Path], out: Path, *extra: str, truth: str | None = GT, pairs: bool = True) -> list[str]:
    return [
        "evaluate", "--out", str(out), "--policy", str(tiny["policy"]),
        "--reward-model", f"same={tiny['rm_same']}", "--reward-model", f"plain={tiny['rm_plain']}",
        *(["--ground-truth", truth] if truth else []), "--prompts", str(tiny["prompts"]),
        *(["--pairs", str(tiny["pairs"])] if pairs else []),
        "--num-prompts", "8", "--samples-per-prompt", "4", "--max-new-tokens", "16", "--num-resamples", "200",
        "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture
def rewards_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "evalux_rewards.py").write_text(REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "evalux_rewards"


@pytest.fixture(scope="module")
def plain_run(tiny: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run without --stop, the ground truth named by the user (gold) and scaled."""
    out = tmp_path_factory.mktemp("checks") / "plain"
    assert main(args_for(tiny, out, "--scale-reward", "gold", truth=f"gold={GT}")) == 0
    return out


def _no_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluate loaded the policy before checking its inputs")  # exit code 1, not 2

    monkeypatch.setattr("rmteacher.evaluate.load_policy", refuse)
    monkeypatch.setattr("rmteacher.evaluate.sample_completions", refuse)


# ------------------------------------------------------------------------------------------------------- fail fast


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--reward-model", "a=no_such_module_xyz:typo", r"--reward-model 'a=no_such_module_xyz:typo': cannot import "
         r"module 'no_such_module_xyz'"),
        ("--reward-model", "a=evalux_rewards:typo", r"module 'evalux_rewards' has no function 'typo'"),
        ("--reward-model", "a=evalux_rewards:NOT_CALLABLE", r"module 'evalux_rewards' has no function 'NOT_CALLABLE'"),
        ("--reward-model", "a=/no/such/dir", r"reward model 'a' tokenizer '/no/such/dir': no such directory"),
        ("--reward-model", "a={policy}", r"a LlamaForCausalLM checkpoint, not a sequence-classification reward model"),
        ("--ground-truth", "gold=evalux_rewards:typo", r"--ground-truth 'gold=evalux_rewards:typo': module "
         r"'evalux_rewards' has no function 'typo'"),
        ("--pairs", "{bad_pairs}", r"--pairs .*bad_pairs.jsonl: missing column\(s\) 'rejected'"),
    ],
)  # fmt: skip
def test_every_input_is_checked_before_anything_is_sampled(
    tiny: dict[str, Path], tmp_path: Path, rewards_module: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str,
) -> None:  # fmt: skip
    bad_pairs = tmp_path / "bad_pairs.jsonl"
    bad_pairs.write_text('{"prompt_id": "p0", "chosen": "abc"}\n')
    value = value.format(policy=tiny["policy"], bad_pairs=bad_pairs)
    _no_sampling(monkeypatch)
    args = args_for(tiny, tmp_path / "run")
    if flag == "--reward-model":
        args += [flag, value]
    else:
        args[args.index(flag) + 1] = value
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # --out left as it was: not even created


def test_a_failed_check_leaves_an_earlier_run_as_it_was(
    tiny: dict[str, Path], plain_run: Path, rewards_module: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def snapshot() -> dict[str, bytes]:
        return {str(p.relative_to(plain_run)): p.read_bytes() for p in sorted(plain_run.rglob("*")) if p.is_file()}

    before = snapshot()
    _no_sampling(monkeypatch)
    args = args_for(tiny, plain_run, "--scale-reward", "gold", "--resume", "--reward-model", "a=evalux_rewards:typo",
                    truth=f"gold={GT}")  # fmt: skip
    assert main(args) == 2
    assert "has no function 'typo'" in capsys.readouterr().err
    assert snapshot() == before  # the manifest still says complete; nothing added or rewritten


# ------------------------------------------------------------------------------------------------------------ --stop


def test_stop_typed_as_backslash_n_stops_at_newlines(
    tiny: dict[str, Path], plain_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "stopped"
    # "\\n" here is what a shell passes for --stop "\n": a backslash and an n.
    assert main(args_for(tiny, out, "--stop", "\\n", "--scale-reward", "gold", truth=f"gold={GT}")) == 0
    capsys.readouterr()
    free = pd.read_parquet(plain_run / "samples.parquet")
    stopped = pd.read_parquet(out / "samples.parquet")
    assert free["completion"].str.contains("\n").sum() >= 3  # the random policy writes newlines: the test can fail
    # The same seed, so the same tokens up to the first newline; the stop cuts there and the sample is finished.
    for before, after, finished, stop in zip(free["completion"], stopped["completion"], stopped["finished"],
                                             stopped["stop_string"], strict=True):  # fmt: skip
        assert after == before.split("\n")[0]
        assert "\n" not in after
        if "\n" in before:
            assert finished and stop == "\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stop_strings"] == {"\n": int((stopped["stop_string"] == "\n").sum())}
    assert metrics["stop_strings"]["\n"] >= 3
    assert "stop_warning" not in metrics
    assert metrics["finished_share"] > json.loads((plain_run / "metrics.json").read_text())["finished_share"]
    config = json.loads((out / "config.json").read_text())
    assert config["stop"] == ["\n"]
    assert config["stop_as_typed"] == ["\\n"]
    assert "Samples ended by each --stop string (as decoded): '\\n': " in (out / "metrics.md").read_text()


def test_a_stop_string_that_never_occurs_warns_when_most_samples_are_cut(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "never"
    # Four characters cannot occur in one new token (one token per character), and one new token cuts nearly every
    # sample. (A string the tokenizer cannot produce at all, e.g. a tab here, is refused by transformers' generate.)
    with pytest.warns(UserWarning, match=r"--stop 'zq\\n' \(as decoded\) never occurred in any sample, while \d+% of"):
        assert main(args_for(tiny, out, "--stop", "zq\\n", "--max-new-tokens", "1")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stop_strings"] == {"zq\n": 0}
    assert "cut at --max-new-tokens" in metrics["stop_warning"]
    assert "**Warning:** --stop 'zq\\n'" in (out / "metrics.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stop", ""], r"--stop must not be empty"),
        (["--stop", "x", "--samples", "s.parquet"], r"--stop and --samples exclude each other"),
    ],
)
def test_stop_refusals(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = args_for(tiny, tmp_path / "run", *extra)
    if "--samples" in extra:
        del args[args.index("--policy") : args.index("--policy") + 2]
    assert main(args) == 2
    assert re.search(message, capsys.readouterr().err)


def test_help_says_how_stop_and_the_defaults_are_read(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the escapes \\n (newline), \\t (tab), \\r (carriage return) and \\\\ (one backslash) are decoded" in text
    assert "default: 512 for your --policy, TRL's GRPOConfig and RLOOConfig max_completion_length" in text
    assert "16 for the built-in sandbox" in text
    assert "The sandbox's only when no task input at all is given" in text
    assert "counted per reward model in metrics.json's truncations" in text


# ------------------------------------------------------------------------------- ties, names, ranking, truncations


def test_accuracy_without_ties_and_the_tied_share_are_reported(plain_run: Path) -> None:
    samples = pd.read_parquet(plain_run / "samples.parquet")
    metrics = json.loads((plain_run / "metrics.json").read_text())
    k = 4
    truth = samples["gold"].to_numpy().reshape(-1, k)
    ties = metrics["ground_truth_ties"]
    assert ties["on_policy"] == pytest.approx(truth_tie_share(truth).mean())
    assert 0.0 <= ties["off_policy"] <= 1.0
    for name in ("same", "plain", "gold_scaled", "gold"):
        entry = metrics["reward_models"][name]
        expected = accuracy_without_ties(samples[name].to_numpy().reshape(-1, k), truth)
        assert entry["on_policy_accuracy_without_ties"]["estimate"] == pytest.approx(expected)
        assert (
            entry["on_policy_accuracy_without_ties"]["low"]
            <= expected
            <= entry["on_policy_accuracy_without_ties"]["high"]
        )
        assert "off_policy_accuracy_without_ties" in entry
    assert metrics["reward_models"]["gold"]["on_policy_accuracy_without_ties"]["estimate"] == 1.0
    assert metrics["reward_models"]["gold_scaled"]["on_policy_accuracy_without_ties"]["estimate"] == 1.0
    text = (plain_run / "metrics.md").read_text()
    assert "On-policy accuracy, ground-truth ties excluded" in text
    assert f"Pairs the ground truth ties: {ties['on_policy']:.1%} on-policy" in text


def test_a_named_ground_truth_keeps_its_name(plain_run: Path) -> None:
    samples = pd.read_parquet(plain_run / "samples.parquet")
    assert {"gold", "gold_scaled"} <= set(samples.columns)
    assert "ground_truth" not in samples.columns
    metrics = json.loads((plain_run / "metrics.json").read_text())
    assert list(metrics["reward_models"]) == ["same", "plain", "gold_scaled", "gold"]
    assert metrics["ground_truth"] == {"name": "gold", "spec": GT}
    assert set(metrics["ranking"]["order"]) == {"same", "plain", "gold_scaled"}
    assert metrics["specs"]["gold"] == GT
    assert metrics["ranking_basis"].startswith("teachers ranked by the mean of reward variance and the mean of on- and")
    # rl --normalization finds the ground truth's statistics under the user's name.
    from rmteacher.training.rl import load_normalization

    config = json.loads((plain_run / "config.json").read_text())
    stats = load_normalization(plain_run, config["policy"], "ground_truth", GT)
    assert stats.to_dict() == metrics["reward_models"]["gold"]["normalization"]


@pytest.mark.parametrize(
    ("pairs", "criterion", "basis"),
    [
        (True, "reward_variance_and_off_policy_accuracy", "teachers ranked by the mean of reward variance and "
         "off-policy accuracy against the score_chosen/score_rejected labels of --pairs (no --ground-truth: no "
         "on-policy accuracy)"),
        (False, "reward_variance", "teachers ranked by reward variance alone: without --ground-truth and --pairs no "
         "accuracy can be measured"),
    ],
)  # fmt: skip
def test_without_a_ground_truth_the_ranking_says_what_it_is_by(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], pairs: bool, criterion: str, basis: str
) -> None:
    out = tmp_path / "run"
    assert main(args_for(tiny, out, truth=None, pairs=pairs)) == 0
    err = capsys.readouterr().err
    assert f"rmteacher evaluate: {basis}" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ranking"]["criterion"] == criterion
    assert metrics["ranking_basis"].startswith(basis)
    assert metrics["ground_truth"] is None
    assert basis[0].upper() + basis[1:] in (out / "metrics.md").read_text()
    same = metrics["reward_models"]["same"]
    assert "on_policy_accuracy" not in same
    if pairs:  # the pairs' own labels: every chosen of tiny's pairs scores above its rejected
        labels = pd.read_parquet(tiny["pairs"])
        assert (labels["score_chosen"] > labels["score_rejected"]).all()
        assert 0.0 <= same["off_policy_accuracy"]["estimate"] <= 1.0
        assert metrics["ground_truth_ties"] == {"on_policy": None, "off_policy": 0.0}
        assert metrics["off_policy_labels"] == "the score_chosen/score_rejected labels of --pairs"
    else:
        assert "off_policy_accuracy" not in same


def test_unlabelled_pairs_without_a_ground_truth_are_read_as_chosen_over_rejected(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    unlabelled = tmp_path / "pairs.parquet"
    pd.read_parquet(tiny["pairs"]).drop(columns=["score_chosen", "score_rejected"]).to_parquet(unlabelled)
    out = tmp_path / "run"
    args = args_for(tiny, out, truth=None)
    args[args.index("--pairs") + 1] = str(unlabelled)
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["off_policy_labels"] == "the order of --pairs (chosen preferred over rejected)"
    assert "off_policy_accuracy" in metrics["reward_models"]["plain"]


def test_truncations_are_counted_per_reward_model(tiny: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "short"
    with pytest.warns(UserWarning, match=r"lost the start of their prompt \(counted in metrics.json's truncations\)"):
        assert main(args_for(tiny, out, "--rm-max-length", "8")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # Every rendered prompt of the sandbox is longer than 8 tokens: each of the 32 samples and 8 x 2 pair texts.
    assert metrics["truncations"] == {"same": {"samples": 32, "pairs": 16}, "plain": {"samples": 32, "pairs": 16}}
    assert "same: 32 samples, 16 pairs" in (out / "metrics.md").read_text()
    # Resumed from the cache: the samples' counts are kept, the pairs (scored again each run) counted again.
    with pytest.warns(UserWarning, match="lost the start"):
        assert main(args_for(tiny, out, "--rm-max-length", "8", "--resume")) == 0
    assert json.loads((out / "metrics.json").read_text())["truncations"] == metrics["truncations"]
    # Without --pairs every score comes from the cache and no reward model is loaded: the cached counts.
    with pytest.warns(UserWarning, match="lost the start"):
        assert main(args_for(tiny, out, "--rm-max-length", "8", "--resume", pairs=False)) == 0
    assert json.loads((out / "metrics.json").read_text())["truncations"] == {
        "same": {"samples": 32, "pairs": 0},
        "plain": {"samples": 32, "pairs": 0},
    }
    full = tmp_path / "full"
    assert main(args_for(tiny, full, "--num-prompts", "2")) == 0
    assert json.loads((full / "metrics.json").read_text())["truncations"] == {
        "same": {"samples": 0, "pairs": 0},
        "plain": {"samples": 0, "pairs": 0},
    }


def test_max_new_tokens_defaults(tmp_path: Path, sandbox_task: object) -> None:
    from rmteacher.commands.evaluate import with_sandbox_defaults
    from rmteacher.evaluate import EvaluateConfig, identity

    users = EvaluateConfig(out=tmp_path, policy="my-policy", prompts=tmp_path / "p.jsonl", reward_model=["a=m:f"])
    assert users.max_new_tokens is None and users.new_tokens() == 512
    assert identity(users)["max_new_tokens"] == 512
    assert with_sandbox_defaults(users).max_new_tokens is None  # a task input given: no sandbox defaults
    sandbox = with_sandbox_defaults(EvaluateConfig(out=tmp_path, progress=False))
    assert sandbox.max_new_tokens == 16
    assert with_sandbox_defaults(EvaluateConfig(out=tmp_path, max_new_tokens=5, progress=False)).new_tokens() == 5
    assert np.isclose(EvaluateConfig(out=tmp_path, max_new_tokens=7).new_tokens(), 7)


def test_the_system_prompt_is_part_of_the_samples_identity(tmp_path: Path) -> None:
    """The policy samples from the conversation with its system message: samples drawn under another
    --system-prompt are not reused (they were before 2026-12-07); without one, the identity keeps its old keys."""
    from dataclasses import replace

    from rmteacher.evaluate import EvaluateConfig, identity

    plain = EvaluateConfig(out=tmp_path, policy="my-policy", prompts=tmp_path / "p.jsonl", reward_model=["a=m:f"])
    brief = replace(plain, system_prompt="Be brief.")
    assert "system_prompt" not in identity(plain)
    assert identity(brief) == {**identity(plain), "system_prompt": "Be brief."}
    assert identity(replace(plain, system_prompt="")) != identity(plain)  # an empty system message is one too
