"""Every ``>>>`` example in every installed ``opifex`` module runs and prints what it shows.

The docstrings promise runnable examples; this keeps them honest. One test per module, so a
failure names the module and pytest shows doctest's report of the failing example. An
example runs with JAX's defaults (float32) and may switch float64 on; the setting is restored
after each module.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import jax
import pytest

import opifex

MODULES = sorted(info.name for info in pkgutil.walk_packages(opifex.__path__, "opifex."))

# examples that run the demo, meta-train, benchmark, train a PINN or run whole SCFs: five or more
# seconds of compilation each on one core, so they run in the end-to-end job (CONTRIBUTING.md,
# "Test suite")
END_TO_END = {
    "opifex.cli._demo",
    "opifex.cli._mpc",
    "opifex.cli._train",
    "opifex.cli._train_meta",
    "opifex.control._ilqr",
    "opifex.control._mpc",
    "opifex.control._neural_ode",
    "opifex.control._qp",
    "opifex.control._safety",
    "opifex.control._shooting",
    "opifex.control._sindy",
    "opifex.control._sysid",
    "opifex.core.families._burgers",
    "opifex.core.families._lasso",
    "opifex.core.families._poisson",
    "opifex.core.metatrain._meta_train",
    "opifex.core.metatrain._pes",
    "opifex.core.metatrain._truncated_bptt",
    "opifex.l2o._benchmark",
    "opifex.l2o._engine",
    "opifex.l2o._learned_meta",
    "opifex.l2o._lstm",
    "opifex.l2o._recommend",
    "opifex.meta._adapt",
    "opifex.meta._learner",
    "opifex.meta._maml",
    "opifex.meta._meta_l2o",
    "opifex.meta._meta_optimizer",
    "opifex.meta._meta_sgd",
    "opifex.meta._reptile",
    "opifex.meta._tasks",
    "opifex.quantum._density_fitting",
    "opifex.quantum._diis",
    "opifex.quantum._one_electron",
    "opifex.quantum._scf",
    "opifex.quantum._scf_solver",
    "opifex.second_order._lbfgs",
}
# examples that take between one and five seconds
SLOW = {
    "opifex.control._box_qp",
    "opifex.control._dynamics",
    "opifex.control._problem",
    "opifex.core._nnx",
    "opifex.core._optax_solver",
    "opifex.core.families._logistic",
    "opifex.core.families._mlp",
    "opifex.core.families._quadratic",
    "opifex.core.families._sinusoid",
    "opifex.core.metatrain._truncated_es",
    "opifex.core.metatrain._whole_unroll",
    "opifex.l2o._baselines",
    "opifex.l2o._evaluate",
    "opifex.l2o._fallback",
    "opifex.l2o._mlp",
    "opifex.l2o._recipe",
    "opifex.meta._monitor",
    "opifex.quantum._boys",
    "opifex.quantum._energy_function",
    "opifex.quantum._eri_supermatrix",
    "opifex.quantum._hermite",
    "opifex.quantum._molecule",
    "opifex.quantum._rhf",
    "opifex.quantum._scf_model",
    "opifex.quantum._shell_pairs",
    "opifex.quantum._two_electron",
    "opifex.quantum._uhf",
    "opifex.second_order._gauss_newton",
    "opifex.second_order._hybrid",
    "opifex.second_order._more_thuente",
}


def _marks(name: str) -> tuple[pytest.MarkDecorator, ...]:
    if name in END_TO_END:
        return (pytest.mark.e2e,)
    return (pytest.mark.slow,) if name in SLOW else ()


def test_every_implemented_package_is_walked():
    for package in ("opifex.core", "opifex.second_order", "opifex.cli"):
        assert package in MODULES
    assert (END_TO_END | SLOW) <= set(MODULES), "a module named above no longer exists"


@pytest.mark.parametrize("name", [pytest.param(name, marks=_marks(name)) for name in MODULES])
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)  # the examples show JAX's default dtypes
    try:
        failed, _ = doctest.testmod(
            module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True
        )
    finally:
        jax.config.update("jax_enable_x64", x64)
    assert failed == 0, f"{failed} docstring example(s) in {name} failed (report above)"
