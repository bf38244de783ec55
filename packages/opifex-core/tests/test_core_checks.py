"""Tests for the boundary checks and ``config_from_dict``.

Each check must raise the documented error type with a message that names the argument (and,
for pytrees, the offending keypath), pass silently on valid input, and never fail at trace time
on a traced value whose contents are unknown.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from opifex.core._checks import (
    check_choice,
    check_finite,
    check_float_pytree,
    check_int_at_least,
    check_nonempty_pytree,
    check_positive,
    check_same_structure,
    check_scalar_output,
    check_shape,
    check_unknown_options,
)
from opifex.core._config import config_from_dict

# --------------------------------------------------------------------------------------------
# check_nonempty_pytree


@pytest.mark.parametrize("empty", [{}, [], (), None, {"a": {}, "b": []}])
def test_nonempty_rejects_empty(empty):
    with pytest.raises(ValueError, match=r"params is an empty pytree"):
        check_nonempty_pytree(empty, "params")


@pytest.mark.parametrize("tree", [jnp.zeros(()), {"w": jnp.zeros(2)}, [np.ones(1)], 1.0])
def test_nonempty_accepts(tree):
    check_nonempty_pytree(tree, "params")


# --------------------------------------------------------------------------------------------
# check_float_pytree


class Pair(NamedTuple):
    w: object
    b: object


@pytest.mark.parametrize(
    "tree",
    [
        jnp.zeros(3),
        {"w": jnp.zeros((2, 2)), "b": np.zeros(2, np.float64)},
        Pair(jnp.zeros(1, jnp.bfloat16), jnp.zeros(1, jnp.float16)),
        1.5,
        [np.float32(1.0)],
    ],
)
def test_float_pytree_accepts(tree):
    check_float_pytree(tree, "params")


@pytest.mark.parametrize(
    ("tree", "where"),
    [
        ({"w": jnp.zeros(2), "n": jnp.zeros(2, jnp.int32)}, "params['n']"),
        ([jnp.zeros(2), jnp.array([True])], "params[1]"),
        (Pair(jnp.zeros(1), 3), "params.b"),
        (jnp.arange(3), "params"),
        ({"c": jnp.zeros(2, jnp.complex64)}, "params['c']"),
        ({"s": "text"}, "params['s']"),
    ],
)
def test_float_pytree_rejects_non_float_leaf_naming_it(tree, where):
    with pytest.raises(TypeError, match="floating-point") as info:
        check_float_pytree(tree, "params")
    assert str(info.value).startswith(where)


def test_float_pytree_rejects_empty_with_value_error():
    with pytest.raises(ValueError, match="params is an empty pytree"):
        check_float_pytree({}, "params")


# --------------------------------------------------------------------------------------------
# check_finite


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_finite_rejects_nan_and_inf_naming_the_leaf(bad):
    tree = {"a": jnp.ones(3), "b": [jnp.ones(2), jnp.array([1.0, bad])]}
    with pytest.raises(ValueError, match=r"x0\['b'\]\[1\] contains NaN or inf"):
        check_finite(tree, "x0")


def test_finite_root_leaf_message():
    with pytest.raises(ValueError, match=r"^x0 contains NaN or inf$"):
        check_finite(np.array([np.nan]), "x0")
    with pytest.raises(ValueError, match="theta contains"):
        check_finite(math.inf, "theta")


def test_finite_accepts_finite_and_non_float_leaves():
    check_finite(
        {
            "f": jnp.ones(3),
            "h": jnp.ones(2, jnp.bfloat16),
            "i": jnp.arange(3),
            "b": jnp.array([True, False]),
            "key": jax.random.key(0),  # a typed PRNG key: not convertible to numpy
            "raw_key": jax.random.PRNGKey(0),
            "py": 1.0,
            "n": 3,
        },
        "state",
    )


def test_finite_bfloat16_nan_is_caught():
    with pytest.raises(ValueError, match="h contains"):
        check_finite(jnp.array([1.0, jnp.nan], jnp.bfloat16), "h")


def test_finite_is_skipped_on_tracers_under_jit():
    @jax.jit
    def f(x):
        check_finite(x, "x")  # x is a tracer here: nothing to inspect, must not raise
        return x * 2

    out = f(jnp.array([1.0, jnp.nan]))  # the NaN reaches the traced function without error
    assert math.isnan(float(out[1]))

    # also under vmap and grad
    jax.vmap(f)(jnp.array([[jnp.inf]]))
    jax.grad(lambda x: (check_finite(x, "x"), jnp.sum(x))[1])(jnp.array([jnp.nan]))


# --------------------------------------------------------------------------------------------
# check_same_structure


def test_same_structure_accepts():
    check_same_structure(
        {"a": jnp.zeros(2), "b": (jnp.zeros((1, 3)),)},
        {"a": np.ones(2), "b": (np.ones((1, 3)),)},
        "grad",
        "params",
    )


@pytest.mark.parametrize(
    ("tree", "reference"),
    [
        ({"a": jnp.zeros(2)}, {"b": jnp.zeros(2)}),  # different keys
        ({"a": jnp.zeros(2)}, {"a": jnp.zeros(3)}),  # different leaf shape
        ([jnp.zeros(2)], (jnp.zeros(2),)),  # list vs tuple
        ({"a": jnp.zeros(2)}, {"a": jnp.zeros(2), "b": jnp.zeros(1)}),  # extra leaf
    ],
)
def test_same_structure_rejects_naming_both(tree, reference):
    with pytest.raises(ValueError, match=r"grad must have the same pytree structure .* as params"):
        check_same_structure(tree, reference, "grad", "params")


def test_same_structure_works_on_tracers():
    @jax.jit
    def f(x, y):
        check_same_structure(x, y, "x", "y")
        return x

    f(jnp.zeros(2), jnp.ones(2))
    with pytest.raises(ValueError, match="x must have the same"):
        f(jnp.zeros(2), jnp.ones(3))


# --------------------------------------------------------------------------------------------
# check_shape / check_scalar_output


@pytest.mark.parametrize(
    ("x", "shape"),
    [
        (jnp.zeros((3, 2)), (None, 2)),
        (np.zeros(4), (4,)),
        (1.0, ()),
        (jnp.zeros((0, 5)), (0, None)),
    ],
)
def test_shape_accepts(x, shape):
    check_shape(x, shape, "points")


@pytest.mark.parametrize(
    ("x", "shape", "message"),
    [
        (jnp.zeros((3, 2)), (None, 3), r"points must have shape \(\*, 3\), got \(3, 2\)"),
        (jnp.zeros((3, 2)), (3,), r"points must have shape \(3\), got \(3, 2\)"),
        (jnp.zeros(3), (3, 1), r"points must have shape \(3, 1\), got \(3,\)"),
        (2.0, (1,), r"points must have shape \(1\), got \(\)"),
    ],
)
def test_shape_rejects(x, shape, message):
    with pytest.raises(ValueError, match=message):
        check_shape(x, shape, "points")


def test_shape_check_works_at_trace_time():
    @jax.jit
    def f(x):
        check_shape(x, (None, 2), "x")
        return x

    f(jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match="x must have shape"):
        f(jnp.zeros((5, 3)))


def test_scalar_output():
    check_scalar_output(jnp.float32(1.0), "fun(x0)")
    check_scalar_output(2.0, "fun(x0)")
    with pytest.raises(ValueError, match=r"fun\(x0\) must return a scalar, got shape \(1,\)"):
        check_scalar_output(jnp.ones(1), "fun(x0)")
    with pytest.raises(ValueError, match=r"got shape \(2, 2\)"):
        check_scalar_output(np.ones((2, 2)), "fun(x0)")


# --------------------------------------------------------------------------------------------
# check_choice / check_unknown_options


def test_choice():
    check_choice("zoom", ("zoom", "backtracking"), "line_search")
    check_choice(2, iter([1, 2]), "order")  # any iterable, even a one-shot one
    with pytest.raises(ValueError, match=r"line_search must be one of 'zoom', 'backtracking'; "):
        check_choice("armijo", ("zoom", "backtracking"), "line_search")
    with pytest.raises(ValueError, match="got 'ZOOM'"):
        check_choice("ZOOM", ("zoom",), "line_search")


def test_unknown_options_names_every_unknown_key():
    check_unknown_options({"tol": 1.0}, ("tol", "maxiter"), "options")
    check_unknown_options({}, ("tol",), "options")
    message = r"unknown options: bogus, zzz; expected some of maxiter, tol"
    with pytest.raises(ValueError, match=message):
        check_unknown_options({"zzz": 1, "tol": 1.0, "bogus": 2}, ("tol", "maxiter"), "options")


# --------------------------------------------------------------------------------------------
# check_positive / check_int_at_least


@pytest.mark.parametrize("value", [1e-3, 1, np.float32(0.5), np.int64(2), 1e300])
def test_positive_accepts(value):
    check_positive(value, "tolerance")


@pytest.mark.parametrize("value", [0, 0.0, -1e-9, math.inf, math.nan, -math.inf])
def test_positive_rejects_values(value):
    with pytest.raises(ValueError, match="tolerance must be a finite number > 0"):
        check_positive(value, "tolerance")


def test_positive_allow_zero():
    check_positive(0.0, "decay", allow_zero=True)
    with pytest.raises(ValueError, match="decay must be a finite number >= 0, got -1"):
        check_positive(-1, "decay", allow_zero=True)
    with pytest.raises(ValueError, match=">= 0"):
        check_positive(math.inf, "decay", allow_zero=True)


@pytest.mark.parametrize("value", [True, "1e-3", None, [1.0], jnp.ones(2)])
def test_positive_rejects_types(value):
    with pytest.raises(TypeError, match="tolerance must be a number"):
        check_positive(value, "tolerance")


@pytest.mark.parametrize(("value", "minimum"), [(10, 1), (0, 0), (np.int32(5), 5), (-3, -3)])
def test_int_at_least_accepts(value, minimum):
    check_int_at_least(value, minimum, "max_iterations")


def test_int_at_least_rejects():
    with pytest.raises(ValueError, match="max_iterations must be >= 1, got 0"):
        check_int_at_least(0, 1, "max_iterations")
    for bad in (1.0, True, "3", None, np.float64(2.0)):
        with pytest.raises(TypeError, match="max_iterations must be an int"):
            check_int_at_least(bad, 1, "max_iterations")


# --------------------------------------------------------------------------------------------
# config_from_dict


@dataclasses.dataclass(frozen=True)
class SolverConfig:
    tolerance: float = 1e-6
    max_steps: int = 100

    def __post_init__(self):
        check_positive(self.tolerance, "tolerance")
        check_int_at_least(self.max_steps, 1, "max_steps")


def test_config_from_dict_builds_frozen_hashable_config():
    config = config_from_dict(SolverConfig, {"tolerance": 1e-8})
    assert config == SolverConfig(tolerance=1e-8, max_steps=100)
    assert hash(config) == hash(SolverConfig(tolerance=1e-8))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.tolerance = 1.0  # type: ignore[misc]
    assert config_from_dict(SolverConfig, {}) == SolverConfig()


def test_config_from_dict_rejects_unknown_key_naming_it():
    with pytest.raises(ValueError, match=r"unknown options for SolverConfig: tol\b") as info:
        config_from_dict(SolverConfig, {"tol": 1e-3, "max_steps": 5})
    assert "max_steps" in str(info.value) and "tolerance" in str(info.value)  # the valid names
    with pytest.raises(ValueError, match="learning_rate, momentum"):
        config_from_dict(SolverConfig, {"momentum": 0.9, "learning_rate": 0.1})


def test_config_from_dict_runs_validation():
    with pytest.raises(ValueError, match="tolerance must be a finite number > 0"):
        config_from_dict(SolverConfig, {"tolerance": -1.0})
    with pytest.raises(TypeError, match="max_steps must be an int"):
        config_from_dict(SolverConfig, {"max_steps": 2.5})


@pytest.mark.parametrize("not_a_class", [dict, SolverConfig(), "SolverConfig", None])
def test_config_from_dict_needs_a_dataclass_type(not_a_class):
    with pytest.raises(TypeError, match="config_class must be a dataclass type"):
        config_from_dict(not_a_class, {})
