"""The griffe extension that reads a Google ``Example:`` heading as an ``Examples:`` section."""

import importlib.util
from pathlib import Path

import griffe

ROOT = Path(__file__).resolve().parents[2]
EXTENSION_PATH = ROOT / "docs" / "hooks" / "griffe_examples.py"

DOCSTRING = """Square a number.

The word Example: inside a sentence stays as it is.

Args:
    x: the number.

Example:
    >>> square(3)
    9
"""


def _load(tmp_path: Path, extensions: griffe.Extensions | None = None):
    code = f'def square(x):\n    """{DOCSTRING}"""\n    return x * x\n'
    (tmp_path / "demo.py").write_text(code, encoding="utf-8")
    return griffe.load(
        "demo", search_paths=[tmp_path], extensions=extensions, docstring_parser="google"
    )


def _sections(module) -> dict[str, object]:
    return {section.kind.value: section for section in module["square"].docstring.parsed}


def test_example_heading_becomes_an_examples_section(tmp_path):
    module = _load(tmp_path, griffe.load_extensions(str(EXTENSION_PATH)))
    sections = _sections(module)
    assert list(sections) == ["text", "parameters", "examples"]
    assert [text for _, text in sections["examples"].value] == [">>> square(3)\n9"]
    assert "The word Example: inside a sentence stays as it is." in sections["text"].value


def test_without_the_extension_griffe_reads_an_admonition(tmp_path):
    assert list(_sections(_load(tmp_path))) == ["text", "parameters", "admonition"]


def test_only_unindented_headings_are_renamed():
    spec = importlib.util.spec_from_file_location("griffe_examples_under_test", EXTENSION_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "Summary.\n\nExample:\n    >>> 1\n    1\n\nArgs:\n    x: see Example:\n"
    assert module.as_examples_section(text) == text.replace("\nExample:\n", "\nExamples:\n")
    assert module.as_examples_section("Examples:\n    >>> 1") == "Examples:\n    >>> 1"
