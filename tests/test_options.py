"""Options from the command line and from ``--config`` YAML: the same strictness on both paths."""

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from rmteacher.options import (
    MAX_SEED,
    OptionsError,
    add_options,
    check_options,
    decode_escapes,
    min_resamples,
    option,
    output_file_check,
    parse_options,
    resamples_check,
    seed_check,
    stop_check,
)


@dataclass
class Example:
    """Options of a test command: one field of every kind the commands use."""

    path: Path = option(help="input", positional=True)
    count: int = option(3, help="an integer")
    limit: int | None = option(None, help="an optional integer")
    rate: float = option(0.5, help="a number")
    name: str | None = option(None, help="a string")
    out: Path | None = option(None, help="a path")
    flag: bool = option(False, help="a switch")
    kind: Literal["a", "b"] = option("a", help="a choice")
    names: list[str] = option(default_factory=list, help="strings")
    seed: int = option(0, help="a seed")

    def __post_init__(self) -> None:
        check_options([seed_check("--seed", self.seed)])


def parse(argv: list[str]) -> Example:
    parser = argparse.ArgumentParser()
    add_options(parser, Example)
    return parse_options(Example, parser.parse_args(argv))


def from_yaml(tmp_path: Path, text: str) -> Example:
    config = tmp_path / "options.yaml"
    config.write_text("path: input.csv\n" + text)
    return parse(["--config", str(config)])


def test_yaml_values_of_the_right_type(tmp_path: Path) -> None:
    options = from_yaml(
        tmp_path,
        "count: 7\nlimit: null\nrate: 2\nname: 123\nout: runs/x\nflag: true\nkind: b\nnames: one\nseed: 5\n",
    )
    assert options == Example(
        path=Path("input.csv"),
        count=7,
        limit=None,
        rate=2.0,
        name="123",
        out=Path("runs/x"),
        flag=True,
        kind="b",
        names=["one"],
        seed=5,
    )
    assert isinstance(options.rate, float)
    # PyYAML reads `1e-3` (no dot) as a string; it is still a number, as on the command line.
    assert from_yaml(tmp_path, "rate: 1e-3\ncount: '12'\n").rate == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("count: 2.7", r"option 'count' \(--count\) has a bad value 2\.7 \(expected an integer, got a float\)"),
        ("count: true", r"option 'count' \(--count\) has a bad value True \(expected an integer, got a boolean\)"),
        ("count: 3.0", r"option 'count' \(--count\) has a bad value 3\.0 \(expected an integer, got a float\)"),
        (
            "count: '2.7'",
            r"option 'count' \(--count\) has a bad value '2\.7' \(invalid literal for int\(\) with base 10: '2\.7'\)",
        ),
        ("count: null", r"option 'count' \(--count\) has a bad value None \(expected an integer, got null\)"),
        ("count: [1, 2]", r"option 'count' \(--count\) has a bad value \[1, 2\] \(expected an integer, got a list\)"),
        ("limit: 2.5", r"option 'limit' \(--limit\) has a bad value 2\.5 \(expected an integer, got a float\)"),
        ("rate: true", r"option 'rate' \(--rate\) has a bad value True \(expected a number, got a boolean\)"),
        (
            "rate: fast",
            r"option 'rate' \(--rate\) has a bad value 'fast' \(could not convert string to float: 'fast'\)",
        ),
        ("name: yes", r"option 'name' \(--name\) has a bad value True \(expected a string, got a boolean\)"),
        ("name: {a: 1}", r"option 'name' \(--name\) has a bad value \{'a': 1\} \(expected a string, got a mapping\)"),
        ("out: 2024", r"option 'out' \(--out\) has a bad value 2024 \(expected a path, got an integer\)"),
        ("flag: 1", r"option 'flag' \(--flag\) has a bad value 1 \(expected true or false, got an integer\)"),
        ("flag: 'maybe'", r"option 'flag' \(--flag\) has a bad value 'maybe' \(expected true or false, got a string\)"),
        ("kind: c", r"option 'kind' \(--kind\) has a bad value 'c' \('c' is not one of a, b\)"),
        ("kind: true", r"option 'kind' \(--kind\) has a bad value True \(expected one of a, b, got a boolean\)"),
        (
            "names: [one, 2.5, false]",
            r"option 'names' \(--names\) has a bad value \['one', 2\.5, False\] \(expected a string, got a boolean\)",
        ),
        ("names: null", r"option 'names' \(--names\) has a bad value None \(expected a string, got null\)"),
    ],
)
def test_yaml_values_of_the_wrong_type_are_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(OptionsError, match=r"^--config .*options\.yaml: " + message + "$"):
        from_yaml(tmp_path, text + "\n")


