"""Building frozen, validated config dataclasses from user-supplied mappings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from opifex.core._checks import check_unknown_options
from opifex.core._deprecation import rename_keywords, renamed_fields_of

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

    Deprecated spellings of fields (``renamed_fields``) are accepted with a warning.

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
    return config_class(**_checked_options(config_class, options))


def _checked_options(config_class: type, options: Mapping[str, Any]) -> dict[str, Any]:
    renames = renamed_fields_of(config_class)
    names = [field.name for field in dataclasses.fields(config_class)] + list(renames)
    check_unknown_options(dict(options), names, f"options for {config_class.__name__}")
    return rename_keywords(config_class.__name__, renames, dict(options))


def replace_config(config: ConfigT, options: Mapping[str, Any]) -> ConfigT:
    """``config`` with the fields in ``options`` replaced (validated like ``config_from_dict``).

    Args:
        config: a config dataclass instance.
        options: field names to new values.

    Returns:
        A new, validated instance (``config`` itself when ``options`` is empty).

    Raises:
        ValueError: naming every unknown option, or a field that fails validation.

    Example:
        >>> import dataclasses
        >>> @dataclasses.dataclass(frozen=True)
        ... class Cfg:
        ...     atol: float = 1e-6
        ...     max_steps: int = 10
        >>> replace_config(Cfg(), {"max_steps": 50})
        Cfg(atol=1e-06, max_steps=50)
    """
    if not options:
        return config
    return dataclasses.replace(config, **_checked_options(type(config), options))
