"""Workspace-wide test hygiene: every test gives JAX's float64 switch back as it found it.

Some code under test switches float64 on for the whole process (``opifex demo`` and the
benchmarks do, as programs should); a test that runs them in-process must not change the
default dtype of the tests that follow it in the same worker.
"""

import jax
import pytest


@pytest.fixture(autouse=True)
def _restore_jax_x64():
    enabled = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", enabled)