def test_command_line_and_yaml_refuse_the_same_integer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["input.csv", "--count", "2.7"])
    assert "argument --count: invalid int value: '2.7'" in capsys.readouterr().err
    with pytest.raises(OptionsError, match="expected an integer, got a float"):
        from_yaml(tmp_path, "count: 2.7\n")


def test_a_choice_outside_a_literal_names_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["input.csv", "--kind", "c"])
    assert "argument --kind: 'c' is not one of a, b" in capsys.readouterr().err  # not argparse's "invalid value"


def test_command_line_wins_over_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "options.yaml"
    config.write_text("path: a.csv\ncount: 4\nnames: [x, y]\n")
    options = parse(["--config", str(config), "b.csv", "--count", "5"])
    assert (options.path, options.count, options.names) == (Path("b.csv"), 5, ["x", "y"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "path: a.csv\ncuont: 3\n",
            r"unknown option 'cuont'; valid options: count, flag, kind, limit, name, names, out, path, rate, seed$",
        ),
        ("- a\n- b\n", "expected a mapping of option names to values, got list"),
        ("path: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "options.yaml"
    config.write_text(text)
    with pytest.raises(OptionsError, match=message):
        parse(["--config", str(config)])
    with pytest.raises(OptionsError, match="no such file"):
        parse(["--config", str(tmp_path / "missing.yaml")])


def test_missing_required_option_and_post_init_errors() -> None:
    with pytest.raises(OptionsError, match=r"missing required option\(s\): PATH"):
        parse([])
    with pytest.raises(OptionsError, match=r"--seed must be an integer in \[0, 4294967295\] .*; got -1"):
        parse(["a.csv", "--seed", "-1"])


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0, True), (MAX_SEED, True), (-1, False), (MAX_SEED + 1, False), (True, False), (1.5, False)],
)
def test_seed_check(value: Any, ok: bool) -> None:
    passed, message = seed_check("--seed", value)
    assert passed is ok
    assert message == f"--seed must be an integer in [0, {MAX_SEED}] (numpy's seed range); got {value!r}"


def test_min_resamples() -> None:
    assert [min_resamples(c) for c in (0.5, 0.9, 0.95, 0.98, 0.99, 0.999)] == [200, 200, 200, 500, 1000, 10000]


def test_resamples_check() -> None:
    assert resamples_check("--num-resamples", 200, 0.95) == (
        True,
        "--num-resamples must be >= 200 at --confidence 0.95 (at least 200, and 5 resamples beyond each end of the "
        "interval); got 200",
    )
    assert not resamples_check("--num-resamples", 999, 0.99)[0]
    assert resamples_check("--num-resamples", 1000, 0.99)[0]


def test_output_file_check(tmp_path: Path) -> None:
    (tmp_path / "file.csv").write_text("x")
    assert output_file_check("--json", None)[0]
    assert output_file_check("--json", tmp_path / "new" / "deeper" / "out.json")[0]
    assert output_file_check("--json", tmp_path / "file.csv")[0]  # an existing file is replaced
    ok, message = output_file_check("--json", tmp_path)
    assert not ok and message == f"--json {tmp_path} is a directory; give the path of a file to write, e.g. " + str(
        tmp_path / "out.json"
    )
    ok, message = output_file_check("--json", tmp_path / "file.csv" / "a" / "out.json")
    assert not ok
    assert message == (
        f"--json {tmp_path / 'file.csv' / 'a' / 'out.json'}: {tmp_path / 'file.csv'} is a file, not a directory; "
        "give a path in a directory"
    )


