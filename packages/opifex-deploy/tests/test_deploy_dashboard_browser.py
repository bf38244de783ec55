"""The dashboard in a real headless browser: Debian's chromium driven by Playwright.

The test serves a registry with a tiny exported solver (``v1`` stable, ``v2`` canary, watched by
an ``AdaptiveDeploymentSystem``), a results directory and live runs from ``create_app`` under
uvicorn on 127.0.0.1, loads the page, and checks what it shows: the solver with its channels,
the results files, the canary's state, and a live run's plot following the points posted to it
(also on a log scale). Screenshots of the whole page and of the plot are checked as images:
PNGs of the viewport's width, not blank, the plot drawn in its colour. The page must log no
console error.

Needs ``/usr/bin/chromium`` (``.ci/install_browser.sh`` installs it) and the ``playwright``
Python package (the workspace's dev group); Playwright's own browser download is not used.
"""

import json
import math
import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[3]
VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN = "lbfgs-rosenbrock"
PLOT_BLUE = (0x1F, 0x6F, 0xEB)  # the first run's colour in dashboard.js

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium: run .ci/install_browser.sh",
    ),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory, serve_in_thread):
    """The service with the dashboard, served; yields its base URL."""
    import jax.numpy as jnp

    from opifex.deploy import Registry, Signature, TensorSpec, export_function
    from opifex.deploy._canary import AdaptiveDeploymentSystem
    from opifex.deploy._dashboard import Dashboard
    from opifex.deploy._service import create_app

    signature = Signature((TensorSpec("x", (), "float32"),), (TensorSpec("y", (), "float32"),))
    registry = Registry(tmp_path_factory.mktemp("registry"))
    for scale in (2.0, 3.0):
        fn = export_function(lambda x, s=scale: {"y": s * jnp.asarray(x)}, signature, name="tiny")
        registry.publish("tiny", fn)
    registry.promote("tiny", "v1")
    registry.promote("tiny", "v2", "canary")
    canary = AdaptiveDeploymentSystem(registry, "tiny", canary_percentage=25.0)

    results = tmp_path_factory.mktemp("results")
    shutil.copy(REPO / "benchmarks" / "results" / "quantum_scale.json", results)
    (results / "odd_shape.json").write_text(json.dumps({"benchmark": "odd", "values": [1, 2]}))

    dashboard = Dashboard(registry=registry, results_dir=results, canary=canary, poll_ms=200)
    app = create_app(
        {"tiny": ("v1", registry.load("tiny", "v1"))}, max_batch_size=2, dashboard=dashboard
    )
    with serve_in_thread(app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def browser_page(site, tmp_path):
    """A page in a fresh chromium profile, and the list of console errors it logs."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            device_scale_factor=1,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            errors = []
            page.on(
                "console", lambda message: message.type == "error" and errors.append(message.text)
            )
            page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
            yield page, errors
        finally:
            context.close()


# ------------------------------------------------------------------------------ images


def _png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _rgb(path):
    """The image as an array of RGB values (0-255), by Pillow if there, else None."""
    try:
        from PIL import Image
    except ImportError:
        return None
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def _assert_not_blank(path, *, min_std=8.0, min_fraction=0.02):
    data = path.read_bytes()
    width, height = _png_size(data)
    pixels = _rgb(path)
    if pixels is None:  # no Pillow: the filtered scanlines of a blank image are ~all zero
        idat = b"".join(
            data[i + 8 : i + 8 + struct.unpack(">I", data[i : i + 4])[0]]
            for i in (m.start() - 4 for m in re.finditer(b"IDAT", data))
        )
        raw = np.frombuffer(zlib.decompress(idat), np.uint8)
        assert np.count_nonzero(raw) / raw.size > min_fraction, f"{path.name} looks blank"
        return width, height
    assert pixels.shape[:2] == (height, width)
    grey = pixels.mean(axis=2)
    background = np.median(grey)
    assert grey.std() > min_std, f"{path.name}: pixel std {grey.std():.1f}, blank?"
    assert np.mean(np.abs(grey - background) > 30) > min_fraction, f"{path.name}: too uniform"
    return width, height


# ------------------------------------------------------------------------------ the test


def _polyline(page):
    return page.locator(f'polyline.run-line[data-run="{RUN}"]')


def _coordinates(page):
    pairs = _polyline(page).get_attribute("points").split()
    return np.array([[float(c) for c in pair.split(",")] for pair in pairs])


def test_dashboard_in_a_headless_browser(site, browser_page, tmp_path):
    from opifex.deploy._runlog import report_point

    page, errors = browser_page
    page.goto(f"{site}/dashboard/")
    assert page.title() == "opifex dashboard"

    # registered solvers with their channels; the served one becomes ready
    stable = page.locator('#solvers-table tr[data-name="tiny"][data-version="v1"]')
    canary = page.locator('#solvers-table tr[data-name="tiny"][data-version="v2"]')
    stable.wait_for()
    assert stable.get_attribute("data-channel") == "stable"
    assert canary.get_attribute("data-channel") == "canary"
    assert "stable" in stable.locator("td.channels").inner_text()
    page.wait_for_function(
        """() => {
            const row = document.querySelector('#solvers-table tr[data-version="v1"]');
            return row && row.innerText.includes("ready");
        }""",
        timeout=120_000,
    )
    assert "canary_percentage" in page.locator("#canary").inner_text()
    assert "25" in page.locator("#canary").inner_text()
    assert "promote" in page.locator("#events").inner_text()

    # results files, known and unknown shapes
    scale = page.locator('details.result[data-file="quantum_scale.json"]')
    scale.wait_for()
    assert "quantum_scale" in scale.locator("summary").inner_text()
    assert "cpu:0" in scale.locator("summary").inner_text()
    odd = page.locator('details.result[data-file="odd_shape.json"]')
    assert "odd" in odd.locator("summary").inner_text()
    scale.locator("summary").click()  # open it (the first file is open already)
    assert scale.locator("table.rows tbody tr").count() > 0

    # a live run: points posted over HTTP reach the plot
    losses = [100.0 * 0.7**step for step in range(20)]
    for step, loss in enumerate(losses):
        assert report_point(site, RUN, step, loss)
    page.wait_for_function(
        f"""() => {{
            const line = document.querySelector('polyline[data-run="{RUN}"]');
            return line && line.dataset.count === "20";
        }}"""
    )
    xy = _coordinates(page)
    assert xy.shape == (20, 2)
    assert np.all(np.diff(xy[:, 0]) > 0) and np.all(np.diff(xy[:, 1]) > 0)  # loss goes down

    more = [[step, 100.0 * 0.7**step] for step in range(20, 30)]
    more[4][1] = "NaN"  # a non-finite value is kept and not drawn
    answer = httpx.post(f"{site}/dashboard/api/runs/{RUN}/points", json={"points": more})
    assert answer.json() == {"run": RUN, "added": 10}
    page.wait_for_function(
        f"""() => document.querySelector('polyline[data-run="{RUN}"]').dataset.count === "29" """
    )
    info = page.locator(f'.run[data-run="{RUN}"] .run-info').inner_text()
    assert "30 points" in info and "1 not finite" in info

    # on a log scale the exponential decay is a straight line
    page.locator("#log-scale").check()
    page.wait_for_function(
        f"""() => document.querySelector('.run[data-run="{RUN}"] .run-info')
            .innerText.includes("log scale")"""
    )
    xy = _coordinates(page)
    slopes = np.diff(xy[:, 1]) / np.diff(xy[:, 0])
    assert np.ptp(slopes) < 0.2 * abs(np.mean(slopes)), slopes

    # screenshots: the whole page, and the plot
    page.wait_for_timeout(300)  # a poll or two after the last change
    full = tmp_path / "dashboard.png"
    page.screenshot(path=str(full), full_page=True)
    width, height = _assert_not_blank(full)
    body_height = page.evaluate("document.documentElement.scrollHeight")
    assert width == VIEWPORT["width"] and height >= max(VIEWPORT["height"], body_height - 1)
    plot = tmp_path / "plot.png"
    page.locator(f'.run[data-run="{RUN}"]').screenshot(path=str(plot))
    _assert_not_blank(plot, min_std=4.0, min_fraction=0.01)
    pixels = _rgb(plot)
    if pixels is not None:
        blue = np.all(np.abs(pixels - np.array(PLOT_BLUE)) < 40, axis=2)
        assert blue.sum() > 200, f"the plot's line has {blue.sum()} pixels of its colour"

    assert errors == [], errors
    assert not math.isnan(float(page.evaluate("document.body.dataset.updates")))
