"""MetaOptimizer: the optax step and the quantum-aware orbital step on a closed-form problem.

The problem needs no quantum package: minimise ``trace(C^T A C)`` over ``C^T S C = I`` for a
symmetric ``A`` and a symmetric positive definite ``S``. Its minimum is the sum of the ``k``
smallest generalised eigenvalues of ``(A, S)`` (the independent reference: scipy's ``eigh``),
reached at their eigenvectors. A weighted version, ``trace(C^T A C N)`` with distinct weights
``N``, depends on the rotations among the columns too (the Brockett function): its minimum
pairs the largest weight with the smallest eigenvalue.

Everything runs in float64. Compiled programs are shared through module-scoped fixtures.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from opifex.core import SolveStatus, config_from_dict, run_solver
from opifex.meta._meta_optimizer import (
    MetaOptimizer,
    MetaOptimizerConfig,
    OrbitalSolver,
    QuantumState,
    QuantumStepInfo,
    SCFContext,
    minimize_orbitals,
)
from opifex.meta._stiefel import complete_frame, orthonormality_error, retract

N, K = 7, 3
TIGHT = MetaOptimizerConfig(conv_tol=1e-13, conv_tol_grad=1e-8, max_steps=150)
TRACES = {"energy": 0}


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _problem(seed: int = 0, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    b = rng.standard_normal((n, n))
    return a + a.T, b @ b.T / n + 0.5 * np.eye(n)


A_NP, S_NP = _problem()
EIGENVALUES, EIGENVECTORS = scipy.linalg.eigh(A_NP, S_NP)
REFERENCE = float(EIGENVALUES[:K].sum())


class TraceEnergy:
    """``trace(C^T A C)``; counts its traces (Python calls, not evaluations under jit)."""

    def __init__(self, a: np.ndarray):
        self.a = a

    def __call__(self, c: jax.Array) -> jax.Array:
        TRACES["energy"] += 1
        return self.plain(c, self.a)

    @staticmethod
    def plain(c: jax.Array, a: np.ndarray) -> jax.Array:
        return jnp.trace(c.T @ jnp.asarray(a) @ c)


ENERGY = TraceEnergy(A_NP)


def _start(seed: int = 1, n: int = N, k: int = K) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).standard_normal((n, k)))


def _projector(c: np.ndarray) -> np.ndarray:
    return c @ c.T @ S_NP  # the S-orthogonal projector onto span(C) for S-orthonormal C


@pytest.fixture(scope="module")
def solved():
    with jax.enable_x64(True):
        return minimize_orbitals(ENERGY, _start(), SCFContext(jnp.asarray(S_NP)), TIGHT)


@pytest.mark.slow
def test_minimize_orbitals_reaches_the_generalized_eigenvalue_sum(solved):
    assert solved.status_name == "SUCCESS" and bool(solved.converged)
    assert abs(float(solved.value) - REFERENCE) < 1e-10
    c = np.asarray(solved.params)
    np.testing.assert_allclose(_projector(c), _projector(EIGENVECTORS[:, :K]), atol=1e-6)
    assert float(orthonormality_error(solved.params, jnp.asarray(S_NP))) < 1e-12
    assert float(solved.grad_norm) <= 1e-8
    assert int(solved.stats["num_fun_evals"]) >= int(solved.num_steps) + 1
    assert isinstance(solved.aux, QuantumStepInfo) and float(solved.aux.energy) == float(
        solved.value
    )


def test_every_step_keeps_the_constraint_and_lowers_the_energy(solved):
    steps = int(solved.num_steps)
    errors = np.asarray(solved.trace["orthonormality_error"])[: steps + 1]
    assert np.all(errors < 1e-12), errors.max()
    values = np.asarray(solved.trace["value"])[: steps + 1]
    assert np.all(np.diff(values) <= 0.0)  # Armijo: every accepted step lowers the energy
    changes = np.asarray(solved.trace["energy_change"])[1 : steps + 1]
    np.testing.assert_allclose(changes, np.diff(values), atol=1e-12)
    assert np.all(np.isnan(np.asarray(solved.trace["value"])[steps + 1 :]))


def test_a_new_start_and_budget_do_not_recompile(solved):
    traces = TRACES["energy"]
    again = minimize_orbitals(
        ENERGY, _start(seed=5), jnp.asarray(S_NP), TIGHT, max_steps=120, trace_length=150
    )
    assert TRACES["energy"] == traces  # same static arguments: the compiled program is reused
    assert again.converged and abs(float(again.value) - REFERENCE) < 1e-10
    short = minimize_orbitals(
        ENERGY, _start(), jnp.asarray(S_NP), TIGHT, max_steps=3, trace_length=150
    )
    assert TRACES["energy"] == traces
    assert short.status_name == "MAX_STEPS_REACHED" and int(short.num_steps) == 3


@pytest.fixture(scope="module")
def facade_run():
    """Forty jitted ``quantum_step`` calls from the fixture's start, and the trace count."""
    with jax.enable_x64(True):
        opt = MetaOptimizer(TIGHT)
        overlap = jnp.asarray(S_NP)
        step = jax.jit(functools.partial(opt.quantum_step, ENERGY))
        c = _start()
        state = opt.init_optimizer_state(c, SCFContext(overlap))
        infos, traces = [], []
        for i in range(40):
            c, state, info = step(c, state, overlap, i)
            infos.append(jax.device_get(info))
            traces.append(TRACES["energy"])
        return opt, step, c, state, infos, traces


