"""Hybrid optimisation: Adam first, then L-BFGS, switching once inside ``jit``.

The state holds both optimisers' states and a 0-d bool ``switched``. At each step the value
and gradient at the current parameters decide the switch -- the loss is at most
``switch_threshold``, or the gradient norm is at most ``grad_norm_threshold``, or Adam has taken
``max_adam_steps`` steps -- and ``lax.cond`` runs the Adam or the L-BFGS update. Once switched,
the state stays switched; the L-BFGS memory starts empty at the switch point. Nothing is
decided in Python, so a jitted step never recompiles and ``vmap`` runs a batch of starting
points whose switches happen at different steps.

L-BFGS steps reuse the value and gradient found by their line search (the state works with
``optax.value_and_grad_from_state``). A line-search step that increases the loss or ends at
NaN / inf is rejected (the parameters stay) and the L-BFGS memory is reset; two rejections in a
row are a line-search failure.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from opifex.core import (
    SolveResult,
    SolveStatus,
    check_int_at_least,
    check_positive,
    renamed_fields,
    run_solver,
    tree_l2_norm,
    tree_where,
)
from opifex.second_order._lbfgs import (
    _APPROX_DECREASE_RTOL,
    LBFGSConfig,
    create_lbfgs_optimizer,
    gradient_tolerance,
    stop_status,
)
from opifex.second_order._validation import check_objective, check_params


@renamed_fields(adam_lr="learning_rate")
@dataclasses.dataclass(frozen=True)
class HybridOptimizerConfig:
    """Settings of ``HybridOptimizer`` (frozen, validated, hashable).

    Attributes:
        learning_rate: Adam's learning rate (> 0; ``adam_lr`` is its deprecated spelling).
        switch_threshold: switch once the loss is at most this (``None``: never on the loss).
        grad_norm_threshold: switch once the gradient norm is at most this (``None``: never on
            the gradient).
        max_adam_steps: switch after this many Adam steps at the latest (>= 0).
        lbfgs_config: the L-BFGS phase's ``LBFGSConfig``; its tolerance is also the
            convergence test of ``HybridOptimizer.minimize`` (``atol`` / ``rtol``; both ``None``:
            ``eps`` times the gradient norm at ``x0``, and a line-search failure at attainable
            precision is a success, as for ``minimize``) and its budget the L-BFGS part of that
            method's default budget.

    Example:
        >>> HybridOptimizerConfig(switch_threshold=1e-2).max_adam_steps
        1000
    """

    learning_rate: float = 1e-3
    switch_threshold: float | None = None
    grad_norm_threshold: float | None = None
    max_adam_steps: int = 1000
    lbfgs_config: LBFGSConfig = dataclasses.field(default_factory=LBFGSConfig)

    def __post_init__(self) -> None:
        check_positive(self.learning_rate, "learning_rate")
        if self.switch_threshold is not None:
            if isinstance(self.switch_threshold, bool) or not isinstance(
                self.switch_threshold, int | float | np.number
            ):
                raise TypeError(
                    "switch_threshold must be a number or None, got"
                    f" {type(self.switch_threshold).__name__}"
                )
            if not np.isfinite(self.switch_threshold):
                raise ValueError(f"switch_threshold must be finite, got {self.switch_threshold!r}")
        if self.grad_norm_threshold is not None:
            check_positive(self.grad_norm_threshold, "grad_norm_threshold", allow_zero=True)
        check_int_at_least(self.max_adam_steps, 0, "max_adam_steps")
        if not isinstance(self.lbfgs_config, LBFGSConfig):
            raise TypeError(
                f"lbfgs_config must be an LBFGSConfig, got {type(self.lbfgs_config).__name__}"
            )


class HybridState(NamedTuple):
    """State of ``HybridOptimizer``: arrays only.

    Attributes:
        adam_state: optax Adam state.
        lbfgs_state: optax L-BFGS state (its line search caches value and gradient).
        switched: 0-d bool, whether the L-BFGS phase has started.
        adam_steps: Adam steps taken (0-d int32).
        lbfgs_steps: L-BFGS steps taken, rejected ones included (0-d int32).
        switch_step: the step index at which the switch happened (-1 before).
        restarted: the last L-BFGS step was rejected and the memory reset.
        failed: two L-BFGS steps in a row were rejected.
    """

    adam_state: Any
    lbfgs_state: Any
    switched: jax.Array
    adam_steps: jax.Array
    lbfgs_steps: jax.Array
    switch_step: jax.Array
    restarted: jax.Array
    failed: jax.Array


class _Advance(NamedTuple):
    params: Any
    state: HybridState
    value: jax.Array  # at ``params`` when ``valid`` (from the line search), else inf
    grad: Any
    valid: jax.Array
    fun_evals: jax.Array


class HybridOptimizer:
    """Adam, then L-BFGS: a thin façade over pure, jit-able functions.

    Args:
        config: a ``HybridOptimizerConfig``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> fun = lambda x: jnp.sum((x - 1.0) ** 2)
        >>> opt = HybridOptimizer(HybridOptimizerConfig(learning_rate=0.1, max_adam_steps=5))
        >>> params, state = jnp.zeros(3), opt.init(jnp.zeros(3))
        >>> step = jax.jit(opt.step, static_argnums=2)
        >>> for _ in range(8):
        ...     params, state, value = step(params, state, fun)
        >>> bool(opt.has_switched(state)), float(fun(params)) < 1e-10
        (True, True)
    """

    def __init__(self, config: HybridOptimizerConfig | None = None):
        self.config = HybridOptimizerConfig() if config is None else config
        if not isinstance(self.config, HybridOptimizerConfig):
            raise TypeError(
                f"config must be a HybridOptimizerConfig, got {type(self.config).__name__}"
            )
        self._adam = optax.adam(self.config.learning_rate)
        self._lbfgs = create_lbfgs_optimizer(self.config.lbfgs_config)

    # ------------------------------------------------------------------ functional core

    def init(self, params: Any) -> HybridState:
        """Fresh state for ``params`` (Adam phase, empty L-BFGS memory)."""
        zero = jnp.zeros((), jnp.int32)
        false = jnp.zeros((), bool)
        state = HybridState(
            adam_state=self._adam.init(params),
            lbfgs_state=self._lbfgs.init(params),
            switched=false,
            adam_steps=zero,
            lbfgs_steps=zero,
            switch_step=jnp.full((), -1, jnp.int32),
            restarted=false,
            failed=false,
        )
        # strong dtypes throughout (optax's line-search state starts with weakly typed
        # scalars), so that the state a step returns has the same types as this one and a
        # jitted step is compiled once, not again at its second call
        return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)), state)

    def has_switched(self, state: HybridState) -> jax.Array:
        """0-d bool array: whether the L-BFGS phase has started."""
        return state.switched

    def _should_switch(self, value: jax.Array, grad_norm: jax.Array, state: HybridState):
        cfg = self.config
        switch = state.adam_steps >= cfg.max_adam_steps
        if cfg.switch_threshold is not None:
            switch = switch | (value <= cfg.switch_threshold)
        if cfg.grad_norm_threshold is not None:
            switch = switch | (grad_norm <= cfg.grad_norm_threshold)
        return state.switched | switch

    def _advance(
        self, params: Any, value: jax.Array, grad: Any, state: HybridState, value_fn: Callable
    ) -> _Advance:
        """One update from ``params`` whose value and gradient are ``value``, ``grad``."""
        switched = self._should_switch(value, tree_l2_norm(grad), state)
        step_index = state.adam_steps + state.lbfgs_steps
        infinite = jnp.full_like(value, jnp.inf)

        def adam(_: None) -> _Advance:
            updates, adam_state = self._adam.update(grad, state.adam_state, params)
            new_state = state._replace(adam_state=adam_state, adam_steps=state.adam_steps + 1)
            zero = jnp.zeros((), jnp.int32)
            return _Advance(
                optax.apply_updates(params, updates),
                new_state,
                infinite,
                grad,
                jnp.zeros((), bool),
                zero,
            )

        def lbfgs(_: None) -> _Advance:
            updates, lbfgs_state = self._lbfgs.update(
                grad, state.lbfgs_state, params, value=value, grad=grad, value_fn=value_fn
            )
            new_params = optax.apply_updates(params, updates)
            new_value = optax.tree.get(lbfgs_state, "value")
            new_grad = optax.tree.get(lbfgs_state, "grad")
            evals = jnp.asarray(optax.tree.get(lbfgs_state, "num_linesearch_steps"), jnp.int32)
            finite = jnp.isfinite(new_value) & jnp.isfinite(tree_l2_norm(new_grad))
            accepted = finite & (new_value <= value + _APPROX_DECREASE_RTOL * jnp.abs(value))

            new_state = state._replace(
                lbfgs_state=tree_where(accepted, lbfgs_state, self._lbfgs.init(params)),
                switched=jnp.ones((), bool),
                lbfgs_steps=state.lbfgs_steps + 1,
                switch_step=jnp.where(state.switched, state.switch_step, step_index),
                restarted=~accepted,
                failed=state.failed | (~accepted & state.restarted),
            )
            return _Advance(
                tree_where(accepted, new_params, params),
                new_state,
                jnp.where(accepted, new_value, infinite),
                tree_where(accepted, new_grad, grad),
                accepted,
                evals,
            )

        return lax.cond(switched, lbfgs, adam, None)

    def step(
        self, params: Any, state: HybridState, fun: Callable[..., jax.Array], *args: Any
    ) -> tuple[Any, HybridState, jax.Array]:
        """One Adam or L-BFGS step (jit-able with ``fun`` static).

        Args:
            params: current parameters (those returned by the previous step, so that the
                cached line-search value and gradient apply).
            state: the ``HybridState``.
            fun: objective ``fun(params, *args) -> scalar``.
            *args: extra arguments of ``fun``.

        Returns:
            ``(new_params, new_state, value)`` with ``value = fun(params, *args)``, the loss at
            the parameters passed in.
        """

        def value_fn(p: Any) -> jax.Array:
            return fun(p, *args)

        value, grad = optax.value_and_grad_from_state(value_fn)(params, state=state.lbfgs_state)
        out = self._advance(params, value, grad, state, value_fn)
        return out.params, out.state, value

    def as_gradient_transformation(self) -> optax.GradientTransformationExtraArgs:
        """This optimiser as an optax ``GradientTransformationExtraArgs``.

        ``update(grad, state, params, *, value, grad, value_fn, **fn_kwargs)`` returns
        ``(updates, state)``; pair it with ``optax.value_and_grad_from_state(fun)`` to reuse
        the L-BFGS line search's evaluations.
        """

        def update_fn(
            updates: Any,
            state: HybridState,
            params: Any = None,
            *,
            value: jax.Array,
            grad: Any = None,
            value_fn: Callable[..., jax.Array],
            **fn_kwargs: Any,
        ) -> tuple[Any, HybridState]:
            if params is None:
                raise ValueError("the hybrid optimiser needs params in update()")
            grad = updates if grad is None else grad
            out = self._advance(
                params, value, grad, state, functools.partial(value_fn, **fn_kwargs)
            )
            return jax.tree.map(lambda a, b: a - b, out.params, params), out.state

        return optax.GradientTransformationExtraArgs(self.init, update_fn)

    # ------------------------------------------------------------------ solver driver

    def minimize(
        self,
        fun: Callable[..., jax.Array],
        x0: Any,
        *args: Any,
        max_steps: int | None = None,
    ) -> SolveResult:
        """Minimise ``fun(params, *args)`` from ``x0`` with Adam, then L-BFGS.

        Args:
            fun: objective returning a floating-point scalar.
            x0: initial parameters (finite; any pytree of float arrays).
            *args: extra arguments of ``fun``.
            max_steps: step budget (default ``max_adam_steps + lbfgs_config.budget(n)`` for
                ``n`` unknowns).

        Returns:
            A ``SolveResult``; converged iff ``||grad||`` meets ``lbfgs_config``'s tolerance or the
            L-BFGS phase stopped at attainable precision (see ``minimize``). ``stats``
            has ``num_fun_evals``, ``num_grad_evals``, ``num_adam_steps`` and ``switch_step``
            (-1 if it never switched).
        """
        x0 = check_params(x0)
        if max_steps is None:
            num_params = sum(leaf.size for leaf in jax.tree.leaves(x0))
            max_steps = self.config.max_adam_steps + self.config.lbfgs_config.budget(num_params)
        check_int_at_least(max_steps, 0, "max_steps")
        check_objective(fun, x0, args)
        return _hybrid_minimize(fun, self.config, max_steps, x0, args)


class _HybridSolverState(NamedTuple):
    params: Any
    value: jax.Array
    grad: Any
    grad_norm: jax.Array
    num_steps: jax.Array
    num_fun_evals: jax.Array
    num_grad_evals: jax.Array
    hybrid: HybridState
    initial_grad_norm: jax.Array


class _HybridSolver:
    """``HybridOptimizer`` as an ``init / step / terminate`` solver for ``run_solver``."""

    def __init__(self, fun: Callable[..., jax.Array], config: HybridOptimizerConfig):
        self.fun = fun
        self.config = config
        self.optimizer = HybridOptimizer(config)

    def init(self, params: Any, *args: Any) -> _HybridSolverState:
        value, grad = jax.value_and_grad(self.fun)(params, *args)
        one = jnp.ones((), jnp.int32)
        grad_norm = tree_l2_norm(grad)
        return _HybridSolverState(
            params,
            value,
            grad,
            grad_norm,
            jnp.zeros((), jnp.int32),
            one,
            one,
            self.optimizer.init(params),
            grad_norm,
        )

    def step(self, state: _HybridSolverState, *args: Any) -> _HybridSolverState:
        def value_fn(p: Any) -> jax.Array:
            return self.fun(p, *args)

        out = self.optimizer._advance(state.params, state.value, state.grad, state.hybrid, value_fn)
        value, grad = lax.cond(
            out.valid,
            lambda _: (out.value, out.grad),
            lambda _: jax.value_and_grad(value_fn)(out.params),
            None,
        )
        fresh = (~out.valid).astype(jnp.int32)
        return _HybridSolverState(
            params=out.params,
            value=value,
            grad=grad,
            grad_norm=tree_l2_norm(grad),
            num_steps=state.num_steps + 1,
            num_fun_evals=state.num_fun_evals + out.fun_evals + fresh,
            num_grad_evals=state.num_grad_evals + out.fun_evals + fresh,
            hybrid=out.state,
            initial_grad_norm=state.initial_grad_norm,
        )

    def terminate(self, state: _HybridSolverState, *args: Any) -> tuple[jax.Array, jax.Array]:
        lbfgs = self.config.lbfgs_config
        tolerance = gradient_tolerance(lbfgs.atol, lbfgs.rtol, state.initial_grad_norm)
        converged = state.grad_norm <= tolerance
        failure = jnp.where(
            state.hybrid.failed, SolveStatus.LINE_SEARCH_FAILED, SolveStatus.SUCCESS
        ).astype(jnp.int32)
        status = jnp.where(
            converged,
            SolveStatus.SUCCESS,
            stop_status(failure, state.grad_norm, state.initial_grad_norm),
        )
        return converged | state.hybrid.failed, status.astype(jnp.int32)

    def trace_fields(self, state: _HybridSolverState) -> dict[str, jax.Array]:
        return {"switched": state.hybrid.switched.astype(state.value.dtype)}


@functools.partial(jax.jit, static_argnames=("fun", "config", "max_steps"))
def _hybrid_minimize(
    fun: Callable[..., jax.Array],
    config: HybridOptimizerConfig,
    max_steps: int,
    x0: Any,
    args: tuple,
) -> SolveResult:
    result = run_solver(_HybridSolver(fun, config), x0, *args, max_steps=max_steps)
    # trace["switched"][i] says whether the L-BFGS phase had started after i steps
    switched = jnp.nan_to_num(result.trace["switched"], nan=0.0) > 0
    never = ~jnp.any(switched)
    switch_step = jnp.where(never, -1, jnp.argmax(switched) - 1).astype(jnp.int32)
    adam_steps = jnp.where(never, result.num_steps, switch_step).astype(jnp.int32)
    stats = {**result.stats, "num_adam_steps": adam_steps, "switch_step": switch_step}
    return result._replace(stats=stats)


def hybrid_optimizer(
    config: HybridOptimizerConfig | None = None,
) -> optax.GradientTransformationExtraArgs:
    """``HybridOptimizer(config).as_gradient_transformation()``.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> fun = lambda x: jnp.sum((x - 1.0) ** 2)
        >>> opt = hybrid_optimizer(HybridOptimizerConfig(learning_rate=0.1, max_adam_steps=3))
        >>> params = jnp.zeros(2)
        >>> state = opt.init(params)
        >>> value_and_grad = optax.value_and_grad_from_state(fun)
        >>> for _ in range(6):
        ...     value, grad = value_and_grad(params, state=state)
        ...     updates, state = opt.update(grad, state, params, value=value, grad=grad,
        ...                                 value_fn=fun)
        ...     params = optax.apply_updates(params, updates)
        >>> float(fun(params)) < 1e-10
        True
    """
    return HybridOptimizer(config).as_gradient_transformation()
