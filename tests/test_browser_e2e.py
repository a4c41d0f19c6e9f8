"""QueryBrowser in a real browser: JupyterLab on 127.0.0.1 driven by Debian's Chromium through Playwright.

Runs a notebook, reads the tiles' computed border colours, moves the query slider with the keyboard
and checks that the query and the colours change, and saves a screenshot in the test's tmp folder.
The expected colour of each tile comes from its own caption (pid, camera) against the query's, so the
check does not depend on the notebook's data.

Needs: apt-get install -y chromium; pip install playwright jupyterlab ipywidgets (no browser download:
Playwright drives /usr/bin/chromium). Skips with the reason when Chromium or playwright is missing.
"""
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from reidlab.paths import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
FIXTURES = Path(__file__).parent / "fixtures"
RETRIEVAL_NOTEBOOK = REPO_ROOT / "notebooks" / "10_retrieval.ipynb"
# The notebook under test, run in smoke mode (it ends with a QueryBrowser of two runs). None: a small one this
# test writes on generated runs.
NOTEBOOK: Path | None = RETRIEVAL_NOTEBOOK
# smoke trains two tiny runs before the browser appears: minutes on a loaded 2-core CPU
RUN_TIMEOUT_MS = 90_000 if NOTEBOOK is None else 600_000
KIND_RGB = {"query": "rgb(31, 119, 180)", "match": "rgb(44, 160, 44)", "mismatch": "rgb(214, 39, 40)",
            "junk": "rgb(158, 158, 158)"}

if not CHROMIUM.exists():
    pytest.skip("Chromium not found at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True)
if importlib.util.find_spec("playwright") is None:
    pytest.skip("playwright is not installed (pip install playwright; it drives /usr/bin/chromium, no browser "
                "download)", allow_module_level=True)
if importlib.util.find_spec("jupyterlab") is None:
    pytest.skip("jupyterlab is not installed (pip install jupyterlab ipywidgets)", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

pytestmark = pytest.mark.slow


def write_fixture_notebook(folder: Path) -> Path:
    """A one-cell notebook that builds a QueryBrowser on generated runs (images drawn into folder/images)."""
    import nbformat
    source = f'''import importlib.util, sys
spec = importlib.util.spec_from_file_location("reid_fakes", {str(FIXTURES / "reid_fakes.py")!r})
fakes = importlib.util.module_from_spec(spec)
sys.modules["reid_fakes"] = fakes
spec.loader.exec_module(fakes)
from reidlab.browser import QueryBrowser, RunView

query, gallery, result, distmat, qf, gf = fakes.make_fake_run("images")
browser = QueryBrowser(RunView("generated run", query, gallery, result, distmat), k=6)
browser'''
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "query_browser.ipynb"
    nbformat.write(nb, path)
    return path


def write_notebook_under_test(folder: Path) -> Path:
    """NOTEBOOK with papermill's parameters cell injected (smoke mode, outputs under folder), or the fixture."""
    if NOTEBOOK is None:
        return write_fixture_notebook(folder)
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(load_notebook_node(str(NOTEBOOK)),  # papermill's reader adds the cell tags it needs
                               {"smoke": True, "out_dir": str(folder / "out" / NOTEBOOK.stem)})
    path = folder / NOTEBOOK.name
    nbformat.write(nb, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """(base url, token, notebook name): JupyterLab serving tmp_path, stopped (with its kernels) afterwards."""
    notebook = write_notebook_under_test(tmp_path)
    port, token = free_port(), os.urandom(12).hex()
    news = tmp_path / ".settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get Jupyter news?" toast over the widget
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / ".runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / ".settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / ".workspaces"),
           "OMP_NUM_THREADS": "1"}  # the kernel inherits it: on 2 shared cores 1 thread is faster
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    json.load(r)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    tail = (tmp_path / "jupyterlab.log").read_text()[-3000:]
                    raise RuntimeError(f"JupyterLab did not start:\n{tail}")
                time.sleep(0.5)
        yield base, token, notebook.name
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started (its own session)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def page():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


READ_TILES = """() => {
  const visible = e => e.offsetParent !== null;
  const root = document.querySelector('.reid-browser');
  const q = root.querySelector('.reid-query-caption');
  const tiles = Array.from(root.querySelectorAll('img.reid-tile')).filter(visible);
  return {
    query: q.innerText,
    tiles: tiles.map(img => ({classes: img.className, colour: getComputedStyle(img).borderTopColor,
                              width: getComputedStyle(img).borderTopWidth,
                              caption: img.parentElement.querySelector('[class*=caption]').innerText})),
    topk: root.querySelectorAll('.widget-slider .widget-readout')[1].innerText,
  };
}"""


def check_colours(state) -> list[str]:
    """Each tile's computed border colour is the one its caption implies; returns the kinds in order."""
    qpid, qcam = map(int, re.search(r"pid (\d+) · cam (\d+)", state["query"]).groups())
    query_tile, *tiles = state["tiles"]
    assert query_tile["colour"] == KIND_RGB["query"], query_tile
    assert len(tiles) in (int(state["topk"]), 2 * int(state["topk"]))  # one run, or two compared
    kinds = []
    for tile in tiles:
        pid, cam = map(int, re.search(r"pid (\d+) · cam (\d+)", tile["caption"]).groups())
        kind = "mismatch" if pid != qpid else "junk" if cam == qcam else "match"
        assert f"reid-{kind}" in tile["classes"].split(), tile
        assert tile["colour"] == KIND_RGB[kind], (tile, kind)
        assert tile["width"] == "4px"
        kinds.append(kind)
    return kinds


def test_query_browser_in_jupyterlab(lab, page, tmp_path):
    base, token, name = lab
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/lab/tree/{name}?token={token}")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext", timeout=90_000)
    page.evaluate("async () => { const w = window.jupyterapp.shell.currentWidget;"
                  " await w.context.ready; await w.sessionContext.ready; }")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_selector(".reid-browser img.reid-tile.reid-query", timeout=RUN_TIMEOUT_MS)
    page.wait_for_function("() => document.querySelector('.reid-query-caption').innerText.includes('pid')")

    before = page.evaluate(READ_TILES)
    kinds_before = check_colours(before)
    assert before["query"].startswith("query 0")

    handle = page.locator(".reid-browser .widget-slider .noUi-handle").first  # the query slider
    handle.focus()
    start = time.perf_counter()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("q => document.querySelector('.reid-query-caption').innerText !== q", arg=before["query"])
    latency = time.perf_counter() - start
    page.wait_for_timeout(300)  # let the remaining tile updates land
    after = page.evaluate(READ_TILES)
    kinds_after = check_colours(after)
    assert after["query"].startswith("query 1")
    assert [t["caption"] for t in after["tiles"]] != [t["caption"] for t in before["tiles"]]
    if NOTEBOOK is None:  # the fixture's data is made so; a notebook's real lists may repeat a pattern
        assert kinds_after != kinds_before, "the two queries' colour patterns should differ (fixture data)"
    assert not page.locator("text=Error displaying widget").count()
    assert not errors, errors

    shot = tmp_path / "query_browser.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"\nscreenshot: {shot}\nkey press -> query caption changed: {latency * 1000:.0f} ms\n"
          f"kinds before: {kinds_before}\nkinds after:  {kinds_after}")
