"""`reidlab rank --html` in a real browser: Debian's Chromium through Playwright opens the page from disk.

Checks that every thumbnail decodes, that each query shows its top K in the printed order and distances, and
that the page is self-contained (no request leaves the file). Needs: apt-get install -y chromium;
pip install playwright (no browser download). Skips, saying which, when either is missing.
"""
import importlib.util
import re
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Chromium not found at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True)
if importlib.util.find_spec("playwright") is None:
    pytest.skip("playwright is not installed (pip install playwright; it drives /usr/bin/chromium, no browser "
                "download)", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

from reidlab.config import PRESETS  # noqa: E402
from reidlab.datasets import load_dataset  # noqa: E402
from reidlab.train import fit  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
READ_PAGE = """() => Array.from(document.querySelectorAll('section.query')).map(s => ({
  query: s.dataset.query,
  images: Array.from(s.querySelectorAll('img')).map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
  ranks: Array.from(s.querySelectorAll('figure.g')).map(f => Number(f.dataset.rank)),
  shown: Array.from(s.querySelectorAll('figure.g .d')).map(d => d.innerText),
  names: Array.from(s.querySelectorAll('figure.g figcaption')).map(c => c.innerText.split('\\n').pop()),
}))"""


def test_rank_html_in_chromium(tiny_market, tmp_path, capsys):
    from reidlab.__main__ import main

    run = tmp_path / "run"
    cfg = PRESETS["bot"].replace(backbone="resnet18", pretrained=None, image_size=(32, 16), P=3, K=2, epochs=1,
                                 num_workers=0, progress=False, device="cpu")
    fit(cfg, run, dataset=load_dataset("market1501", tiny_market, verbose=False))
    html = tmp_path / "ranked.html"
    main(["rank", str(run), "--query", str(tiny_market / "query"), "--gallery",
          str(tiny_market / "bounding_box_test"), "--top", "5", "--html", str(html), "--device", "cpu"])
    printed = capsys.readouterr().out.split("\nwrote ")[0]
    # the printed top 5 of each query: "query NAME" then lines "  rank  distance  name"
    expected = {block[0]: [line.split() for line in block[1:] if line.strip()]
                for block in (b.splitlines() for b in printed.split("\nquery ")[1:])}

    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("request", lambda r: requests.append(r.url))
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            sections = page.evaluate(READ_PAGE)
            shot = tmp_path / "ranked.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert not errors, errors
    assert [s["query"] for s in sections] == sorted(p.name for p in (tiny_market / "query").iterdir())
    for s in sections:
        assert len(s["images"]) == 6 and all(img == [True, 64, 128] for img in s["images"]), s["images"]
        assert s["ranks"] == [1, 2, 3, 4, 5]
        distances = [float(d) for d in s["shown"]]
        assert distances == sorted(distances)
        assert [[str(r), d, n] for r, d, n in zip(s["ranks"], s["shown"], s["names"])] == expected[s["query"]]
    # self-contained: the page itself is the only request that is not an inline data: URI
    assert [u for u in requests if not u.startswith("data:")] == [html.as_uri()]
    assert shot.stat().st_size > 10_000
    assert re.search(r"<img src=\"data:image/jpeg;base64,", html.read_text())
