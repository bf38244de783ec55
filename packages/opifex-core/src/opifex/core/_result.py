"""The result pytree every opifex solver returns."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax

from opifex.core._status import SolveStatus, status_message

# spellings that earlier releases used for SolveResult fields (kept for one release)
_RENAMED = {
    "history": "trace",
    "iterations": "num_steps",
    "energy": "value",
    "residual": "grad_norm",
}


class SolveResult(NamedTuple):
    """What a solver returns: a pytree, so it passes through ``jit`` and ``vmap``.

    Attributes:
        params: the final iterate (same pytree structure as the initial params).
        value: objective value at ``params`` (0-d array).
        grad_norm: Euclidean norm of the gradient (or of the solver's optimality residual).
        num_steps: number of iterations taken (0-d ``int32``).
        converged: ``status == SolveStatus.SUCCESS`` (0-d bool).
        status: a ``SolveStatus`` code (0-d ``int32``).
        trace: per-step arrays of fixed length ``max_steps + 1`` (entry 0 is the initial point),
            NaN-padded after the last step; always has ``"value"`` and ``"grad_norm"``.
        stats: solver counters such as ``"num_fun_evals"`` (0-d ``int32`` arrays).
        aux: method-specific outputs (a pytree, ``None`` when the method has none), e.g. the
            orbitals of an SCF solve or the best iterate of a guarded optimiser run.

    Example:
        >>> import jax.numpy as jnp
        >>> from opifex.core import GradientDescent, run_solver
        >>> solver = GradientDescent(lambda x: jnp.sum(x**2), learning_rate=0.25)
        >>> result = run_solver(solver, jnp.ones(2), max_steps=50)
        >>> bool(result.converged)
        True
    """

    params: Any
    value: jax.Array
    grad_norm: jax.Array
    num_steps: jax.Array
    converged: jax.Array
    status: jax.Array
    trace: dict[str, jax.Array]
    stats: dict[str, jax.Array]
    aux: Any = None

    @property
    def message(self) -> str:
        """A sentence explaining ``status`` (only for a concrete, unbatched result)."""
        return status_message(int(self.status))

    @property
    def status_name(self) -> str:
        """The ``SolveStatus`` name of ``status`` (only for a concrete, unbatched result)."""
        return SolveStatus(int(self.status)).name

    def __getattr__(self, name: str) -> Any:
        """Old field spellings and ``aux`` fields, with a ``DeprecationWarning`` (one release).

        Besides the table of renamed fields, an ``aux`` type may declare a class attribute
        ``RESULT_ALIASES`` (old name -> ``SolveResult`` field) for its method's former names.
        """
        if name.startswith("_"):
            raise AttributeError(name)
        aux = tuple.__getitem__(self, len(SolveResult._fields) - 1)
        # an aux type may name its method's former result fields that are now SolveResult's
        renamed = {**getattr(type(aux), "RESULT_ALIASES", {}), **_RENAMED}
        if name in renamed:
            warnings.warn(
                f"SolveResult.{name} is deprecated; use SolveResult.{renamed[name]}",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(self, renamed[name])
        if aux is not None and name in getattr(type(aux), "_fields", ()):
            warnings.warn(
                f"SolveResult.{name} is deprecated; use SolveResult.aux.{name}",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(aux, name)
        raise AttributeError(f"'SolveResult' object has no attribute {name!r}")
