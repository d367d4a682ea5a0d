"""The built-in sandbox task: sort 4 to 7 letters, graded by a programmatic ground truth in [-1, 1].

``build()`` makes (once, cached) a character-level tokenizer with a chat template, a tiny Llama policy made partly
competent by SFT on mixed-quality demonstrations, train and eval prompt sets, and off-policy preference pairs.
The ground truth and a few candidate reward functions of different quality as teachers are plain Python functions
in TRL's reward-function form (``rmteacher.sandbox.task:ground_truth``, ``rmteacher.sandbox.rewards:noisy``, ...).
"""

from rmteacher.sandbox.builder import SandboxTask, build, cache_key, default_cache_dir
from rmteacher.sandbox.rewards import CANDIDATE_REWARDS, GROUND_TRUTH, accurate_flat, length_biased, noisy
from rmteacher.sandbox.task import ground_truth, make_prompt, prompt_letters, score, target

__all__ = [
    "CANDIDATE_REWARDS",
    "GROUND_TRUTH",
    "SandboxTask",
    "accurate_flat",
    "build",
    "cache_key",
    "default_cache_dir",
    "ground_truth",
    "length_biased",
    "make_prompt",
    "noisy",
    "prompt_letters",
    "score",
    "target",
]
