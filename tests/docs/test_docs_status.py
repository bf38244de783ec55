"""Status sentences come from one source: each package's metadata.

* The root README's package table is exactly the table ``docs/hooks/package_table.py`` renders
  from the members' ``pyproject.toml`` (the docs index page is rendered from it at build time).
* A member is "built" if and only if it has code (a module besides ``__init__.py``); one without
  code carries the classifier that keeps it unpublished.
* Every built package's README (its page on the package index) opens, right after its title
  and one paragraph, with a runnable example of 5 to 10 lines, which runs here: Python for the
  libraries, shell commands for the ``opifex`` command.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


table = _load("package_table")
MEMBERS = table.members(ROOT)
BUILT = [m for m in MEMBERS if m["status"] == "built"]


def _readme(member: dict) -> str:
    folder = "apps" if member["name"] == "opifex-cli" else "packages"
    return (ROOT / folder / member["name"] / "README.md").read_text("utf-8")


def test_the_readme_table_is_the_metadata_table():
    readme = (ROOT / "README.md").read_text("utf-8")
    assert table.render(ROOT, links=False) in readme, (
        "README.md's package table differs from the packages' metadata: paste the output of "
        "docs/hooks/package_table.render(ROOT, links=False)"
    )
    assert "<!-- package-table -->" in (ROOT / "docs" / "index.md").read_text("utf-8")


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m["name"])
def test_built_means_has_code(member):
    folder = "apps" if member["name"] == "opifex-cli" else "packages"
    source = next((ROOT / folder / member["name"] / "src" / "opifex").iterdir())
    has_code = any(p.name != "__init__.py" for p in source.glob("*.py"))
    assert (member["status"] == "built") == has_code


def _first_example(text: str) -> tuple[str, str]:
    """The language and code of the first fenced block, after the title and one paragraph."""
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    assert blocks, "no code block"
    head = text[: text.index("```")]
    paragraphs = [p for p in head.split("\n\n") if p.strip() and not p.startswith("# ")]
    assert len(paragraphs) <= 1, "the example must follow the title and one paragraph"
    return blocks[0]


@pytest.mark.parametrize("member", BUILT, ids=lambda m: m["name"])
def test_each_readme_opens_with_a_runnable_example(member, tmp_path):
    language, code = _first_example(_readme(member))
    lines = [line for line in code.splitlines() if line.strip() and not line.startswith("#")]
    assert 5 <= len(lines) <= 10, f"{len(lines)} lines"
    if member["name"] == "opifex-cli":
        assert language == "bash"
        environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        for line in lines:
            run = subprocess.run(
                line,
                shell=True,
                capture_output=True,
                text=True,
                timeout=600,
                cwd=tmp_path,
                env=environment,
            )
            assert run.returncode == 0, f"{line}: {run.stderr[-2000:]}"
        return
    assert language == "python", f"the first code block is {language or 'untyped'}, not python"
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-2000:]
