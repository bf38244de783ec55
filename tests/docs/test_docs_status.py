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


def _example_runner():
    spec = importlib.util.spec_from_file_location(
        "readme_example", ROOT / ".ci" / "readme_example.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


readme_example = _example_runner()


@pytest.mark.e2e
@pytest.mark.parametrize("member", BUILT, ids=lambda m: m["name"])
def test_each_readme_opens_with_a_runnable_example(member, tmp_path):
    folder = "apps" if member["name"] == "opifex-cli" else "packages"
    readme = ROOT / folder / member["name"] / "README.md"
    language, _ = readme_example.first_example(readme.read_text("utf-8"))
    assert language == ("bash" if member["name"] == "opifex-cli" else "python")
    readme_example.run_example(readme, sys.executable, tmp_path)


def test_a_readme_without_a_proper_example_is_refused():
    with pytest.raises(ValueError, match="one paragraph"):
        readme_example.first_example("# x\n\nOne.\n\nTwo.\n\n```python\nimport x\n```\n")
    with pytest.raises(ValueError, match="not 5 to 10"):
        readme_example.first_example("# x\n\nOne.\n\n```python\nimport x\n```\n")
