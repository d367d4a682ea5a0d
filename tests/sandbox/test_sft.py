"""The generic SFT function: option checks, row checks, and a few real TRL steps."""

import pytest
import torch

from rmteacher.sandbox.policy import new_policy
from rmteacher.sandbox.tokenizer import build_tokenizer
from rmteacher.training.sft import SFTOptions, sft


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"learning_rate": 0.0}, "learning_rate must be positive; got 0.0"),
        ({"batch_size": 0}, "batch_size must be positive"),
        ({"num_epochs": 0.0}, "num_epochs must be positive when max_steps <= 0"),
        ({"warmup_ratio": 1.0}, r"warmup_ratio must be in \[0, 1\); got 1.0"),
        ({"lr_scheduler": "exotic"}, "lr_scheduler must be one of .* got 'exotic'"),
        ({"max_length": 1}, "max_length must be at least 2"),
    ],
)
def test_bad_options_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SFTOptions(**kwargs)


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(TypeError, match="learning_rat"):
        SFTOptions(learning_rat=1e-3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("rows", "match"),
    [([], "train_rows is empty"), ([{"prompt": "sort: ab"}], r"train_rows\[0\] lacks \['completion'\]")],
)
def test_bad_rows_are_named(rows: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sft(None, None, rows, options=SFTOptions())


def test_a_few_steps_train_the_model_on_plain_text_rows(capsys: pytest.CaptureFixture[str]) -> None:
    tokenizer = build_tokenizer()
    model = new_policy(tokenizer, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    rows = [{"prompt": "sort: dbca\n", "completion": "abcd"}, {"prompt": "sort: qwer\n", "completion": "eqrw"}] * 8
    options = SFTOptions(learning_rate=1e-2, max_steps=3, batch_size=8, max_length=32, progress=False)
    trained = sft(model, tokenizer, rows, options=options)
    assert any(not torch.equal(a, b) for a, b in zip(before, trained.parameters(), strict=True))
    assert capsys.readouterr().out == ""  # library code never prints
