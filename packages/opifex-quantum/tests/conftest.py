"""Free JAX's compiled programs after each quantum test module.

Every (molecule, basis) pair compiles its own integral and SCF programs, some large (gradients
of 6-31G* integrals); a pytest-xdist worker would otherwise keep all of them alive for the rest
of the session, next to the other packages' tests.
"""

import jax
import pytest


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    yield
    jax.clear_caches()
