"""The result pytree every opifex solver returns."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from opifex.core._status import SolveStatus, status_message


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

    @property
    def message(self) -> str:
        """A sentence explaining ``status`` (only for a concrete, unbatched result)."""
        return status_message(int(self.status))

    @property
    def status_name(self) -> str:
        """The ``SolveStatus`` name of ``status`` (only for a concrete, unbatched result)."""
        return SolveStatus(int(self.status)).name
