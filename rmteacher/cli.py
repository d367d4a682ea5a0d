"""The `rmteacher` command line: parses into a command's options dataclass and calls that command's function.

Run ``rmteacher --help``. Each subcommand lives in ``rmteacher.commands.<name>``, imported only when it runs, so
``rmteacher --help`` and the light commands (``metrics``, ``correlate``) never import torch or transformers.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from rmteacher import __version__

# (name, one-line help, module under rmteacher.commands, options dataclass, function returning the text to print)
COMMANDS: list[tuple[str, str, str, str, str]] = [
    ("study", "the paper's experiments end to end, with a report (the main job)", "study", "StudyConfig", "run_study"),
    ("report", "regenerate a study's report from its saved results", "report", "ReportConfig", "run_report"),
    (
        "evaluate",
        "rank reward models as teachers for a policy: reward variance, on- and off-policy accuracy",
        "evaluate",
        "EvaluateConfig",
        "run_evaluate",
    ),
    ("metrics", "reward variance and accuracy of reward models on a table of rewards", "metrics", "MetricsConfig",
     "run_metrics"),
    ("correlate", "the paper's Table 2: correlate reward-model properties with reward increase", "correlate",
     "CorrelateConfig", "run_correlate"),
    ("theory", "exact gradient-flow experiments reproducing the paper's theorems", "theory", "TheoryConfig",
     "run_theory"),
    ("sft", "supervised fine-tuning of a causal LM on prompt/completion data (TRL SFTTrainer)", "sft", "SFTConfig",
     "run_sft"),
    ("train-rm", "Bradley-Terry reward model on an on/off-policy preference mix (TRL RewardTrainer)", "train_rm",
     "TrainRMConfig", "run_train_rm"),
    ("select-prompts", "keep the RL prompts on which a reward varies under the policy (from an evaluate run)",
     "select_prompts", "SelectPromptsConfig", "run_select_prompts"),
    ("rl", "RLOO/GRPO on TRL with a normalized reward, tracking the ground truth and the landscape", "rl", "RLConfig",
     "run_rl"),
]  # fmt: skip

#: Errors that are the user's to fix: the message is printed, the exit code is 2, no traceback.
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, FloatingPointError)


def _chosen(argv: Sequence[str]) -> str | None:
    names = {c[0] for c in COMMANDS}
    return next((a for a in argv if a in names), None)


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``chosen`` command's module is imported to add its options."""
    from rmteacher.options import add_options

    parser = argparse.ArgumentParser(
        prog="rmteacher",
        allow_abbrev=False,  # `--seed` must not be read as `--seeds`
        description="Will this reward model be a good teacher for my policy? (Razin et al., 2025)",
    )
    parser.add_argument("--version", action="version", version=f"rmteacher {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, module, options, _ in COMMANDS:
        if name != chosen:
            subparsers.add_parser(name, help=help_text, add_help=False, allow_abbrev=False)
            continue
        config = getattr(importlib.import_module(f"rmteacher.commands.{module}"), options)
        sub = subparsers.add_parser(name, help=help_text, description=config.__doc__, allow_abbrev=False)
        add_options(sub, config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # One progress bar per job, not one per model load/save from transformers (read when transformers is imported).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # TRL 1.16 still passes transformers 5's deprecated `gradient_checkpointing` names on every step.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)
    warnings.formatwarning = _format_warning
    chosen = _chosen(argv)
    namespace = build_parser(chosen).parse_args(argv)
    name, _, module, options, run = next(c for c in COMMANDS if c[0] == namespace.command)
    from rmteacher.options import parse_options

    command = importlib.import_module(f"rmteacher.commands.{module}")
    try:
        text = getattr(command, run)(parse_options(getattr(command, options), namespace))
    except _USER_ERRORS as error:
        print(f"rmteacher {name}: error: {_describe(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rmteacher {name}: interrupted; --resume continues where it stopped", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: show where, and ask for a report
        if _is_out_of_memory(error):
            print(f"rmteacher {name}: error: out of memory ({error}); {_MEMORY_HINT}", file=sys.stderr)
            return 2
        traceback.print_exc()
        print(f"rmteacher {name}: internal error; please report it with the command you ran", file=sys.stderr)
        return 1
    if text:
        print(text)
    return 0


_MEMORY_HINT = (
    "lower --prompts-per-batch or --rm-batch-tokens, try --dtype bfloat16, or --device-map auto for a model "
    "larger than one device"
)


def _format_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> str:
    """Warnings as one line on stderr, ``rmteacher: warning: ...``, not Python's file:line form."""
    return f"rmteacher: warning: {message}\n"


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"


def _describe(error: BaseException) -> str:
    """A file-system error names the path and the reason; others carry their own message."""
    if isinstance(error, OSError) and error.filename is not None and not str(error).startswith("--"):
        return f"{error.filename}: {error.strerror or error}"
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
