"""Runs commands through the real CLI: ``rmteacher.cli.main`` returns the exit code; stdout and stderr captured."""

from collections.abc import Callable
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

Run = Callable[[list[str]], tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """``cli(argv)`` runs ``rmteacher ARGV`` in this process and returns ``(exit code, stdout, stderr)``."""
    from rmteacher.cli import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    return run
