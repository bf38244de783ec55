"""Griffe extension: read a Google ``Example:`` heading as an ``Examples:`` section.

The opifex docstrings head their doctests ``Example:``, which the Google style allows but
griffe parses as a generic admonition, so the ``>>>`` lines would render as nested block
quotes. Renaming the heading before parsing makes them highlighted ``pycon`` blocks. Only a
heading alone on an unindented line (a section heading) is renamed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE_HEADING = re.compile(r"^Example:[ \t]*$", flags=re.MULTILINE)


def as_examples_section(docstring: str) -> str:
    r"""Return ``docstring`` with every ``Example:`` section heading renamed ``Examples:``.

    Example:
        >>> as_examples_section("Summary.\n\nExample:\n    >>> 1 + 1\n    2")
        'Summary.\n\nExamples:\n    >>> 1 + 1\n    2'
    """
    return _EXAMPLE_HEADING.sub("Examples:", docstring)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` section headings of every loaded object's docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring (before it is parsed) once the tree is built."""
        if obj.docstring is not None:
            obj.docstring.value = as_examples_section(obj.docstring.value)
