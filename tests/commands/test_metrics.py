"""`rmteacher metrics` end to end through the CLI, and every input it must refuse rather than answer wrongly."""

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rmteacher.analysis import summarize_reward_model
from rmteacher.commands.metrics import (
    MIN_VARIANCE,
    NORMALIZATION_EPS,
    MetricsConfig,
    check_reward_scale,
    run_metrics,
)
from rmteacher.metrics import fit_normalization
from rmteacher.tables import TableError

from .conftest import EXAMPLES, Run

REWARDS = EXAMPLES / "rewards.csv"


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def example(tmp_path: Path, name: str = "r.csv", **scale: float) -> str:
    """The shipped example with columns multiplied by the given factors, written to ``tmp_path / name``."""
    frame = pd.read_csv(REWARDS)
    for column, factor in scale.items():
        frame[column] = frame[column] * factor
    frame.to_csv(tmp_path / name, index=False)
    return str(tmp_path / name)


def estimates(path: Path) -> dict[str, float]:
    models = json.loads(path.read_text())["reward_models"]
    return {name: m["reward_variance"]["estimate"] for name, m in models.items()}


# --------------------------------------------------------------------------------------------------------------
# What it computes
# --------------------------------------------------------------------------------------------------------------


def test_metrics_on_shipped_example(tmp_path: Path, cli: Run) -> None:
    out_json = tmp_path / "m.json"
    code, out, err = cli(["metrics", str(REWARDS), "--truth", "ground_truth", "--json", str(out_json)])
    assert (code, err) == (0, "")
    assert "rm_noisy" in out and "rm_accurate_flat" in out
    written = json.loads(out_json.read_text())
    assert written["warnings"] == []
    result = written["reward_models"]
    assert set(result) == {"rm_noisy", "rm_accurate_flat"}
    # The example's accurate-but-flat model orders every prompt like the truth, yet has far lower variance.
    flat, noisy = result["rm_accurate_flat"], result["rm_noisy"]
    assert flat["on_policy_accuracy"]["estimate"] == 1.0
    assert noisy["on_policy_accuracy"]["estimate"] < 0.9
    assert flat["reward_variance"]["high"] < noisy["reward_variance"]["low"]


def test_metrics_agree_with_library_across_formats(tmp_path: Path, cli: Run) -> None:
    frame = pd.read_csv(REWARDS).sample(frac=1.0, random_state=0)  # row order must not matter
    frame.to_parquet(tmp_path / "r.parquet")
    frame.to_json(tmp_path / "r.jsonl", orient="records", lines=True)
    results = []
    for name in ("r.parquet", "r.jsonl"):
        argv = ["metrics", str(tmp_path / name), "--truth", "ground_truth", "--json", str(tmp_path / "o.json")]
        code, _, _ = cli([*argv, "--reward-column", "rm_noisy", "--num-resamples", "200", "--unbiased"])
        assert code == 0
        results.append(json.loads((tmp_path / "o.json").read_text())["reward_models"]["rm_noisy"])
    assert results[0] == results[1]
    ordered = pd.read_csv(REWARDS).sort_values(["prompt_id", "sample_id"])
    proxy = ordered["rm_noisy"].to_numpy().reshape(40, 8)
    truth = ordered["ground_truth"].to_numpy().reshape(40, 8)
    expected = summarize_reward_model(proxy, truth, unbiased=True, num_resamples=200)
    # The intervals resample prompts in their order of first appearance, which the shuffle changed.
    assert results[0]["reward_variance"]["estimate"] == pytest.approx(expected.reward_variance.estimate)
    assert expected.on_policy_accuracy is not None
    assert results[0]["on_policy_accuracy"]["estimate"] == pytest.approx(expected.on_policy_accuracy.estimate)


def test_same_numbers_from_seeded_runs(tmp_path: Path, cli: Run) -> None:
    outputs = []
    for i in range(2):
        cli(["metrics", str(REWARDS), "--truth", "ground_truth", "--json", str(tmp_path / f"{i}.json")])
        outputs.append((tmp_path / f"{i}.json").read_text())
    assert outputs[0] == outputs[1]
    assert np.isfinite(json.loads(outputs[0])["reward_models"]["rm_noisy"]["reward_variance"]["low"])