@pytest.mark.slow
def test_quantum_step_keeps_the_constraint_lowers_the_energy_and_converges(facade_run):
    _, _, c, state, infos, _ = facade_run
    energies = np.array([float(i.energy) for i in infos])
    assert all(float(i.orthonormality_error) < 1e-12 for i in infos)
    assert np.all(np.diff(energies) <= 0.0)
    assert all(float(i.energy_change) <= 0.0 for i in infos)
    assert abs(energies[-1] - REFERENCE) < 1e-10
    assert isinstance(state, QuantumState) and int(state.num_steps) == 40
    assert float(orthonormality_error(c, jnp.asarray(S_NP))) < 1e-12


def test_quantum_step_compiles_once(facade_run):
    *_, traces = facade_run
    assert traces[1] == traces[0] and traces[-1] == traces[0]


def test_quantum_step_follows_the_solver(facade_run, solved):
    # the façade continues the quasi-Newton run exactly as the driver does
    *_, infos, _ = facade_run
    steps = min(int(solved.num_steps), len(infos))
    np.testing.assert_allclose(
        [float(i.energy) for i in infos[:steps]],
        np.asarray(solved.trace["value"])[1 : steps + 1],
        rtol=0,
        atol=1e-10,
    )


def test_other_coefficients_restart_the_run(facade_run):
    _, step, _, state, _, traces = facade_run
    # a fresh start with an old state: no recompilation, and the step still lowers the energy
    start = _start(seed=9)
    _, restarted, info = step(start, state, jnp.asarray(S_NP), 0)
    assert TRACES["energy"] == traces[-1]
    frame = complete_frame(start, jnp.asarray(S_NP))
    assert bool(info.accepted) and float(info.energy) < float(ENERGY(frame[:, :K]))
    assert int(restarted.num_steps) == int(state.num_steps) + 1
    assert int(restarted.num_fun_evals) >= int(state.num_fun_evals) + 2  # restart + a trial
    assert float(info.orthonormality_error) < 1e-12


@pytest.mark.e2e  # compiles a second (UHF-like) solve: the suite's budget
def test_pairs_move_each_component_on_its_own_manifold():
    # UHF-like: a pair of coefficient matrices, each with its own constraint. The first is the
    # Brockett function trace(C^T A C N), which also depends on rotations among its columns
    # (its minimum pairs the largest weight with the smallest eigenvalue, at the eigenvectors)
    weights = jnp.asarray([3.0, 2.0, 1.0])
    a2, _ = _problem(seed=3)

    def energy(cs):
        return jnp.trace(cs[0].T @ A_NP @ cs[0] @ jnp.diag(weights)) + ENERGY.plain(cs[1], a2)

    start = (_start(seed=1), _start(seed=2, k=2))
    result = minimize_orbitals(energy, start, jnp.asarray(S_NP), TIGHT)
    second = scipy.linalg.eigh(a2, S_NP, eigvals_only=True)[:2].sum()
    reference = float(np.dot(weights, EIGENVALUES[:K]) + second)
    assert result.converged and abs(float(result.value) - reference) < 1e-9
    assert isinstance(result.params, tuple) and result.params[1].shape == (N, 2)
    assert float(result.aux.orthonormality_error) < 1e-12
    overlaps = np.abs(np.asarray(result.params[0]).T @ S_NP @ EIGENVECTORS[:, :K])
    np.testing.assert_allclose(overlaps, np.eye(K), atol=1e-5)  # the eigenvectors, up to sign


