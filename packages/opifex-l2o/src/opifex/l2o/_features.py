"""Per-coordinate input features of a learned optimiser (after Metz et al., 2019 and 2022).

For every parameter tensor, the features of each coordinate are stacked on a new last axis, in
this order (``t`` is the number of updates including the current one, from 1; ``g`` the
gradient, ``p`` the parameter):

* ``g`` and ``p``;
* momenta ``m_k <- beta_k m_k + (1 - beta_k) g``, one per ``momentum_decays``;
* RMS estimates ``r_j = sqrt(v_j + eps**2)``, ``v_j <- beta_j v_j + (1 - beta_j) g**2``, one
  per ``rms_decays``;
* gradient / RMS ratios ``g / r_j``, one per ``rms_decays``;
* momentum / RMS ratios ``m_k / r_last`` (``r_last`` from the last of ``rms_decays``);
* time features ``tanh(t / T)``, one per ``timescales``;
* with ``use_loss``: loss features ``tanh((f - fbar_k) / (|fbar_k| + eps))``, where ``f`` is the
  loss passed as ``value=`` and ``fbar_k`` its bias-corrected moving average at each of the
  ``momentum_decays`` (the current loss included, so a constant loss gives 0);
* with ``use_scale``: scale features, the log of each per-coordinate feature's per-tensor
  normaliser (below), one per per-coordinate feature, the same for every coordinate of a tensor.

Each per-coordinate feature (all but time and loss) is normalised per tensor: divided by
``sqrt(mean square over the tensor + eps**2)``. This makes them invariant to the scale of the
gradients and parameters, and it cancels the moving averages' bias-correction factors, which are
the same for every coordinate of a tensor; so the accumulators are kept uncorrected. Time and
loss features are the same for every coordinate and already bounded by ``tanh``; they are not
normalised. The normalisation discards the tensor's absolute scale (for instance how large
the gradient is now compared with earlier); ``use_scale`` gives it back as the scale features,
in log form so that they stay moderate over many orders of magnitude (they are the only
features that are not scale-invariant). The normalisation couples the coordinates of a
tensor: a NaN or inf gradient coordinate makes every feature of that tensor non-finite (see
``opifex.l2o``'s docstring).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from opifex.core import check_float_pytree, check_positive
from opifex.l2o._checks import check_decays, check_timescales, check_update_args


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Which features a learned optimiser sees (frozen, validated, hashable).

    Attributes:
        momentum_decays: decays of the gradient momenta (each in ``(0, 1)``, at least one);
            also the decays of the loss averages.
        rms_decays: decays of the second-moment estimates (each in ``(0, 1)``, at least one).
        timescales: ``T`` of the time features ``tanh(t / T)`` (each > 0; may be empty).
        use_loss: add the loss features; ``update`` then needs ``value=`` (the loss).
        use_scale: add the scale features (log of each per-tensor normaliser).
        eps: regulariser of the RMS estimates, the loss change and the per-tensor
            normalisation (> 0).

    Example:
        >>> config = FeatureConfig(timescales=(10.0, 100.0))
        >>> config.num_features, config.feature_names[:3]
        (18, ('grad', 'param', 'momentum_0.5'))
    """

    momentum_decays: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
    rms_decays: tuple[float, ...] = (0.9, 0.99, 0.999)
    timescales: tuple[float, ...] = (10.0, 100.0, 1000.0, 10000.0)
    use_loss: bool = False
    use_scale: bool = False
    eps: float = 1e-8

    def __post_init__(self) -> None:
        for name, check in (
            ("momentum_decays", check_decays),
            ("rms_decays", check_decays),
            ("timescales", check_timescales),
        ):
            object.__setattr__(self, name, check(getattr(self, name), name))
        for name in ("use_loss", "use_scale"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        check_positive(self.eps, "eps")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The name of each feature, in the order of the last axis."""
        momenta, rms = self.momentum_decays, self.rms_decays
        own = (
            "grad",
            "param",
            *(f"momentum_{b}" for b in momenta),
            *(f"rms_{b}" for b in rms),
            *(f"grad_over_rms_{b}" for b in rms),
            *(f"momentum_{b}_over_rms_{rms[-1]}" for b in momenta),
        )
        return (
            *own,
            *(f"log_scale_{name}" for name in own if self.use_scale),
            *(f"time_{s:g}" for s in self.timescales),
            *((f"loss_{b}" for b in momenta) if self.use_loss else ()),
        )

    @property
    def num_features(self) -> int:
        """The length of the features' last axis."""
        return len(self.feature_names)


class FeatureState(NamedTuple):
    """The accumulators behind the features: arrays only.

    Attributes:
        count: updates so far (0-d int32).
        momentum: like ``params``, each leaf with a last axis over ``momentum_decays``.
        second_moment: like ``params``, each leaf with a last axis over ``rms_decays`` (the
            moving averages of ``g**2``).
        loss_average: moving averages of the loss over ``momentum_decays`` (not
            bias-corrected); shape ``(0,)`` without ``use_loss``.
    """

    count: jax.Array
    momentum: Any
    second_moment: Any
    loss_average: jax.Array


def init_features(config: FeatureConfig, params: Any) -> FeatureState:
    """Zero accumulators for ``params`` (a non-empty pytree of floating-point arrays).

    Raises:
        TypeError: ``config`` is not a ``FeatureConfig`` or a leaf of ``params`` is not a
            floating-point array.
        ValueError: ``params`` is empty.

    Example:
        >>> import jax.numpy as jnp
        >>> state = init_features(FeatureConfig(), {"w": jnp.zeros((3, 2))})
        >>> state.momentum["w"].shape, state.second_moment["w"].shape
        ((3, 2, 4), (3, 2, 3))
    """
    check_feature_config(config)
    check_float_pytree(params, "params")
    dtype = jnp.result_type(*jax.tree.leaves(params))

    def zeros(num: int) -> Any:
        return jax.tree.map(lambda p: jnp.zeros((*jnp.shape(p), num), p.dtype), params)

    num_loss = len(config.momentum_decays) if config.use_loss else 0
    return FeatureState(
        count=jnp.zeros((), jnp.int32),
        momentum=zeros(len(config.momentum_decays)),
        second_moment=zeros(len(config.rms_decays)),
        loss_average=jnp.zeros((num_loss,), dtype),
    )


def update_features(
    config: FeatureConfig,
    grads: Any,
    state: FeatureState,
    params: Any,
    value: jax.Array | None = None,
) -> tuple[Any, FeatureState]:
    """Advance the accumulators with ``grads`` and return every coordinate's features.

    Args:
        config: the ``FeatureConfig`` that ``state`` was made with.
        grads: the gradient, a pytree like ``params``.
        state: the ``FeatureState`` from ``init_features`` or the previous call.
        params: the current parameters.
        value: the current loss (a scalar); required with ``config.use_loss``, else ignored.

    Returns:
        ``(features, new_state)``: ``features`` is like ``params``, each leaf of shape
        ``(*leaf.shape, config.num_features)`` and of the gradient leaf's dtype.

    Raises:
        TypeError: ``value`` is missing while ``config.use_loss`` is set.
        ValueError: ``grads`` and ``params`` differ in structure or shapes, or ``value`` is
            not a scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> config = FeatureConfig()
        >>> params = {"w": jnp.ones(3)}
        >>> features, state = update_features(
        ...     config, {"w": jnp.array([1.0, -2.0, 3.0])}, init_features(config, params), params
        ... )
        >>> features["w"].shape, int(state.count)
        ((3, 20), 1)
    """
    check_update_args(grads, params, "update_features", needs_params=True)
    count = optax.safe_int32_increment(state.count)
    t = count.astype(state.loss_average.dtype)
    shared = [jnp.tanh(t / jnp.asarray(config.timescales, t.dtype))]
    loss_average = state.loss_average
    if config.use_loss:
        if value is None:
            raise TypeError("use_loss=True needs the loss: call update(..., value=loss)")
        if jnp.ndim(value) != 0:
            raise ValueError(f"value must be a scalar loss, got shape {jnp.shape(value)}")
        f = jnp.asarray(value, loss_average.dtype)
        decays = jnp.asarray(config.momentum_decays, loss_average.dtype)
        loss_average = decays * loss_average + (1.0 - decays) * f
        average = loss_average / (1.0 - decays**t)
        shared.append(jnp.tanh((f - average) / (jnp.abs(average) + config.eps)))
    shared = jnp.concatenate(shared)

    def leaf(g: jax.Array, p: jax.Array, m: jax.Array, v: jax.Array) -> tuple[jax.Array, ...]:
        beta_m = jnp.asarray(config.momentum_decays, g.dtype)
        beta_v = jnp.asarray(config.rms_decays, g.dtype)
        g1 = g[..., None]
        m = beta_m * m + (1.0 - beta_m) * g1
        v = beta_v * v + (1.0 - beta_v) * g1**2
        rms = jnp.sqrt(v + config.eps**2)
        own = jnp.concatenate(
            [g1, p[..., None].astype(g.dtype), m, rms, g1 / rms, m / rms[..., -1:]], axis=-1
        )
        scale = jnp.sqrt(jnp.mean(own**2, axis=tuple(range(g.ndim))) + config.eps**2)
        common = [jnp.log(scale)] if config.use_scale else []
        common = jnp.concatenate([*common, shared.astype(g.dtype)])
        common = jnp.broadcast_to(common, (*g.shape, common.size))
        return jnp.concatenate([own / scale, common], axis=-1), m, v

    out = jax.tree.map(leaf, grads, params, state.momentum, state.second_moment)
    outer = jax.tree.structure(grads)
    features, momentum, second_moment = jax.tree.transpose(
        outer, jax.tree.structure((0, 0, 0)), out
    )
    new_state = FeatureState(count, momentum, second_moment, loss_average)
    return features, optax.tree.cast_like(new_state, state)


def check_feature_config(config: Any) -> None:
    """Raise ``TypeError`` unless ``config`` is a ``FeatureConfig``."""
    if not isinstance(config, FeatureConfig):
        raise TypeError(f"features must be a FeatureConfig, got {type(config).__name__}")
