"""A physics-informed network trained end to end with opifex: the workspace's motivating use case.

A Flax NNX MLP ``u_theta`` (1-16-16-1, tanh, float64) solves ``-u'' = f`` on ``[0, 1]`` with
``u(0) = u(1) = 0``, the PDE residual coming from ``opifex.core.families.PoissonFamily``. The
forcing ``f = pi^2 sin(pi x) - pi^2 sin(2 pi x)`` has the closed-form solution
``u = sin(pi x) - sin(2 pi x) / 4``, the independent reference for the trained network.

The flow crosses packages: the NNX adapter of ``opifex.core`` (``split_nnx``, ``nnx_objective``,
``merge_nnx``), ``HybridOptimizer`` (Adam, then L-BFGS) of ``opifex.second_order`` with a
jitted step, a Levenberg-Marquardt fine-tune (``least_squares``) of the residual vector over the
same pytree of parameters, and a checkpoint (``save_pytree`` / ``load_pytree``). The baseline
is optax's Adam, same learning rate, same number of steps.

The whole module takes about 15 s on one CPU core (marked ``slow``), mostly compiling the hybrid
step (~6 s) and the Levenberg-Marquardt solver (~3 s); the module-scoped fixtures share them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from opifex.core import (
    load_metadata,
    load_pytree,
    merge_nnx,
    nnx_objective,
    save_pytree,
    split_nnx,
)
from opifex.core.families import PoissonFamily, PoissonTask
from opifex.second_order import (
    GaussNewtonConfig,
    HybridOptimizer,
    HybridOptimizerConfig,
    LBFGSConfig,
    least_squares,
)

nnx = pytest.importorskip("flax.nnx")
pytestmark = pytest.mark.e2e

FAMILY = PoissonFamily(num_modes=2)
NUM_COLLOCATION = 32
ADAM_LR = 1e-2
ADAM_STEPS = 200  # the hybrid switches to L-BFGS after this many Adam steps
LBFGS_STEPS = 400
TOTAL_STEPS = ADAM_STEPS + LBFGS_STEPS
HYBRID_CONFIG = HybridOptimizerConfig(
    learning_rate=ADAM_LR,
    max_adam_steps=ADAM_STEPS,
    lbfgs_config=LBFGSConfig(memory_size=20, atol=1e-10),
)
LM_CONFIG = GaussNewtonConfig(max_steps=200)


def exact_solution(x: np.ndarray) -> np.ndarray:
    """The closed form: ``-u'' = pi^2 sin(pi x) - pi^2 sin(2 pi x)``, ``u(0) = u(1) = 0``."""
    return np.sin(np.pi * x) - 0.25 * np.sin(2.0 * np.pi * x)


class MLP(nnx.Module):
    """``1 -> width -> width -> 1`` tanh network on inputs of shape ``(n, 1)``."""

    def __init__(self, rngs: Any, width: int = 16, param_dtype: Any = jnp.float64):
        def linear(fan_in: int, fan_out: int) -> Any:
            return nnx.Linear(fan_in, fan_out, param_dtype=param_dtype, rngs=rngs)

        self.hidden1 = linear(1, width)
        self.hidden2 = linear(width, width)
        self.out = linear(width, 1)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(jnp.tanh(self.hidden2(jnp.tanh(self.hidden1(x)))))


def residuals(model: Any, task: PoissonTask, x: jax.Array) -> jax.Array:
    """PDE residuals at ``x`` and boundary values, scaled so that ``sum(r^2)`` is the PINN loss.

    ``sum(r^2) = mean_i (-u''(x_i) - f(x_i))^2 + (u(0)^2 + u(1)^2) / 2``, the loss of
    ``PoissonFamily`` with ``boundary_weight=1`` on fixed collocation points.
    """

    def u(s: jax.Array) -> jax.Array:
        return model(s.reshape(1, 1))[0, 0]

    pde = FAMILY.pde_residual(u, task, x)
    edges = model(jnp.array([[0.0], [1.0]], dtype=x.dtype))[:, 0]
    return jnp.concatenate([pde / jnp.sqrt(x.size), edges / jnp.sqrt(2.0)])


@dataclasses.dataclass
class Problem:
    """The PINN split into NNX parts, its objective and residual, and trace counters."""

    graphdef: Any
    params: dict
    rest: Any
    task: PoissonTask
    loss: Callable[..., jax.Array]  # loss(params, x): the PINN loss
    residual: Callable[..., jax.Array]  # residual(params, x): its residual vector
    x: jax.Array  # collocation points (cell midpoints)
    x_test: np.ndarray  # where the solution is checked (boundaries included)
    traces: dict[str, int]

    def solution(self, params: Any) -> np.ndarray:
        model = merge_nnx(self.graphdef, params, self.rest)
        return np.asarray(model(jnp.asarray(self.x_test)[:, None])[:, 0])

    def max_error(self, params: Any) -> float:
        return float(np.max(np.abs(self.solution(params) - exact_solution(self.x_test))))


@pytest.fixture(scope="module", autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def problem() -> Problem:
    graphdef, params, rest = split_nnx(MLP(nnx.Rngs(0)))
    task = PoissonTask(jnp.array([np.pi**2, -(np.pi**2)]))
    traces = {"loss": 0, "residual": 0}

    def pinn_loss(model: Any, x: jax.Array) -> jax.Array:
        traces["loss"] += 1  # runs only while jax traces the objective
        return jnp.sum(residuals(model, task, x) ** 2)

    def residual(params: Any, x: jax.Array) -> jax.Array:
        traces["residual"] += 1
        return residuals(merge_nnx(graphdef, params, rest), task, x)

    return Problem(
        graphdef=graphdef,
        params=params,
        rest=rest,
        task=task,
        loss=nnx_objective(pinn_loss, graphdef, rest),
        residual=residual,
        x=(jnp.arange(NUM_COLLOCATION) + 0.5) / NUM_COLLOCATION,
        x_test=np.linspace(0.0, 1.0, 101),
        traces=traces,
    )


@dataclasses.dataclass
class HybridRun:
    params: dict
    state: Any
    values: np.ndarray  # loss at the parameters each step started from
    first_call_traces: int  # traces of the objective by the first call of the jitted step
    later_traces: int  # traces by every later call (new collocation points included)


@pytest.fixture(scope="module")
def hybrid(problem: Problem) -> HybridRun:
    opt = HybridOptimizer(HYBRID_CONFIG)
    step = jax.jit(opt.step, static_argnums=2)
    params, state = problem.params, opt.init(problem.params)
    before = problem.traces["loss"]
    values = []
    for i in range(TOTAL_STEPS):
        params, state, value = step(params, state, problem.loss, problem.x)
        values.append(float(value))
        if i == 0:
            after_first = problem.traces["loss"]
    # the same step with other collocation points (same shape) must not retrace either
    shifted = problem.x + 0.25 / NUM_COLLOCATION
    step(params, state, problem.loss, shifted)
    return HybridRun(
        params=params,
        state=state,
        values=np.array(values),
        first_call_traces=after_first - before,
        later_traces=problem.traces["loss"] - after_first,
    )


@pytest.fixture(scope="module")
def adam_params(problem: Problem) -> dict:
    """optax Adam alone, same learning rate and number of steps as the hybrid."""
    adam = optax.adam(ADAM_LR)

    @jax.jit
    def train(params: dict) -> dict:
        def body(_: Any, carry: tuple) -> tuple:
            params, state = carry
            grad = jax.grad(problem.loss)(params, problem.x)
            updates, state = adam.update(grad, state, params)
            return optax.apply_updates(params, updates), state

        return lax.fori_loop(0, TOTAL_STEPS, body, (params, adam.init(params)))[0]

    return train(problem.params)


@pytest.fixture(scope="module")
def finetuned(problem: Problem, hybrid: HybridRun) -> Any:
    # implicit_diff=False: nothing differentiates the fine-tuned parameters here, so skip the
    # implicit-function wrapper (and its compile time)
    return least_squares(problem.residual, hybrid.params, problem.x, config=LM_CONFIG)


def test_task_encodes_the_closed_form_problem(problem):
    # the reference solution has zero PDE residual under the family's forcing, and zero
    # boundary values: the network is trained on the problem the closed form solves
    x = jnp.linspace(0.0, 1.0, 41)

    def u(s):
        return jnp.sin(jnp.pi * s) - 0.25 * jnp.sin(2.0 * jnp.pi * s)

    residual = jax.jit(FAMILY.pde_residual, static_argnums=0)(u, problem.task, x)
    np.testing.assert_allclose(residual, 0.0, atol=1e-11)
    np.testing.assert_allclose(exact_solution(np.array([0.0, 1.0])), 0.0, atol=1e-15)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(problem.params))


def test_hybrid_switches_to_lbfgs_and_beats_adam(problem, hybrid, adam_params):
    state = hybrid.state
    opt = HybridOptimizer(HYBRID_CONFIG)
    assert bool(opt.has_switched(state)) and not bool(state.failed)
    assert int(state.switch_step) == ADAM_STEPS
    assert int(state.adam_steps) == ADAM_STEPS and int(state.lbfgs_steps) == LBFGS_STEPS
    assert jax.tree.structure(hybrid.params) == jax.tree.structure(problem.params)

    # the L-BFGS phase never accepts an increase (rejected steps keep the parameters)
    lbfgs_values = hybrid.values[ADAM_STEPS:]
    assert np.all(np.diff(lbfgs_values) <= 1e-6 * lbfgs_values[:-1])

    initial = float(problem.loss(problem.params, problem.x))
    hybrid_loss = float(problem.loss(hybrid.params, problem.x))
    adam_loss = float(problem.loss(adam_params, problem.x))
    # measured: initial 89, Adam alone 1.1e-3, hybrid 3.2e-6 (350x lower)
    assert initial > 10.0
    assert hybrid_loss < adam_loss / 50.0
    assert hybrid_loss < 3e-5
    # measured max |u_theta - u| on 101 points: hybrid 7.4e-5, Adam alone 1.5e-3
    hybrid_error = problem.max_error(hybrid.params)
    assert hybrid_error < 5e-4
    assert hybrid_error < problem.max_error(adam_params)


def test_levenberg_marquardt_fine_tune_improves_on_the_hybrid(problem, hybrid, finetuned):
    result = finetuned
    assert result.status_name in ("SUCCESS", "MAX_STEPS_REACHED")
    assert jax.tree.structure(result.params) == jax.tree.structure(problem.params)
    # result.value is 0.5 ||r||^2, and sum(r^2) is the PINN loss: recomputed independently
    lm_loss = float(problem.loss(result.params, problem.x))
    np.testing.assert_allclose(2.0 * float(result.value), lm_loss, rtol=1e-10)
    hybrid_loss = float(problem.loss(hybrid.params, problem.x))
    # measured: hybrid 3.2e-6 -> Levenberg-Marquardt 1.6e-9 in 200 iterations
    assert lm_loss < hybrid_loss / 100.0
    # measured max error: hybrid 7.4e-5 -> 3.0e-7
    lm_error = problem.max_error(result.params)
    assert lm_error <= problem.max_error(hybrid.params)
    assert lm_error < 1e-5


def test_checkpoint_round_trip_gives_bit_identical_predictions(problem, finetuned, tmp_path):
    path = tmp_path / "pinn.npz"
    loss = float(2.0 * finetuned.value)
    save_pytree(path, finetuned.params, metadata={"loss": loss, "steps": TOTAL_STEPS})
    assert load_metadata(path) == {"loss": loss, "steps": TOTAL_STEPS}

    loaded = load_pytree(path, like=problem.params)
    assert jax.tree.structure(loaded) == jax.tree.structure(problem.params)
    for saved, restored in zip(
        jax.tree.leaves(finetuned.params), jax.tree.leaves(loaded), strict=True
    ):
        assert isinstance(restored, jax.Array) and restored.dtype == jnp.float64
        np.testing.assert_array_equal(restored, saved)
    np.testing.assert_array_equal(problem.solution(loaded), problem.solution(finetuned.params))
    # without like: plain nested dicts of numpy arrays, which merge into the model as well
    plain = load_pytree(path)
    np.testing.assert_array_equal(problem.solution(plain), problem.solution(finetuned.params))


def test_checkpoint_of_another_architecture_is_refused(finetuned, tmp_path):
    path = tmp_path / "pinn.npz"
    save_pytree(path, finetuned.params)

    def abstract_params(**kwargs):  # restoring into an abstract model: shapes and dtypes only
        return split_nnx(nnx.eval_shape(lambda: MLP(nnx.Rngs(0), **kwargs)))[1]

    with pytest.raises(ValueError, match="dtype float64; like has float32"):
        load_pytree(path, like=abstract_params(param_dtype=jnp.float32))
    with pytest.raises(
        ValueError, match=r"\['hidden1'\]\['bias'\] has shape \(16,\); like has \(8,\)"
    ):
        load_pytree(path, like=abstract_params(width=8))
    restored = load_pytree(path, like=abstract_params())
    np.testing.assert_array_equal(restored["out"]["kernel"], finetuned.params["out"]["kernel"])


def test_jitted_hybrid_step_compiles_once(hybrid):
    # the objective is traced by the first call only: not again for the other 599 steps,
    # nor at the Adam -> L-BFGS switch, nor for new collocation points of the same shape
    assert hybrid.first_call_traces > 0
    assert hybrid.later_traces == 0


def test_least_squares_reuses_its_compilation_for_new_data(problem, adam_params, finetuned):
    del finetuned  # the first call (compilation) happened there
    before = problem.traces["residual"]
    shifted = problem.x + 0.25 / NUM_COLLOCATION
    result = least_squares(problem.residual, adam_params, shifted, config=LM_CONFIG)
    assert problem.traces["residual"] == before
    # and it solves the new problem: from Adam's parameters, on the shifted points
    assert 2.0 * float(result.value) < float(problem.loss(adam_params, shifted)) / 100.0
