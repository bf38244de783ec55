"""Meta-training reproduces bit for bit: ``MLPRecipe.meta_train`` (the shipped recipe's
optimiser, PES on the log loss, briefly) run twice, each in a fresh Python process on this
machine with the same settings, gives the identical ``phi``; the training record names what a
rerun elsewhere must share (jax and jaxlib versions, devices, CPU threads, ``XLA_FLAGS``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import hashlib, json
    import jax
    import numpy as np
    from opifex.core.families import QuadraticFamily
    from opifex.l2o import QUADRATIC10_MLP, MetaTrainConfig

    config = MetaTrainConfig(
        estimator="pes", meta_loss="log_mean", num_tasks=4, truncation_length=5, horizon=10,
        num_outer_steps=10, outer_learning_rate=1e-2, num_particles=2, validation_every=5,
        num_validation_tasks=4, validation_metric="final_loss",
    )
    result, record = QUADRATIC10_MLP.meta_train(
        jax.random.key(0), jax.random.key(2), QuadraticFamily(dimension=10), config,
        progress=False,
    )
    start = QUADRATIC10_MLP.init_phi(jax.random.key(0))
    bits = b"".join(np.asarray(x).tobytes() for x in jax.tree.leaves(result.phi))
    moved = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(jax.tree.leaves(result.phi), jax.tree.leaves(start), strict=True)
    )
    print(json.dumps({"phi_sha256": hashlib.sha256(bits).hexdigest(), "moved": moved,
                      "reproducibility": record["reproducibility"]}))
    """
)


@pytest.mark.e2e
def test_meta_training_twice_in_fresh_processes_gives_identical_phi():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = []
    for run in runs:
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, err.decode()[-4000:]
        outputs.append(json.loads(out.decode().strip().splitlines()[-1]))
    first, second = outputs
    assert first["moved"] > 0  # training changed phi
    assert first["phi_sha256"] == second["phi_sha256"]
    record = first["reproducibility"]
    assert set(record) == {
        "jax_version",
        "jaxlib_version",
        "num_devices",
        "cpu_threads",
        "xla_flags",
    }
    assert record["num_devices"] >= 1 and record["cpu_threads"] >= 1
