"""The solvers ``opifex deploy export`` knows, exported and run: the numbers of opifex itself.

Each exportable of ``opifex.cli._exportables`` is exported with ``opifex.deploy`` (one artifact,
a symbolic batch size), published to and loaded back from a registry (hash verified), called on
a batch, and compared with independent computations:

* ``lm-fit``: the same fit run by calling ``opifex.second_order`` directly (``jit(vmap(...))``,
  to 1e-10 relative: the same algorithm compiled twice), and scipy's MINPACK
  (``scipy.optimize.least_squares(method="lm")`` from the same start, to 1e-7 relative on the
  parameters; noise-free data give the true parameters to 1e-8).
* ``scf-h2``: ``opifex.quantum.scf_energy`` / ``nuclear_gradient`` called on each geometry (to
  1e-10 Eh and 1e-8 Eh/Bohr), and PySCF's RHF on the same basis-set data (``to_pyscf``;
  conv_tol 1e-12: energies to 1e-8 Eh, forces to 1e-6 Eh/Bohr). It compiles the SCF three
  times, about 15 s on one core: ``e2e``.
* ``l2o-quadratic10``: ``opifex.l2o.run_optimizer`` of the same pretrained optimiser on the
  same tasks (float32, two differently fused programs: final losses, which start near 10, to
  1e-4 relative or 1e-6 absolute; parameters to 1e-4 absolute).
* ``mpc-pendulum``: ``opifex.control.MPCController`` (iLQR, the same budget and shifted warm
  start) stepped on each state of a batch from the same plan (controls, next plans and planned
  costs to 1e-10), and the policy served over HTTP (``opifex.deploy.create_app``) in closed loop
  with the pendulum, the client sending each answer's plan back: it swings the pendulum up from
  hanging and holds it upright.

The lm-fit and l2o checks compile two programs each (about 5 s on one core, cold): ``slow``.
"""

from __future__ import annotations

import asyncio

import jax
import numpy as np
import pytest

from opifex.cli._exportables import EXPORTABLES, MPC_HORIZON, MPC_STEPS, lm_fit
from opifex.deploy import Registry, export_function


def _export_and_reload(name, tmp_path):
    exportable = EXPORTABLES[name]
    exported = export_function(exportable.fn, exportable.signature, name=name)
    registry = Registry(tmp_path)
    registry.publish(name, exported)
    registry.promote(name, "v1")
    loaded = registry.load(name)
    assert loaded.sha256 == exported.sha256
    return loaded


@pytest.mark.e2e  # 3-4 s of compilation: the default suite is at its budget
def test_lm_fit_matches_opifex_and_minpack(tmp_path):
    from scipy.optimize import least_squares as scipy_least_squares

    fit = _export_and_reload("lm-fit", tmp_path)
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 3.0, 16)
    truth = np.array([[2.0, 1.5, 0.5], [-1.0, 0.7, 3.0], [5.0, 3.0, -2.0], [0.8, 0.2, 0.1]])
    clean = truth[:, :1] * np.exp(-truth[:, 1:2] * t) + truth[:, 2:]
    noisy = clean + 0.01 * rng.normal(size=clean.shape)
    ts = np.tile(t, (8, 1))
    ys = np.concatenate([clean, noisy])
    out = fit({"t": ts, "y": ys})
    assert out["params"].shape == (8, 3) and out["converged"].all()

    with jax.enable_x64(True):
        direct = jax.jit(jax.vmap(lm_fit))(ts, ys)
    np.testing.assert_allclose(out["params"], direct["params"], rtol=1e-10)
    np.testing.assert_allclose(out["residual_norm"], direct["residual_norm"], rtol=1e-8, atol=1e-14)

    np.testing.assert_allclose(out["params"][:4], truth, rtol=1e-8)
    assert np.all(out["residual_norm"][:4] < 1e-10)
    for i in range(8):

        def residual(p, i=i):
            return p[0] * np.exp(-p[1] * t) + p[2] - ys[i]

        start = [ys[i, 0] - ys[i, -1], 1.0 / 3.0, ys[i, -1]]
        ref = scipy_least_squares(residual, start, method="lm", xtol=1e-15, ftol=1e-15)
        np.testing.assert_allclose(out["params"][i], ref.x, rtol=1e-7)
        np.testing.assert_allclose(
            out["residual_norm"][i], np.linalg.norm(ref.fun), rtol=1e-7, atol=1e-12
        )


