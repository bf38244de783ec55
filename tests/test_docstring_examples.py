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


def test_every_implemented_package_is_walked():
    for package in ("opifex.core", "opifex.second_order", "opifex.cli"):
        assert package in MODULES


@pytest.mark.parametrize("name", MODULES)
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
