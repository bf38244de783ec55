"""The dashboard's page and JSON endpoints, through Starlette's TestClient (no browser).

The browser test (``test_deploy_dashboard_browser.py``, e2e) drives the same endpoints from the
page; here each endpoint's answers are checked against what was put in: a registry with a tiny
exported solver, results files of known and unknown shapes, points posted to a run.
"""

import json
import math
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from opifex.deploy import Registry, Signature, TensorSpec, export_function
from opifex.deploy._dashboard import Dashboard, canary_state, jsonable
from opifex.deploy._results import ResultsReader, format_cell, summarise
from opifex.deploy._runlog import RunLog, report_point
from opifex.deploy._service import create_app

with warnings.catch_warnings():  # Starlette >= 1 prefers httpx2 for its TestClient
    warnings.filterwarnings("ignore", message=".*starlette.testclient")
    from starlette.testclient import TestClient

REPO = Path(__file__).resolve().parents[3]
SIGNATURE = Signature((TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),))


class Double:
    """A servable without JAX: the service's table needs one."""

    signature = SIGNATURE
    sha256 = "double-sha"

    def __call__(self, inputs):
        return {"y": 2 * inputs["x"]}


class Canary:
    def status(self):
        return {"stable": "v1", "canary": "v2", "stats": {"v2": {"error_rate": np.float32(0.0)}}}


class BrokenCanary:
    def status(self):
        raise RuntimeError("no stats yet")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    registry = Registry(tmp_path_factory.mktemp("registry"))
    for scale in (2.0, 3.0):
        fn = export_function(lambda x, s=scale: {"y": s * x}, SIGNATURE, name="tiny")
        registry.publish("tiny", fn)
    registry.promote("tiny", "v1")
    registry.promote("tiny", "v2", "canary")
    return registry


@pytest.fixture
def results_dir(tmp_path):
    rows = [{"solver": "lbfgs", "time_s": 0.0123456, "nested": {"a": 1}}] * 15
    files = {
        "rows.json": {"benchmark": "rows_bench", "meta": {"date": "2026-12-07", "device": "cpu:0"},
                      "rows": rows, "total_seconds": 12.5},
        "summary.json": {"benchmark": "by_method", "meta": {"cpu": "AMD EPYC"},
                         "summary": {"MAML": {"loss": 0.1}, "Reptile": {"loss": 0.2}}},
        "list.json": [1, 2, 3],
        "scalar.json": 3.5,
    }  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_text(json.dumps(data))
    (tmp_path / "broken.json").write_text('{"benchmark": ')
    (tmp_path / "plot.png").write_bytes(b"\x89PNG")
    return tmp_path


def _client(**kwargs):
    return TestClient(Dashboard(**kwargs).app())


# ------------------------------------------------------------------------------ the page


