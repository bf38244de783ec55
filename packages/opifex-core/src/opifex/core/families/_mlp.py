"""Teacher-student regression: fit a student MLP to a random teacher MLP of the same shape."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from opifex.core._checks import check_choice, check_int_at_least
from opifex.core.families import _random
from opifex.core.families._batching import take_minibatch
from opifex.core.families._networks import (
    ACTIVATIONS,
    apply_mlp,
    init_mlp,
    mlp_from_normals,
    mlp_normal_shapes,
)
from opifex.core.families._validation import check_sizes, set_field

TEACHER_BIAS_SCALE = 0.1


class TeacherStudentTask(NamedTuple):
    """One teacher and its data set.

    Attributes:
        teacher: the teacher's MLP parameters (same structure as the student's).
        inputs: ``X``, shape ``(num_points, layer_sizes[0])``.
        targets: ``teacher(X)``, shape ``(num_points, layer_sizes[-1])``.
    """

    teacher: Any
    inputs: jax.Array
    targets: jax.Array


@dataclasses.dataclass(frozen=True)
class TeacherStudentMLPFamily:
    """Regress a random teacher MLP with a student MLP of the same architecture.

    Both networks map ``layer_sizes[0]`` inputs through hidden layers with ``activation``
    (``"tanh"`` default, or ``"relu"``) to ``layer_sizes[-1]`` linear outputs. Parameters are
    ``{"weights": [W_1, ...], "biases": [b_1, ...]}`` with ``W_l`` of shape
    ``(layer_sizes[l-1], layer_sizes[l])``.

    A task draws a teacher (weights ``N(0, gain / fan_in)``, gain 1 for tanh and 2 for relu;
    biases ``N(0, 0.1^2)``), inputs ``X ~ N(0, I)`` of shape ``(num_points, layer_sizes[0])`` and
    targets ``teacher(X)``. ``init`` draws a student with the same weight distribution and zero
    biases. ``loss`` is the mean squared error, averaged over examples and outputs, on
    ``batch_size`` examples drawn without replacement with the loss key (``batch_size=None``:
    all of them, key unused). The teacher itself (``optimum(task)``) has loss 0.

    Args:
        layer_sizes: ``(inputs, hidden..., outputs)``, at least two ints >= 1.
        num_points: examples per task (>= 1).
        batch_size: examples per loss evaluation (1..num_points) or ``None``.
        activation: ``"tanh"`` or ``"relu"``.

    Example:
        >>> import jax
        >>> from opifex.core.families import TeacherStudentMLPFamily
        >>> family = TeacherStudentMLPFamily(layer_sizes=(8, 16, 4))
        >>> task = family.sample(jax.random.key(0))
        >>> task.inputs.shape, task.targets.shape
        ((512, 8), (512, 4))
        >>> params = family.init(jax.random.key(1), task)
        >>> [w.shape for w in params["weights"]]
        [(8, 16), (16, 4)]
        >>> bool(family.loss(family.optimum(task), task, jax.random.key(2)) < 1e-10)
        True
    """

    layer_sizes: tuple[int, ...] = (8, 16, 4)
    num_points: int = 512
    batch_size: int | None = 32
    activation: str = "tanh"

    def __post_init__(self) -> None:
        set_field(self, "layer_sizes", check_sizes(self.layer_sizes, "layer_sizes", min_length=2))
        check_int_at_least(self.num_points, 1, "num_points")
        if self.batch_size is not None:
            check_int_at_least(self.batch_size, 1, "batch_size")
            if self.batch_size > self.num_points:
                raise ValueError(
                    f"batch_size must be <= num_points={self.num_points}, got {self.batch_size}"
                )
        check_choice(self.activation, ACTIVATIONS, "activation")

    def apply(self, params: Any, inputs: jax.Array) -> jax.Array:
        """The network with ``params`` on ``inputs`` of shape ``(..., layer_sizes[0])``."""
        return apply_mlp(params, inputs, self.activation)

    def sample(self, key: jax.Array) -> TeacherStudentTask:
        """Draw a teacher, inputs and the teacher's outputs."""
        shapes = mlp_normal_shapes(self.layer_sizes, bias_scale=TEACHER_BIAS_SCALE)
        *normals, inputs = _random.normals(key, [*shapes, (self.num_points, self.layer_sizes[0])])
        teacher = mlp_from_normals(
            normals, self.layer_sizes, self.activation, bias_scale=TEACHER_BIAS_SCALE
        )
        return TeacherStudentTask(teacher, inputs, self.apply(teacher, inputs))

    def init(self, key: jax.Array, task: TeacherStudentTask) -> Any:
        """Draw student parameters (zero biases)."""
        del task
        return init_mlp(key, self.layer_sizes, self.activation)

    def loss(self, params: Any, task: TeacherStudentTask, key: jax.Array | None) -> jax.Array:
        """Mean squared error of the student on a minibatch drawn with ``key``."""
        inputs, targets = take_minibatch(key, (task.inputs, task.targets), self.batch_size)
        return jnp.mean((self.apply(params, inputs) - targets) ** 2)

    def optimum(self, task: TeacherStudentTask) -> Any:
        """The teacher's parameters (a global minimiser, loss 0)."""
        return task.teacher
