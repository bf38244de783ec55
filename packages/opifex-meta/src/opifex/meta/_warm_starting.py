"""``WarmStartingStrategy``: start a new problem from the solutions of similar ones.

From one source solution (``initialize_from_source``), leaf by leaf of the parameter pytree:

1. the source leaf is resized to the target leaf's shape, by one of two methods:

   * ``"overlap"`` (default): the block the two shapes share (the leading entries along every
     axis) comes from the source; the rest keeps the target's initialisation (cropped where
     the source is larger, padded with the target's initialisation where it is smaller). Right
     for layers that gain or lose units: the new units start as a fresh network's would.
   * ``"interpolate"``: linear interpolation along every axis whose size changes, with the
     first and last entries aligned (``numpy.interp`` on ``linspace(0, 1, n)`` grids, axis by
     axis). Right for parameters that sample a function on a grid (a field, a time profile).

   A leaf of another rank cannot be mapped and is an error.
2. the resized source is blended into the target's initialisation:
   ``(1 - w) * target_init + w * resized_source``, with ``w = transfer_fraction``
   (``"parameter_transfer"``, ``"nearest_neighbor"``) or ``w = transfer_fraction *
   problem_similarity`` (``"similarity_weighted"``);
3. if ``problem_similarity < similarity_threshold`` the target's initialisation is returned
   unchanged.

The target is given as its initial parameters, or as a pytree of shapes (tuples of ints or
``jax.ShapeDtypeStruct``), whose initialisation is then zeros. The result has the target's
shapes and dtypes. ``transfer_params`` is the pure core (``jit`` / ``vmap`` work: the
similarity test is a ``jnp.where``, not Python).

Solved problems are kept in a ``WarmStartStore`` (``opifex.core.metatrain``): each solution
with a descriptor, a 1-d vector of numbers describing its problem. The similarity of two
problems is ``1 / (1 + d)``, ``d`` the Euclidean distance between their descriptors (1 for
equal descriptors, falling towards 0), so ``similarity_threshold`` is the store's distance
threshold ``1 / similarity_threshold - 1``. ``initialize_from_store`` takes, among the stored
solutions with the target's structure, shapes and dtypes within the threshold, the nearest
(``"parameter_transfer"``, ``"nearest_neighbor"``) or the ``num_neighbors`` nearest averaged
with weights proportional to their similarities (``"similarity_weighted"``), and transfers
that with the nearest one's similarity.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from opifex.core import check_choice, check_finite, check_float_pytree, check_int_at_least
from opifex.core.metatrain import WarmStart, WarmStartStore

WARM_START_STRATEGIES = ("parameter_transfer", "similarity_weighted", "nearest_neighbor")
"""Every name ``WarmStartingConfig.strategy_type`` accepts."""

RESIZE_METHODS = ("overlap", "interpolate")
"""Every name ``WarmStartingConfig.resize`` accepts."""


def _check_unit_interval(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0 <= value <= 1:  # also False for NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


@dataclasses.dataclass(frozen=True)
class WarmStartingConfig:
    """Settings of ``WarmStartingStrategy`` (frozen, validated, hashable).

    Attributes:
        strategy_type: one of ``WARM_START_STRATEGIES``.
        similarity_threshold: below this problem similarity nothing is transferred, in
            ``[0, 1]``.
        transfer_fraction: the weight of the source in the blend, in ``[0, 1]`` (1: the
            source replaces the target's initialisation where it reaches).
        resize: how a leaf of another shape is mapped, one of ``RESIZE_METHODS``.
        num_neighbors: the stored solutions ``"similarity_weighted"`` combines (>= 1).
        capacity: the most solutions the store keeps, the oldest dropped first (>= 1).

    Example:
        >>> WarmStartingConfig(similarity_threshold=0.5).distance_threshold
        1.0
    """

    strategy_type: str = "parameter_transfer"
    similarity_threshold: float = 0.5
    transfer_fraction: float = 1.0
    resize: str = "overlap"
    num_neighbors: int = 3
    capacity: int = 100

    def __post_init__(self) -> None:
        for name, choices in (("strategy_type", WARM_START_STRATEGIES), ("resize", RESIZE_METHODS)):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
            check_choice(value, choices, name)
        _check_unit_interval(self.similarity_threshold, "similarity_threshold")
        _check_unit_interval(self.transfer_fraction, "transfer_fraction")
        check_int_at_least(self.num_neighbors, 1, "num_neighbors")
        check_int_at_least(self.capacity, 1, "capacity")

    @property
    def distance_threshold(self) -> float:
        """The descriptor distance at which the similarity is ``similarity_threshold``."""
        if self.similarity_threshold == 0:
            return sys.float_info.max  # every stored solution qualifies
        return 1.0 / self.similarity_threshold - 1.0


def similarity_from_distance(distance: Any) -> Any:
    """The problem similarity ``1 / (1 + distance)`` of a descriptor distance.

    Example:
        >>> similarity_from_distance(1.0)
        0.5
    """
    return 1.0 / (1.0 + distance)


def _resize_overlap(source: jax.Array, target_init: jax.Array) -> jax.Array:
    block = tuple(slice(0, min(s, t)) for s, t in zip(source.shape, target_init.shape, strict=True))
    return target_init.at[block].set(source[block].astype(target_init.dtype))


def _interpolate_axis(x: jax.Array, size: int, axis: int) -> jax.Array:
    n = x.shape[axis]
    if n == size:
        return x
    if n == 1:
        return jnp.repeat(x, size, axis=axis)
    # positions of the target's points on the source's index grid, ends aligned (static)
    positions = np.linspace(0.0, n - 1.0, size)
    lower = np.clip(np.floor(positions).astype(np.int64), 0, n - 2)
    weight = (positions - lower).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    weight = jnp.asarray(weight, x.dtype)
    lower_values = jnp.take(x, lower, axis=axis)
    upper_values = jnp.take(x, lower + 1, axis=axis)
    return lower_values * (1 - weight) + upper_values * weight


def _resize_interpolate(source: jax.Array, target_init: jax.Array) -> jax.Array:
    x = source.astype(target_init.dtype)
    for axis, size in enumerate(target_init.shape):
        x = _interpolate_axis(x, size, axis)
    return x


def resize_leaf(source: Any, target_init: Any, method: str = "overlap") -> jax.Array:
    """``source`` mapped onto ``target_init``'s shape and dtype (see the module docstring).

    Args:
        source: an array.
        target_init: an array of the same rank: the target's initialisation.
        method: ``"overlap"`` or ``"interpolate"``.

    Example:
        >>> import jax.numpy as jnp
        >>> resize_leaf(jnp.array([1.0, 2.0]), jnp.full(3, 9.0)).tolist()
        [1.0, 2.0, 9.0]
        >>> resize_leaf(jnp.array([1.0, 2.0]), jnp.zeros(3), "interpolate").tolist()
        [1.0, 1.5, 2.0]
    """
    check_choice(method, RESIZE_METHODS, "method")
    source, target_init = jnp.asarray(source), jnp.asarray(target_init)
    if source.ndim != target_init.ndim:
        raise ValueError(
            f"cannot map a source of shape {source.shape} onto a target of shape"
            f" {target_init.shape}: the ranks differ"
        )
    if method == "overlap":
        return _resize_overlap(source, target_init)
    return _resize_interpolate(source, target_init)


def transfer_params(
    config: WarmStartingConfig, source_params: Any, target_init: Any, problem_similarity: Any
) -> Any:
    """The target's start from one source solution (pure; ``config`` is static).

    Args:
        config: a ``WarmStartingConfig``.
        source_params: the source solution, a pytree of arrays.
        target_init: the target's initialisation, a pytree of the same structure whose leaves
            have the ranks of the source's.
        problem_similarity: a scalar in ``[0, 1]`` (a NaN compares below any threshold).

    Returns:
        a pytree shaped like ``target_init``: resized, blended and thresholded as the module
        docstring describes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> config = WarmStartingConfig("similarity_weighted", similarity_threshold=0.2)
        >>> batch = jax.vmap(transfer_params, in_axes=(None, None, None, 0))(
        ...     config, jnp.ones(2), jnp.zeros(3), jnp.array([0.1, 0.5, 1.0]))
        >>> batch.tolist()
        [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1.0, 1.0, 0.0]]
    """
    source_structure = jax.tree.structure(source_params)
    target_structure = jax.tree.structure(target_init)
    if source_structure != target_structure:
        raise ValueError(
            "source_params and the target must have the same pytree structure, got"
            f" {source_structure} and {target_structure}"
        )
    problem_similarity = jnp.asarray(problem_similarity)
    weight = config.transfer_fraction
    if config.strategy_type == "similarity_weighted":
        weight = weight * problem_similarity
    transfer = problem_similarity >= config.similarity_threshold

    def leaf(path: Any, source: Any, target: Any) -> jax.Array:
        target = jnp.asarray(target)
        source = jnp.asarray(source)
        if source.ndim != target.ndim:
            raise ValueError(
                f"source_params{jax.tree_util.keystr(path)} has shape {source.shape}, the"
                f" target {target.shape}: a leaf of another rank cannot be transferred"
            )
        resized = resize_leaf(source, target, config.resize)
        w = jnp.asarray(weight, target.dtype)
        blended = (1 - w) * target + w * resized
        return jnp.where(transfer, blended, target).astype(target.dtype)

    return jax.tree_util.tree_map_with_path(leaf, source_params, target_init)


# the façade's calls: one program per config and pytree of shapes
@functools.partial(jax.jit, static_argnums=0)
def _jitted_transfer(config, source_params, target_init, problem_similarity):
    return transfer_params(config, source_params, target_init, problem_similarity)


def _is_shape(node: Any) -> bool:
    return isinstance(node, jax.ShapeDtypeStruct) or (
        isinstance(node, tuple)
        and all(isinstance(n, int | np.integer) and not isinstance(n, bool) for n in node)
    )


def target_initialization(target: Any) -> Any:
    """The target's initial parameters: ``target`` itself, or zeros for its shapes.

    Args:
        target: a pytree of arrays, or of shapes (tuples of ints: the default float dtype;
            ``jax.ShapeDtypeStruct``: its dtype).

    Example:
        >>> target_initialization({"w": (2,), "b": ()})["w"].tolist()
        [0.0, 0.0]
    """

    def initialize(node: Any) -> jax.Array:
        if isinstance(node, jax.ShapeDtypeStruct):
            return jnp.zeros(node.shape, node.dtype)
        if _is_shape(node):
            if any(n < 0 for n in node):
                raise ValueError(f"a target shape has a negative size: {node}")
            return jnp.zeros(node, jnp.result_type(float))
        return jnp.asarray(node)

    return jax.tree.map(initialize, target, is_leaf=_is_shape)


class WarmStartingStrategy:
    """Start new problems from solved ones (a thin façade over ``transfer_params``).

    Args:
        strategy_type: ``"parameter_transfer"``, ``"similarity_weighted"`` or
            ``"nearest_neighbor"`` (see the module docstring).
        similarity_threshold: below this problem similarity nothing is transferred.
        transfer_fraction: the source's weight in the blend with the target's
            initialisation, in ``[0, 1]``.
        resize: ``"overlap"`` or ``"interpolate"``: how a leaf of another shape is mapped.
        num_neighbors: the stored solutions ``"similarity_weighted"`` combines.
        capacity: the most solutions the store keeps.

    Attributes:
        config: the ``WarmStartingConfig``.
        store: the ``WarmStartStore`` of solved problems.

    Example:
        >>> import jax.numpy as jnp
        >>> strategy = WarmStartingStrategy(transfer_fraction=0.5)
        >>> start = strategy.initialize_from_source({"w": jnp.ones(2)}, {"w": jnp.zeros(3)},
        ...                                         problem_similarity=0.9)
        >>> start["w"].tolist()  # half the source where it reaches, the target init beyond
        [0.5, 0.5, 0.0]
        >>> strategy.add_solution([1.0, 0.0], {"w": jnp.full(3, 4.0)})
        >>> strategy.initialize_from_store([1.0, 0.5], {"w": (3,)})["w"].tolist()
        [2.0, 2.0, 2.0]
    """

    def __init__(
        self,
        strategy_type: str = "parameter_transfer",
        similarity_threshold: float = 0.5,
        transfer_fraction: float = 1.0,
        *,
        resize: str = "overlap",
        num_neighbors: int = 3,
        capacity: int = 100,
    ):
        self.config = WarmStartingConfig(
            strategy_type=strategy_type,
            similarity_threshold=similarity_threshold,
            transfer_fraction=transfer_fraction,
            resize=resize,
            num_neighbors=num_neighbors,
            capacity=capacity,
        )
        self.store = WarmStartStore(self.config.capacity, self.config.distance_threshold)

    def initialize_from_source(
        self, source_params: Any, target_shape_or_target_params: Any, problem_similarity: float
    ) -> Any:
        """The target's start from one source solution.

        Args:
            source_params: the source solution, a pytree of finite float arrays.
            target_shape_or_target_params: the target's initial parameters, or a pytree of
                their shapes (then the initialisation is zeros), of the source's structure.
            problem_similarity: how similar the two problems are, in ``[0, 1]``.

        Returns:
            the start, shaped like the target (see the module docstring).

        Raises:
            ValueError: NaN / inf in the source, structures or ranks that differ, a
                similarity outside ``[0, 1]``.
            TypeError: a non-float leaf or a similarity that is not a number.
        """
        _check_unit_interval(problem_similarity, "problem_similarity")
        check_float_pytree(source_params, "source_params")
        check_finite(source_params, "source_params")
        target_init = target_initialization(target_shape_or_target_params)
        check_float_pytree(target_init, "target_shape_or_target_params")
        check_finite(target_init, "target_shape_or_target_params")
        return _jitted_transfer(self.config, source_params, target_init, problem_similarity)

    def add_solution(self, problem_features: Any, params: Any) -> None:
        """Store ``params`` as the solution of the problem ``problem_features`` describes.

        Raises:
            ValueError: a descriptor that is not a non-empty finite 1-d vector, or NaN / inf
                in ``params``.
        """
        check_float_pytree(params, "params")
        check_finite(params, "params")
        self.store.add(problem_features, params)

    def query(self, problem_features: Any, like: Any) -> list[WarmStart]:
        """The stored solutions the strategy would use for a problem, nearest first.

        Args:
            problem_features: the new problem's descriptor.
            like: the target's parameters or shapes; only solutions of its structure, shapes
                and dtypes are candidates.

        Returns:
            ``WarmStart(params, distance)`` entries within the threshold: at most one, or at
            most ``num_neighbors`` for ``"similarity_weighted"``.
        """
        k = self.config.num_neighbors if self.config.strategy_type == "similarity_weighted" else 1
        return self.store.neighbors(problem_features, target_initialization(like), k)

    def initialize_from_store(self, problem_features: Any, target_shape_or_target_params: Any):
        """The target's start from the stored solutions of the most similar problems.

        The target's initialisation when no stored solution qualifies (see ``query``).

        Args:
            problem_features: the new problem's descriptor.
            target_shape_or_target_params: the target's initial parameters, or their shapes.
        """
        target_init = target_initialization(target_shape_or_target_params)
        check_float_pytree(target_init, "target_shape_or_target_params")
        check_finite(target_init, "target_shape_or_target_params")
        found = self.query(problem_features, target_init)
        if not found:
            return target_init
        similarities = np.array([similarity_from_distance(entry.distance) for entry in found])
        weights = similarities / similarities.sum()

        def combine(*leaves: Any) -> jax.Array:
            return sum(float(w) * jnp.asarray(x) for w, x in zip(weights, leaves, strict=True))

        source = jax.tree.map(combine, *[entry.params for entry in found])
        return _jitted_transfer(self.config, source, target_init, float(similarities[0]))
