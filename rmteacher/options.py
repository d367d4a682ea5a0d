"""Command-line options generated from one dataclass per command.

A command's options are the fields of its dataclass: ``field(metadata={"help": ...})`` gives the help line (the TRL
convention), ``positional=True`` makes a positional argument, and ``__post_init__`` validates. ``--config FILE.yaml``
supplies any field; unknown keys are errors; flags given on the command line win over the file.

Written here rather than taken from ``transformers.HfArgumentParser`` because that parser has no positional
arguments and costs a second of imports on every ``rmteacher --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

__all__ = [
    "CONFIG_HELP",
    "MAX_SEED",
    "STOP_HELP",
    "OptionInfo",
    "OptionsError",
    "add_options",
    "check_options",
    "decode_escapes",
    "describe_options",
    "min_resamples",
    "option",
    "output_file_check",
    "parse_options",
    "resamples_check",
    "seed_check",
    "states_default",
    "stop_check",
]

T = TypeVar("T")
_UNSET: Any = object()
#: The largest seed every command accepts: numpy's ``RandomState`` (the paper's prompt choices) takes [0, 2**32 - 1].
MAX_SEED = 2**32 - 1


class OptionsError(ValueError):
    """Bad command-line or config-file options."""


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    positional: bool = False,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that is also a command-line option."""
    metadata = {"help": help, "positional": positional}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_options(checks: list[tuple[bool, str]]) -> None:
    """For ``__post_init__``: raises ``ValueError`` with the message of the first check that fails.

    Each message names the flag, the value received and what would be valid.
    """
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def seed_check(flag: str, value: int) -> tuple[bool, str]:
    """A :func:`check_options` entry for a seed: an integer in ``[0, MAX_SEED]``, what numpy's ``RandomState`` takes
    (torch takes more), so that every command refuses the same seeds with the flag named."""
    return (
        not isinstance(value, bool) and isinstance(value, int) and 0 <= value <= MAX_SEED,
        f"{flag} must be an integer in [0, {MAX_SEED}] (numpy's seed range); got {value!r}",
    )


#: The backslash escapes :func:`decode_escapes` turns into the characters they stand for.
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_ESCAPE = re.compile(r"\\([ntr\\])")

#: The help line of ``--stop``, one for every command that has it.
STOP_HELP = (
    "stop string: a completion ends at the first one (besides every end token of the generation config). Typed as "
    "in vLLM or llama.cpp: the escapes \\n (newline), \\t (tab), \\r (carriage return) and \\\\ (one backslash) "
    "are decoded, so --stop '\\n' stops at a newline; any other backslash is kept as typed. config.json records the "
    "decoded strings"
)


def decode_escapes(text: str) -> str:
    r"""``text`` with the escapes ``\n``, ``\t``, ``\r`` and ``\\`` replaced, left to right, by a newline, a tab, a
    carriage return and one backslash, as users type stop strings in a shell (vLLM's ``stop=["\n"]``, llama.cpp's
    flags); any other backslash stays as typed (``\d`` is two characters).

    Examples: ``"\\n"`` (backslash, n) -> ``"\n"`` (newline); ``"\\\\n"`` (backslash, backslash, n) -> backslash, n.
    """
    return _ESCAPE.sub(lambda match: ESCAPES[match.group(1)], text)


def stop_check(flag: str, values: list[str]) -> tuple[bool, str]:
    """A :func:`check_options` entry for stop strings: none may be empty (an empty string would stop nothing)."""
    empty = [v for v in values if not decode_escapes(v)]
    return not empty, f"{flag} must not be empty (an empty string stops nothing); got {empty[0]!r}" if empty else ""


def min_resamples(confidence: float) -> int:
    """The fewest bootstrap resamples for a ``confidence`` interval: 200, and at least 5 resamples beyond each end.

    A percentile interval's ends are the ``(1 -/+ confidence) / 2`` quantiles of the resamples; with fewer than 5
    resamples in a tail they move with the seed (at 1 resample the interval can exclude its own estimate).
    """
    return max(200, math.ceil(10 / (1 - confidence) - 1e-9))


def resamples_check(flag: str, value: int, confidence: float) -> tuple[bool, str]:
    """A :func:`check_options` entry for a number of bootstrap resamples at a ``confidence`` level in (0, 1)."""
    fewest = min_resamples(confidence)
    return (
        value >= fewest,
        f"{flag} must be >= {fewest} at --confidence {confidence} (at least 200, and 5 resamples beyond each end "
        f"of the interval); got {value}",
    )


