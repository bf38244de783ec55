"""Building frozen, validated config dataclasses from user-supplied mappings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from opifex.core._checks import check_unknown_options

ConfigT = TypeVar("ConfigT")


def config_from_dict(config_class: type[ConfigT], options: Mapping[str, Any]) -> ConfigT:
    """Build ``config_class(**options)``, rejecting option names it does not have.

    Every opifex config is a frozen dataclass that validates its fields in ``__post_init__``,
    so the returned object is hashable (usable as a static ``jit`` argument) and valid.

    Args:
        config_class: a dataclass type.
        options: field names to values.

    Returns:
        The config instance.

    Raises:
        ValueError: naming every unknown option, or a field that fails validation.

    Example:
        >>> import dataclasses
        >>> @dataclasses.dataclass(frozen=True)
        ... class Cfg:
        ...     tolerance: float = 1e-6
        >>> config_from_dict(Cfg, {"tolerance": 1e-8})
        Cfg(tolerance=1e-08)
    """
    if not (isinstance(config_class, type) and dataclasses.is_dataclass(config_class)):
        raise TypeError(f"config_class must be a dataclass type, got {config_class!r}")
    names = [field.name for field in dataclasses.fields(config_class)]
    check_unknown_options(dict(options), names, f"options for {config_class.__name__}")
    return config_class(**options)