def test_prenormalized_reports_the_variance_as_is(tmp_path: Path, cli: Run) -> None:
    out_json = tmp_path / "m.json"
    code, _, _ = cli(["metrics", str(REWARDS), "--prenormalized", "rm_noisy", "--json", str(out_json)])
    assert code == 0
    models = json.loads(out_json.read_text())["reward_models"]
    assert models["rm_noisy"]["reward_variance"] == models["rm_noisy"]["raw_reward_variance"]
    assert models["rm_accurate_flat"]["reward_variance"] != models["rm_accurate_flat"]["raw_reward_variance"]


def test_text_columns_are_skipped_and_named(tmp_path: Path, cli: Run) -> None:
    frame = pd.read_csv(REWARDS).assign(completion=lambda f: "answer " + f["sample_id"].astype(str))
    frame.to_csv(tmp_path / "t.csv", index=False)
    code, out, _ = cli(["metrics", str(tmp_path / "t.csv"), "--truth", "ground_truth"])
    assert code == 0
    assert "skipped columns without numbers: 'completion'" in out
    assert "rm_noisy" in out and "rm_accurate_flat" in out


# --------------------------------------------------------------------------------------------------------------
# Refused: a cell that is not a number, names that are not columns
# --------------------------------------------------------------------------------------------------------------


def test_one_string_cell_names_its_column_and_row(tmp_path: Path, cli: Run) -> None:
    """Before: the column silently vanished from the table (exit 0)."""
    frame = pd.read_csv(REWARDS).astype({"rm_noisy": object})
    frame.loc[5, "rm_noisy"] = "abc"
    frame.to_csv(tmp_path / "s.csv", index=False)
    code, out, err = cli(["metrics", str(tmp_path / "s.csv"), "--truth", "ground_truth"])
    assert (code, out) == (2, "")
    assert "column 'rm_noisy' has a non-finite or non-numeric value 'abc' at prompt_id=0, sample_id=5" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--truth", "grund"], "--truth 'grund' is not a column of"),
        (["--reward-column", "rm_nosy"], "--reward-column 'rm_nosy' is not a column of"),
        (["--reward-column", "prompt_id"], "--reward-column 'prompt_id' is not a column of"),
        (["--truth", "ground_truth", "--prenormalized", "rm_nosy"], "--prenormalized 'rm_nosy' is not one of"),
        # A column that exists but is not evaluated (the truth) would be ignored just the same.
        (["--truth", "ground_truth", "--prenormalized", "ground_truth"], "--prenormalized 'ground_truth' is not"),
    ],
)
def test_unknown_column_names_are_errors(cli: Run, argv: list[str], message: str) -> None:
    """Before: a typo in --prenormalized was ignored and variance 0.845 reported instead of 0.651."""
    code, out, err = cli(["metrics", str(REWARDS), *argv])
    assert (code, out) == (2, "")
    assert err.startswith(f"rmteacher metrics: error: {message}"), err
    valid = "'rm_noisy', 'rm_accurate_flat'"
    assert re.search(rf"; valid: ('ground_truth', )?{valid}\n$", err), err


def test_prenormalized_must_be_an_evaluated_column(cli: Run) -> None:
    code, _, err = cli(["metrics", str(REWARDS), "--reward-column", "rm_noisy", "--prenormalized", "rm_accurate_flat"])
    assert code == 2
    assert (
        "--prenormalized 'rm_accurate_flat' is not one of the reward-model columns evaluated; valid: 'rm_noisy'" in err
    )


def test_a_column_given_twice_is_an_error(cli: Run) -> None:
    code, _, err = cli(["metrics", str(REWARDS), "--reward-column", "rm_noisy", "--reward-column", "rm_noisy"])
    assert code == 2 and "--reward-column names 'rm_noisy' more than once; give each column once" in err
    with pytest.raises(ValueError, match="--prenormalized names 'a' more than once"):
        MetricsConfig(rewards=REWARDS, prenormalized=["a", "b", "a"])


