"""Optimiser comparison metrics: censored steps-to-target and speedup against a baseline.

Both take loss curves where ``losses[..., k]`` is the loss after ``k`` optimisation steps
(entry 0 is the initial point, as in ``SolveResult.trace``); the last axis is the step axis,
any leading axes are a batch. NaN entries (divergence, or the NaN padding of a solver trace)
never count as reaching a target. Both are pure ``jax.numpy``: they work under ``jit`` and
``vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def _as_curve(losses: ArrayLike, name: str) -> jax.Array:
    shape = np.shape(losses)
    if len(shape) == 0 or shape[-1] == 0:
        raise ValueError(
            f"{name} must be a loss curve with at least one step on its last axis, got shape "
            f"{shape}"
        )
    curve = jnp.asarray(losses)
    return curve.astype(jnp.promote_types(curve.dtype, jnp.float32))


def steps_to_target(losses: ArrayLike, target: ArrayLike) -> jax.Array:
    """The first step ``k`` with ``losses[..., k] <= target``; ``inf`` if it is never reached.

    The result is right-censored: a curve that never reaches ``target`` within its length gets
    ``inf`` (a float), and NaN losses count as not reached.

    Args:
        losses: a loss curve, shape ``(..., num_steps + 1)``.
        target: a scalar, or one target per curve (shape of ``losses`` without its last axis).

    Returns:
        Floating-point step counts, shape ``losses.shape[:-1]`` (``inf`` where never reached).

    Example:
        >>> import jax.numpy as jnp
        >>> float(steps_to_target(jnp.array([4.0, 2.0, 1.0, 0.5]), 1.0))
        2.0
        >>> float(steps_to_target(jnp.array([4.0, jnp.nan, 3.0]), 1.0))
        inf
    """
    curve = _as_curve(losses, "losses")
    target = jnp.asarray(target, dtype=curve.dtype)
    reached = curve <= jnp.expand_dims(target, -1)
    first = jnp.argmax(reached, axis=-1).astype(curve.dtype)
    return jnp.where(jnp.any(reached, axis=-1), first, jnp.inf)


def speedup(
    losses: ArrayLike, baseline_losses: ArrayLike, target: ArrayLike | None = None
) -> jax.Array:
    """How many times fewer steps a method needs than a baseline to reach the same loss.

    ``speedup = steps_to_target(baseline_losses, target) / steps_to_target(losses, target)``,
    where ``target`` defaults to the baseline's final loss ``baseline_losses[..., -1]`` (so the
    baseline's count is the step at which it first got as low as it ever ends), the speedup
    measure of the learned-optimisation literature (e.g. VeLO, Metz et al., 2022, against a
    tuned Adam). A value above 1 means the method is faster.

    Censoring:

    * the method never reaches ``target`` -> ``0`` (whatever the baseline does);
    * the method reaches it but the baseline does not (only possible with an explicit
      ``target``) -> ``inf``;
    * both reach it at step 0 -> ``1``; only the method at step 0 -> ``inf``;
    * ``target`` is NaN (e.g. the baseline ended in NaN) -> NaN. ``SolveResult.trace``
      curves are NaN-padded after the last step: pass ``target`` explicitly for them.

    Args:
        losses: the method's loss curve(s), shape ``(..., num_steps + 1)``.
        baseline_losses: the baseline's curve(s); broadcastable against ``losses`` except on
            the last (step) axis, whose length may differ.
        target: optional scalar or per-curve target loss.

    Returns:
        Floating-point speedups with the broadcast batch shape.

    Example:
        >>> import jax.numpy as jnp
        >>> baseline = jnp.array([8.0, 4.0, 2.0, 1.0, 0.5])  # reaches its final 0.5 at step 4
        >>> method = jnp.array([8.0, 2.0, 0.4, 0.1])         # reaches 0.5 at step 2
        >>> float(speedup(method, baseline))
        2.0
        >>> float(speedup(jnp.array([8.0, 7.0]), baseline))  # never reaches 0.5
        0.0
    """
    baseline = _as_curve(baseline_losses, "baseline_losses")
    curve = _as_curve(losses, "losses")
    target = baseline[..., -1] if target is None else jnp.asarray(target)
    baseline_steps = steps_to_target(baseline, target)
    method_steps = steps_to_target(curve, target)
    dtype = jnp.promote_types(baseline_steps.dtype, method_steps.dtype)
    safe_method = jnp.where(method_steps > 0, method_steps, 1.0)
    ratio = jnp.where(
        jnp.isinf(method_steps),
        0.0,
        jnp.where(
            method_steps == 0,
            jnp.where(baseline_steps == 0, 1.0, jnp.inf),
            baseline_steps / safe_method,
        ),
    ).astype(dtype)
    return jnp.where(jnp.isnan(target), jnp.nan, ratio)