def output_file_check(flag: str, path: Path | None) -> tuple[bool, str]:
    """A :func:`check_options` entry for a file a command will write: checked before any work, so that a path that
    is a directory, or lies under a file, is refused at once with its flag rather than as a traceback at the end."""
    if path is None:
        return True, ""
    if path.is_dir():
        return False, f"{flag} {path} is a directory; give the path of a file to write, e.g. {path / 'out.json'}"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return False, f"{flag} {path}: {parent} is a file, not a directory; give a path in a directory"
            break
    return True, ""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


class _BadChoice(argparse.ArgumentTypeError, ValueError):
    """A value outside a Literal option's choices: argparse prints an ArgumentTypeError's message (it would print
    only "invalid literal value" for a plain ValueError), and the YAML path catches it as a ValueError."""


def _converter(tp: Any) -> Any:
    """A function turning one command-line or YAML value into ``tp``."""
    tp, _ = _unwrap_optional(tp)
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        kind = type(choices[0])

        def literal(value: Any) -> Any:
            converted = kind(value)
            if converted not in choices:
                raise _BadChoice(f"{value!r} is not one of {', '.join(map(str, choices))}")
            return converted

        return literal
    if tp is Path:
        return lambda v: Path(str(v)).expanduser()
    if tp in (int, float, str):
        return tp
    if tp is bool:
        return _to_bool
    raise TypeError(f"unsupported option type {tp!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false)")


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", Path: "a path", bool: "true or false"}
# The YAML types each option type takes. As strict as the command line (where `--num-resamples 2.7` fails): no
# float or boolean for an integer, no boolean for a number or a string (YAML reads `yes`/`no` as booleans); a
# number for a string option is its text (`truth: 1` is the column "1").
_YAML_TYPES: dict[Any, tuple[type, ...]] = {
    int: (int, str),
    float: (int, float, str),
    str: (str, int, float),
    Path: (str,),
    bool: (bool,),
}


def _yaml_type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list", dict: "a mapping"}
    return "null" if value is None else names.get(type(value), f"a {type(value).__name__}")