# --------------------------------------------------------------------------------------------------------------
# Refused: options that would give an unsound interval
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--num-resamples", "1"], r"--num-resamples must be >= 200 at --confidence 0\.95 .*; got 1$"),
        (["--num-resamples", "199"], r"--num-resamples must be >= 200 at --confidence 0\.95 .*; got 199$"),
        (
            ["--confidence", "0.99", "--num-resamples", "999"],
            r"--num-resamples must be >= 1000 at --confidence 0\.99 .*; got 999$",
        ),
        (["--confidence", "1.5"], r"--confidence must be in \(0, 1\); got 1\.5$"),
        (["--seed", "-1"], r"--seed must be an integer in \[0, 4294967295\] \(numpy's seed range\); got -1$"),
    ],
)
def test_unsound_options_are_errors(cli: Run, argv: list[str], message: str) -> None:
    """Before: --num-resamples 1 gave an interval that excluded its own estimate; --seed -1 named no flag."""
    code, out, err = cli(["metrics", str(REWARDS), *argv])
    assert (code, out) == (2, "")
    assert re.search("^rmteacher metrics: error: " + message, err.strip()), err
    with pytest.raises(ValueError, match=message):
        MetricsConfig(
            rewards=REWARDS,
            confidence=float(argv[argv.index("--confidence") + 1]) if "--confidence" in argv else 0.95,
            num_resamples=int(argv[argv.index("--num-resamples") + 1]) if "--num-resamples" in argv else 1000,
            seed=int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 0,
        )


def test_the_minimum_number_of_resamples_runs(cli: Run) -> None:
    assert cli(["metrics", str(REWARDS), "--num-resamples", "200"])[0] == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "2.7",
            r"option 'num-resamples' \(--num-resamples\) has a bad value 2\.7 \(expected an integer, got a float\)",
        ),
        ("true", r"option 'num-resamples' \(--num-resamples\) has a bad value True \(expected an integer, got a bool"),
        ("150", r"--num-resamples must be >= 200"),
    ],
)
def test_yaml_num_resamples_is_as_strict_as_the_flag(tmp_path: Path, cli: Run, value: str, message: str) -> None:
    config = write(tmp_path, "c.yaml", f"rewards: {REWARDS}\nnum-resamples: {value}\n")
    code, out, err = cli(["metrics", "--config", config])
    assert (code, out) == (2, "")
    assert re.search(message, err), err


def test_config_file_supplies_options_and_rejects_unknown_keys(tmp_path: Path, cli: Run) -> None:
    good = write(tmp_path, "good.yaml", f"rewards: {REWARDS}\ntruth: ground_truth\nnum-resamples: 200\n")
    code, out, _ = cli(["metrics", "--config", good])
    assert code == 0 and "on-policy accuracy" in out
    bad = write(tmp_path, "bad.yaml", "rewards: x.csv\ntruht: ground_truth\n")
    code, _, err = cli(["metrics", "--config", bad])
    assert code == 2
    assert "unknown option 'truht'; valid options:" in err


# --------------------------------------------------------------------------------------------------------------
# Refused or warned: rewards the paper's normalization cannot take, intervals from one prompt
# --------------------------------------------------------------------------------------------------------------


def test_normalization_epsilon_is_the_metrics_one() -> None:
    assert inspect.signature(fit_normalization).parameters["eps"].default == NORMALIZATION_EPS


def test_rewards_too_small_for_the_epsilon_are_refused(tmp_path: Path, cli: Run) -> None:
    """Before: rewards x 1e-300 gave normalized variance 0.000 with exit 0 (the 1e-8 in the std)."""
    code, out, err = cli(["metrics", example(tmp_path, rm_noisy=1e-300), "--truth", "ground_truth"])
    assert (code, out) == (2, "")
    assert "column 'rm_noisy' has a reward std of 8.78e-301, too small for the paper's normalization" in err
    assert "sqrt(var + 1e-08)" in err and "Multiply the column by a constant such as 1e301" in err