@pytest.mark.e2e  # about 2 s on one core: compiling the batched solve (the suite's budget)
def test_vmap_over_problems_and_a_nan_overlap_inside_jit():
    # a batch of starts and overlaps under jit(vmap): a NaN overlap (which outside jit raises)
    # is a NONFINITE status for its member, never a wrong answer, and the others converge
    solver = OrbitalSolver(ENERGY, TIGHT)
    starts = jnp.stack([_start(seed) for seed in range(3)])
    good = jnp.asarray(S_NP)
    overlaps = jnp.stack([good, good, good.at[0, 0].set(jnp.nan)])
    run = jax.jit(jax.vmap(lambda c, s: run_solver(solver, c, s, max_steps=150)))
    results = run(starts, overlaps)
    np.testing.assert_array_equal(np.asarray(results.converged), [True, True, False])
    assert int(results.status[2]) == SolveStatus.NONFINITE
    np.testing.assert_allclose(np.asarray(results.value[:2]), REFERENCE, atol=1e-10)


# ----------------------------------------------------------------------------- the optax step


def test_step_is_an_optax_update():
    loss = lambda x: jnp.sum((x - 1.0) ** 2)  # noqa: E731
    opt = MetaOptimizer(MetaOptimizerConfig(optimizer="sgd", learning_rate=0.25))
    params = jnp.zeros(3)
    state = opt.init_optimizer_state(params)
    new, state = opt.step(loss, params, state, 0)
    np.testing.assert_allclose(np.asarray(new), 0.5)  # x - 0.25 * 2 (x - 1)
    grads = jax.grad(loss)(new)
    newer, _ = opt.step(grads, new, state)
    np.testing.assert_allclose(np.asarray(newer), 0.75)


def test_step_accepts_any_optax_transformation_and_jits():
    loss = lambda x: jnp.sum((x - 1.0) ** 2)  # noqa: E731
    opt = MetaOptimizer(MetaOptimizerConfig(optimizer=optax.sgd(0.25, momentum=0.0)))
    step = jax.jit(functools.partial(opt.step, loss))
    params = jnp.zeros(3)
    state = opt.init_optimizer_state(params)
    for _ in range(30):
        params, state = step(params, state)
    np.testing.assert_allclose(np.asarray(params), 1.0, atol=1e-8)
    assert step._cache_size() == 1


# ----------------------------------------------------------------------------- bad input


def test_the_config_validates_its_fields():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        MetaOptimizerConfig(optimizer="lion2")
    with pytest.raises(TypeError, match="optimizer must be a name or an optax"):
        MetaOptimizerConfig(optimizer=3)
    with pytest.raises(ValueError, match="learning_rate"):
        MetaOptimizerConfig(learning_rate=-1.0)
    with pytest.raises(ValueError, match="memory_size"):
        MetaOptimizerConfig(memory_size=0)
    with pytest.raises(ValueError, match="conv_tol"):
        MetaOptimizerConfig(conv_tol=0.0)
    with pytest.raises(ValueError, match="max_rotation"):
        MetaOptimizerConfig(max_rotation=float("nan"))


def test_unknown_options_are_named():
    with pytest.raises(ValueError, match="unknown options for MetaOptimizerConfig: lr"):
        config_from_dict(MetaOptimizerConfig, {"lr": 0.1})
    with pytest.raises(ValueError, match="tol"):
        MetaOptimizer(tol=1e-3)
    with pytest.raises(TypeError, match="MetaOptimizerConfig"):
        MetaOptimizer({"learning_rate": 0.1})
    assert MetaOptimizer(learning_rate=0.5).config.learning_rate == 0.5


