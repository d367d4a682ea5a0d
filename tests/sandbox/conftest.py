"""One sandbox build per test session (the shipped default size, about 30 s), shared by pytest-xdist workers.

The build's lock serializes the workers: the first builds, the others wait and find it in the cache.
"""

import os
from pathlib import Path

import pytest

from rmteacher.sandbox import SandboxTask, build


@pytest.fixture(scope="session")
def sandbox_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker has its own basetemp; their parent is this run's, shared by all workers.
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "sandbox-cache"


@pytest.fixture(scope="session")
def sandbox_task(sandbox_cache: Path) -> SandboxTask:
    return build(sandbox_cache, seed=0, progress=False)
