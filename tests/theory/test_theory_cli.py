"""`rmteacher theory` end to end through the real CLI, at small sizes: files, determinism, bad options."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmteacher.cli import main

SMALL = [
    "--num-instances", "20",
    "--num-outputs", "8",
    "--num-reward-models", "20",
    "--ar-bases", "1",
    "--vocab-size", "2",
    "--length", "3",
    "--rloo-runs", "2",
]  # fmt: skip

FILES = [
    "summary.md",
    "config.json",
    "variance.png",
    "variance_tabular.csv",
    "variance_autoregressive.csv",
    "accuracy.png",
    "accuracy.csv",
    "constructions.png",
    "constructions.csv",
    "best_of_n.png",
    "best_of_n.csv",
    "best_of_n_curves.csv",
    "practice.png",
    "practice.csv",
    "practice_curves.csv",
]


@pytest.mark.slow
def test_theory_all_writes_every_file_and_is_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["theory", "all", "--out", str(tmp_path / "a"), "--seed", "3", *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "variance: slope tabular" in printed and "wrote" in printed
    for name in FILES:
        assert (tmp_path / "a" / name).stat().st_size > 0, name
    summary = (tmp_path / "a" / "summary.md").read_text()
    for figure in ("variance.png", "accuracy.png", "constructions.png", "best_of_n.png", "practice.png"):
        assert f"]({figure})" in summary
    assert summary.count("*Figure:") == 5
    assert not list((tmp_path / "a").glob(".*"))  # no temporary files left behind
    assert main(["theory", "all", "--out", str(tmp_path / "b"), "--seed", "3", *SMALL]) == 0
    for name in FILES:
        if name.endswith((".csv", ".md")):
            assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text(), name


def test_theory_single_experiment(tmp_path: Path) -> None:
    assert main(["theory", "constructions", "--out", str(tmp_path), "--seed", "1"]) == 0
    assert (tmp_path / "constructions.png").exists()
    assert not (tmp_path / "variance.png").exists()
    assert "Theorem 3/6" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gamma", "0"], "--gamma must be in (0, 1)"),
        (["--num-instances", "2"], "--num-instances must be >= 5; got 2"),
        (["--vocab-size", "10", "--length", "6"], "at most 100000 are enumerated"),
        (["--kl-coef", "-1"], "--kl-coef must be >= 0; got -1.0"),
    ],
)
def test_bad_options_name_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["theory", "practice", "--out", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err


def test_unknown_experiment_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="2"):
        main(["theory", "nonsense"])
    assert "nonsense" in capsys.readouterr().err
