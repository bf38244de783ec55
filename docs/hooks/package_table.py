"""The table of opifex distributions, from their metadata: one source for README and docs.

Each member's ``pyproject.toml`` says what it is (``description``) and whether it is built:
a member with no code carries the ``Private :: Do Not Upload`` classifier (the release rule in
CONTRIBUTING.md) and is "not built yet"; every other one is "built". The mkdocs hook replaces
``<!-- package-table -->`` in a page with the table (package names linked to their pages); the
root README holds the same table without links, and ``tests/docs/test_docs_status.py`` fails
when it differs from what the metadata says.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

MARKER = re.compile(r"<!--\s*package-table\s*-->")
PRIVATE = "Private :: Do Not Upload"
# the order of the table: the dependency order of ARCHITECTURE.md, then the apps
ORDER = (
    "opifex-core",
    "opifex-second-order",
    "opifex-l2o",
    "opifex-meta",
    "opifex-control",
    "opifex-quantum",
    "opifex-deploy",
    "opifex-cli",
)


def members(root: Path) -> list[dict[str, Any]]:
    """Name, import, description, status and docs page of every workspace member, in order."""
    found = {}
    for path in sorted(
        [*root.glob("packages/*/pyproject.toml"), *root.glob("apps/*/pyproject.toml")]
    ):
        project = tomllib.loads(path.read_text("utf-8"))["project"]
        name = project["name"]
        module = next(p.name for p in (path.parent / "src" / "opifex").iterdir() if p.is_dir())
        private = PRIVATE in project.get("classifiers", [])
        found[name] = {
            "name": name,
            "import": "the `opifex` command" if module == "cli" else f"`opifex.{module}`",
            "description": project["description"],
            "status": "not built yet" if private else "built",
            "page": "cli.md" if module == "cli" else f"packages/{name.removeprefix('opifex-')}.md",
        }
    unknown = sorted(set(found) - set(ORDER))
    if unknown:
        raise ValueError(f"members missing from package_table.ORDER: {unknown}")
    return [found[name] for name in ORDER if name in found]


def render(root: Path, *, links: bool, prefix: str = "") -> str:
    """The Markdown table; with ``links``, names link to ``prefix + page``."""
    lines = ["| distribution | import | what | status |", "|---|---|---|---|"]
    for member in members(root):
        name = f"`{member['name']}`"
        if links:
            name = f"[{member['name']}]({prefix}{member['page']})"
        lines.append(
            f"| {name} | {member['import']} | {member['description']} | {member['status']} |"
        )
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace ``<!-- package-table -->`` with the table of the members."""
    root = Path(config.config_file_path).parent
    return MARKER.sub(lambda _: render(root, links=True), markdown)
