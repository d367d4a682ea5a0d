"""mkdocs hook: renders the command-line reference from the commands' option dataclasses at build time.

``docs/reference/commands.md`` holds the marker ``<!-- rmteacher:commands -->``; this hook replaces it with one
section per command of ``rmteacher.cli.COMMANDS`` and one table row per option, read with
``rmteacher.options.describe_options``, the function ``--help`` itself uses. A command or an option added to the code
appears in the site at the next build, with the help text and the default ``--help`` prints: the two cannot drift.
``tests/test_docs.py`` renders the same markdown in-process and checks every option of every command is in it.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- rmteacher:commands -->"
# "(the paper: 0.05 for RLOO; ...)", "(paper: 0.5)", "the paper: 500": the paper's value as the help line states it.
_PAPER = re.compile(r"(?:the )?paper(?:'s value)?: ([^;)]*)")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default_text(default: Any) -> str:
    if default is dataclasses.MISSING:
        return "required"
    if default is None:
        return "none"
    if isinstance(default, list) and not default:
        return "none"
    return f"`{default}`"


def paper_value(help_text: str) -> str:
    """The paper's value for an option as its help line states it ("the paper: 0.05"), or "" where it does not."""
    found = _PAPER.search(help_text)
    return found.group(1).strip() if found else ""


def command_markdown(name: str, summary: str, config: type) -> str:
    """One command's section: its summary, its dataclass docstring and a table of its options."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from rmteacher.options import CONFIG_HELP, describe_options

    lines = [f"## rmteacher {name}", "", f"{summary[0].upper()}{summary[1:]}.", ""]
    doc = (config.__doc__ or "").strip()
    if doc:
        lines += [doc, ""]
    infos = describe_options(config)
    positionals = "".join(f" {i.flag}" + ("..." if i.repeatable else "") for i in infos if i.positional)
    lines += [
        f"Usage: `rmteacher {name}{positionals} [OPTIONS]`; options dataclass "
        f"`{config.__module__}.{config.__qualname__}`.",
        "",
        "| option | type | default | meaning | the paper |",
        "|---|---|---|---|---|",
    ]
    for info in infos:
        flag = f"`{info.flag}`"
        if info.positional:
            flag += " (positional)"
        elif info.type_name == "bool":
            flag += f" / `--no-{info.flag[2:]}`"
        if info.repeatable:
            flag += " (repeatable)"
        row = [flag, _cell(info.type_name), _cell(_default_text(info.default)), _cell(info.help_with_default)]
        lines.append("| " + " | ".join([*row, _cell(paper_value(info.help))]) + " |")
    lines.append(f"| `--config` | path (optional) | none | {_cell(CONFIG_HELP)} |  |")
    return "\n".join(lines) + "\n"


def commands_markdown() -> str:
    """Every command of ``rmteacher.cli.COMMANDS``, in the order ``rmteacher --help`` lists them."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from rmteacher.cli import COMMANDS

    sections = []
    for name, summary, module, options, _ in COMMANDS:
        config = getattr(importlib.import_module(f"rmteacher.commands.{module}"), options)
        sections.append(command_markdown(name, summary, config))
    return "\n".join(sections)


FLOORS_MARKER = "<!-- rmteacher:floors -->"


def _unit(module: str) -> str:
    """``rmteacher.training.rl`` -> ``rmteacher.training``: a top-level module or package of rmteacher."""
    return ".".join(module.split(".")[:2])


def import_floors() -> dict[str, tuple[int, set[str], str]]:
    """``{module: (floor, the rmteacher modules it imports, its docstring's first line)}`` for every top-level module
    and package of rmteacher, read from the source with ``ast`` (imports inside functions included). A module's floor
    is 0 when it imports no other rmteacher module, else one more than the highest floor it imports from. ``cli``
    imports its commands by name (``importlib``), so it sits on the floor of ``options``."""
    import ast

    graph: dict[str, set[str]] = {}
    docs: dict[str, str] = {}
    for path in sorted((ROOT / "rmteacher").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        unit = _unit(module)
        tree = ast.parse(path.read_text())
        if module == unit:
            docs[unit] = (ast.get_docstring(tree) or "").strip().splitlines()[0] if ast.get_docstring(tree) else ""
        deps = graph.setdefault(unit, set())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rmteacher."):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("rmteacher.")]
            deps.update(_unit(n) for n in names if _unit(n) != unit)
    graph.pop("rmteacher", None)

    floors: dict[str, int] = {}

    def floor(unit: str, seen: tuple[str, ...] = ()) -> int:
        if unit in seen:
            raise ValueError(f"import cycle: {' -> '.join((*seen, unit))}")
        if unit not in floors:
            below = [floor(d, (*seen, unit)) for d in graph[unit] if d in graph]
            floors[unit] = 1 + max(below) if below else 0
        return floors[unit]

    return {u: (floor(u), graph[u] & set(graph), docs.get(u, "")) for u in graph}


def floors_markdown() -> str:
    """The import floors as a table, top floor first, one line per module."""
    lines = ["| floor | module | what it is | imports from rmteacher |", "|---|---|---|---|"]
    rows = sorted(import_floors().items(), key=lambda item: (-item[1][0], item[0]))
    for unit, (level, deps, doc) in rows:
        shown = ", ".join(f"`{d.removeprefix('rmteacher.')}`" for d in sorted(deps)) or "nothing"
        lines.append(f"| {level} | `{unit.removeprefix('rmteacher.')}` | {_cell(doc)} | {shown} |")
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs event: fills the markers of the commands reference and of the design page's import floors."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, commands_markdown())
    # A note for readers of the markdown on GitHub, where the tables below it are not rendered.
    markdown = re.sub(r"<!-- github-only -->.*?<!-- /github-only -->\n?", "", markdown, flags=re.S)
    if FLOORS_MARKER in markdown:
        markdown = markdown.replace(FLOORS_MARKER, floors_markdown())
    return markdown
