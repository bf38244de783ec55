"""The MLP learned optimiser as configured for the shipped weights, in one place.

``MLPRecipe`` fixes what the meta-parameters ``phi`` mean (features, widths, output scales)
and how a fresh ``phi`` starts; ``QUADRATIC10_MLP`` is the recipe of the pretrained
``quadratic10_mlp`` (``benchmarks/l2o/bench_l2o.py``), also used by ``opifex train l2o``;
``LASSO25X50_MLP`` that of ``lasso25x50_mlp`` (``benchmarks/l2o/bench_l2o_lasso.py``);
``MLP_REGRESSION_MLP`` that of ``mlp_regression_mlp``
(``benchmarks/l2o/bench_l2o_mlp_regression.py``).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import optax

from opifex.core import TaskFamily, check_int_at_least, check_positive
from opifex.core.metatrain import MetaTrainConfig, MetaTrainResult
from opifex.l2o._features import FeatureConfig
from opifex.l2o._learned_meta import meta_train
from opifex.l2o._mlp import init_mlp_optimizer_params, mlp_optimizer
from opifex.l2o._pretrained import save_pretrained


@dataclasses.dataclass(frozen=True)
class MLPRecipe:
    """An ``mlp_optimizer`` configuration and its initialisation.

    Attributes:
        features: the ``FeatureConfig``.
        hidden_sizes: hidden widths of the MLP (each >= 1; a list is stored as a tuple).
        lr_scale: ``mlp_optimizer``'s ``lr_scale`` (> 0).
        magnitude_scale: ``mlp_optimizer``'s ``magnitude_scale`` (> 0).
        last_layer_init: factor on the output layer's random initial weights (small first
            steps before meta-training; > 0).

    Raises:
        TypeError / ValueError: a field of the wrong type or out of range, naming it.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> phi = QUADRATIC10_MLP.init_phi(jax.random.key(0))
        >>> opt = QUADRATIC10_MLP.make_optimizer(phi)
        >>> updates, _ = opt.update(jnp.ones(3), opt.init(jnp.zeros(3)), jnp.zeros(3), value=1.0)
        >>> updates.shape
        (3,)
    """

    features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    hidden_sizes: tuple[int, ...] = (32, 32)
    lr_scale: float = 1e-3
    magnitude_scale: float = 1e-3
    last_layer_init: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.features, FeatureConfig):
            raise TypeError(f"features must be a FeatureConfig, got {type(self.features).__name__}")
        if isinstance(self.hidden_sizes, str) or not isinstance(self.hidden_sizes, tuple | list):
            raise TypeError(f"hidden_sizes must be a tuple of ints, got {self.hidden_sizes!r}")
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        for i, size in enumerate(self.hidden_sizes):
            check_int_at_least(size, 1, f"hidden_sizes[{i}]")
        for name in ("lr_scale", "magnitude_scale", "last_layer_init"):
            check_positive(getattr(self, name), name)

    def init_phi(self, key: jax.Array) -> list[dict[str, jax.Array]]:
        """A fresh ``phi``: ``init_mlp_optimizer_params`` with the output layer scaled."""
        phi = init_mlp_optimizer_params(key, features=self.features, hidden_sizes=self.hidden_sizes)
        phi[-1] = {name: self.last_layer_init * value for name, value in phi[-1].items()}
        return phi

    def make_optimizer(self, phi: Any) -> optax.GradientTransformationExtraArgs:
        """``mlp_optimizer(phi)`` with this recipe's features and scales."""
        return mlp_optimizer(
            phi,
            features=self.features,
            lr_scale=self.lr_scale,
            magnitude_scale=self.magnitude_scale,
        )

    def meta_train(
        self,
        init_key: jax.Array,
        train_key: jax.Array,
        family: TaskFamily,
        config: MetaTrainConfig,
        **options: Any,
    ) -> tuple[MetaTrainResult, dict[str, Any]]:
        """``meta_train`` from ``init_phi(init_key)``, timed.

        Args:
            init_key: the key of the initial ``phi``.
            train_key: ``meta_train``'s key.
            family: the ``TaskFamily`` to train on.
            config: a ``MetaTrainConfig``.
            **options: ``meta_train``'s keyword options (``curriculum``, ``progress``, ...).

        Returns:
            ``(MetaTrainResult, record)``; the record holds the wall time, outer steps, skipped
            steps, the validation metric, the device and the throughput in inner steps per
            second across the task batch (and counting PES / ES particles), and under
            ``"reproducibility"`` what a bit-for-bit rerun must share besides the keys and the
            machine's CPU: the jax and jaxlib versions, the number of devices, the CPU threads
            available to XLA and ``XLA_FLAGS``.
        """
        start = time.perf_counter()
        result = meta_train(
            train_key, self.init_phi(init_key), family, self.make_optimizer, config, **options
        )
        wall = time.perf_counter() - start
        steps = int(np.asarray(result.history.meta_loss).shape[0])
        inner = steps * config.num_tasks * config.truncation_length
        particles = 1 if config.estimator == "truncated_bptt" else config.num_particles
        record = {
            "wall_time_s": wall,
            "outer_steps": steps,
            "skipped_steps": result.history.num_skipped_steps,
            "inner_steps_per_s_task_batch": inner / wall,
            "inner_steps_per_s_with_particles": inner * particles / wall,
            "validation_metric": np.asarray(result.history.validation_metric).tolist(),
            "device": str(jax.devices()[0]),
            "reproducibility": _environment(options.get("devices")),
        }
        return result, record

    def save(self, path: str | os.PathLike, phi: Any, metadata: Mapping[str, Any]) -> None:
        """``save_pretrained`` of ``phi`` with this recipe (``load_pretrained`` rebuilds it)."""
        save_pretrained(
            path,
            phi,
            features=self.features,
            hidden_sizes=self.hidden_sizes,
            lr_scale=self.lr_scale,
            magnitude_scale=self.magnitude_scale,
            metadata=metadata,
        )


def _environment(devices: Any) -> dict[str, Any]:
    """What decides, besides keys, settings and the CPU model, the bits of a training run."""
    threads = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "jax_version": jax.__version__,
        "jaxlib_version": importlib.metadata.version("jaxlib"),
        "num_devices": len(jax.devices() if devices is None else list(devices)),
        "cpu_threads": os.cpu_count() if threads is None else len(threads),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


QUADRATIC10_MLP = MLPRecipe(
    features=FeatureConfig(use_scale=True, use_loss=True),
    hidden_sizes=(32, 32),
    lr_scale=0.1,
    magnitude_scale=1.0,
    last_layer_init=0.1,
)

# no loss features: the LASSO benchmark meta-trains on the optimality gap f - f*, and an
# optimiser that saw that loss would see f*, which it does not have at test time
LASSO25X50_MLP = MLPRecipe(
    features=FeatureConfig(use_scale=True, use_loss=False),
    hidden_sizes=(32, 32),
    lr_scale=0.1,
    magnitude_scale=1.0,
    last_layer_init=0.1,
)

# QUADRATIC10_MLP's features and widths with ten times smaller steps: on the teacher-student
# MLP regression family, lr_scale 0.1 diverges on most tasks at the start of meta-training
MLP_REGRESSION_MLP = MLPRecipe(
    features=FeatureConfig(use_scale=True, use_loss=True),
    hidden_sizes=(32, 32),
    lr_scale=0.01,
    magnitude_scale=1.0,
    last_layer_init=0.1,
)