def test_default_tolerances_follow_the_dtype():
    assert MetaOptimizerConfig().tolerances(np.float64) == (1e-9, pytest.approx(1e-9**0.5))
    assert MetaOptimizerConfig().tolerances(np.float32) == (1e-6, pytest.approx(1e-3))
    assert MetaOptimizerConfig(conv_tol=1e-8, conv_tol_grad=1e-5).tolerances(np.float64) == (
        1e-8,
        1e-5,
    )


@pytest.mark.parametrize(
    ("coeffs", "overlap", "match"),
    [
        (np.ones((N + 1, K)), S_NP, r"orbital_coeffs must have shape \(n, k\) with n = 7"),
        (np.ones((N, N + 1)), S_NP, "k <= n"),
        (np.ones(N), S_NP, "shape"),
        (np.eye(N)[:, :K], S_NP[:, :-1], "must be square"),
        (np.eye(N)[:, :K], S_NP - 5.0 * np.eye(N), "positive definite"),
        (np.eye(N)[:, :K], S_NP + np.triu(np.ones((N, N)), 1), "symmetric"),
        (np.eye(N)[:, :K], np.where(np.eye(N) > 0, np.nan, S_NP), "NaN or inf"),
        (np.full((N, K), np.inf), S_NP, "NaN or inf"),
        (np.ones((N, K)), S_NP, "full column rank"),
    ],
)
def test_bad_problems_raise_clear_errors(coeffs, overlap, match):
    with pytest.raises(ValueError, match=match):
        minimize_orbitals(ENERGY, coeffs, overlap)
    with pytest.raises(ValueError, match=match):
        MetaOptimizer().quantum_step(ENERGY, coeffs, None, overlap)


def test_bad_types_raise_clear_errors():
    c, s = np.eye(N)[:, :K], S_NP
    with pytest.raises(TypeError, match="energy_fn must be callable"):
        minimize_orbitals("energy", c, s)
    with pytest.raises(TypeError, match="floating-point"):
        minimize_orbitals(ENERGY, np.eye(N, dtype=int)[:, :K], s)
    with pytest.raises(TypeError, match="scf_context must be an"):
        minimize_orbitals(ENERGY, c, {"S": s})
    with pytest.raises(ValueError, match="must return a scalar"):
        minimize_orbitals(lambda x: x, c, s)
    with pytest.raises(ValueError, match="empty pytree"):
        minimize_orbitals(ENERGY, (), s)
    with pytest.raises(TypeError, match="config must be a MetaOptimizerConfig"):
        minimize_orbitals(ENERGY, c, s, config={"max_steps": 3})
    with pytest.raises(ValueError, match="max_steps"):
        minimize_orbitals(ENERGY, c, s, max_steps=-1)
    opt = MetaOptimizer()
    with pytest.raises(TypeError, match="opt_state must be a QuantumState"):
        opt.quantum_step(ENERGY, c, opt.init_optimizer_state(jnp.asarray(c)), s)
    with pytest.raises(ValueError, match="memory slots"):
        MetaOptimizer(memory_size=3).quantum_step(
            ENERGY, c, opt.init_optimizer_state(jnp.asarray(c), s), s
        )
    with pytest.raises(ValueError, match="grads must have the same pytree structure"):
        opt.step(jnp.ones(2), jnp.ones(3), opt.init_optimizer_state(jnp.ones(3)))


# ----------------------------------------------------------------------------- manifold maths


def test_frames_and_the_cayley_retraction_stay_on_the_manifold():
    @jax.jit
    def check(c, s, tangent):
        frame = complete_frame(c, s)
        moved = retract(frame, tangent)
        return frame, frame.T @ s @ frame, moved.T @ s @ moved

    c = _start()
    big = jnp.asarray(np.random.default_rng(4).standard_normal((N, K)) * 5.0)
    frame, metric, moved_metric = check(c, jnp.asarray(S_NP), big)
    np.testing.assert_allclose(np.asarray(metric), np.eye(N), atol=1e-12)
    np.testing.assert_allclose(np.asarray(moved_metric), np.eye(N), atol=1e-12)
    q = np.asarray(frame[:, :K])  # the first columns span the input
    np.testing.assert_allclose(q @ q.T @ S_NP @ np.asarray(c), np.asarray(c), atol=1e-10)
