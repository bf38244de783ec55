"""``opifex.core.metatrain`` for a learned optimiser: ``(family, make_optimizer)`` arguments.

Meta-training lives in ``opifex.core.metatrain``, whose functions take an ``InnerLoop``. A
learned optimiser is the inner loop ``LearnedOptimizer(family, make_optimizer)``: each
function here builds it and calls its ``opifex.core.metatrain`` namesake, so the two give
identical results.
"""

from __future__ import annotations

from typing import Any

import jax

from opifex.core import TaskFamily
from opifex.core import metatrain as core
from opifex.core.metatrain import (
    LearnedOptimizer,
    MakeOptimizer,
    MetaGradientEstimator,
    MetaTrainConfig,
    MetaTrainResult,
    UnrollOutput,
    UnrollState,
)


def init_unroll(
    key: jax.Array, phi: Any, family: TaskFamily, make_optimizer: MakeOptimizer
) -> UnrollState:
    """``opifex.core.metatrain.init_unroll`` of ``LearnedOptimizer(family, make_optimizer)``.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.l2o import init_learnable_sgd_params, learnable_sgd
        >>> state = init_unroll(jax.random.key(0), init_learnable_sgd_params(),
        ...                     QuadraticFamily(dimension=3), learnable_sgd)
        >>> state.params.shape, int(state.step)
        ((3,), 0)
    """
    return core.init_unroll(key, phi, LearnedOptimizer(family, make_optimizer))


def init_unrolls(
    key: jax.Array,
    phi: Any,
    *,
    family: TaskFamily,
    make_optimizer: MakeOptimizer,
    num_tasks: int,
    horizon: int | jax.Array,
) -> UnrollState:
    """``opifex.core.metatrain.init_unrolls`` of ``LearnedOptimizer(family, make_optimizer)``.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.l2o import init_learnable_sgd_params, learnable_sgd
        >>> states = init_unrolls(jax.random.key(0), init_learnable_sgd_params(),
        ...                       family=QuadraticFamily(dimension=3),
        ...                       make_optimizer=learnable_sgd, num_tasks=4, horizon=20)
        >>> states.step.tolist()
        [0, 5, 10, 15]
    """
    inner = LearnedOptimizer(family, make_optimizer)
    return core.init_unrolls(key, phi, inner=inner, num_tasks=num_tasks, horizon=horizon)


def unroll(
    key: jax.Array,
    phi: Any,
    state: UnrollState,
    *,
    family: TaskFamily,
    make_optimizer: MakeOptimizer,
    num_steps: int,
    horizon: int | jax.Array,
) -> tuple[UnrollState, UnrollOutput]:
    """``opifex.core.metatrain.unroll`` of ``LearnedOptimizer(family, make_optimizer)``.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.l2o import init_learnable_sgd_params, learnable_sgd
        >>> family, phi = QuadraticFamily(dimension=3), init_learnable_sgd_params(0.05)
        >>> state = init_unroll(jax.random.key(0), phi, family, learnable_sgd)
        >>> state, out = unroll(jax.random.key(1), phi, state, family=family,
        ...                     make_optimizer=learnable_sgd, num_steps=5, horizon=20)
        >>> int(state.step), out.losses.shape
        (5, (5,))
    """
    inner = LearnedOptimizer(family, make_optimizer)
    return core.unroll(key, phi, state, inner=inner, num_steps=num_steps, horizon=horizon)


def truncated_bptt(
    family: TaskFamily,
    make_optimizer: MakeOptimizer,
    truncation_length: int,
    *,
    meta_loss: str = "mean",
) -> MetaGradientEstimator:
    """``opifex.core.metatrain.truncated_bptt`` of ``LearnedOptimizer(family, make_optimizer)``.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.l2o import init_learnable_sgd_params, learnable_sgd
        >>> estimator = truncated_bptt(QuadraticFamily(dimension=3), learnable_sgd, 5)
        >>> phi = init_learnable_sgd_params(0.01)
        >>> state = estimator.init(jax.random.key(0), phi, 4, 20)
        >>> grad, state, info = estimator.estimate(jax.random.key(1), phi, state, 20)
        >>> float(grad["log_learning_rate"]) < 0  # a larger step would lower the loss
        True
    """
    inner = LearnedOptimizer(family, make_optimizer)
    return core.truncated_bptt(inner, truncation_length, meta_loss=meta_loss)


