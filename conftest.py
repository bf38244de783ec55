"""Workspace-wide test set-up.

* JAX's persistent compilation cache is on for the suite, in ``.cache/jax-tests`` (git-ignored),
  so that a program compiled by one xdist worker, or by an earlier run, is read back instead of
  compiled again; ``OPIFEX_JAX_CACHE=0`` turns it off, any other value is the directory.
* End-to-end runs (benchmarks, the demo, meta-training, the sharding and other subprocesses,
  PINN training, the docs pages' and READMEs' examples) and the exhaustive sweeps (every
  molecule, element and certified start beyond a few representative ones) are marked ``e2e``
  and run only with ``--e2e`` (``.ci/run`` runs them as a step of their own), so that
  ``pytest -n auto`` stays within its time budget (CONTRIBUTING.md, "Test suite").
* XLA's backend optimisations are off (``--xla_backend_optimization_level=0`` and no expensive
  LLVM passes): the suite compiles far more programs than it runs long loops, and these passes
  cost 10-25 % of the compile time (``benchmarks/suite/bench_compile_time.py``); set
  ``XLA_FLAGS`` yourself to test with other settings. Lowered programs carry no Python
  tracebacks in their locations (``jax_include_full_tracebacks_in_locations``), which saves a
  little more.
* Every test gives JAX's float64 switch back as it found it: some code under test switches
  float64 on for the whole process (``opifex demo`` and the benchmarks do, as programs should).
"""

import os
from pathlib import Path

# before JAX starts its backend, which reads XLA_FLAGS once
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

import jax
import pytest

from opifex.core import enable_compilation_cache

# through the environment, so that code under test that turns the cache on (the CLI) uses it too
os.environ.setdefault(
    "OPIFEX_JAX_CACHE", str(Path(__file__).resolve().parent / ".cache" / "jax-tests")
)
enable_compilation_cache()
jax.config.update("jax_include_full_tracebacks_in_locations", False)


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--e2e``: also run the tests marked ``e2e``."""
    parser.addoption(
        "--e2e", action="store_true", help="also run the end-to-end tests (marked e2e)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``e2e`` tests unless ``--e2e`` was given."""
    if config.getoption("--e2e"):
        return
    skipped = [item for item in items if item.get_closest_marker("e2e")]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if not item.get_closest_marker("e2e")]


@pytest.fixture(autouse=True)
def _restore_jax_x64():
    enabled = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", enabled)
