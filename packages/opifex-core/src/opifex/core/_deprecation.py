"""Renamed arguments keep working for one release, with a ``DeprecationWarning``.

opifex uses one vocabulary in every config and result (``max_steps``, ``num_steps``,
``learning_rate``, ``trace``, ``rtol`` / ``atol``; see the contributor docs). When a name is
brought into line, ``renamed_fields`` keeps the old spelling working: as a keyword of the
constructor and as a read-only attribute, each use warning once per call site.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

ClassT = TypeVar("ClassT", bound=type)
FunctionT = TypeVar("FunctionT", bound=Callable[..., Any])


def _warn(owner: str, old: str, new: str, stacklevel: int) -> None:
    warnings.warn(
        f"{owner}: {old!r} is deprecated and will be removed in the next release; use {new!r}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def rename_keywords(owner: str, renames: dict[str, str], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with deprecated keys replaced by their new names (warning for each).

    Args:
        owner: what the keywords belong to, for the message (e.g. ``"LBFGSConfig"``).
        renames: old name -> new name.
        kwargs: the keywords given.

    Raises:
        TypeError: both the old and the new name were given.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True):
        ...     rename_keywords("f", {"max_iterations": "max_steps"}, {"max_iterations": 3})
        {'max_steps': 3}
    """
    renamed = dict(kwargs)
    for old, new in renames.items():
        if old in renamed:
            if new in renamed:
                raise TypeError(f"{owner}: got both {old!r} (deprecated) and {new!r}")
            _warn(owner, old, new, stacklevel=4)
            renamed[new] = renamed.pop(old)
    return renamed


def renamed_arguments(**renames: str) -> Callable[[FunctionT], FunctionT]:
    """Function decorator: accept the old keyword names ``renames`` (old=new), with a warning.

    Example:
        >>> import warnings
        >>> @renamed_arguments(num_iterations="max_steps")
        ... def run(max_steps=1):
        ...     return max_steps
        >>> with warnings.catch_warnings(record=True):
        ...     run(num_iterations=5)
        5
    """

    def decorate(function: FunctionT) -> FunctionT:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return function(*args, **rename_keywords(function.__name__, renames, kwargs))

        return wrapper  # type: ignore[return-value]

    return decorate


def renamed_fields(**renames: str) -> Callable[[ClassT], ClassT]:
    """Class decorator: accept and expose the old names ``renames`` (old=new) of fields.

    The constructor takes the old keyword (mapped to the new one), the instance answers the
    old attribute (read-only), and ``renamed_fields_of(cls)`` lists them, so that option
    checks accept them too. Every use warns with a ``DeprecationWarning``.

    Example:
        >>> import dataclasses, warnings
        >>> @renamed_fields(tolerance="atol")
        ... @dataclasses.dataclass(frozen=True)
        ... class Config:
        ...     atol: float = 1e-6
        >>> with warnings.catch_warnings(record=True):
        ...     config = Config(tolerance=1e-8)
        ...     old = config.tolerance
        >>> config.atol, old
        (1e-08, 1e-08)
    """

    def decorate(cls: ClassT) -> ClassT:
        original = cls.__init__

        @functools.wraps(original)
        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **rename_keywords(cls.__name__, renames, kwargs))

        cls.__init__ = init
        for old, new in renames.items():

            def getter(self: Any, old: str = old, new: str = new) -> Any:
                _warn(type(self).__name__, old, new, stacklevel=3)
                return getattr(self, new)

            setattr(cls, old, property(getter, doc=f"Deprecated spelling of ``{new}``."))
        cls._renamed_fields = {**getattr(cls, "_renamed_fields", {}), **renames}
        return cls

    return decorate


def renamed_fields_of(cls: type) -> dict[str, str]:
    """The deprecated field names of ``cls`` (old -> new), ``{}`` if none.

    Example:
        >>> renamed_fields_of(int)
        {}
    """
    return dict(getattr(cls, "_renamed_fields", {}))
