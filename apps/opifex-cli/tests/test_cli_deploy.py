"""``opifex deploy export / list / promote / rollback`` on a registry in ``tmp_path``.

The solver exported is ``l2o-quadratic10`` (the cheapest to lower, about half a second); the
exported solvers' numbers are checked against opifex in
``tests/integration/test_deploy_exportables.py``.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from opifex.cli._app import app
from opifex.cli._deploy import REGISTRY_ENV, SOLVER_NAMES
from opifex.cli._exportables import EXPORTABLES
from opifex.deploy import Registry

WIDE = {"COLUMNS": "200"}
SOLVER = "l2o-quadratic10"


def _invoke(*args: str, **env: str):
    return CliRunner().invoke(app, list(args), env={**WIDE, **env})


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    first = _invoke("deploy", "export", SOLVER, "--registry", str(root))
    assert first.exit_code == 0, first.output
    second = _invoke("deploy", "export", SOLVER, "--channel", "canary", **{REGISTRY_ENV: str(root)})
    assert second.exit_code == 0, second.output
    return root, first.output, second.output


def test_export_publishes_versions(registry):
    root, first, second = registry
    assert f"exported {SOLVER} v1 to {root}" in first and "platforms cpu" in first
    assert f"exported {SOLVER} v2" in second and f"canary: {SOLVER} v2" in second
    store = Registry(root)
    assert store.versions(SOLVER) == ["v1", "v2"]
    meta = store.metadata(SOLVER, "v1")
    assert meta["extra"]["description"] == EXPORTABLES[SOLVER].description
    assert meta["signature"] == EXPORTABLES[SOLVER].signature.to_json()
    assert f"sha256 {meta['sha256'][:12]}" in first


def test_promote_list_and_rollback(registry, tmp_path):
    root = str(registry[0])
    promoted = _invoke("deploy", "promote", SOLVER, "v1", "--registry", root)
    assert promoted.exit_code == 0 and f"stable: {SOLVER} v1 (was unset)" in promoted.output
    promoted = _invoke("deploy", "promote", SOLVER, "latest", "--registry", root)
    assert f"stable: {SOLVER} v2 (was v1)" in promoted.output
    listed = _invoke("deploy", "list", "--registry", root)
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.output.splitlines() if SOLVER in line]
    assert [row[1] for row in rows] == ["v1", "v2"]
    assert rows[1][2:4] == ["stable,", "canary"] and rows[0][2] != "stable,"
    sha256 = Registry(root).metadata(SOLVER, "v2")["sha256"]
    assert sha256[:12] in rows[1] and "cpu" in rows[1]
    rolled = _invoke("deploy", "rollback", SOLVER, "--registry", root)
    assert rolled.exit_code == 0 and f"stable: {SOLVER} v1 (was v2)" in rolled.output
    again = _invoke("deploy", "rollback", SOLVER, "--registry", root)
    assert again.exit_code == 2 and "no earlier stable version" in again.output
    canary = _invoke("deploy", "rollback", SOLVER, "--channel", "canary", "--registry", root)
    assert canary.exit_code == 0 and f"canary: {SOLVER} unset (was v2)" in canary.output
    events = [json.loads(line) for line in (registry[0] / SOLVER / "events.jsonl").open()]
    assert [e["action"] for e in events] == [
        "publish",
        "publish",
        "promote",
        "promote",
        "promote",
        "rollback",
        "rollback",
    ]
    empty = _invoke("deploy", "list", "--registry", str(tmp_path))
    assert empty.exit_code == 0 and "no solvers in" in empty.output


def test_errors_exit_2_with_a_message(registry, tmp_path):
    root = str(registry[0])
    unknown = _invoke("deploy", "export", "no-such-solver", "--registry", root)
    assert unknown.exit_code == 2 and "unknown solver 'no-such-solver'" in unknown.output
    assert all(name in unknown.output for name in EXPORTABLES)
    channel = _invoke("deploy", "promote", SOLVER, "v1", "--channel", "beta", "--registry", root)
    assert channel.exit_code == 2 and "--channel must be stable or canary" in channel.output
    version = _invoke("deploy", "promote", SOLVER, "v9", "--registry", root)
    assert version.exit_code == 2 and "got 'v9'" in version.output
    missing = _invoke("deploy", "list", "nothing", "--registry", root)
    assert missing.exit_code == 2 and "no versions of 'nothing'" in missing.output
    platform = _invoke("deploy", "export", SOLVER, "--platform", "gpu", "--registry", root)
    assert platform.exit_code == 2 and "platforms must be among" in platform.output
    no_registry = _invoke("deploy", "list")
    assert no_registry.exit_code == 2 and "--registry" in no_registry.output


def test_help_names_every_exportable():
    assert tuple(EXPORTABLES) == SOLVER_NAMES
    result = _invoke("deploy", "export", "--help")
    assert result.exit_code == 0 and all(name in result.output for name in SOLVER_NAMES)
    assert "deploy" in _invoke().output
