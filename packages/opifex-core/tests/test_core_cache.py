"""JAX's persistent compilation cache: on where asked, off with OPIFEX_JAX_CACHE=0, and a second
process reads back what the first compiled."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import pytest

from opifex.core import default_cache_dir, enable_compilation_cache

PROGRAM = """
import time, jax, jax.numpy as jnp
from opifex.core import enable_compilation_cache
enable_compilation_cache()
f = jax.jit(lambda x: jnp.linalg.eigh(x @ x.T + jnp.sin(x))[0].sum())
start = time.perf_counter()
f(jnp.ones((48, 48))).block_until_ready()
print(time.perf_counter() - start)
"""


@pytest.fixture
def restore_cache_config():
    saved = (
        jax.config.jax_compilation_cache_dir,
        jax.config.jax_persistent_cache_min_compile_time_secs,
        jax.config.jax_persistent_cache_min_entry_size_bytes,
    )
    yield
    jax.config.update("jax_compilation_cache_dir", saved[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", saved[1])
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", saved[2])


def test_directory_and_environment_override(tmp_path, monkeypatch, restore_cache_config):
    monkeypatch.delenv("OPIFEX_JAX_CACHE", raising=False)
    assert enable_compilation_cache(tmp_path / "a") == tmp_path / "a"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "a")
    monkeypatch.setenv("OPIFEX_JAX_CACHE", str(tmp_path / "b"))
    assert enable_compilation_cache(tmp_path / "a") == tmp_path / "b"
    for off in ("0", "off", "False"):
        monkeypatch.setenv("OPIFEX_JAX_CACHE", off)
        assert enable_compilation_cache(tmp_path / "c") is None
    assert not (tmp_path / "c").exists()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "opifex" / "jax"


@pytest.mark.e2e
def test_a_second_process_reads_the_compiled_program(tmp_path):
    environment = {**os.environ, "OPIFEX_JAX_CACHE": str(tmp_path)}
    entries = []
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=environment
        )
        assert run.returncode == 0, run.stderr
        entries.append(sorted(path.name for path in tmp_path.iterdir()))
    assert entries[0]  # the first process wrote its programs
    assert entries[1] == entries[0]  # the second found them all: nothing new was compiled
    environment["OPIFEX_JAX_CACHE"] = "0"
    off = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=environment
    )
    assert off.returncode == 0, off.stderr
