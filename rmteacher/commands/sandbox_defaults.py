"""The built-in sandbox as the default task of a command: used only when none of the task's inputs is given.

A command given some inputs but not all gets an error from its pipeline listing what is missing, never a silent
mix of the user's inputs and the sandbox's. When the sandbox is used, one line on stderr says so.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["sandbox_if_nothing_given"]


def sandbox_if_nothing_given(command: str, inputs: Mapping[str, Any], *, progress: bool, seed: int = 0) -> Any:
    """The built sandbox task (``rmteacher.sandbox.SandboxTask``, build ``seed``) when every value of ``inputs``
    (flag -> value) is empty, else None."""
    if any(value not in (None, [], (), "") for value in inputs.values()):
        return None
    from rmteacher import sandbox

    flags = ", ".join(inputs)
    build = "" if seed == 0 else f" (build --sandbox-seed {seed})"
    print(f"rmteacher {command}: none of {flags} given; using the built-in sandbox task{build}", file=sys.stderr)
    return sandbox.build(seed=seed, progress=progress)
