"""One vocabulary: no public config, result or signature of a built package uses a synonym.

The glossary is in CONTRIBUTING.md ("Vocabulary"): ``max_steps`` (budget), ``num_steps``
(count), ``learning_rate``, ``trace`` (per-step history), ``rtol`` / ``atol``. Domain names
with a strong convention are allowed (PySCF's ``conv_tol``, MINPACK's ``ftol`` / ``xtol`` /
``gtol``); deprecated spellings kept for one release (``renamed_fields``) are not fields.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

import pytest

PACKAGES = ("opifex.core", "opifex.core.metatrain", "opifex.second_order", "opifex.l2o")
OPTIONAL = ("opifex.quantum",)
# a name is a synonym when it is one of these, or one of its "_"-separated parts is
BANNED_NAMES = {"lr", "tol", "iterations", "num_iterations", "history", "adam_lr"}
BANNED_PARTS = {"tolerance", "iterations"}
# meta-training's record of outer steps is a history of training, not a solve's trace
ALLOWED = {("MetaTrainResult", "history")}


def _synonym(name: str) -> bool:
    return name in BANNED_NAMES or bool(set(name.split("_")) & BANNED_PARTS)


def _public_objects() -> list[tuple[str, Any]]:
    modules = list(PACKAGES)
    for name in OPTIONAL:
        try:
            importlib.import_module(name)
        except ImportError:  # pragma: no cover - the package is not installed
            continue
        modules.append(name)
    objects = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            objects.append((f"{module_name}.{name}", getattr(module, name)))
    return objects


def _names_of(obj: Any) -> list[str]:
    """Field names of a config / result, or keyword names of a callable."""
    if dataclasses.is_dataclass(obj) and isinstance(obj, type):
        return [field.name for field in dataclasses.fields(obj)]
    if isinstance(obj, type) and hasattr(obj, "_fields"):  # a NamedTuple
        return list(obj._fields)
    if callable(obj):
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError):
            return []
        return [p.name for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    return []


OBJECTS = dict(_public_objects())


@pytest.mark.parametrize("qualified", sorted(OBJECTS))
def test_public_names_use_the_glossary(qualified):
    obj = OBJECTS[qualified]
    owner = qualified.rsplit(".", 1)[-1]
    offending = [n for n in _names_of(obj) if _synonym(n) and (owner, n) not in ALLOWED]
    assert not offending, f"{qualified} uses {offending}: see CONTRIBUTING.md, Vocabulary"