def _from_yaml(tp: Any, value: Any) -> Any:
    """One YAML value converted to the option type ``tp`` (not a list), refusing values of the wrong YAML type."""
    base, optional = _unwrap_optional(tp)
    if value is None and optional:
        return None
    choices = typing.get_args(base) if typing.get_origin(base) is Literal else None
    kind = type(choices[0]) if choices else base
    allowed = _YAML_TYPES[kind]
    if value is None or (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        expected = f"one of {', '.join(map(str, choices))}" if choices else _KIND_NAMES[kind]
        raise TypeError(f"expected {expected}, got {_yaml_type_name(value)}")
    return _converter(tp)(value)


def _list_item_type(tp: Any) -> Any | None:
    tp, _ = _unwrap_optional(tp)
    if typing.get_origin(tp) in (list, tuple):
        return typing.get_args(tp)[0]
    return None


_OWN_DEFAULT = re.compile(r"(?:^|[(;]\s*)default\b")


def states_default(help_text: str) -> bool:
    """Whether a help line states the option's own default: "(default: the sandbox's)", "(default 200, ...)" or
    "...; default ...". A mention of someone else's default ("adamw: TRL's default") does not count."""
    return _OWN_DEFAULT.search(help_text) is not None


def _type_name(tp: Any) -> str:
    base, optional = _unwrap_optional(tp)
    item = _list_item_type(base)
    if item is not None:
        return f"list of {_type_name(item)}"
    if typing.get_origin(base) is Literal:
        name = " | ".join(map(str, typing.get_args(base)))
    else:
        name = {int: "int", float: "float", str: "str", Path: "path", bool: "bool"}.get(base, str(base))
    return f"{name} (optional)" if optional else name


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One option of a command as ``--help`` shows it (and the documentation's reference lists it)."""

    name: str  #: the dataclass field, also the ``--config`` key
    flag: str  #: ``--flag-name``, or ``NAME`` for a positional argument
    type_name: str  #: e.g. ``int``, ``path (optional)``, ``adamw | sgd``, ``list of str``
    default: Any  #: the default value; ``dataclasses.MISSING`` for a required option
    help: str  #: the field's help line as written
    help_with_default: str  #: the help line ``--help`` prints: with "(default: ...)" unless it states its own
    required: bool
    positional: bool
    repeatable: bool
    choices: tuple[Any, ...] | None


def describe_options(cls: type) -> list[OptionInfo]:
    """The options of the dataclass ``cls``, one per field, in order: what :func:`add_options` adds to a parser."""
    hints = typing.get_type_hints(cls)
    infos = []
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help", "")
        tp = hints[f.name]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default: Any = dataclasses.MISSING
        shown = help_text
        if not required:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
            if not states_default(help_text):
                shown += f" (default: {default})"
        base = _unwrap_optional(tp)[0]
        positional = bool(f.metadata.get("positional"))
        infos.append(
            OptionInfo(
                name=f.name,
                flag=f.name.upper() if positional else _flag(f.name),
                type_name=_type_name(tp),
                default=default,
                help=help_text,
                help_with_default=shown,
                required=required,
                positional=positional,
                repeatable=_list_item_type(tp) is not None,
                choices=typing.get_args(base) if typing.get_origin(base) is Literal else None,
            )
        )
    return infos


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Adds one argument per field of the dataclass ``cls`` and a ``--config`` option to ``parser``."""
    hints = typing.get_type_hints(cls)
    for info in describe_options(cls):
        tp = hints[info.name]
        help_text = info.help_with_default
        item = _list_item_type(tp)
        if info.positional:
            nargs = ("+" if info.required else "*") if item is not None else "?"
            convert = _converter(item if item is not None else tp)
            parser.add_argument(info.name, nargs=nargs, default=_UNSET, type=convert, help=help_text, metavar=info.flag)
        elif item is not None:
            parser.add_argument(
                info.flag,
                action="append",
                default=None,
                type=_converter(item),
                help=help_text + " [repeatable]",
            )
        elif _unwrap_optional(tp)[0] is bool:
            parser.add_argument(info.flag, action=argparse.BooleanOptionalAction, default=_UNSET, help=help_text)
        else:
            parser.add_argument(
                info.flag,
                default=_UNSET,
                type=_converter(tp),
                choices=info.choices,
                help=help_text + (" [required]" if info.required else ""),
                metavar=None if info.choices else info.name.upper(),
            )
    parser.add_argument("--config", type=Path, default=None, help=CONFIG_HELP)


#: The help line of the ``--config`` option every command has.
CONFIG_HELP = "YAML file of options; flags given here win"


def _read_config(path: Path, cls: type) -> dict[str, Any]:
    if not path.is_file():
        raise OptionsError(f"--config {path}: no such file")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise OptionsError(f"--config {path}: not valid YAML ({error})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise OptionsError(
            f"--config {path}: expected a mapping of option names to values, got {type(loaded).__name__}"
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in loaded.items():
        name = str(key).replace("-", "_")
        if name not in names:
            raise OptionsError(f"--config {path}: unknown option {key!r}; valid options: {', '.join(sorted(names))}")
        item = _list_item_type(hints[name])
        try:
            if item is not None:
                items = value if isinstance(value, list) else [value]
                values[name] = [_from_yaml(item, v) for v in items]
            else:
                values[name] = _from_yaml(hints[name], value)
        except (TypeError, ValueError) as error:
            raise OptionsError(
                f"--config {path}: option {key!r} ({_flag(name)}) has a bad value {value!r} ({error})"
            ) from None
    return values


def parse_options(cls: type[T], namespace: argparse.Namespace) -> T:
    """Builds the dataclass ``cls`` from parsed arguments, the ``--config`` file and the defaults, in that order.

    Raises:
        OptionsError: on an unknown config key, a missing required option, or a value ``__post_init__`` rejects.
    """
    values: dict[str, Any] = {}
    config_path = getattr(namespace, "config", None)
    if config_path is not None:
        values.update(_read_config(config_path, cls))
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    for f in fields:
        given = getattr(namespace, f.name, _UNSET)
        if given is not _UNSET and given is not None and given != []:
            values[f.name] = given
    missing = [
        f.name
        for f in fields
        if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        shown = ", ".join(n.upper() if _is_positional(cls, n) else _flag(n) for n in missing)
        raise OptionsError(f"missing required option(s): {shown}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise OptionsError(str(error)) from None


def _is_positional(cls: type, name: str) -> bool:
    return any(f.name == name and f.metadata.get("positional") for f in dataclasses.fields(cls))
