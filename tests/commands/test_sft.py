"""`rmteacher sft`: options, the sandbox recipe as the defaults, a run against a direct call of the SFT function,
resume, and bad input."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from rmteacher.commands.sft import SFTConfig, run_sft, sft_rows
from rmteacher.rundir import RunDirError
from rmteacher.sandbox import SandboxTask
from rmteacher.tables import TableError
from rmteacher.threads import torch_threads
from rmteacher.training.sft import SFTOptions, sft

from .conftest import Run


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"learning_rate": -1.0}, "--learning-rate must be a finite number > 0; got -1.0"),
        ({"learning_rate": float("inf")}, "--learning-rate must be a finite number > 0; got inf"),
        ({"seed": -1}, r"--seed must be an integer in \[0, 4294967295\].*; got -1"),
        ({"model": "m"}, "--model and --data go together"),
        ({"max_steps": 0}, "--max-steps must be -1 or >= 1; got 0"),
        ({"max_steps": -1, "epochs": 0.0}, "--epochs must be > 0 with --max-steps -1; got 0.0"),
        ({"warmup_ratio": 1.0}, r"--warmup-ratio must be in \[0, 1\); got 1.0"),
        ({"lr_scheduler": "exotic"}, "--lr-scheduler must be one of constant, .*; got 'exotic'"),
        ({"resume": True, "overwrite": True}, "--resume and --overwrite exclude each other"),
    ],
)
def test_bad_options_name_the_flag_and_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SFTConfig(out=Path("x"), **kwargs)


def test_defaults_are_the_recipe_that_made_the_sandbox_policy(sandbox_task: SandboxTask) -> None:
    recipe = json.loads((sandbox_task.root / "manifest.json").read_text())["sft_options"]
    ours = SFTConfig(out=Path("x")).options(Path("scratch")).__dict__
    for key in ("output_dir", "progress", "save_steps", "logging_steps"):  # bookkeeping, not the optimization
        recipe.pop(key, None)
        ours.pop(key)
    assert ours == recipe


def test_rows_are_chat_messages_only_for_a_tokenizer_with_a_chat_template() -> None:
    class Plain:
        chat_template = None

    frame = pd.DataFrame({"q": ["sort: ba"], "a": ["ab"]})
    assert sft_rows(frame, Plain(), prompt_column="q", completion_column="a") == [
        {"prompt": "sort: ba", "completion": "ab"}
    ]


def test_data_without_needed_columns_name_found_and_expected(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    pd.DataFrame({"prompt": ["sort: ba"], "answer": ["ab"]}).to_csv(path, index=False)
    with pytest.raises(TableError, match=r"missing column\(s\) 'completion'; found 'prompt', 'answer'"):
        run_sft(SFTConfig(out=tmp_path / "run", data=path, model="unused", progress=False))
    assert not (tmp_path / "run").exists()  # a failed start leaves --out as it found it


def weights(directory: Path) -> dict[str, np.ndarray]:
    return load_file(str(directory / "model.safetensors"))


def test_a_run_matches_the_sft_function_with_the_sandbox_recipe(sandbox_task: SandboxTask, tmp_path: Path) -> None:
    from rmteacher.sandbox.policy import new_policy
    from rmteacher.sandbox.tokenizer import build_tokenizer

    out = tmp_path / "run"
    text = run_sft(SFTConfig(out=out, max_steps=4, progress=False))
    frame = pd.read_json(sandbox_task.demonstrations, lines=True)
    assert f"{len(frame)} rows" in text
    assert {"model", "config.json", "metrics.jsonl", "checkpoints"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["resolved_inputs"]["model"] == "fresh sandbox policy"

    tokenizer = build_tokenizer()  # the builder's way: a fresh seeded policy, conversational rows, one thread
    model = new_policy(tokenizer, seed=0)
    rows = sft_rows(frame, tokenizer, prompt_column="prompt", completion_column="completion")
    with torch_threads(1):
        model = sft(
            model, tokenizer, rows, options=SFTConfig(out=out, max_steps=4, progress=False).options(tmp_path / "s")
        )
    direct = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    saved = weights(out / "model")
    assert set(saved) <= set(direct)
    for key, value in saved.items():
        np.testing.assert_array_equal(value, direct[key], err_msg=key)


def test_resume_continues_from_the_last_complete_checkpoint(tmp_path: Path) -> None:
    options = {"max_steps": 4, "save_steps": 2, "progress": False}
    finished = tmp_path / "finished"
    run_sft(SFTConfig(out=finished, **options))  # type: ignore[arg-type]
    with pytest.raises(RunDirError, match="holds a previous sft run"):
        run_sft(SFTConfig(out=finished, **options))  # type: ignore[arg-type]

    out = tmp_path / "resumed"
    shutil.copytree(finished, out)
    torn = out / "checkpoints" / "checkpoint-4"  # as if killed while the trainer wrote checkpoint 4
    for path in torn.iterdir():
        if path.name != "config.json":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.rmtree(out / "model")
    with pytest.warns(UserWarning, match="skipped the incomplete checkpoint checkpoint-4"):
        text = run_sft(SFTConfig(out=out, resume=True, **options))  # type: ignore[arg-type]
    assert "resumed from checkpoint-2" in text
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"event": "resume", "checkpoint": "checkpoint-2", "step": 2} in logs
    resumed, uninterrupted = weights(out / "model"), weights(finished / "model")
    for key in uninterrupted:
        np.testing.assert_allclose(resumed[key], uninterrupted[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_the_sft_options_still_accept_the_builders_fields() -> None:
    assert SFTOptions(save_steps=0, logging_steps=10).save_steps == 0
    with pytest.raises(ValueError, match="save_steps must be >= 0 and logging_steps >= 1"):
        SFTOptions(logging_steps=0)


def test_weights_that_turn_non_finite_stop_the_run_naming_the_step(
    sandbox_task: SandboxTask, tmp_path: Path, cli: Run
) -> None:
    """A learning rate of 1e30 is finite, so accepted, but its AdamW steps overflow the weights within a few steps,
    before any loss is logged (every 10 steps): the weights themselves are checked after every step."""
    out = tmp_path / "run"
    argv = ["sft", "--out", str(out), "--max-steps", "4", "--save-steps", "1", "--learning-rate", "1e30"]
    code, _, err = cli([*argv, "--no-progress"])
    assert code == 2
    assert re.search(r"rmteacher sft: error: training diverged at step [1-4] \(weight \S+ is not finite\)", err), err
    assert "Traceback" not in err
    assert not (out / "model").exists()
    saved = list((out / "checkpoints").glob("checkpoint-*"))
    for checkpoint in saved:  # those saved before the step that diverged are finite; none is saved after
        assert all(np.isfinite(v).all() for v in weights(checkpoint).values()), checkpoint.name
    step = int(re.search(r"at step (\d)", err).group(1))  # type: ignore[union-attr]
    assert sorted(int(c.name.split("-")[1]) for c in saved) == list(range(1, step))
