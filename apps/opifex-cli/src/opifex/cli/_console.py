"""Terminal output shared by the commands: errors and a progress bar."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

ProgressCallback = Callable[[int, int, str], None]


def stdout_console() -> Console:
    """A stdout console; 120 columns wide when stdout is not a terminal and ``COLUMNS`` is unset.

    Rich would use 80 columns for a pipe or a file, too narrow for the demo's tables.

    Example:
        >>> stdout_console().print("hello")
        hello
    """
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=120 if piped else None)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``.

    Args:
        message: what went wrong and what to do about it (printed verbatim, no markup).
        code: the exit status (non-zero).

    Raises:
        typer.Exit: always.

    Example:
        >>> import typer
        >>> try:
        ...     fail("no such file", code=2)
        ... except typer.Exit as exit_:
        ...     exit_.exit_code
        2
    """
    Console(stderr=True).print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print ``warning: message`` to stderr (the command goes on).

    Args:
        message: what the user should change (printed verbatim, no markup).

    Example:
        >>> warn("--old is deprecated; use --new")
    """
    Console(stderr=True).print(Text.assemble(("warning: ", "bold yellow"), message))


@contextlib.contextmanager
def progress_bar(description: str, console: Console | None = None) -> Iterator[ProgressCallback]:
    """A rich progress bar, driven by the callback it yields: ``callback(done, total, label)``.

    Args:
        description: shown before the bar until the first callback.
        console: where to draw (default: rich's global stdout console).

    Yields:
        The callback; ``label`` names the step just finished.

    Example:
        >>> with progress_bar("work") as tick:
        ...     for i in range(3):
        ...         tick(i + 1, 3, f"step {i + 1}")  # doctest: +ELLIPSIS
        step 3 ... 3/3 ...
    """
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task(description, total=None)

    def callback(done: int, total: int, label: str) -> None:
        progress.update(task, completed=done, total=total, description=escape(label))

    with progress:
        yield callback
