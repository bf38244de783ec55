"""``run_scf``, ``scf_energy`` and ``nuclear_gradient`` compile once per static key.

A second geometry of the same atoms (same basis set, method, config and guess) must run the
program compiled for the first: no tracing, no lowering, no XLA compilation (nor a read from
the persistent compilation cache, which JAX reports as a compilation too). Compilations are
counted with ``jax.monitoring``'s duration events, which JAX records for every jaxpr trace of a
jitted function, every lowering to MLIR and every backend compilation. The pipeline's Python
code (integrals, guess, SCF) must not run either: it is counted by wrapping
``compute_integrals`` as ``opifex.quantum._scf`` calls it. An eager ``jax.grad`` of the energy
(what ``nuclear_gradient`` once was) compiles nothing new for a second geometry, but re-traces
the whole pipeline on every call, which this counter catches. ``nuclear_gradient`` runs the
SCF program of ``run_scf`` (tolerances are values) and compiles only its gradient program.
"""

import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import monitoring

from opifex.quantum import (
    SCFConfig,
    _scf,
    molecule_from_name,
    nuclear_gradient,
    run_scf,
    scf_energy,
)

COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


@pytest.fixture(autouse=True)
def _x64():
    jax.config.update("jax_enable_x64", True)  # the root conftest restores the flag


_ACTIVE: list[list] = []  # the lists of the compilations() blocks now open


def _listener(event, duration, **kwargs):
    if event in COMPILE_EVENTS:
        for seen in _ACTIVE:
            seen.append((event.rsplit("/", 1)[-1], kwargs.get("fun_name")))


monitoring.register_event_duration_secs_listener(_listener)  # once: no unregister needed


@contextlib.contextmanager
def compilations():
    """Yield a list that collects ``(event, function)`` for every trace / lowering / compile."""
    seen = []
    _ACTIVE.append(seen)
    try:
        yield seen
    finally:
        _ACTIVE.remove(seen)


@pytest.fixture
def pipeline_traces(monkeypatch):
    """Count the runs of the SCF pipeline's Python code (a trace, or eager work)."""
    calls = []
    original = _scf.compute_integrals

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_scf, "compute_integrals", counted)
    return calls


def _moved(molecule, seed):
    noise = np.random.default_rng(seed).normal(scale=0.05, size=(molecule.n_atoms, 3))
    return dataclasses.replace(molecule, coordinates=np.asarray(molecule.coordinates) + noise)


def test_the_counter_sees_compilations():
    with compilations() as seen:
        jax.jit(lambda x: x * 3.0 + 1.0)(jnp.arange(7.0))
    assert {event for event, _ in seen} == {event.rsplit("/", 1)[-1] for event in COMPILE_EVENTS}


@pytest.mark.slow
@pytest.mark.parametrize("entry", [run_scf, scf_energy, nuclear_gradient], ids=lambda f: f.__name__)
def test_another_geometry_of_the_same_atoms_neither_traces_nor_compiles(entry, pipeline_traces):
    h2 = molecule_from_name("H2")
    first = jax.block_until_ready(entry(h2, "sto-3g"))  # compiles, or reads the disk cache
    pipeline_traces.clear()
    moved = _moved(h2, seed=1)
    with compilations() as seen:
        second = jax.block_until_ready(entry(moved, "sto-3g"))
        again = jax.block_until_ready(entry(h2, "sto-3g"))
    assert seen == [], f"{entry.__name__} compiled again: {seen}"
    assert pipeline_traces == [], f"{entry.__name__} traced its pipeline again"
    values = [r.value if entry is run_scf else r for r in (first, second, again)]
    np.testing.assert_array_equal(values[0], values[2])
    assert np.all(np.isfinite(values[1])) and not np.allclose(values[0], values[1])


@pytest.mark.e2e
def test_a_gradient_after_the_energy_compiles_only_the_gradient_program():
    """The SCF program is shared: nuclear_gradient's tighter tolerances are values, not a key."""
    water = molecule_from_name("H2O")
    jax.block_until_ready(run_scf(water, "sto-3g").value)  # compiles (or reads the disk cache)
    with compilations() as seen:
        gradient = jax.block_until_ready(nuclear_gradient(water, "sto-3g"))
    compiled = {name for event, name in seen if event == "backend_compile_duration"}
    assert compiled == {"jit(_gradient)"}, seen
    assert np.all(np.isfinite(gradient))


@pytest.mark.e2e  # three programs to compile: ~30 s with a cold compilation cache
def test_a_new_static_key_compiles_and_the_cached_programs_still_transform():
    h2 = molecule_from_name("H2")
    tight = SCFConfig(conv_tol=1e-12, conv_tol_grad=1e-9)
    reference = nuclear_gradient(h2, config=tight)
    with compilations() as seen:  # other tolerances: the same programs
        nuclear_gradient(h2, config=SCFConfig(conv_tol=1e-7))
    assert seen == []
    with compilations() as seen:  # another setting is another program
        nuclear_gradient(h2, config=SCFConfig(conv_tol=1e-12, conv_tol_grad=1e-9, damping=0.1))
    assert seen
    # under jit, vmap and grad the cached functions are traced into the caller's program
    coordinates = jnp.stack([jnp.asarray(h2.coordinates), jnp.asarray(_moved(h2, 2).coordinates)])

    def energy(c):
        return scf_energy(dataclasses.replace(h2, coordinates=c), config=tight)

    gradients = jax.jit(jax.vmap(jax.grad(energy)))(coordinates)  # the implicit path
    np.testing.assert_allclose(gradients[0], reference, atol=1e-10)
    jitted = jax.jit(
        lambda c: nuclear_gradient(dataclasses.replace(h2, coordinates=c), config=tight)
    )
    np.testing.assert_allclose(jitted(coordinates[1]), gradients[1], atol=1e-10)
    values = jax.vmap(lambda c: run_scf(dataclasses.replace(h2, coordinates=c)).value)(coordinates)
    assert float(values[0]) == pytest.approx(float(run_scf(h2).value), abs=1e-12)
