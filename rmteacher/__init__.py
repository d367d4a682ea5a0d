"""rmteacher: will this reward model be a good teacher for my policy?

Implements Razin et al., "What Makes a Reward Model a Good Teacher? An Optimization Perspective" (2025): the reward
variance a reward model induces under a policy, not its accuracy, sets how fast policy gradient improves that policy.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rmteacher")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
