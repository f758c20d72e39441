"""The README and docs/ stay true to the code: what they tell a user to run parses, what they link
to and name exists, and the README stays a five-minute read."""
import re
import shlex
from pathlib import Path

import pytest

from my_mk1_homework import cli

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
CHALICELIB = ROOT / "dispatcher_app" / "chalicelib"


def code_lines(path: Path) -> list[str]:
    """The lines of a file's ```sh blocks (what a user pastes), continuation lines joined."""
    out, block, pending = [], False, ""
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            block = not block and line.strip() == "```sh"
            continue
        if not block:
            continue
        line = pending + line
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        out.append(line)
    return out


def shell_words(line: str) -> list[str]:
    words = shlex.split(line, comments=True)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words = words[1:]   # leading VAR=value assignments
    return words


def test_readme_is_a_five_minute_read():
    assert len(README.read_text().splitlines()) <= 150


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(path):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
        assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def test_readme_mk1_commands_parse():
    parser = cli.build_parser()
    commands = [shell_words(line) for line in code_lines(README)]
    commands = [w for w in commands if w and w[0] in ("mk1", ".venv/bin/mk1")]
    assert len(commands) >= 5
    for words in commands:
        try:
            parser.parse_args(words[1:])
        except SystemExit as e:   # argparse's way of refusing
            pytest.fail(f"README: `{' '.join(words)}` does not parse (exit {e.code})")


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_make_targets_exist(path):
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    for name in re.findall(r"`make ([a-z-]+)", path.read_text()):
        assert name in targets, f"{path.name} names `make {name}`, which the Makefile lacks"


def test_readme_aws_cli_commands_suit_the_installed_v1():
    """The `aws` in .venv is v1, which has no --cli-binary-format; each command names its endpoint
    rather than relying on the environment."""
    for line in code_lines(README):
        words = shell_words(line)
        if words[:1] == ["aws"]:
            assert "--cli-binary-format" not in words and "--endpoint-url" in words, line


SOURCES = ("dispatcher_app", "my_mk1_homework", "infra", "functions", "ui", "bench")


def _exists(name: str) -> bool:
    """A path from the project root or from chalicelib/; a bare file name (the text around it says
    which folder) anywhere in the sources."""
    if (ROOT / name).exists() or (CHALICELIB / name).exists():
        return True
    return "/" not in name and any(any((ROOT / d).rglob(name)) for d in SOURCES)


def test_architecture_names_only_files_that_exist():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    names = set(re.findall(r"`([\w./]+\.py)`", text))
    assert names, "ARCHITECTURE.md names no files"
    missing = sorted(n for n in names if not _exists(n))
    assert not missing, f"ARCHITECTURE.md names files that do not exist: {missing}"


def test_benchmarks_doc_has_figures_and_method_only():
    """The doc and the text bench/doc.py renders it from (past its docstring, which names the rule):
    the renderer is checked too, so a phrase is caught before a full run writes it into the doc."""
    text = (ROOT / "docs" / "BENCHMARKS.md").read_text().lower()
    renderer = (ROOT / "bench" / "doc.py").read_text().lower().split('"""', 2)[2]
    for phrase in ("this round", "last round", "analysis:begin"):
        assert phrase not in text, phrase
        assert phrase not in renderer, f"bench/doc.py renders {phrase!r}"


# ARCHITECTURE.md's layering rule, as the layer of each chalicelib module (its first name part).
LAYERS = {"base": 0, "execute": 1, "assign": 2, "admit": 3, "record": 4, "cluster": 4, "triggers": 4, "invoke": 5,
          "compose": 6, "edge": 7}
BASE = {"errors", "model", "clock", "cpu", "cgroups", "jsonl", "request", "validate", "authenticate", "authorize", "control"}


def _layer(module: str) -> str:
    first = module.split(".")[1]
    layer = "base" if first in BASE else "invoke" if first in ("invoke", "invoke_event", "invoke_url", "queries") else first
    assert layer in LAYERS, (f"chalicelib.{first} has no layer: add it to docs/ARCHITECTURE.md's "
                             f"table of packages and to LAYERS/BASE in {Path(__file__).name}")
    return layer


def test_no_module_imports_from_a_layer_above_its_own():
    """The rule docs/ARCHITECTURE.md states: base < execute < assign < admit < record, cluster <
    invoke < compose < edge."""
    wrong = []
    for path in sorted(CHALICELIB.rglob("*.py")):
        module = ".".join(path.relative_to(CHALICELIB.parent).with_suffix("").parts)
        if path.name == "__init__.py":
            continue
        own = LAYERS[_layer(module)]
        text = path.read_text()
        imported = re.findall(r"^\s*from (chalicelib\.[\w.]+) import", text, re.M)
        imported += ["chalicelib." + name.split()[0]   # `from chalicelib import authorize as authz`
                     for names in re.findall(r"^\s*from chalicelib import ([\w ,]+)", text, re.M)
                     for name in names.split(",")]
        wrong += [f"{module} imports {m}" for m in imported if LAYERS[_layer(m)] > own]
    assert not wrong, wrong
