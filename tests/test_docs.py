"""The documentation is tested: the options reference covers every option of every command, the runnable examples
run and print what the pages show, and the README links every page of the site.

``make test`` also builds the site with ``mkdocs build --strict`` (the ``docs`` target), so a broken link, a missing
page or an API reference that does not resolve fails the test command.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from rmteacher.cli import COMMANDS, main
from rmteacher.options import describe_options

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# A fenced block: its language and text; the HTML comment right before it (if any) says whether the tests run it.
_BLOCK = re.compile(r"(?:<!-- docs-test: (?P<marker>[^>]*?) -->\n)?```(?P<lang>[a-z]*)\n(?P<body>.*?)\n```", re.S)


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections(markdown: str) -> dict[str, str]:
    """``{command: its section}`` of the rendered commands reference."""
    parts = re.split(r"^## rmteacher (\S+)$", markdown, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_option_of_every_command_is_in_the_reference() -> None:
    reference = (DOCS / "reference" / "commands.md").read_text()
    assert _hooks().MARKER in reference
    sections = _sections(_hooks().commands_markdown())
    assert list(sections) == [c[0] for c in COMMANDS]
    for name, _, module, options, _ in COMMANDS:
        config = getattr(importlib.import_module(f"rmteacher.commands.{module}"), options)
        rows = [line for line in sections[name].splitlines() if line.startswith("| `")]
        infos = describe_options(config)
        assert len(rows) == len(infos) + 1, name  # one row per option, and --config
        for info, row in zip(infos, rows, strict=False):
            assert row.startswith(f"| `{info.flag}`"), (name, info.flag, row)
            # the help line --help prints, with its default ("|" escaped for the table)
            assert info.help_with_default.replace("|", "\\|") in row, (name, info.flag)
        assert rows[-1].startswith("| `--config`")


def test_the_reference_states_the_papers_value_where_the_help_does() -> None:
    hooks = _hooks()
    assert hooks.paper_value("KL coefficient beta (the paper: 0.05 for RLOO; its GRPO had none in effect)") == (
        "0.05 for RLOO"
    )
    assert hooks.paper_value("share of training prompts whose normalized reward is scaled (paper: 0.5)") == "0.5"
    assert hooks.paper_value("optimizer steps") == ""
    rl = _sections(hooks.commands_markdown())["rl"]
    row = next(line for line in rl.splitlines() if line.startswith("| `--kl-coef`"))
    assert row.endswith("| 0.05 for RLOO |")


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "site" not in p.parts)


def _blocks(page: Path) -> list[tuple[str | None, str, str]]:
    return [(m["marker"], m["lang"], m["body"]) for m in _BLOCK.finditer(page.read_text())]


def test_every_python_example_says_whether_it_runs() -> None:
    unmarked = []
    for page in _pages():
        for marker, lang, body in _blocks(page):
            if lang != "python":
                continue
            ok = marker == "run" or (marker is not None and re.fullmatch(r"skip: \S.*", marker))
            if not ok:
                unmarked.append(f"{page.relative_to(ROOT)}: {body.splitlines()[0]}")
    assert not unmarked, "mark each python block <!-- docs-test: run --> or <!-- docs-test: skip: REASON -->"


@pytest.mark.parametrize("page", [p for p in _pages() if "docs-test: run" in p.read_text()], ids=lambda p: p.stem)
def test_the_runnable_examples_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A page's runnable blocks, in order, in a fresh directory holding the repository's ``examples/``: python blocks
    share one namespace; each ``rmteacher ...`` line of a bash block runs through the CLI's ``main``; an ``output``
    block must appear, line by line, in what the block before it printed."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    printed = ""
    ran = 0
    for marker, lang, body in _blocks(page):
        if marker == "output":
            lines = [line.strip() for line in body.splitlines() if line.strip()]
            shown = [line.strip() for line in printed.splitlines()]
            missing = [line for line in lines if line not in shown]
            assert not missing, f"{page.name}: printed output lacks {missing}\n{printed}"
            continue
        if marker != "run":
            continue
        ran += 1
        if lang == "python":
            exec(compile(body, f"{page.name}:python", "exec"), namespace)
            printed = capsys.readouterr().out
        elif lang == "bash":
            printed = ""
            for line in body.splitlines():
                line = line.split("  #")[0].strip()
                if not line or line.startswith("#"):
                    continue
                argv = shlex.split(line)
                assert argv[0] == "rmteacher", f"{page.name}: only rmteacher commands run: {line}"
                assert main(argv[1:]) == 0, line
                printed += capsys.readouterr().out
        else:
            raise AssertionError(f"{page.name}: a runnable block must be python or bash, not {lang!r}")
    assert ran


def _nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_pages(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_pages(value)]
    return []


def test_readme_is_a_front_door_linking_every_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    pages = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert pages and all((DOCS / p).is_file() for p in pages)
    links = set(re.findall(r"\]\((docs/[^)#\s]+)", readme))
    assert all((ROOT / link).is_file() for link in links), sorted(link for link in links if not (ROOT / link).is_file())
    assert {f"docs/{p}" for p in pages} <= links, sorted({f"docs/{p}" for p in pages} - links)


def test_make_figures_regenerates_every_figure_the_pages_show() -> None:
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made = {name for _, figures in module.RUNS for _, name in figures}
    shown = {m for page in _pages() for m in re.findall(r"assets/([\w.-]+\.png)", page.read_text())}
    assert shown <= made, shown - made
    assert all((DOCS / "assets" / name).is_file() for name in made)


def _key_paths(value: object, prefix: str = "", names: frozenset[str] = frozenset()) -> set[str]:
    """Dotted key paths of a metrics.json; reward names become NAME; intervals and normalizations are leaves."""
    if not isinstance(value, dict) or set(value) in (
        {"estimate", "low", "high", "confidence"},
        {"mean", "std", "method", "num_prompts", "num_samples"},
    ):
        return {prefix}
    if prefix in ("specs", "ranking.score"):
        return {prefix}
    paths: set[str] = set()
    for key, item in value.items():
        # Only where the keys are reward names: {"ground_truth": {"name", "spec"}} keeps its own name.
        shown = "NAME" if key in names and prefix in ("reward_models", "truncations") else key
        paths |= _key_paths(item, f"{prefix}.{shown}" if prefix else shown, names)
    return paths


def test_the_metrics_json_reference_lists_every_key_evaluate_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A small `rmteacher evaluate` on samples given (no policy), with pairs and --scale-reward, writes every key
    but the sampling ones; the page's table must list each of them, and mark the others as conditional."""
    import json

    import pandas as pd

    words = ["dcba", "qwer", "zyxw", "mlkj", "hgfe", "ponm"]
    samples = [
        {"prompt_id": f"p{i}", "sample_id": s, "prompt": f"sort: {w}", "completion": w[s:] + w[:s], "level": "easy"}
        for i, w in enumerate(words)
        for s in range(3)
    ]
    pd.DataFrame(samples).to_parquet(tmp_path / "samples.parquet")
    pairs = [{"prompt_id": f"p{i}", "chosen": "".join(sorted(w)), "rejected": w} for i, w in enumerate(words)]
    pd.DataFrame(pairs).to_json(tmp_path / "pairs.jsonl", orient="records", lines=True)
    argv = ["evaluate", "--samples", str(tmp_path / "samples.parquet"), "--pairs", str(tmp_path / "pairs.jsonl")]
    argv += [
        "--reward-model",
        "noisy=rmteacher.sandbox.rewards:noisy",
        "--ground-truth",
        "rmteacher.sandbox.task:ground_truth",
    ]
    argv += ["--scale-reward", "ground_truth", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    run_paths = _key_paths(written, names=frozenset(written["reward_models"]))

    page = (DOCS / "reference" / "run-directory.md").read_text()
    table = page.split("<!-- rmteacher:metrics-json -->")[1].split("<!-- rmteacher:metrics-json-end -->")[0]
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `([\w.]+)` \|(.*)$", table, flags=re.M)}
    assert run_paths <= set(rows), sorted(run_paths - set(rows))
    for path in set(rows) - run_paths:
        assert "only when" in rows[path] or "only with" in rows[path], f"{path}: documented but not written"
    columns = set(pd.read_parquet(tmp_path / "run" / "samples.parquet").columns)
    assert {"prompt_id", "sample_id", "prompt", "completion", "level", "noisy", "ground_truth"} <= columns
    assert "ground_truth_scaled" in columns  # NAME_scaled, as the page says