def test_check_options_raises_the_first_failing_message() -> None:
    check_options([(True, "fine")])
    with pytest.raises(ValueError, match=r"^second$"):
        check_options([(True, "first"), (False, "second"), (False, "third")])


@pytest.mark.parametrize(
    ("typed", "decoded"),
    [
        ("\\n", "\n"),  # what a shell passes for --stop "\n": a backslash and an n
        ("\\t", "\t"),
        ("\\r\\n", "\r\n"),
        ("\\\\", "\\"),
        ("\\\\n", "\\n"),  # an escaped backslash, then a plain n: two characters
        ("a\\nb", "a\nb"),
        ("\\d", "\\d"),  # not an escape: kept as typed
        ("\\", "\\"),  # a lone trailing backslash: kept
        ("\n", "\n"),  # a real newline ($'\n' in bash) stays one
        ("###", "###"),
    ],
)
def test_decode_escapes_by_hand(typed: str, decoded: str) -> None:
    assert decode_escapes(typed) == decoded


def test_an_empty_stop_string_is_refused() -> None:
    assert stop_check("--stop", ["\\n", "x"]) == (True, "")
    with pytest.raises(ValueError, match=r"--stop must not be empty \(an empty string stops nothing\); got ''"):
        check_options([stop_check("--stop", ["\\n", ""])])


@pytest.mark.parametrize(
    ("help_text", "states"),
    [
        ("policy: a directory or hub id (default: sandbox)", True),
        ("prompts x samples for Table 1 (default 200, the paper: 500)", True),
        ("which evaluation (the paper: after epoch 1 of 6; default here: the 2nd)", True),
        ("default: the sandbox's", True),
        ("adamw: TRL's default, as the paper's experiments", False),
        ("clip the gradient norm to this; 0: no clipping (TRL's default: 1)", False),
        ("0 keeps torch's default", False),
        ("defaults of the sandbox", False),
    ],
)
def test_states_default_only_for_the_options_own_default(help_text: str, states: bool) -> None:
    from rmteacher.options import states_default

    assert states_default(help_text) is states


def test_help_shows_a_default_that_the_help_line_mentions_for_someone_else() -> None:
    @dataclass
    class Mentions:
        optimizer: Literal["adamw", "sgd"] = option("adamw", help="adamw: TRL's default; sgd: plain descent")
        clip: float = option(1.0, help="clip the gradient norm (TRL's default: 1)")
        own: str | None = option(None, help="a model (default: the sandbox's)")

    parser = argparse.ArgumentParser()
    add_options(parser, Mentions)
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["optimizer"] == "adamw: TRL's default; sgd: plain descent (default: adamw)"
    assert helps["clip"] == "clip the gradient norm (TRL's default: 1) (default: 1.0)"
    assert helps["own"] == "a model (default: the sandbox's)"  # stated once, not twice


def test_every_option_of_every_command_states_its_default_in_help() -> None:
    import importlib

    from rmteacher.cli import COMMANDS, build_parser
    from rmteacher.options import describe_options, states_default

    for name, _, module, options, _ in COMMANDS:
        config = getattr(importlib.import_module(f"rmteacher.commands.{module}"), options)
        for info in describe_options(config):
            if not info.required:
                assert states_default(info.help_with_default), (name, info.flag, info.help_with_default)
        # what --help prints is what describe_options says
        sub = build_parser(name)._subparsers._group_actions[0].choices[name]  # type: ignore[union-attr]
        printed = {a.dest: a.help for a in sub._actions}
        for info in describe_options(config):
            assert printed[info.name].startswith(info.help_with_default), (name, info.flag)
    rl = {
        i.name: i.help_with_default for i in describe_options(importlib.import_module("rmteacher.training.rl").RLConfig)
    }
    assert rl["optimizer"].endswith("(default: adamw)")
    assert rl["max_grad_norm"].endswith("(default: 1.0)")
    assert rl["cpu_threads"].endswith("(default: 1)")
