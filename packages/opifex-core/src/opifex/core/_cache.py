"""JAX's persistent compilation cache, on for the opifex command and the test suite.

Compilation is most of the time a short opifex run takes (a first SCF, a benchmark's first
call): a program compiled once is read back from disk by the next process that needs it.
``enable_compilation_cache`` points JAX at one directory; the environment variable
``OPIFEX_JAX_CACHE`` overrides it: ``0`` / ``off`` / ``false`` turns the cache off, any other
value is the directory to use.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jax

logger = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "OPIFEX_JAX_CACHE"
_OFF = ("0", "off", "false", "no")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/opifex/jax`` (``~/.cache/opifex/jax`` without ``XDG_CACHE_HOME``).

    Example:
        >>> default_cache_dir().parts[-2:]
        ('opifex', 'jax')
    """
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "opifex" / "jax"


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache; return its directory (``None``: off).

    Args:
        directory: where to keep compiled programs (default ``default_cache_dir()``).
            ``OPIFEX_JAX_CACHE`` in the environment takes precedence over it.

    Returns:
        The directory in use, or ``None`` when ``OPIFEX_JAX_CACHE`` turns the cache off.

    Example:
        >>> import os, tempfile
        >>> os.environ["OPIFEX_JAX_CACHE"] = "off"
        >>> enable_compilation_cache() is None
        True
        >>> del os.environ["OPIFEX_JAX_CACHE"]
    """
    setting = os.environ.get(ENVIRONMENT_VARIABLE)
    if setting is not None and setting.strip().lower() in _OFF:
        logger.info("JAX compilation cache off (%s=%s)", ENVIRONMENT_VARIABLE, setting)
        return None
    path = Path(setting or directory or default_cache_dir()).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # every program: opifex's small solves compile in under a second, and add up
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    logger.info("JAX compilation cache: %s", path)
    return path