def test_page_and_assets_are_served_with_a_strict_content_policy():
    with _client(poll_ms=750, title="<runs>") as client:
        page = client.get("/dashboard/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'data-poll-ms="750"' in page.text and "&lt;runs&gt;" in page.text
        assert "<runs>" not in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        assert "http" not in page.text.replace("http-equiv", "")  # nothing from elsewhere
        redirect = client.get("/dashboard", follow_redirects=False)
        assert redirect.status_code == 307 and redirect.headers["location"] == "/dashboard/"
        script = client.get("/dashboard/static/dashboard.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert "innerHTML" not in script.text  # server data goes in as text only
        style = client.get("/dashboard/static/dashboard.css")
        assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
        assert "url(" not in style.text and "@import" not in style.text
        assert client.get("/dashboard/static/../_dashboard.py").status_code == 404
        assert client.get("/dashboard/static/index.html").status_code == 404


# ------------------------------------------------------------------------------ results


def test_results_of_every_shape_are_listed(results_dir):
    with _client(results_dir=results_dir) as client:
        results = {r["file"]: r for r in client.get("/dashboard/api/results").json()["results"]}
    assert sorted(results) == ["broken.json", "list.json", "rows.json", "scalar.json",
                               "summary.json"]  # fmt: skip
    rows = results["rows.json"]
    assert (rows["name"], rows["date"], rows["device"], rows["error"]) == (
        "rows_bench", "2026-12-07", "cpu:0", None
    )  # fmt: skip
    assert rows["entries"] == [
        {"key": "rows", "summary": "table of 15 rows"},
        {"key": "total_seconds", "summary": "12.5"},
    ]
    table = rows["table"]
    assert table["columns"] == ["solver", "time_s", "nested"] and table["num_rows"] == 15
    assert len(table["rows"]) == 12 and table["rows"][0] == ["lbfgs", "0.01235", "{1 key}"]
    by_method = results["summary.json"]
    assert by_method["device"] == "AMD EPYC" and by_method["date"]  # the file's time
    assert by_method["table"]["columns"] == ["", "loss"]
    assert by_method["table"]["rows"] == [["MAML", "0.1"], ["Reptile", "0.2"]]
    assert "not a JSON object" in results["list.json"]["error"]
    assert "not a JSON object" in results["scalar.json"]["error"]
    assert "unreadable" in results["broken.json"]["error"]


def test_results_are_read_again_only_when_a_file_changes(results_dir):
    reader = ResultsReader(results_dir)
    first = reader.read()
    assert reader.read()[0] is first[0]  # cached
    (results_dir / "broken.json").write_text('{"benchmark": "fixed", "rows": []}')
    (results_dir / "list.json").unlink()
    again = {r["file"]: r for r in reader.read()}
    assert again["broken.json"]["name"] == "fixed" and "list.json" not in again
    assert ResultsReader(results_dir / "missing").read() == []


def test_the_repository_results_all_summarise():
    summaries = ResultsReader(REPO / "benchmarks" / "results").read()
    assert summaries, "benchmarks/results holds no JSON files"
    for summary in summaries:
        assert summary["error"] is None, summary
        assert summary["date"] and json.dumps(summary)


def test_cells_are_short():
    assert format_cell("x" * 100).endswith("…") and len(format_cell("x" * 100)) == 48
    assert [format_cell(v) for v in (math.nan, -math.inf, [], [1])] == [
        "nan", "-inf", "[0 items]", "[1 item]"
    ]  # fmt: skip
    assert summarise("x.json", {"meta": "not a dict", "benchmark": 3})["name"] == "x"


# ------------------------------------------------------------------------------ solvers


def test_solvers_list_registry_channels_served_versions_and_the_canary(registry):
    app = create_app(
        {"tiny": ("v1", Double())},
        warm_up=False,
        dashboard=Dashboard(registry=registry, canary=Canary(), max_events=3),
    )
    with TestClient(app) as client:
        assert client.get("/v1/solvers").status_code == 200  # the service is unchanged
        answer = client.get("/dashboard/api/solvers").json()
    assert answer["served"] == [
        {"name": "tiny", "version": "v1", "sha256": "double-sha", "ready": False, "error": None}
    ]
    (solver,) = answer["registry"]["solvers"]
    assert solver["name"] == "tiny" and solver["error"] is None
    assert solver["channels"] == {"stable": "v1", "canary": "v2"}
    assert [v["version"] for v in solver["versions"]] == ["v2", "v1"]  # newest first
    assert solver["versions"][0]["sha256"] == registry.metadata("tiny", "v2")["sha256"]
    assert [e["action"] for e in solver["events"]] == ["promote", "promote", "publish"]
    assert answer["canary"]["canary"] == "v2"
    assert answer["canary"]["stats"]["v2"]["error_rate"] == 0.0


def test_solvers_without_registry_or_with_failing_parts(tmp_path):
    (tmp_path / "bad" / "v1").mkdir(parents=True)
    (tmp_path / "bad" / "v1" / "metadata.json").write_text("{}")
    (tmp_path / "bad" / "channels.json").write_text("{not json")
    with _client(registry=str(tmp_path), canary=BrokenCanary()) as client:
        answer = client.get("/dashboard/api/solvers").json()
    assert answer["served"] == []  # no service: only the dashboard
    (bad,) = answer["registry"]["solvers"]
    assert bad["name"] == "bad" and "corrupt" in bad["error"]
    assert answer["canary"] == {"error": "RuntimeError: no stats yet"}
    with _client() as client:
        assert client.get("/dashboard/api/solvers").json() == {
            "served": [], "registry": None, "canary": None
        }  # fmt: skip


def test_canary_states_of_several_kinds():
    assert canary_state(None) is None
    assert canary_state(lambda: {"share": np.float64(0.25)}) == {"share": 0.25}
    assert canary_state([Canary(), BrokenCanary()])[1] == {"error": "RuntimeError: no stats yet"}
    assert jsonable({"a": np.arange(3), "b": (math.nan,)}) == {
        "a": [0, 1, 2], "b": ["NaN"]
    }  # fmt: skip


# ------------------------------------------------------------------------------ live runs


def test_points_posted_are_answered_incrementally():
    log = RunLog(max_points=5)
    with _client(run_log=log) as client:
        url = "/dashboard/api/runs/adam.lr-3/points"
        assert client.post(url, json={"step": 0, "value": 4.0}).json() == {
            "run": "adam.lr-3", "added": 1
        }  # fmt: skip
        many = {"points": [[1, 2.0], {"step": 2, "value": "NaN"}, [3, "Infinity"]]}
        assert client.post(url, json=many).json()["added"] == 3
        answer = client.get(url).json()
        assert answer == {
            "run": "adam.lr-3", "start": 0, "next": 4, "reset": False,
            "points": [[0, 4.0], [1, 2.0], [2, "NaN"], [3, "Infinity"]],
        }  # fmt: skip
        assert client.get(url + "?since=3").json()["points"] == [[3, "Infinity"]]
        client.post(url, json={"points": [[s, 1.0 / s] for s in range(4, 8)]})
        dropped = client.get(url + "?since=1").json()  # points 1 and 2 were dropped
        assert (dropped["reset"], dropped["start"], dropped["next"]) == (True, 3, 8)
        assert len(dropped["points"]) == 5
        (run,) = client.get("/dashboard/api/runs").json()["runs"]
        assert (run["run"], run["num_points"], run["last_step"]) == ("adam.lr-3", 8, 7)
        assert math.isclose(run["last_value"], 1 / 7)


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/dashboard/api/runs/-bad/points", {"step": 0, "value": 1}, 422, "run id"),
        ("/dashboard/api/runs/r/points", b"{", 400, "not JSON"),
        ("/dashboard/api/runs/r/points", {"step": 0}, 422, "body must be"),
        ("/dashboard/api/runs/r/points", [0, 1], 422, "body must be"),
        ("/dashboard/api/runs/r/points", {"step": "NaN", "value": 1}, 422, "step"),
        ("/dashboard/api/runs/r/points", {"step": True, "value": 1}, 422, "step"),
        ("/dashboard/api/runs/r/points", {"step": 0, "value": "1"}, 422, "value"),
        ("/dashboard/api/runs/r/points", {"points": [[0, 1, 2]]}, 422, "pair"),
        ("/dashboard/api/runs/r/points", {"points": [{"step": 0}]}, 422, "keys"),
        ("/dashboard/api/runs/r/points", {"points": 3}, 422, "list"),
        ("/dashboard/api/runs/r/points", {"points": [[0, 1]] * 10_001}, 422, "limit"),
        ("/dashboard/api/runs/r/points", b" " * (2**20 + 1), 413, "limit"),
    ],
)
def test_bad_points_get_a_4xx_and_change_nothing(path, body, status, message):
    log = RunLog()
    with _client(run_log=log) as client:
        if isinstance(body, bytes):
            answer = client.post(path, content=body)
        else:
            answer = client.post(path, json=body)
    assert answer.status_code == status and message in answer.json()["error"]
    assert log.runs() == []


