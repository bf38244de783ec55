"""Run the example a package README opens with, in a given environment.

Every built package's README (its page on the package index) opens, after its title and one
paragraph, with a 5-10 line example: Python for a library, shell commands for the ``opifex``
command. ``.ci/check_isolated_installs.sh`` runs it in a fresh venv holding only that package;
``tests/docs/test_docs_status.py`` checks the layout and runs it in the workspace.

Usage: python .ci/readme_example.py README.md VENV_PYTHON   (standard library only)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

MIN_LINES, MAX_LINES = 5, 10


def first_example(text: str) -> tuple[str, str]:
    """``(language, code)`` of the README's first fenced block, checked.

    The block must follow the title and one paragraph and hold 5 to 10 lines of code (comments
    and blank lines not counted).

    Raises:
        ValueError: no block, more than one paragraph before it, or too few / many lines.
    """
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    if not blocks:
        raise ValueError("the README has no code block")
    head = text[: text.index("```")]
    paragraphs = [p for p in head.split("\n\n") if p.strip() and not p.startswith("# ")]
    if len(paragraphs) > 1:
        raise ValueError("the example must follow the title and one paragraph")
    language, code = blocks[0]
    if not MIN_LINES <= len(code_lines(code)) <= MAX_LINES:
        raise ValueError(f"the example has {len(code_lines(code))} lines, not 5 to 10")
    return language, code


def code_lines(code: str) -> list[str]:
    """The lines of ``code`` that are neither blank nor comments."""
    return [line for line in code.splitlines() if line.strip() and not line.startswith("#")]


def run_example(readme: Path, python: str, cwd: Path) -> None:
    """Run ``readme``'s example with ``python`` (shell lines with its ``bin`` first on PATH).

    Raises:
        ValueError: the README has no valid example (``first_example``).
        subprocess.CalledProcessError: the example failed.
    """
    language, code = first_example(readme.read_text("utf-8"))
    if language == "python":
        subprocess.run([python, "-c", code], check=True, cwd=cwd)
        return
    if language not in ("bash", "sh", "shell"):
        raise ValueError(f"the example is {language or 'untyped'}, not python or shell")
    path = f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    for line in code_lines(code):
        subprocess.run(line, shell=True, check=True, cwd=cwd, env={**os.environ, "PATH": path})


def main(argv: list[str]) -> int:
    """``readme_example.py README VENV_PYTHON``: run the example in a temporary directory."""
    readme, python = Path(argv[1]), argv[2]
    with tempfile.TemporaryDirectory() as directory:
        run_example(readme, python, Path(directory))
    print(f"ok: the example of {readme} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
