"""The `rmteacher` entry point itself. Each command's runs and bad inputs are tested in tests/commands/."""

import subprocess
import sys


def test_version_and_help_through_the_installed_script() -> None:
    done = subprocess.run([sys.executable, "-m", "rmteacher.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.startswith("rmteacher ")
    done = subprocess.run([sys.executable, "-m", "rmteacher.cli", "metrics", "--help"], capture_output=True, text=True)
    assert "--truth" in done.stdout
