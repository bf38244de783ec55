"""The built-in solvers that ``opifex deploy export NAME`` exports: functions of one example.

Each entry of ``EXPORTABLES`` is an :class:`Exportable`: a per-example function
``fn(**example) -> {output: array}`` of real opifex solvers, its ``opifex.deploy.Signature``
and a one-line description. ``opifex.deploy.export_function`` vmaps it over a batch.

* ``lm-fit``: Levenberg-Marquardt (``opifex.second_order.least_squares``, float64) fit of
  ``y = a exp(-b t) + c`` to 16 points ``(t, y)``; returns ``params = (a, b, c)``, the final
  residual norm ``||r||`` and whether the solve converged.
* ``scf-h2``: RHF/STO-3G of H2 at a bond length in Angstrom (``opifex.quantum.scf_energy`` and
  its gradient through the converged SCF, float64): total energy (Eh) and nuclear forces
  (Eh/Bohr, ``-dE/dR``; NaN if the SCF did not converge, with ``converged`` false).
* ``l2o-quadratic10``: 100 steps of the pretrained learned optimiser ``quadratic10_mlp``
  (``opifex.l2o``, float32) on ``||W theta - y||^2`` from ``theta0``: the final ``theta`` and
  loss.
* ``mpc-pendulum``: one control period of receding-horizon MPC swinging the pendulum up
  (``opifex.control``: ``swing_up("pendulum")``, 10 iLQR iterations warm-started from the
  previous plan, float64): from the state ``(theta, omega)`` and the plan, the control to apply
  and the plan for the next period.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from opifex.deploy import Signature, TensorSpec

LM_POINTS = 16
L2O_DIMENSION = 10
L2O_STEPS = 100
MPC_STEPS = 10  # iLQR iterations per control period, the budget `opifex mpc` uses by default
MPC_HORIZON = 50  # periods of swing_up("pendulum"): mpc_init rejects a plan of another length


@dataclasses.dataclass(frozen=True)
class Exportable:
    """A per-example solver function with its signature.

    Attributes:
        fn: ``fn(**example) -> {output name: array}`` (one example, no batch axis).
        signature: its inputs and outputs.
        description: one line for ``opifex deploy export --help`` and ``list``.
    """

    fn: Callable[..., Mapping[str, Any]]
    signature: Signature
    description: str


def _f64(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name, shape, "float64")


def _f32(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name, shape, "float32")


def lm_fit(t: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
    """Fit ``y = a exp(-b t) + c`` by Levenberg-Marquardt (one example of ``lm-fit``).

    The start is read off the data: ``c`` the last ``y``, ``a`` the first minus the last and
    ``b = 1 / (t[-1] - t[0])``.

    Args:
        t: the 16 abscissae (float64).
        y: the 16 observations (float64).

    Returns:
        ``params`` ``(a, b, c)``, ``residual_norm`` ``||r||`` at the solution and
        ``converged``.

    Example:
        ``opifex.deploy.export_function(lm_fit, signature)`` batches it; its signature:

        >>> EXPORTABLES["lm-fit"].signature.inputs[0]
        TensorSpec(name='t', shape=(16,), dtype='float64')
        >>> [spec.name for spec in EXPORTABLES["lm-fit"].signature.outputs]
        ['params', 'residual_norm', 'converged']
    """
    from opifex.second_order import least_squares

    def residual(params: jax.Array, t: jax.Array, y: jax.Array) -> jax.Array:
        a, b, c = params
        return a * jnp.exp(-b * t) + c - y

    span = jnp.abs(t[-1] - t[0])
    rate = 1.0 / jnp.where(span > 0, span, 1.0)
    start = jnp.stack([y[0] - y[-1], rate, y[-1]])
    result = least_squares(residual, start, t, y)
    return {
        "params": result.params,
        "residual_norm": jnp.sqrt(2.0 * result.value),
        "converged": result.converged,
    }


@functools.cache
def _h2() -> Any:
    from opifex.quantum import create_molecular_system

    return create_molecular_system([("H", (0.0, 0.0, 0.0)), ("H", (0.0, 0.0, 0.74))])


def scf_h2(bond_length: jax.Array) -> dict[str, jax.Array]:
    """RHF/STO-3G energy and nuclear forces of H2 (one example of ``scf-h2``).

    Args:
        bond_length: H-H distance in Angstrom (float64; the atoms lie on the z axis, the first
            at the origin).

    Returns:
        ``energy`` (Eh), ``forces`` ``(2, 3)`` (Eh/Bohr, ``-dE/dR``) and ``converged``
        (energy and forces are NaN when the SCF did not converge).

    Example:
        Exporting it traces the SCF and its gradient (a few seconds); its signature:

        >>> [(spec.name, spec.shape) for spec in EXPORTABLES["scf-h2"].signature.outputs]
        [('energy', ()), ('forces', (2, 3)), ('converged', ())]
    """
    from opifex.quantum import BOHR_IN_ANGSTROM, FORCE_CONV_TOL_GRAD, SCFConfig, scf_energy

    molecule = _h2()
    config = SCFConfig(conv_tol_grad=FORCE_CONV_TOL_GRAD)
    coordinates = jnp.zeros((2, 3), bond_length.dtype).at[1, 2].set(bond_length / BOHR_IN_ANGSTROM)

    def energy(coordinates: jax.Array) -> jax.Array:
        moved = dataclasses.replace(molecule, coordinates=coordinates)
        return scf_energy(moved, "sto-3g", config=config)

    value, gradient = jax.value_and_grad(energy)(coordinates)
    return {"energy": value, "forces": -gradient, "converged": jnp.isfinite(value)}


def l2o_quadratic10(matrix: jax.Array, target: jax.Array, theta0: jax.Array) -> dict[str, Any]:
    """100 steps of the pretrained ``quadratic10_mlp`` on ``||W theta - y||^2``.

    Args:
        matrix: ``W``, ``(10, 10)`` float32.
        target: ``y``, ``(10,)`` float32.
        theta0: the start, ``(10,)`` float32.

    Returns:
        ``theta`` after 100 steps and its ``loss``.

    Example:
        >>> EXPORTABLES["l2o-quadratic10"].signature.inputs[0]
        TensorSpec(name='matrix', shape=(10, 10), dtype='float32')
    """
    import optax

    from opifex.l2o import load_pretrained

    optimizer = load_pretrained("quadratic10_mlp").optimizer

    def loss(theta: jax.Array) -> jax.Array:
        return jnp.sum((matrix @ theta - target) ** 2)

    def step(carry: tuple[jax.Array, Any], _: None) -> tuple[tuple[jax.Array, Any], None]:
        theta, state = carry
        value, grad = jax.value_and_grad(loss)(theta)
        updates, state = optimizer.update(grad, state, theta, value=value)
        return (optax.apply_updates(theta, updates), state), None

    (theta, _), _ = jax.lax.scan(step, (theta0, optimizer.init(theta0)), None, length=L2O_STEPS)
    return {"theta": theta, "loss": loss(theta)}


def mpc_pendulum(state: jax.Array, plan: jax.Array) -> dict[str, jax.Array]:
    """One control period of MPC swinging the pendulum up (one example of ``mpc-pendulum``).

    The receding-horizon step of ``opifex.control`` (``mpc_step``) on the swing-up task
    ``swing_up("pendulum")`` (50 periods of 0.08 s, ``|u| <= 5`` N m): ``MPC_STEPS`` (10) iLQR
    iterations warm-started from ``plan``, and the first control of the best iterate (the
    plan's first control if the solve fails). The exported program keeps no state between
    calls: the caller sends back the ``plan`` of each answer with the next state, zeros at the
    start (a cold start).

    Args:
        state: the measured ``(theta, omega)`` (float64; ``theta = 0`` upright, ``pi`` hanging).
        plan: the warm start, ``(50, 1)`` controls (N m, float64; clipped to the bound).

    Returns:
        ``control`` ``(1,)`` to apply now, ``plan`` for the next period (the solution shifted
        by one period), ``value`` (the planned cost) and ``converged`` (whether the iLQR solve
        met its tolerance within the budget; the control is its best iterate either way).

    Example:
        >>> [(spec.name, spec.shape) for spec in EXPORTABLES["mpc-pendulum"].signature.inputs]
        [('state', (2,)), ('plan', (50, 1))]
    """
    from opifex.control import ILQR, mpc_init, mpc_step, swing_up
    from opifex.core import SolveStatus

    problem, _ = swing_up("pendulum")
    control, after = mpc_step(
        ILQR(problem),
        mpc_init(problem, plan),
        state,
        problem.default_theta,
        MPC_STEPS,
        trace_length=MPC_STEPS,
        warm_start="shift",
    )
    return {
        "control": control,
        "plan": after.plan,
        "value": after.value,
        "converged": after.status == SolveStatus.SUCCESS,
    }


EXPORTABLES: dict[str, Exportable] = {
    "lm-fit": Exportable(
        lm_fit,
        Signature(
            inputs=(_f64("t", LM_POINTS), _f64("y", LM_POINTS)),
            outputs=(
                _f64("params", 3),
                _f64("residual_norm"),
                TensorSpec("converged", (), "bool"),
            ),
        ),
        f"Levenberg-Marquardt fit of y = a exp(-b t) + c to {LM_POINTS} points (float64)",
    ),
    "scf-h2": Exportable(
        scf_h2,
        Signature(
            inputs=(_f64("bond_length"),),
            outputs=(_f64("energy"), _f64("forces", 2, 3), TensorSpec("converged", (), "bool")),
        ),
        "RHF/STO-3G energy (Eh) and forces (Eh/Bohr) of H2 at a bond length in Angstrom",
    ),
    "l2o-quadratic10": Exportable(
        l2o_quadratic10,
        Signature(
            inputs=(
                _f32("matrix", L2O_DIMENSION, L2O_DIMENSION),
                _f32("target", L2O_DIMENSION),
                _f32("theta0", L2O_DIMENSION),
            ),
            outputs=(_f32("theta", L2O_DIMENSION), _f32("loss")),
        ),
        f"{L2O_STEPS} steps of the pretrained quadratic10_mlp learned optimiser (float32)",
    ),
    "mpc-pendulum": Exportable(
        mpc_pendulum,
        Signature(
            inputs=(_f64("state", 2), _f64("plan", MPC_HORIZON, 1)),
            outputs=(
                _f64("control", 1),
                _f64("plan", MPC_HORIZON, 1),
                _f64("value"),
                TensorSpec("converged", (), "bool"),
            ),
        ),
        f"one period of MPC swinging the pendulum up: {MPC_STEPS} warm-started iLQR iterations "
        "(float64)",
    ),
}
"""The solvers ``opifex deploy export`` knows, by name."""
