"""The `rmteacher` command line: parses into a command's options dataclass and calls that command's function.

Run ``rmteacher --help``. Each subcommand's options live in one dataclass beside the code that runs it.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from rmteacher import __version__
from rmteacher.commands.correlate import CorrelateConfig, run_correlate
from rmteacher.commands.metrics import MetricsConfig, run_metrics
from rmteacher.commands.theory import TheoryConfig, run_theory
from rmteacher.evaluate import EvaluateConfig, run_evaluate
from rmteacher.options import OptionsError, add_options, parse_options
from rmteacher.report import ReportConfig, run_report
from rmteacher.study import StudyConfig, run_study
from rmteacher.training.reward_model import TrainRMConfig, run_train_rm
from rmteacher.training.rl import RLConfig, run_rl
from rmteacher.training.sft import SFTConfig, run_sft

# (name, one-line help, options dataclass, function returning the text to print)
Command = tuple[str, str, type, Callable[[Any], str]]

COMMANDS: list[Command] = [
    ("study", "the paper's experiments end to end, with a report (the main job)", StudyConfig, run_study),
    ("report", "regenerate a study's report from its saved results", ReportConfig, run_report),
    (
        "evaluate",
        "rank reward models as teachers for a policy: reward variance, on- and off-policy accuracy",
        EvaluateConfig,
        run_evaluate,
    ),
    (
        "metrics",
        "reward variance and accuracy of reward models on a table of rewards",
        MetricsConfig,
        run_metrics,
    ),
    (
        "correlate",
        "the paper's Table 2: correlate reward-model properties with reward increase",
        CorrelateConfig,
        run_correlate,
    ),
    ("theory", "exact gradient-flow experiments reproducing the paper's theorems", TheoryConfig, run_theory),
    ("sft", "supervised fine-tuning of a causal LM on prompt/completion data (TRL SFTTrainer)", SFTConfig, run_sft),
    (
        "train-rm",
        "Bradley-Terry reward model on an on/off-policy preference mix (TRL RewardTrainer)",
        TrainRMConfig,
        run_train_rm,
    ),
    ("rl", "RLOO/GRPO on TRL with a normalized reward, tracking the ground truth and the landscape", RLConfig, run_rl),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rmteacher",
        description="Will this reward model be a good teacher for my policy? (Razin et al., 2025)",
    )
    parser.add_argument("--version", action="version", version=f"rmteacher {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, options, _ in COMMANDS:
        sub = subparsers.add_parser(name, help=help_text, description=options.__doc__)
        add_options(sub, options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # One progress bar per job, not one per model load/save from transformers (read when transformers is imported).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # TRL 1.16 still passes transformers 5's deprecated `gradient_checkpointing` names on every step.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)
    parser = build_parser()
    namespace = parser.parse_args(argv)
    for name, _, options, run in COMMANDS:
        if name != namespace.command:
            continue
        try:
            text = run(parse_options(options, namespace))
        except (OptionsError, ValueError, FileNotFoundError) as error:
            print(f"rmteacher {name}: error: {error}", file=sys.stderr)
            return 2
        if text:
            print(text)
        return 0
    raise AssertionError(f"unhandled command {namespace.command!r}")


if __name__ == "__main__":
    sys.exit(main())
