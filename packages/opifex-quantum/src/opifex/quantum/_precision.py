"""The one float64 check of opifex.quantum: chemistry to 1e-8 Eh needs 64-bit floats."""

import jax


def require_x64(what: str) -> None:
    """Raise unless JAX runs with 64-bit floats.

    Args:
        what: the operation that needs float64, named in the error.

    Raises:
        RuntimeError: if ``jax_enable_x64`` is off.

    Example:
        >>> import jax
        >>> with jax.enable_x64(True):
        ...     require_x64("an SCF")
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{what} needs 64-bit floats: call jax.config.update('jax_enable_x64', True) "
            "before using opifex.quantum"
        )