def test_rewards_whose_variance_overflows_are_refused(tmp_path: Path, cli: Run) -> None:
    """Before: `stats.std must be a positive finite number; got inf`, naming no column."""
    code, out, err = cli(["metrics", example(tmp_path, rm_accurate_flat=1e300), "--truth", "ground_truth"])
    assert (code, out) == (2, "")
    assert "column 'rm_accurate_flat' has rewards up to 2.78e+300, whose variance overflows float64" in err
    assert "divide the column by a constant such as 1e299" in err


@pytest.mark.parametrize("factor", [1e-1, 1e3, 1e150])
def test_every_accepted_scale_gives_the_same_normalized_variance(tmp_path: Path, cli: Run, factor: float) -> None:
    """The metrics are scale-invariant but for the epsilon; where the check accepts a scale, it moves them < 1%."""
    cli(["metrics", str(REWARDS), "--json", str(tmp_path / "a.json")])
    scaled = example(tmp_path, rm_noisy=factor, rm_accurate_flat=factor, ground_truth=factor)
    code, _, _ = cli(["metrics", scaled, "--json", str(tmp_path / "b.json")])
    assert code == 0
    base, other = estimates(tmp_path / "a.json"), estimates(tmp_path / "b.json")
    assert other == pytest.approx(base, rel=1e-2)


def test_check_reward_scale_at_the_threshold() -> None:
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(20, 8))
    rewards /= rewards.std(ddof=1)  # std exactly 1
    check_reward_scale("rm", rewards * np.sqrt(MIN_VARIANCE) * 1.01, where="t.csv")
    with pytest.raises(TableError, match=r"^t\.csv: column 'rm' has a reward std of 0\.000985, too small"):
        check_reward_scale("rm", rewards * np.sqrt(MIN_VARIANCE) * 0.99, where="t.csv")
    check_reward_scale("rm", np.full((3, 4), 1e-300), where="t.csv")  # constant: its variance is 0 either way
    check_reward_scale("rm", np.zeros((3, 4)), where="t.csv")
    check_reward_scale("rm", np.full((3, 4), 1e300), where="t.csv")


def test_a_constant_reward_has_variance_zero(tmp_path: Path, cli: Run) -> None:
    frame = pd.read_csv(REWARDS).assign(rm_constant=3.0)
    frame.to_csv(tmp_path / "c.csv", index=False)
    code, _, _ = cli(
        ["metrics", str(tmp_path / "c.csv"), "--truth", "ground_truth", "--json", str(tmp_path / "c.json")]
    )
    assert code == 0
    assert estimates(tmp_path / "c.json")["rm_constant"] == 0.0


def test_one_prompt_warns_of_a_zero_width_interval(tmp_path: Path, cli: Run) -> None:
    frame = pd.read_csv(REWARDS)
    frame[frame["prompt_id"] == 0].to_csv(tmp_path / "one.csv", index=False)
    out_json = tmp_path / "one.json"
    with pytest.warns(UserWarning, match=r"one\.csv has 1 prompt: every bootstrap interval over prompts has zero"):
        code, out, _ = cli(["metrics", str(tmp_path / "one.csv"), "--truth", "ground_truth", "--json", str(out_json)])
    assert code == 0 and "rm_noisy" in out
    written = json.loads(out_json.read_text())
    assert len(written["warnings"]) == 1 and "zero width" in written["warnings"][0]
    interval = written["reward_models"]["rm_noisy"]["reward_variance"]
    assert interval["low"] == interval["estimate"] == interval["high"]


# --------------------------------------------------------------------------------------------------------------
# Refused: --json paths that cannot be written, before any work
# --------------------------------------------------------------------------------------------------------------