@pytest.mark.e2e  # 3 s of compilation: the default suite is at its budget
def test_l2o_quadratic10_matches_run_optimizer(tmp_path):
    from opifex.core.families import QuadraticFamily
    from opifex.l2o import load_pretrained, run_optimizer
    from opifex.l2o.benchmarking import sample_tasks

    run = _export_and_reload("l2o-quadratic10", tmp_path)
    with jax.enable_x64(False):
        family = QuadraticFamily(dimension=10)
        keys = jax.random.split(jax.random.key(3), 4)
        tasks, theta0 = sample_tasks(family, keys)
        reference = run_optimizer(load_pretrained("quadratic10_mlp").optimizer, family, keys, 100)
    out = run({"matrix": tasks.matrix, "target": tasks.target, "theta0": theta0})
    assert out["theta"].dtype == np.float32
    np.testing.assert_allclose(out["loss"], reference.trace["value"][:, -1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["theta"], reference.params, atol=1e-4)
    initial = np.sum((np.einsum("bij,bj->bi", tasks.matrix, theta0) - tasks.target) ** 2, axis=1)
    assert np.all(out["loss"] < 0.1 * initial)


@pytest.mark.e2e
def test_scf_h2_matches_opifex_and_pyscf(tmp_path):
    import dataclasses

    from pyscf import scf as pyscf_scf

    from opifex.quantum import (
        BOHR_IN_ANGSTROM,
        create_molecular_system,
        nuclear_gradient,
        scf_energy,
        to_pyscf,
    )

    h2 = _export_and_reload("scf-h2", tmp_path)
    lengths = np.array([0.6, 0.74, 1.0, 1.6])
    out = h2({"bond_length": lengths})
    assert out["converged"].all() and out["forces"].shape == (4, 2, 3)
    with jax.enable_x64(True):
        for i, length in enumerate(lengths):
            molecule = create_molecular_system([("H", (0.0, 0.0, 0.0)), ("H", (0, 0, length))])
            np.testing.assert_allclose(molecule.coordinates[1, 2], length / BOHR_IN_ANGSTROM)
            energy = float(scf_energy(molecule))
            forces = -np.asarray(nuclear_gradient(molecule))
            assert abs(out["energy"][i] - energy) < 1e-10
            np.testing.assert_allclose(out["forces"][i], forces, atol=1e-8)

            mf = pyscf_scf.RHF(to_pyscf(dataclasses.replace(molecule), "sto-3g"))
            mf.conv_tol = 1e-12
            reference_energy = mf.kernel()
            reference_forces = -mf.nuc_grad_method().kernel()
            assert abs(out["energy"][i] - reference_energy) < 1e-8
            np.testing.assert_allclose(out["forces"][i], reference_forces, atol=1e-6)
    # the forces are equal and opposite, along the bond: attractive beyond the minimum
    np.testing.assert_allclose(out["forces"][:, 0], -out["forces"][:, 1], atol=1e-12)
    assert out["forces"][0, 1, 2] > 0 > out["forces"][3, 1, 2]


def _assert_mpc_step(controller, state, plan, answer):
    """``answer`` (one example of mpc-pendulum) is the controller's step from ``plan``."""
    controller.reset(np.asarray(plan))
    control = controller.step(np.asarray(state))
    np.testing.assert_allclose(answer["control"], control, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(answer["plan"], controller.state.plan, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(answer["value"], controller.state.value, rtol=1e-10)
    assert bool(answer["converged"]) == (controller.status_name == "SUCCESS")


@pytest.mark.e2e  # compiles iLQR three times (export, the batched call, MPCController): ~12 s
def test_mpc_pendulum_matches_mpc_controller_and_swings_up_when_served(tmp_path):
    import httpx

    from opifex.control import (
        SWING_UPS,
        MPCController,
        discretize,
        swing_up,
        swing_up_model,
        wrap_angle,
    )
    from opifex.deploy import create_app

    policy = _export_and_reload("mpc-pendulum", tmp_path)
    task = SWING_UPS["pendulum"]
    starts = np.array([[np.pi, 0.0], [3.0, 0.5], [-2.5, -1.0], [0.3, 0.0]])
    rng = np.random.default_rng(0)
    plans = rng.uniform(-task.max_control, task.max_control, (len(starts), MPC_HORIZON, 1))
    out = policy({"state": starts, "plan": plans})
    assert out["control"].shape == (4, 1) and out["plan"].shape == (4, MPC_HORIZON, 1)
    with jax.enable_x64(True):
        problem, _ = swing_up("pendulum")
        controller = MPCController(problem, max_steps=MPC_STEPS, warm_start="shift")
        for i in range(len(starts)):
            _assert_mpc_step(controller, starts[i], plans[i], {k: v[i] for k, v in out.items()})
        step = discretize(swing_up_model("pendulum"), task.dt, substeps=8)
        plant = jax.jit(jax.vmap(step, in_axes=(0, 0, None)))

        app = create_app({"mpc-pendulum": ("v1", policy)}, max_batch_size=4, warm_up=False)

        async def closed_loop(periods):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                states, plan = starts, np.zeros((len(starts), MPC_HORIZON, 1))
                for period in range(periods):
                    inputs = {"state": states.tolist(), "plan": plan.tolist()}
                    answer = await client.post(
                        "/v1/solvers/mpc-pendulum/predict", json={"inputs": inputs}
                    )
                    assert answer.status_code == 200, answer.text
                    outputs = {k: np.asarray(v) for k, v in answer.json()["outputs"].items()}
                    if period % 20 == 0:  # the served answer is the controller's step
                        _assert_mpc_step(
                            controller, states[0], plan[0], {k: v[0] for k, v in outputs.items()}
                        )
                    states = np.asarray(plant(states, outputs["control"], period * task.dt))
                    plan = outputs["plan"]
            return states

        final = asyncio.run(closed_loop(round(6.0 / task.dt)))
    # hanging, pushed or near upright: each swung up and held at rest within 0.05 rad
    assert np.all(np.abs(np.asarray(wrap_angle(final[:, 0]))) < 0.05)
    assert np.all(np.abs(final[:, 1]) < 0.05)