def test_reading_runs_that_are_not_there():
    with _client() as client:
        assert client.get("/dashboard/api/runs").json() == {"runs": []}
        assert client.get("/dashboard/api/runs/nope/points").status_code == 404
        assert client.get("/dashboard/api/runs/nope/points?since=-1").status_code == 422
    with _client(accept_points=False) as client:
        answer = client.post("/dashboard/api/runs/r/points", json={"step": 0, "value": 1})
        assert answer.status_code == 405


def test_run_log_bounds_and_report_point():
    log = RunLog(max_runs=2, max_points=2)
    for run in ("a", "b", "c"):
        assert report_point(log, run, np.int32(1), jnp.float32(0.5))
    assert [r["run"] for r in log.runs()] == ["b", "c"]  # "a" was updated longest ago
    assert log.points("b")["points"] == [[1, 0.5]]
    log.clear("b")
    log.clear("never")
    assert [r["run"] for r in log.runs()] == ["c"]
    log.clear()
    assert log.runs() == []
    with pytest.raises(ValueError, match="run id"):
        report_point(log, "a/b", 0, 1.0)
    with pytest.raises(ValueError, match="step"):
        log.add("a", math.inf, 1.0)
    with pytest.raises(TypeError, match="RunLog or an http"):
        report_point("ftp://x", "a", 0, 1.0)
    with pytest.raises(ValueError, match="max_points"):
        RunLog(max_points=1)
    # nothing listens on port 9 of loopback (discard): the loop goes on without its dashboard
    assert report_point("http://127.0.0.1:9", "a", 0, 1.0, timeout=0.5) is False


def test_dashboard_options_are_checked():
    with pytest.raises(ValueError, match="poll_ms"):
        Dashboard(poll_ms=10)
    with pytest.raises(ValueError, match="max_events"):
        Dashboard(max_events=0)
    with pytest.raises(TypeError, match="run_log"):
        Dashboard(run_log={})
    app = create_app({}, warm_up=False, dashboard=True)
    assert isinstance(app.state.dashboard, Dashboard)
    assert create_app({}, warm_up=False).state.dashboard is None


def _dashboard_docs_section():
    """The "## Dashboard" section of docs/packages/deploy.md."""
    for page in ("deploy.md",):
        path = REPO / "docs" / "packages" / page
        text = path.read_text("utf-8") if path.exists() else ""
        if "## Dashboard" in text:
            start = text.index("## Dashboard")
            end = text.find("\n## ", start + 1)
            return path, text[start : end if end > 0 else len(text)]
    raise AssertionError("no '## Dashboard' section in docs/packages/")


@pytest.mark.e2e
def test_the_docs_examples_of_the_dashboard_run(monkeypatch, capsys):
    import re

    path, section = _dashboard_docs_section()
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(REPO)  # the example reads benchmarks/results
    for block in blocks:
        exec(compile(block, str(path), "exec"), {})
    assert capsys.readouterr().out.splitlines() == ["200 {'stable': 'v1', 'canary': 'v2'}", "5"]