def pes(
    family: TaskFamily,
    make_optimizer: MakeOptimizer,
    truncation_length: int,
    *,
    sigma: float,
    num_particles: int,
    meta_loss: str = "mean",
) -> MetaGradientEstimator:
    """``opifex.core.metatrain.pes`` of ``LearnedOptimizer(family, make_optimizer)``.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.l2o import init_learnable_sgd_params, learnable_sgd
        >>> estimator = pes(QuadraticFamily(dimension=3), learnable_sgd, 5, sigma=0.01,
        ...                 num_particles=8)
        >>> state = estimator.init(jax.random.key(0), init_learnable_sgd_params(0.01), 4, 20)
        >>> state.xi["log_learning_rate"].shape
        (4, 4)
    """
    inner = LearnedOptimizer(family, make_optimizer)
    options = {"sigma": sigma, "num_particles": num_particles, "meta_loss": meta_loss}
    return core.pes(inner, truncation_length, **options)


def truncated_es(
    family: TaskFamily,
    make_optimizer: MakeOptimizer,
    truncation_length: int,
    *,
    sigma: float,
    num_particles: int,
    meta_loss: str = "mean",
) -> MetaGradientEstimator:
    """``opifex.core.metatrain.truncated_es`` of ``LearnedOptimizer(family, make_optimizer)``.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.l2o import init_learnable_sgd_params, learnable_sgd
        >>> estimator = truncated_es(QuadraticFamily(dimension=3), learnable_sgd, 5,
        ...                          sigma=0.01, num_particles=8)
        >>> phi = init_learnable_sgd_params(0.01)
        >>> state = estimator.init(jax.random.key(0), phi, 4, 20)
        >>> grad, state, info = estimator.estimate(jax.random.key(1), phi, state, 20)
        >>> state.step.tolist()
        [5, 10, 15, 20]
    """
    inner = LearnedOptimizer(family, make_optimizer)
    options = {"sigma": sigma, "num_particles": num_particles, "meta_loss": meta_loss}
    return core.truncated_es(inner, truncation_length, **options)


def meta_train(
    key: jax.Array,
    phi: Any,
    family: TaskFamily,
    make_optimizer: MakeOptimizer,
    config: MetaTrainConfig,
    **options: Any,
) -> MetaTrainResult:
    """``opifex.core.metatrain.meta_train`` of ``LearnedOptimizer(family, make_optimizer)``.

    Args:
        key: the run's ``jax.random`` key.
        phi: the learned optimiser's initial meta-parameters.
        family: the ``TaskFamily`` of the inner problems.
        make_optimizer: ``phi -> optax transformation``, e.g. ``mlp_optimizer``.
        config: a ``MetaTrainConfig``.
        **options: ``meta_train``'s keyword options (``curriculum``, ``validation_key``,
            ``checkpoint_path``, ``devices``, ``progress``, ``callback``).

    Returns:
        A ``MetaTrainResult``.

    Raises:
        TypeError / ValueError: as ``opifex.core.metatrain.meta_train``.

    Example:
        >>> import jax
        >>> from opifex.core.families import QuadraticFamily
        >>> from opifex.l2o import MetaTrainConfig, init_learnable_sgd_params, learnable_sgd
        >>> config = MetaTrainConfig(estimator="truncated_bptt", num_tasks=4,
        ...     truncation_length=5, horizon=20, num_outer_steps=20, outer_learning_rate=0.1,
        ...     validation_every=10, num_validation_tasks=4)
        >>> result = meta_train(jax.random.key(0), init_learnable_sgd_params(1e-3),
        ...     QuadraticFamily(dimension=3), learnable_sgd, config, progress=False)
        >>> metric = result.history.validation_metric
        >>> bool(metric[-1] < metric[0])  # a larger learning rate was learned
        True
    """
    inner = LearnedOptimizer(family, make_optimizer)
    return core.meta_train(key, phi, inner, config, **options)