def test_json_path_that_is_a_directory_or_under_a_file(tmp_path: Path, cli: Run) -> None:
    """Before: IsADirectoryError / FileExistsError tracebacks after the whole computation."""
    code, out, err = cli(["metrics", str(REWARDS), "--json", str(tmp_path)])
    assert (code, out) == (2, "")
    assert f"--json {tmp_path} is a directory; give the path of a file to write, e.g. {tmp_path / 'out.json'}" in err
    under = tmp_path / "r.csv" / "m.json"
    (tmp_path / "r.csv").write_text("x")
    code, _, err = cli(["metrics", str(REWARDS), "--json", str(under)])
    assert code == 2 and f"--json {under}: {tmp_path / 'r.csv'} is a file, not a directory" in err
    with pytest.raises(ValueError, match="is a directory"):
        MetricsConfig(rewards=REWARDS, json=tmp_path)


def test_json_path_that_is_the_input_is_refused(tmp_path: Path, cli: Run) -> None:
    table = example(tmp_path)
    before = Path(table).read_text()
    code, _, err = cli(["metrics", table, "--json", table])
    assert code == 2 and f"--json {table} is the rewards table itself; give another file" in err
    assert Path(table).read_text() == before


def test_json_write_failure_names_the_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path, data: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("rmteacher.tables.write_json_atomic", refuse)
    config = MetricsConfig(rewards=REWARDS, num_resamples=200, json=tmp_path / "m.json")
    with pytest.raises(ValueError, match=r"^--json .*m\.json: cannot write it \(Permission denied\)$"):
        run_metrics(config)


# --------------------------------------------------------------------------------------------------------------
# Refused: tables that are not a one-row-per-sample reward table
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty.csv", "", "the file is empty"),
        ("header.csv", "prompt_id,sample_id,rm\n", "the table has no rows"),
        ("bad.jsonl", '{"prompt_id": 0, "sample_id": 0, "rm": 1}\n{oops\n', r"bad.jsonl:2: not valid JSON"),
        ("col.csv", "prompt_id,sample_id,rm\n0,0,1\n0,1,2\n", r"--truth 'truth' is not a column of .*; valid: 'rm'"),
        ("dup.csv", "prompt_id,sample_id,rm,truth\n0,0,1,1\n0,0,2,2\n", "duplicate rows for prompt_id=0, sample_id=0"),
        (
            "nan.csv",
            "prompt_id,sample_id,rm,truth\n0,0,1,1\n0,1,,2\n",
            "column 'rm' has a non-finite or non-numeric value nan at prompt_id=0, sample_id=1",
        ),
        ("ragged.csv", "prompt_id,sample_id,rm,truth\n0,0,1,1\n0,1,2,2\n1,0,1,1\n", "ragged groups"),
        ("one.csv", "prompt_id,sample_id,rm,truth\n0,0,1,1\n1,0,2,2\n", "needs at least 2 samples per prompt"),
        ("x.txt", "a", "unknown table format '.txt'"),
    ],
)
def test_metrics_bad_input(tmp_path: Path, cli: Run, name: str, text: str, message: str) -> None:
    code, _, err = cli(["metrics", write(tmp_path, name, text), "--truth", "truth"])
    assert code == 2
    assert "rmteacher metrics: error:" in err
    assert re.search(message, err), err


def test_metrics_missing_file_and_bad_options(tmp_path: Path, cli: Run, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["metrics", str(tmp_path / "nope.csv")])
    assert code == 2 and "nope.csv: no such file or directory" in err
    code, _, err = cli(["metrics"])
    assert code == 2 and "missing required option(s): REWARDS" in err
    with pytest.raises(SystemExit):
        cli(["metrics", str(REWARDS), "--num-resamples", "many"])
    assert "invalid int value: 'many'" in capsys.readouterr().err


def test_metrics_without_reward_columns(tmp_path: Path, cli: Run) -> None:
    path = write(tmp_path, "t.csv", "prompt_id,sample_id,truth,text\n0,0,1,a\n0,1,2,b\n")
    code, _, err = cli(["metrics", path, "--truth", "truth"])
    assert code == 2 and "t.csv: no reward-model columns: found 'prompt_id', 'sample_id', 'truth', 'text'" in err
