"""``opifex`` is a PEP 420 namespace package: no distribution may ship ``opifex/__init__.py``.

If one did, ``pip install opifex-<a>`` and ``opifex-<b>`` side by side would shadow each other
(only one ``opifex`` directory would be importable). These tests fail as soon as such a file
appears in the workspace or anywhere on ``sys.path``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import pathlib
import re
import sys
import tomllib

import opifex

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _members() -> list[pathlib.Path]:
    found = [ROOT.glob(f"{pattern}/pyproject.toml") for pattern in ("packages/*", "apps/*")]
    return sorted(path.parent for paths in found for path in paths)


def test_workspace_root_is_found():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["uv"]["workspace"]["members"] == ["packages/*", "apps/*"]
    assert (ROOT / "packages" / "opifex-core").is_dir()
    assert len(_members()) >= 2


def test_no_member_ships_opifex_init():
    offenders = [
        str(path.relative_to(ROOT))
        for pattern in ("packages/*/src/opifex", "apps/*/src/opifex")
        for directory in ROOT.glob(pattern)
        for path in (directory / "__init__.py", directory / "__init__.pyi")
        if path.exists()
    ]
    assert offenders == [], f"namespace-breaking files: {offenders}"


def test_each_member_provides_only_its_own_subpackage():
    # opifex-second-order ships opifex/second_order and nothing else under opifex/
    # (a member still being written may have no src/opifex yet)
    for member in _members():
        namespace_dir = member / "src" / "opifex"
        if not namespace_dir.is_dir():
            continue
        entries = sorted(p.name for p in namespace_dir.iterdir() if p.name != "__pycache__")
        expected = member.name.removeprefix("opifex-").replace("-", "_")
        assert set(entries) <= {expected}, f"{member.name} ships opifex/{entries}"


def test_opifex_is_a_namespace_spanning_several_packages():
    assert getattr(opifex, "__file__", None) is None  # a regular package would have one
    spec = importlib.util.find_spec("opifex")
    assert spec is not None and spec.origin in (None, "namespace")
    paths = [pathlib.Path(p).resolve() for p in opifex.__path__]
    assert type(opifex.__path__).__name__ == "_NamespacePath"
    # one entry per installed (editable) member: all of them in the workspace's environment,
    # opifex-core's alone in CI's per-package matrix (.ci/matrix opifex-core ...)
    installed = {
        re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        for dist in importlib.metadata.distributions()
    }
    expected = {
        member / "src" / "opifex"
        for member in _members()
        if tomllib.loads((member / "pyproject.toml").read_text())["project"]["name"] in installed
    }
    assert ROOT / "packages" / "opifex-core" / "src" / "opifex" in expected
    assert set(paths) == expected, paths
    for path in paths:
        assert not (path / "__init__.py").exists(), path


def test_no_opifex_init_anywhere_on_sys_path():
    offenders = [
        str(pathlib.Path(entry) / "opifex" / "__init__.py")
        for entry in sys.path
        if entry and (pathlib.Path(entry) / "opifex" / "__init__.py").exists()
    ]
    assert offenders == []
