"""Tests for the standard problem families of opifex.core.

References are independent of the code under test: numpy / scipy implementations, closed-form
solutions and central finite differences, all in float64 with the tolerances stated inline.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from jax.flatten_util import ravel_pytree

from opifex.core import SolveStatus, TaskFamily, run_solver
from opifex.core.families import (
    BurgersFamily,
    BurgersTask,
    LassoFamily,
    LogisticRegressionFamily,
    PoissonFamily,
    ProximalGradient,
    QuadraticFamily,
    RosenbrockFamily,
    ScaledFamily,
    SinusoidFamily,
    TeacherStudentMLPFamily,
    fista,
    ista,
    lasso_objective,
    soft_threshold,
)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _keys(seed: int, n: int = 8) -> jax.Array:
    """``n`` keys from consecutive seeds (``jax.random.key`` needs no threefry compile)."""
    return jax.vmap(jax.random.key)(jnp.arange(1000 * seed, 1000 * seed + n))


# --------------------------------------------------------------------------------------------
# every family: jit + vmap over 8 keys, shapes, determinism, finite loss and gradients


FAMILIES = {
    "quadratic": QuadraticFamily(dimension=5),
    "rosenbrock": RosenbrockFamily(dimension=4),
    "lasso": LassoFamily(),
    "logistic": LogisticRegressionFamily(num_points=32, dimension=3, batch_size=8),
    "mlp": TeacherStudentMLPFamily(),
    "sinusoid": SinusoidFamily(),
    "poisson": PoissonFamily(num_modes=3, num_collocation=16, hidden_sizes=(8,)),
    "burgers": BurgersFamily(num_collocation=16, num_initial=8, num_boundary=8, hidden_sizes=(8,)),
}


def _pipeline(family):
    def run(task_key, init_key, loss_key):
        task = family.sample(task_key)
        params = family.init(init_key, task)
        loss, grad = jax.value_and_grad(family.loss)(params, task, loss_key)
        return task, params, loss, grad

    return run


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_jit_vmap_shapes_determinism(name):
    family = FAMILIES[name]
    assert isinstance(family, TaskFamily)
    assert hash(family) == hash(dataclasses.replace(family))

    run = _pipeline(family)
    batched = jax.jit(jax.vmap(run))
    keys = (_keys(0), _keys(1), _keys(2))
    task, params, loss, grad = batched(*keys)

    # shapes: the batch of 8 is the single-task shapes with a leading 8 (no compile needed)
    single = jax.eval_shape(run, *(k[0] for k in keys))
    batched_shapes = jax.tree.map(lambda x: x.shape, (task, params, loss, grad))
    assert batched_shapes == jax.tree.map(lambda s: (8, *s.shape), single)
    assert jax.tree.structure(grad) == jax.tree.structure(params)
    assert loss.shape == (8,)

    # finite at init
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves((loss, grad)))

    # deterministic given the keys, no recompilation on a second call
    again = batched(*keys)
    jax.tree.map(np.testing.assert_array_equal, (task, params, loss, grad), again)
    assert batched._cache_size() == 1

    # different keys give different tasks; the 8 tasks of a batch differ from each other
    other_task = batched(_keys(3), *keys[1:])[0]
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(task), jax.tree.leaves(other_task), strict=True)
    )
    first_leaf = np.asarray(jax.tree.leaves(task)[0])
    assert not np.array_equal(first_leaf[0], first_leaf[1])


def test_family_is_a_static_jit_argument():
    sample = jax.jit(lambda family, key: family.sample(key), static_argnums=0)
    key = jax.random.key(3)
    first = sample(RosenbrockFamily(dimension=2), key)
    # an equal family is the same static argument: same cache entry, same result
    np.testing.assert_array_equal(first.start, sample(RosenbrockFamily(dimension=2), key).start)
    assert sample._cache_size() == 1


def test_sequence_fields_are_normalised_to_tuples():
    family = SinusoidFamily(hidden_sizes=[40, 40])
    assert family == SinusoidFamily()
    assert hash(family) == hash(SinusoidFamily())
    assert TeacherStudentMLPFamily(layer_sizes=[8, 16, 4]).layer_sizes == (8, 16, 4)
    assert QuadraticFamily(dimension=3).num_rows == 3


BAD_CONFIGS = [
    (QuadraticFamily, {"dimension": -1}),
    (QuadraticFamily, {"dimension": 0}),
    (QuadraticFamily, {"dimension": 3, "num_rows": 0}),
    (QuadraticFamily, {"dimension": 3, "sampler": "cauchy"}),
    (QuadraticFamily, {"dimension": 3, "condition_number": 0.5}),
    (QuadraticFamily, {"dimension": 3, "condition_number": -2.0}),
    (QuadraticFamily, {"dimension": 3, "condition_number": math.inf}),
    (QuadraticFamily, {"dimension": 3, "num_rows": 2, "condition_number": 10.0}),
    (QuadraticFamily, {"dimension": 1, "condition_number": 10.0}),
    (RosenbrockFamily, {"dimension": 3}),
    (RosenbrockFamily, {"dimension": -2}),
    (RosenbrockFamily, {"coefficient_range": (1.5, 0.5)}),
    (RosenbrockFamily, {"coefficient_range": (0.5, math.nan)}),
    (RosenbrockFamily, {"coefficient_range": (0.5,)}),
    (RosenbrockFamily, {"curvature": 0.0}),
    (RosenbrockFamily, {"start_noise": -0.1}),
    (LassoFamily, {"num_rows": 0}),
    (LassoFamily, {"dimension": -5}),
    (LassoFamily, {"l1_penalty": -0.1}),
    (LassoFamily, {"sparsity": 0.0}),
    (LassoFamily, {"sparsity": 1.5}),
    (LassoFamily, {"noise_std": -1.0}),
    (LogisticRegressionFamily, {"num_points": 0}),
    (LogisticRegressionFamily, {"dimension": -1}),
    (LogisticRegressionFamily, {"l2_penalty": -1e-3}),
    (LogisticRegressionFamily, {"noise_std": -1.0}),
    (LogisticRegressionFamily, {"batch_size": 0}),
    (LogisticRegressionFamily, {"num_points": 10, "batch_size": 11}),
    (TeacherStudentMLPFamily, {"layer_sizes": (8,)}),
    (TeacherStudentMLPFamily, {"layer_sizes": (8, 0, 4)}),
    (TeacherStudentMLPFamily, {"layer_sizes": (8, -3, 4)}),
    (TeacherStudentMLPFamily, {"num_points": 0}),
    (TeacherStudentMLPFamily, {"num_points": 16, "batch_size": 32}),
    (TeacherStudentMLPFamily, {"activation": "sigmoid"}),
    (SinusoidFamily, {"num_points": 0}),
    (SinusoidFamily, {"amplitude_range": (-1.0, 5.0)}),
    (SinusoidFamily, {"phase_range": (3.0, 1.0)}),
    (SinusoidFamily, {"input_range": (-math.inf, 5.0)}),
    (SinusoidFamily, {"hidden_sizes": (40, 0)}),
    (PoissonFamily, {"num_modes": 0}),
    (PoissonFamily, {"num_collocation": -1}),
    (PoissonFamily, {"hidden_sizes": ()}),
    (PoissonFamily, {"boundary_weight": -1.0}),
    (BurgersFamily, {"viscosity_range": (0.0, 0.05)}),
    (BurgersFamily, {"viscosity_range": (-0.01, 0.05)}),
    (BurgersFamily, {"viscosity_range": (0.05, 0.005)}),
    (BurgersFamily, {"viscosity_range": (0.005, math.inf)}),
    (BurgersFamily, {"num_collocation": 0}),
    (BurgersFamily, {"num_initial": 0}),
    (BurgersFamily, {"num_boundary": -4}),
    (BurgersFamily, {"hidden_sizes": ()}),
    (BurgersFamily, {"initial_weight": -1.0}),
    (BurgersFamily, {"boundary_weight": math.nan}),
]


@pytest.mark.parametrize(
    ("cls", "kwargs"), BAD_CONFIGS, ids=[f"{c.__name__}-{k}" for c, k in BAD_CONFIGS]
)
def test_bad_config_raises_value_error(cls, kwargs):
    with pytest.raises(ValueError):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (QuadraticFamily, {"dimension": 2.5}),
        (LassoFamily, {"l1_penalty": "0.1"}),
        (TeacherStudentMLPFamily, {"layer_sizes": 8}),
        (BurgersFamily, {"viscosity_range": ("a", 0.1)}),
    ],
)
def test_wrong_config_types_raise_type_error(cls, kwargs):
    with pytest.raises(TypeError):
        cls(**kwargs)


def test_families_are_frozen():
    family = QuadraticFamily(dimension=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        family.dimension = 4


# --------------------------------------------------------------------------------------------
# The tests below compile one or two programs each: XLA:CPU takes a few tenths of a second to
# compile each random draw in a program, so tasks are drawn inside the test's jitted function,
# or built in numpy where the test is not about sampling.


# --------------------------------------------------------------------------------------------
# finite-difference gradient checks (float64)


def _assert_grad_matches_central_differences(loss_fn, params, step=1e-6, atol=1e-7):
    """Full central-difference gradient of a pytree function, coordinate by coordinate."""
    flat, unravel = ravel_pytree(params)
    value_and_grad = jax.jit(jax.value_and_grad(lambda v: loss_fn(unravel(v))))
    flat = np.asarray(flat)
    analytic = np.asarray(value_and_grad(flat)[1])
    numeric = np.empty_like(analytic)
    for i, e in enumerate(step * np.eye(flat.size)):
        plus, minus = value_and_grad(flat + e)[0], value_and_grad(flat - e)[0]
        numeric[i] = (float(plus) - float(minus)) / (2 * step)
    # central differences: truncation O(step^2 f''') ~ 1e-12, rounding O(eps |f| / step) ~ 1e-10
    scale = max(1.0, float(np.max(np.abs(analytic))))
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=atol * scale)


def _random_like(shapes, rng):
    """Float64 ``N(0, 1)`` arrays in the pytree structure of ``jax.eval_shape`` output."""
    return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape)), shapes)


@pytest.mark.parametrize(
    "family",
    [
        QuadraticFamily(dimension=6, num_rows=9),
        LogisticRegressionFamily(num_points=40, dimension=4, batch_size=10),
        TeacherStudentMLPFamily(layer_sizes=(3, 6, 2), num_points=30, batch_size=8),
        TeacherStudentMLPFamily(
            layer_sizes=(3, 6, 2), num_points=30, batch_size=None, activation="relu"
        ),
    ],
    ids=["quadratic", "logistic-minibatch", "mlp-tanh-minibatch", "mlp-relu-full-batch"],
)
def test_gradients_match_finite_differences(x64, family):
    # random tasks and params of the family's structure (built in numpy: drawing them with the
    # family would only add compile time; sampling is tested above)
    rng = np.random.default_rng(70)
    task = _random_like(jax.eval_shape(family.sample, jax.random.key(0)), rng)
    if isinstance(family, LogisticRegressionFamily):
        task = task._replace(labels=jnp.asarray(rng.random(40) < 0.5, dtype=jnp.float64))
    params = _random_like(jax.eval_shape(family.init, jax.random.key(0), task), rng)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(params))
    loss_key = jax.random.key(72)
    _assert_grad_matches_central_differences(lambda p: family.loss(p, task, loss_key), params)


# --------------------------------------------------------------------------------------------
# quadratic


def test_quadratic_condition_number_is_exact(x64):
    kappas = (10.0, 1e4)
    families = [
        QuadraticFamily(dimension=6, num_rows=9, condition_number=10.0),
        QuadraticFamily(dimension=6, num_rows=9, sampler="uniform", condition_number=1e4),
    ]
    tasks = jax.jit(lambda keys: [jax.vmap(f.sample)(keys) for f in families])(_keys(2, 3))
    # with a condition number, the sampler sets the distribution of y only
    assert np.abs(np.asarray(tasks[1].target)).max() <= 1.0
    assert np.abs(np.asarray(tasks[0].target)).max() > 1.0
    for family, kappa, task in zip(families, kappas, tasks, strict=True):
        expected = np.exp(np.linspace(0.0, -0.5 * np.log(kappa), 6))  # log-spaced, ||W||_2 = 1
        np.testing.assert_allclose(family.singular_values(), expected, rtol=1e-12)
        for matrix in np.asarray(task.matrix):
            np.testing.assert_allclose(np.linalg.cond(matrix.T @ matrix), kappa, rtol=1e-9)
            singular = np.linalg.svd(matrix, compute_uv=False)
            np.testing.assert_allclose(singular, expected, rtol=1e-10)
    with pytest.raises(ValueError, match="condition_number"):
        QuadraticFamily(dimension=3).singular_values()


def test_quadratic_loss_optimum_and_samplers(x64):
    gaussian = QuadraticFamily(dimension=5, num_rows=12)
    uniform = dataclasses.replace(gaussian, sampler="uniform")

    @jax.jit
    def compute(keys):
        tasks = jax.vmap(gaussian.sample)(keys)
        task = jax.tree.map(lambda x: x[0], tasks)
        theta = gaussian.init(keys[1], task)
        optimum = gaussian.optimum(task)
        return (
            tasks,
            theta,
            gaussian.loss(theta, task, None),
            optimum,
            jax.grad(gaussian.loss)(optimum, task, None),
            jax.vmap(uniform.sample)(keys),
        )

    tasks, theta, loss, optimum, grad, uniforms = compute(_keys(8, 64))
    W, y, t = np.asarray(tasks.matrix[0]), np.asarray(tasks.target[0]), np.asarray(theta)
    np.testing.assert_allclose(loss, np.sum((W @ t - y) ** 2), rtol=1e-12)
    np.testing.assert_allclose(optimum, np.linalg.lstsq(W, y, rcond=None)[0], rtol=1e-10)
    np.testing.assert_allclose(grad, 0.0, atol=1e-10)

    # 64 x 72 entries each: N(0, 1), and U[-1, 1] (variance 1/3)
    entries = np.concatenate([np.ravel(tasks.matrix), np.ravel(tasks.target)])
    np.testing.assert_allclose(entries.var(), 1.0, rtol=0.1)
    np.testing.assert_allclose(entries.mean(), 0.0, atol=0.05)
    entries = np.concatenate([np.ravel(uniforms.matrix), np.ravel(uniforms.target)])
    assert entries.min() >= -1.0 and entries.max() <= 1.0
    np.testing.assert_allclose(entries.var(), 1 / 3, rtol=0.1)


# --------------------------------------------------------------------------------------------
# Rosenbrock


def _numpy_rosenbrock(x, a, b=100.0):
    return sum(b * (x[i + 1] - x[i] ** 2) ** 2 + (a - x[i]) ** 2 for i in range(0, len(x), 2))


def test_rosenbrock_values_and_optimum(x64):
    fixed = RosenbrockFamily(dimension=4, coefficient_range=(1.0, 1.0), start_noise=0.0)
    family = RosenbrockFamily(dimension=6)

    @jax.jit
    def compute(keys):
        task = fixed.sample(keys[0])
        tasks = jax.vmap(family.sample)(keys)
        optima = jax.vmap(family.optimum)(tasks)
        at_start = jax.vmap(family.loss, (0, 0, None))(tasks.start, tasks, None)
        at_optimum = jax.vmap(family.loss, (0, 0, None))(optima, tasks, None)
        grad_at_optimum = jax.vmap(jax.grad(family.loss), (0, 0, None))(optima, tasks, None)
        fixed_values = (fixed.init(keys[1], task), fixed.loss(task.start, task, None))
        return task, fixed_values, tasks, optima, at_start, at_optimum, grad_at_optimum

    task, (x0, f0), tasks, optima, at_start, at_optimum, grad = compute(_keys(3, 64))
    np.testing.assert_array_equal(task.start, [-1.2, 1.0, -1.2, 1.0])
    np.testing.assert_array_equal(x0, task.start)  # init is the task's start
    np.testing.assert_allclose(f0, 2 * 24.2, rtol=1e-12)  # textbook f(-1.2, 1) = 24.2 per pair
    np.testing.assert_array_equal(fixed.optimum(task), np.ones(4))

    a = np.asarray(tasks.coefficient)
    assert a.min() >= 0.5 and a.max() <= 1.5 and a.std() > 0.1
    noise = np.asarray(tasks.start) - np.tile([-1.2, 1.0], 3)
    np.testing.assert_allclose(noise.std(), 0.1, rtol=0.2)
    for i in range(8):
        start = np.asarray(tasks.start[i])
        np.testing.assert_allclose(at_start[i], _numpy_rosenbrock(start, a[i]), rtol=1e-12)
        np.testing.assert_allclose(optima[i], [a[i], a[i] ** 2] * 3, rtol=1e-14)
    np.testing.assert_allclose(at_optimum, 0.0, atol=1e-25)  # 0 up to rounding of a**2
    np.testing.assert_allclose(grad, 0.0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# LASSO, ISTA and FISTA


def _lasso_coordinate_descent(A, b, lam, sweeps=100_000, tol=1e-15):
    """Cyclic coordinate descent in numpy: an independent LASSO reference."""
    x = np.zeros(A.shape[1])
    residual = b.copy()
    col_sq = np.sum(A**2, axis=0)
    for _ in range(sweeps):
        largest_change = 0.0
        for j in range(A.shape[1]):
            rho = A[:, j] @ residual + col_sq[j] * x[j]
            new = np.sign(rho) * max(abs(rho) - lam, 0.0) / col_sq[j]
            if new != x[j]:
                residual -= A[:, j] * (new - x[j])
                largest_change = max(largest_change, abs(new - x[j]))
                x[j] = new
        if largest_change < tol:
            break
    return x


def _assert_lasso_kkt(A, b, lam, x, atol):
    """0 in A^T (A x - b) + lam * d||x||_1."""
    correlation = A.T @ (b - A @ x)
    active = np.abs(x) > 1e-9
    np.testing.assert_allclose(correlation[active], lam * np.sign(x[active]), atol=atol)
    assert np.all(np.abs(correlation[~active]) <= lam + atol)


@pytest.mark.e2e
def test_lasso_sampling_and_solvers_against_coordinate_descent(x64):
    family = LassoFamily(num_rows=25, dimension=50, sparsity=0.1, noise_std=0.05)
    penalties = jnp.array([0.01, 0.05, 0.1, 1e3])

    @jax.jit
    def compute(keys):
        tasks = jax.vmap(family.sample)(keys)
        x0 = family.init(keys[0], jax.tree.map(lambda x: x[0], tasks))
        problems = jax.tree.map(lambda x: x[:4], tasks)
        # one vmapped solve per method: 4 tasks x 4 penalties (a traced l1_penalty)
        solve = lambda method: jax.vmap(lambda A, b, lam: method(A, b, lam, 10_000))  # noqa: E731
        return (
            tasks,
            x0,
            problems,
            solve(fista)(problems.matrix, problems.target, penalties),
            solve(ista)(problems.matrix, problems.target, penalties),
        )

    tasks, x0, problems, fast, slow = compute(_keys(14, 200))

    # sampling: unit-norm columns, Bernoulli(0.1) support, b = A x_true + N(0, 0.05^2) noise
    A, x_true = np.asarray(tasks.matrix), np.asarray(tasks.ground_truth)
    np.testing.assert_allclose(np.linalg.norm(A, axis=1), 1.0, rtol=1e-12)
    assert abs(np.mean(x_true != 0) - 0.1) < 0.02  # 10,000 Bernoulli(0.1) draws: sd 0.003
    noise = np.asarray(tasks.target) - np.einsum("kij,kj->ki", A, x_true)
    np.testing.assert_allclose(noise.std(), 0.05, rtol=0.05)  # 5,000 draws: sd 1%
    np.testing.assert_array_equal(x0, np.zeros(50))

    fast_losses, slow_losses = fast.trace["value"], slow.trace["value"]
    assert fast.params.shape == (4, 50) and fast_losses.shape == slow_losses.shape == (4, 10_001)
    np.testing.assert_array_equal(fast.num_steps, 10_000)
    np.testing.assert_array_equal(fast.status, SolveStatus.MAX_STEPS_REACHED)
    np.testing.assert_array_equal(fast.params[-1], 0.0)  # a huge penalty keeps x = 0
    for i, lam in enumerate(np.asarray(penalties[:3])):
        A, b = np.asarray(problems.matrix[i]), np.asarray(problems.target[i])
        reference = _lasso_coordinate_descent(A, b, lam)
        _assert_lasso_kkt(A, b, lam, reference, atol=1e-12)
        f_star = 0.5 * np.sum((A @ reference - b) ** 2) + lam * np.sum(np.abs(reference))

        np.testing.assert_allclose(fast.params[i], reference, rtol=0, atol=1e-6)
        _assert_lasso_kkt(A, b, lam, np.asarray(fast.params[i]), atol=1e-6)
        np.testing.assert_allclose(fast_losses[i, -1], f_star, rtol=1e-10)
        np.testing.assert_allclose(fast.value[i], f_star, rtol=1e-10)
        np.testing.assert_allclose(fast_losses[i, 0], 0.5 * b @ b, rtol=1e-12)  # x0 = 0
        # the gradient mapping vanishes at the minimiser (and only there)
        assert float(fast.grad_norm[i]) < 1e-8 < float(fast.trace["grad_norm"][i, 0])

        # ISTA with step 1/L never increases the objective, and converges more slowly
        assert np.all(np.diff(np.asarray(slow_losses[i])) <= 1e-12)
        np.testing.assert_allclose(slow.params[i], reference, atol=1e-4)
        assert fast_losses[i, 50] - f_star < slow_losses[i, 50] - f_star


def test_ista_step_is_one_over_spectral_norm_squared(x64):
    # A = diag(2, 1): L = ||A||_2^2 = 4, so x1 = soft(A^T b / 4, lam / 4) from x0 = 0
    A = jnp.diag(jnp.array([2.0, 1.0]))
    b = jnp.array([3.0, 2.0])
    first_steps = jax.jit(lambda A, b: (ista(A, b, 0.4, 1), fista(A, b, 0.4, 1)))
    result, accelerated = first_steps(A, b)
    np.testing.assert_allclose(result.params, [6.0 / 4 - 0.1, 2.0 / 4 - 0.1], rtol=1e-14)
    x = np.asarray(result.params)
    objective = 0.5 * np.sum((np.diag([2.0, 1.0]) @ x - [3.0, 2.0]) ** 2) + 0.4 * np.abs(x).sum()
    np.testing.assert_allclose(result.trace["value"], [0.5 * (9.0 + 4.0), objective], rtol=1e-14)
    # the gradient mapping of the step: ||x1 - x0|| / t with t = 1/4
    np.testing.assert_allclose(result.grad_norm, 4.0 * np.linalg.norm(x), rtol=1e-14)
    np.testing.assert_allclose(accelerated.params, result.params)  # FISTA starts with ISTA
    np.testing.assert_array_equal(
        soft_threshold(jnp.array([-3.0, -0.5, 0.0, 0.5, 3.0]), 1.0), [-2.0, 0.0, 0.0, 0.0, 2.0]
    )
    # A x - b = (2, -2) - (3, 2): 0.5 * 17 + 0.5 * 3
    np.testing.assert_allclose(lasso_objective(jnp.array([1.0, -2.0]), A, b, 0.5), 10.0)


def test_proximal_gradient_stops_at_its_tolerance_and_old_keyword_warns(x64):
    A, b = jnp.eye(2), jnp.array([3.0, -0.5])  # minimiser (2, 0) after one ISTA step
    result = run_solver(ProximalGradient(False, atol=1e-12), jnp.zeros(2), A, b, 1.0, max_steps=50)
    assert result.status_name == "SUCCESS"
    assert int(result.num_steps) == 2  # the step that lands on (2, 0), then one that stays
    np.testing.assert_array_equal(result.params, [2.0, 0.0])
    with pytest.warns(DeprecationWarning, match="num_iterations"):
        old = fista(A, b, 1.0, num_iterations=3)
    assert old.trace["value"].shape == (4,)


def test_lasso_solver_bad_arguments():
    A, b = jnp.ones((3, 2)), jnp.ones(3)
    with pytest.raises(ValueError, match="target"):
        ista(A, jnp.ones(4), 0.1, 10)
    with pytest.raises(ValueError, match="matrix"):
        fista(jnp.ones(3), b, 0.1, 10)
    with pytest.raises(ValueError, match="max_steps"):
        ista(A, b, 0.1, -1)
    with pytest.raises(ValueError, match="l1_penalty"):
        fista(A, b, -0.1, 10)
    with pytest.raises(ValueError, match="x0"):
        fista(A, b, 0.1, 10, x0=jnp.zeros(3))


# --------------------------------------------------------------------------------------------
# logistic regression


def _numpy_logistic(params_flat, X, y, lam):
    w, bias = params_flat[:-1], params_flat[-1]
    z = X @ w + bias
    value = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * lam * w @ w
    sigma = 1.0 / (1.0 + np.exp(-z))
    grad = np.concatenate([X.T @ (sigma - y) / len(y) + lam * w, [np.mean(sigma - y)]])
    return value, grad


def test_logistic_regression_against_scipy(x64):
    # noise-free labels: the data are separable, the L2 penalty keeps the optimum finite
    family = LogisticRegressionFamily(num_points=80, dimension=4, l2_penalty=0.05, noise_std=0.0)
    everything = dataclasses.replace(family, batch_size=80)

    @jax.jit
    def compute(keys):
        tasks = jax.vmap(family.sample)(keys)
        task = jax.tree.map(lambda x: x[0], tasks)
        params = family.init(keys[1], task)
        return (
            tasks,
            params,
            family.loss(params, task, None),
            everything.loss(params, task, keys[2]),
        )

    tasks, params, loss, minibatch_loss = compute(_keys(21, 16))
    X, y = np.asarray(tasks.inputs[0]), np.asarray(tasks.labels[0])
    assert set(np.unique(y)) == {0.0, 1.0}
    solution = scipy.optimize.minimize(
        _numpy_logistic,
        np.zeros(5),
        args=(X, y, 0.05),
        jac=True,
        method="BFGS",
        options={"gtol": 1e-12},
    )
    point = {"weights": jnp.asarray(solution.x[:-1]), "bias": jnp.asarray(solution.x[-1])}
    task = jax.tree.map(lambda x: x[0], tasks)
    value, grad = jax.jit(jax.value_and_grad(family.loss))(point, task, None)
    # the scipy minimiser is stationary for our loss, and the values agree
    np.testing.assert_allclose(value, solution.fun, rtol=1e-12)
    np.testing.assert_allclose(ravel_pytree(grad)[0], 0.0, atol=1e-8)
    flat = np.concatenate([np.asarray(params["weights"]), [float(params["bias"])]])
    np.testing.assert_allclose(loss, _numpy_logistic(flat, X, y, 0.05)[0], rtol=1e-12)
    # a minibatch of every point (shuffled) is the full batch
    np.testing.assert_allclose(minibatch_loss, loss, rtol=1e-12)

    # labels from a hyperplane through 0: balanced on average, and (noise-free) separable
    assert abs(float(np.mean(tasks.labels)) - 0.5) < 0.05
    for X, y in zip(np.asarray(tasks.inputs), np.asarray(tasks.labels), strict=True):
        signs = 2 * y - 1  # a linear program finds w with (2y - 1) x.w >= 1 for all points
        lp = scipy.optimize.linprog(
            np.zeros(4), A_ub=-(signs[:, None] * X), b_ub=-np.ones(len(y)), bounds=(None, None)
        )
        assert lp.status == 0


# --------------------------------------------------------------------------------------------
# teacher-student MLP


def test_mlp_teacher_student(x64):
    family = TeacherStudentMLPFamily(layer_sizes=(8, 16, 4), num_points=512, batch_size=32)
    full = dataclasses.replace(family, batch_size=None)

    @jax.jit
    def compute(task_key, init_key, loss_keys):
        task = family.sample(task_key)
        params = family.init(init_key, task)
        return (
            task,
            params,
            full.loss(family.optimum(task), task, None),
            jax.vmap(family.loss, (None, None, 0))(params, task, loss_keys),
            full.loss(params, task, None),
        )

    task, params, at_teacher, batch_losses, full_loss = compute(
        jax.random.key(31), jax.random.key(32), _keys(33, 64)
    )
    assert task.inputs.shape == (512, 8) and task.targets.shape == (512, 4)
    assert [w.shape for w in params["weights"]] == [(8, 16), (16, 4)]
    assert [b.shape for b in params["biases"]] == [(16,), (4,)]
    np.testing.assert_array_equal(params["biases"][0], 0.0)
    # an independent numpy forward pass of the teacher
    W1, W2 = (np.asarray(w) for w in task.teacher["weights"])
    b1, b2 = (np.asarray(b) for b in task.teacher["biases"])
    X = np.asarray(task.inputs)
    expected = np.tanh(X @ W1 + b1) @ W2 + b2
    np.testing.assert_allclose(task.targets, expected, rtol=1e-12, atol=1e-15)
    S1, S2 = (np.asarray(w) for w in params["weights"])  # zero student biases
    student_errors = np.mean((np.tanh(X @ S1) @ S2 - expected) ** 2, axis=1)
    np.testing.assert_allclose(full_loss, student_errors.mean(), rtol=1e-12)
    assert float(at_teacher) < 1e-25
    # minibatch losses differ with the key and are unbiased: mean of 64 close to the full loss
    batch_losses = np.asarray(batch_losses)
    assert len(set(batch_losses.tolist())) == 64
    standard_error = student_errors.std() / np.sqrt(32) / np.sqrt(64)
    assert abs(batch_losses.mean() - float(full_loss)) < 5 * standard_error


# --------------------------------------------------------------------------------------------
# sinusoid


def test_sinusoid(x64):
    family = SinusoidFamily(num_points=10)

    @jax.jit
    def compute(keys):
        tasks = jax.vmap(family.sample)(keys)
        task = jax.tree.map(lambda x: x[0], tasks)
        params = family.init(keys[1], task)
        return (
            tasks,
            params,
            family.sample_points(keys[2], task),
            family.loss(params, task, keys[2]),
            family.support_query(keys[3], task, 5, 20),
        )

    tasks, params, (x, y), loss, (xs, ys, xq, yq) = compute(_keys(41, 256))
    amplitude, phase = np.asarray(tasks.amplitude), np.asarray(tasks.phase)
    assert amplitude.min() >= 0.1 and amplitude.max() <= 5.0
    assert phase.min() >= 0.0 and phase.max() <= np.pi
    np.testing.assert_allclose(amplitude.mean(), 2.55, atol=0.3)  # U[0.1, 5]: sd/16 = 0.09
    np.testing.assert_allclose(phase.mean(), np.pi / 2, atol=0.2)

    assert x.shape == y.shape == (10, 1)
    assert float(jnp.min(x)) >= -5.0 and float(jnp.max(x)) <= 5.0
    np.testing.assert_allclose(y, amplitude[0] * np.sin(np.asarray(x) - phase[0]), rtol=1e-12)
    assert [w.shape for w in params["weights"]] == [(1, 40), (40, 40), (40, 1)]
    # the loss is the MSE of the network on the points its key draws
    W1, W2, W3 = (np.asarray(w) for w in params["weights"])
    relu = lambda z: np.maximum(z, 0.0)  # noqa: E731
    prediction = relu(relu(np.asarray(x) @ W1) @ W2) @ W3  # zero biases at init
    np.testing.assert_allclose(loss, np.mean((prediction - np.asarray(y)) ** 2), rtol=1e-12)

    assert xs.shape == ys.shape == (5, 1) and xq.shape == yq.shape == (20, 1)
    np.testing.assert_allclose(yq, amplitude[0] * np.sin(np.asarray(xq) - phase[0]), rtol=1e-12)
    assert not np.array_equal(xs, xq[:5])
    with pytest.raises(ValueError, match="num_points"):
        family.sample_points(jax.random.key(0), jax.tree.map(lambda v: v[0], tasks), 0)


# --------------------------------------------------------------------------------------------
# Poisson (physics-informed)


def test_poisson_residual_of_exact_solution_vanishes(x64):
    family = PoissonFamily(num_modes=5)
    x = jnp.linspace(0.0, 1.0, 41)

    @jax.jit
    def compute(key):
        task = family.sample(key)
        exact = family.pde_residual(lambda s: family.exact_solution(task, s), task, x)
        # u = x (1 - x): -u'' = 2, so the residual is 2 - f(x)
        quadratic = family.pde_residual(lambda s: s * (1.0 - s), task, x)
        return task, exact, quadratic, family.forcing(task, x), family.exact_solution(task, x)

    task, exact, quadratic, forcing, solution = compute(jax.random.key(51))
    np.testing.assert_allclose(exact, 0.0, atol=1e-12)
    a, k, xs = np.asarray(task.coefficients), np.arange(1, 6), np.asarray(x)
    f = np.sin(np.pi * np.outer(xs, k)) @ a
    np.testing.assert_allclose(forcing, f, atol=1e-12)
    np.testing.assert_allclose(quadratic, 2.0 - f, atol=1e-12)
    u = np.sin(np.pi * np.outer(xs, k)) @ (a / (k * np.pi) ** 2)
    np.testing.assert_allclose(solution, u, atol=1e-14)
    np.testing.assert_allclose(np.asarray(solution)[[0, -1]], 0.0, atol=1e-15)  # u(0) = u(1) = 0


def test_poisson_network_residual_and_loss(x64):
    family = PoissonFamily(num_modes=3, num_collocation=32, hidden_sizes=(8, 8))

    rng = np.random.default_rng(52)
    task = _random_like(jax.eval_shape(family.sample, jax.random.key(0)), rng)
    params = _random_like(jax.eval_shape(family.init, jax.random.key(0), task), rng)

    @jax.jit
    def compute(params, task, loss_key):
        points = family.collocation_points(loss_key)
        residual = family.pde_residual(lambda s: family.apply(params, s), task, points)
        return points, residual, family.loss(params, task, loss_key)

    x, residual, loss = compute(params, task, jax.random.key(54))
    assert x.shape == (32,) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # u'' by central second differences of the network: error O(h^2) + O(eps / h^2)
    h = 1e-4
    u = jax.jit(family.apply)
    u_xx = (u(params, x + h) - 2 * u(params, x) + u(params, x - h)) / h**2
    np.testing.assert_allclose(residual, -u_xx - np.asarray(family.forcing(task, x)), atol=1e-5)
    # the loss: mean residual^2 at the collocation points + boundary_weight * mean u(0, 1)^2
    boundary = np.asarray(u(params, jnp.array([0.0, 1.0])))
    expected = np.mean(np.asarray(residual) ** 2) + np.mean(boundary**2)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Burgers (physics-informed)


def test_burgers_residual_of_exact_solutions(x64):
    family = BurgersFamily()
    x, t = jnp.meshgrid(jnp.linspace(-1.0, 1.0, 21), jnp.linspace(0.0, 1.0, 11))

    @jax.jit
    def compute(key):
        task = family.sample(key)
        nu = task.viscosity

        def travelling_wave(x, t, a=0.5, c=0.3):
            # u = c - a tanh(a (x - c t) / (2 nu)) solves u_t + u u_x = nu u_xx exactly
            return c - a * jnp.tanh(a * (x - c * t) / (2.0 * nu))

        def cole_hopf(x, t, eps=0.5):
            # u = -2 nu phi_x / phi, phi = 1 + eps exp(-nu pi^2 t) cos(pi x): phi_t = nu phi_xx
            decay = eps * jnp.exp(-nu * jnp.pi**2 * t)
            return (
                2.0 * nu * jnp.pi * decay * jnp.sin(jnp.pi * x) / (1 + decay * jnp.cos(jnp.pi * x))
            )

        def polynomial(x, t):
            return x**2 * t  # residual x^2 + 2 x^3 t^2 - 2 nu t

        residuals = [
            family.pde_residual(u, task, x, t) for u in (travelling_wave, cole_hopf, polynomial)
        ]
        return task, residuals

    task, (wave, heat, poly) = compute(jax.random.key(61))
    nu = float(task.viscosity)
    assert 0.005 <= nu <= 0.05
    np.testing.assert_allclose(wave, 0.0, atol=1e-11)
    np.testing.assert_allclose(heat, 0.0, atol=1e-12)
    x, t = np.asarray(x), np.asarray(t)
    np.testing.assert_allclose(poly, x**2 + 2 * x**3 * t**2 - 2 * nu * t, atol=1e-12)


def test_burgers_network_residual_and_loss(x64):
    family = BurgersFamily(hidden_sizes=(8, 8), num_collocation=16, num_initial=8, num_boundary=8)

    rng = np.random.default_rng(62)
    task = BurgersTask(jnp.asarray(0.02))
    params = _random_like(jax.eval_shape(family.init, jax.random.key(0), task), rng)

    @jax.jit
    def compute(params, task, loss_key):
        points = family.collocation_points(loss_key)
        residual = family.pde_residual(
            lambda a, b: family.apply(params, a, b), task, points.x, points.t
        )
        return points, residual, family.loss(params, task, loss_key)

    points, residual, loss = compute(params, task, jax.random.key(64))
    x, t, x0, tb = (np.asarray(p) for p in points)
    assert x.shape == t.shape == (16,) and x0.shape == tb.shape == (8,)
    assert x.min() >= -1 and x.max() <= 1 and t.min() >= 0 and t.max() <= 1
    assert x0.min() >= -1 and x0.max() <= 1 and tb.min() >= 0 and tb.max() <= 1

    h = 1e-4
    apply = jax.jit(family.apply)
    u = lambda a, b: np.asarray(apply(params, a, b))  # noqa: E731
    u_t = (u(x, t + h) - u(x, t - h)) / (2 * h)
    u_x = (u(x + h, t) - u(x - h, t)) / (2 * h)
    u_xx = (u(x + h, t) - 2 * u(x, t) + u(x - h, t)) / h**2
    expected = u_t + u(x, t) * u_x - float(task.viscosity) * u_xx
    np.testing.assert_allclose(residual, expected, atol=1e-6)

    initial = u(x0, np.zeros(8)) + np.sin(np.pi * x0)
    boundary = np.concatenate([u(-np.ones(8), tb), u(np.ones(8), tb)])
    expected_loss = np.mean(np.asarray(residual) ** 2) + np.mean(initial**2) + np.mean(boundary**2)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)


def test_burgers_viscosity_is_log_uniform(x64):
    family = BurgersFamily(viscosity_range=(0.005, 0.05))
    fixed = BurgersFamily(viscosity_range=(0.01 / np.pi, 0.01 / np.pi))
    nu, nu_fixed = jax.jit(lambda keys: (jax.vmap(family.sample)(keys), fixed.sample(keys[0])))(
        _keys(65, 4000)
    )
    nu = np.asarray(nu.viscosity)
    assert nu.min() >= 0.005 and nu.max() <= 0.05
    # log nu ~ U[log 0.005, log 0.05]: mean at the midpoint (sd of the mean 0.01)
    np.testing.assert_allclose(np.mean(np.log(nu)), np.log(0.005 * 0.05) / 2, atol=0.05)
    assert abs(np.mean(nu < np.sqrt(0.005 * 0.05)) - 0.5) < 0.03
    np.testing.assert_allclose(nu_fixed.viscosity, 0.01 / np.pi, rtol=1e-12)
    np.testing.assert_allclose(
        BurgersFamily.initial_condition(jnp.array([-0.5, 0.0, 0.5])), [1.0, 0.0, -1.0], atol=1e-15
    )


# --------------------------------------------------------------------------------------------
# ScaledFamily


def test_scaled_family_changes_the_scale_and_nothing_else(x64):
    base = QuadraticFamily(dimension=4)
    family = ScaledFamily(base, loss_scale=0.1, param_scale=10.0)
    key = jax.random.key(7)
    task = family.sample(key)
    jax.tree.map(np.testing.assert_array_equal, task, base.sample(key))
    params = family.init(jax.random.key(8), task)
    np.testing.assert_allclose(params, 10.0 * base.init(jax.random.key(8), task), rtol=1e-15)
    # the minimiser scales with the parameters, the minimum with the loss
    optimum = 10.0 * base.optimum(task)
    np.testing.assert_allclose(
        family.loss(optimum, task, None), 0.1 * base.loss(base.optimum(task), task, None)
    )
    # chain rule: grad_scaled(p) = loss_scale / param_scale * grad_base(p / param_scale)
    grad = jax.grad(family.loss)(params, task, None)
    expected = 0.1 / 10.0 * jax.grad(base.loss)(params / 10.0, task, None)
    np.testing.assert_allclose(grad, expected, rtol=1e-13)
    assert hash(family) == hash(ScaledFamily(base, 0.1, 10.0))
    with pytest.raises(ValueError, match="loss_scale"):
        ScaledFamily(base, loss_scale=0.0)
    with pytest.raises(TypeError, match="base"):
        ScaledFamily(object())
