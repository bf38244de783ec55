"""Pretrained learned optimisers shipped inside the package.

A pretrained optimiser is one ``.npz`` file in ``opifex/l2o/pretrained/`` written by
``save_pretrained``: the meta-parameters ``phi`` plus metadata that rebuilds the optimiser (its
kind, ``FeatureConfig`` and scales) and records where it comes from (the task family, the
horizon, the meta-training settings and the benchmark script that produced it). What a
pretrained ``phi`` learned holds only for its family and horizon (``metadata["family"]``,
``metadata["horizon"]``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from importlib import resources
from typing import Any, NamedTuple

import jax
import optax

from opifex.core import load_metadata, load_pytree, save_pytree
from opifex.l2o._features import FeatureConfig
from opifex.l2o._mlp import init_mlp_optimizer_params, mlp_optimizer

_SUFFIX = ".npz"
_KINDS = ("mlp",)


class Pretrained(NamedTuple):
    """A pretrained learned optimiser.

    Attributes:
        optimizer: the ``optax.GradientTransformationExtraArgs`` built from ``phi``.
        phi: its meta-parameters.
        metadata: how it was built and trained (a JSON-like dict).
    """

    optimizer: optax.GradientTransformationExtraArgs
    phi: Any
    metadata: dict[str, Any]


def _directory() -> Any:
    return resources.files("opifex.l2o") / "pretrained"


def pretrained_names() -> tuple[str, ...]:
    """Names accepted by ``load_pretrained``, sorted.

    Example:
        >>> "quadratic10_mlp" in pretrained_names()
        True
    """
    directory = _directory()
    if not directory.is_dir():
        return ()
    return tuple(
        sorted(p.name[: -len(_SUFFIX)] for p in directory.iterdir() if p.name.endswith(_SUFFIX))
    )


def _build(metadata: Mapping[str, Any], phi: Any | None) -> tuple[Any, Any]:
    """``(optimizer, phi)`` from ``metadata``; ``phi=None`` gives a template ``phi``."""
    if metadata.get("kind") not in _KINDS:
        raise ValueError(f"unknown pretrained optimiser kind {metadata.get('kind')!r}")
    features = FeatureConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in metadata["features"].items()}
    )
    if phi is None:
        phi = init_mlp_optimizer_params(
            jax.random.key(0), features=features, hidden_sizes=tuple(metadata["hidden_sizes"])
        )
    optimizer = mlp_optimizer(
        phi,
        features=features,
        lr_scale=metadata["lr_scale"],
        magnitude_scale=metadata["magnitude_scale"],
    )
    return optimizer, phi


def load_pretrained(name: str | os.PathLike) -> Pretrained:
    """Load a pretrained learned optimiser: one shipped with ``opifex-l2o``, or a file.

    Args:
        name: one of ``pretrained_names()``, or the path of a ``.npz`` file written by
            ``save_pretrained`` (e.g. by ``opifex train l2o``).

    Returns:
        A ``Pretrained`` (optimizer, phi, metadata).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        FileNotFoundError: a ``.npz`` path that does not exist.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> pretrained = load_pretrained("quadratic10_mlp")
        >>> pretrained.metadata["family"], pretrained.metadata["horizon"]
        ('QuadraticFamily(dimension=10)', 100)
        >>> state = pretrained.optimizer.init(jnp.zeros(10))
    """
    if isinstance(name, os.PathLike) or str(name).endswith(_SUFFIX):
        return _load_file(name)
    names = pretrained_names()
    if name not in names:
        raise ValueError(f"unknown pretrained optimiser {name!r}; available: {list(names)}")
    with resources.as_file(_directory() / f"{name}{_SUFFIX}") as path:
        return _load_file(path)


def _load_file(path: str | os.PathLike) -> Pretrained:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no pretrained optimiser file {os.fspath(path)!r}")
    metadata = load_metadata(path)
    _, template = _build(metadata, None)
    optimizer, phi = _build(metadata, load_pytree(path, like=template))
    return Pretrained(optimizer, phi, metadata)


def save_pretrained(
    path: str | os.PathLike,
    phi: Any,
    *,
    features: FeatureConfig,
    hidden_sizes: tuple[int, ...],
    lr_scale: float,
    magnitude_scale: float,
    metadata: Mapping[str, Any],
) -> None:
    """Write an ``mlp_optimizer``'s ``phi`` and what rebuilds it, for ``load_pretrained``.

    Args:
        path: the ``.npz`` file to write (atomically).
        phi: the meta-parameters, from ``init_mlp_optimizer_params(features=features,
            hidden_sizes=hidden_sizes)`` and meta-training.
        features: the optimiser's ``FeatureConfig``.
        hidden_sizes: the MLP's hidden widths.
        lr_scale: ``mlp_optimizer``'s ``lr_scale``.
        magnitude_scale: ``mlp_optimizer``'s ``magnitude_scale``.
        metadata: provenance to keep (family, horizon, meta-training settings, benchmark);
            JSON-serialisable.

    Raises:
        ValueError: ``phi`` does not fit ``features`` / ``hidden_sizes``.

    Example:
        >>> import os, tempfile, jax
        >>> from opifex.l2o import FeatureConfig, init_mlp_optimizer_params
        >>> phi = init_mlp_optimizer_params(jax.random.key(0), hidden_sizes=(4,))
        >>> path = os.path.join(tempfile.mkdtemp(), "toy.npz")
        >>> save_pretrained(path, phi, features=FeatureConfig(), hidden_sizes=(4,),
        ...                 lr_scale=0.01, magnitude_scale=1.0, metadata={"horizon": 10})
    """
    record = {
        **dict(metadata),
        "kind": "mlp",
        "features": dataclasses.asdict(features),
        "hidden_sizes": list(hidden_sizes),
        "lr_scale": float(lr_scale),
        "magnitude_scale": float(magnitude_scale),
    }
    _, template = _build(record, None)
    if jax.tree.structure(template) != jax.tree.structure(phi) or any(
        a.shape != b.shape
        for a, b in zip(jax.tree.leaves(template), jax.tree.leaves(phi), strict=True)
    ):
        raise ValueError("phi does not fit features / hidden_sizes")
    save_pytree(path, phi, metadata=record)
