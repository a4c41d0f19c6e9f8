"""QueryBrowser without a browser: build it on generated runs, set widget values, read tiles and captions."""

import comm
import numpy as np
import pytest
from conftest import load_fakes

from reidlab.browser import QueryBrowser, RunView, ThumbnailCache, Tile


fakes = load_fakes()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fakes.make_fake_run(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def second(run):
    """The same queries ranked by cosine distance: a second run to compare."""
    query, gallery, result, distmat, qf, gf = run
    qn, gn = qf / np.linalg.norm(qf, axis=1, keepdims=True), gf / np.linalg.norm(gf, axis=1, keepdims=True)
    cos = 1 - qn @ gn.T
    pids = lambda records: np.array([r.pid for r in records])  # noqa: E731
    cams = lambda records: np.array([r.camid for r in records])  # noqa: E731
    return fakes.evaluate_plain(cos, pids(query), cams(query), pids(gallery), cams(gallery)), cos


def expected_kind(q, g):
    if q.pid != g.pid:
        return "mismatch"
    return "junk" if q.camid == g.camid else "match"


def check_tiles(browser, run_index, query, gallery, result, distmat, q, k):
    tiles = browser.rows[run_index]
    for i, tile in enumerate(tiles):
        if i >= k:
            assert tile.box.layout.display == "none"
            continue
        g = result.ranked[q, i]
        kind = expected_kind(query[q], gallery[g])
        assert tile.box.layout.display != "none"
        assert f"reid-{kind}" in tile.image._dom_classes and "reid-tile" in tile.image._dom_classes
        assert sum(c in tile.image._dom_classes for c in ("reid-match", "reid-mismatch", "reid-junk")) == 1
        assert tile.caption.value == (f"#{i + 1} pid {gallery[g].pid} · cam {gallery[g].camid}"
                                      f"<br>d {distmat[q, g]:.3f}")
        assert tile.image.value == browser.cache.get(gallery[g].path)


def test_tiles_captions_and_ap_follow_the_query(run):
    query, gallery, result, distmat, *_ = run
    browser = QueryBrowser(RunView("fake", query, gallery, result, distmat), k=5, max_k=8)
    assert browser.current_query == 0
    check_tiles(browser, 0, query, gallery, result, distmat, 0, 5)
    assert browser.ap_text == [f"AP {result.ap[0]:.3f}"]
    assert "reid-query" in browser.query_tile.image._dom_classes
    assert f"pid {query[0].pid} · cam {query[0].camid}" in browser.query_tile.caption.value
    assert browser.id_box.value == query[0].pid
    for q in (3, 1):
        browser.query_slider.value = q
        assert browser.current_query == q
        check_tiles(browser, 0, query, gallery, result, distmat, q, 5)
        assert browser.ap_text == [f"AP {result.ap[q]:.3f}"]
    browser.topk_slider.value = 8
    check_tiles(browser, 0, query, gallery, result, distmat, 1, 8)
    invalid = int(np.flatnonzero(~result.valid)[0])
    browser.query_slider.value = invalid
    assert browser.ap_text == ["AP n/a (no valid match in the gallery)"]


def test_thumbnails_encoded_once(run):
    query, gallery, result, distmat, *_ = run
    cache = ThumbnailCache()
    browser = QueryBrowser(RunView("fake", query, gallery, result, distmat), k=4, cache=cache)
    first = cache.encoded
    assert first == len({query[0].path, *[gallery[g].path for g in result.ranked[0, :4]]})
    browser.query_slider.value = 1
    browser.query_slider.value = 0
    browser.query_slider.value = 1
    seen = {query[q].path for q in (0, 1)} | {gallery[g].path for g in result.ranked[:2, :4].ravel()}
    assert cache.encoded == len(cache) == len(seen)


class RecordingComm(comm.DummyComm):
    sent: list = []

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        RecordingComm.sent.append((data or {}, buffers or []))


def test_recolouring_sends_classes_not_images(run, monkeypatch):
    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    query, gallery, *_ = run
    tile = Tile((128, 64))
    data = ThumbnailCache().get(gallery[0].path)
    RecordingComm.sent.clear()
    tile.show(data, "match", "a")
    assert any(b for _, b in RecordingComm.sent)  # the image went out once
    RecordingComm.sent.clear()
    tile.show(data, "mismatch", "a")
    states = [d.get("state", {}) for d, _ in RecordingComm.sent]
    assert not any(b for _, b in RecordingComm.sent)
    assert any("reid-mismatch" in s.get("_dom_classes", ()) and "reid-match" not in s["_dom_classes"] for s in states)


def test_id_box_jumps_to_person(run):
    query, gallery, result, distmat, *_ = run
    browser = QueryBrowser(RunView("fake", query, gallery, result, distmat))
    browser.id_box.value = query[5].pid
    assert browser.current_query == 5 and browser.query_slider.value == 5
    browser.id_box.value = 999
    assert browser.current_query == 5
    assert "person id 999 has no query" in browser.status.value
    browser.select(2)
    assert browser.current_query == 2 and browser.id_box.value == query[2].pid


def test_filters(run):
    query, gallery, result, distmat, *_ = run
    browser = QueryBrowser(RunView("fake", query, gallery, result, distmat), k=3)
    # references by a plain loop over the unfiltered ranking
    failures = []
    for q in range(len(query)):
        first = next((g for g in result.ranked[q] if expected_kind(query[q], gallery[g]) != "junk"), None)
        if result.valid[q] and expected_kind(query[q], gallery[first]) != "match":
            failures.append(q)
    assert failures, "fixture should hold at least one rank-1 failure"
    browser.query_slider.value = 2
    browser.filter.value = "rank-1 failures"
    assert browser.order.tolist() == failures
    assert browser.current_query == failures[0] and browser.query_slider.max == len(failures) - 1
    check_tiles(browser, 0, query, gallery, result, distmat, failures[0], 3)

    browser.filter.value = "worst AP first"
    valid_q = [q for q in range(len(query)) if result.valid[q]]
    assert browser.order.tolist() == sorted(valid_q, key=lambda q: (result.ap[q], q))
    browser.query_slider.value = len(valid_q) - 1
    assert result.ap[browser.current_query] == max(result.ap[valid_q])

    browser.filter.value = "by camera"
    assert browser.camera.layout.display != "none"
    for cam in browser.camera.options:
        browser.camera.value = cam
        assert browser.order.tolist() == [q for q in range(len(query)) if query[q].camid == cam]
        assert query[browser.current_query].camid == cam


def test_empty_filter_hides_tiles(run):
    query, gallery, result, distmat, *_ = run
    perfect = fakes.FakeEvalResult(result.cmc, 1.0, 1.0, result.ap, result.valid, result.ranked.copy())
    gp = np.array([g.pid for g in gallery])
    gc = np.array([g.camid for g in gallery])
    for q in range(len(query)):  # put a true match first in every valid ranking
        matches = np.flatnonzero((gp == query[q].pid) & (gc != query[q].camid))
        if len(matches):
            rest = [g for g in result.ranked[q] if g != matches[0]]
            perfect.ranked[q] = [matches[0], *rest]
    browser = QueryBrowser(RunView("perfect", query, gallery, perfect))
    browser.filter.value = "rank-1 failures"
    assert browser.current_query is None and len(browser.order) == 0
    assert "no query matches" in browser.status.value
    assert all(t.box.layout.display == "none" for t in browser.rows[0])
    browser.filter.value = "all"
    assert browser.current_query == 0 and browser.rows[0][0].box.layout.display != "none"
    assert "<br>d " not in browser.rows[0][0].caption.value  # no distances given


def test_comparison_mode(run, second):
    query, gallery, result, distmat, *_ = run
    result_b, cos = second
    top_k = np.sort(cos, axis=1)[:, :10]  # top-k distances instead of a full matrix
    browser = QueryBrowser([RunView("euclidean", query, gallery, result, distmat),
                            RunView("cosine", query, gallery, result_b, top_k)], k=4)
    assert len(browser.rows) == 2 and "largest AP change" in browser.filter.options
    for q in (0, 4):
        browser.query_slider.value = q
        check_tiles(browser, 0, query, gallery, result, distmat, q, 4)
        check_tiles(browser, 1, query, gallery, result_b, cos, q, 4)
        assert browser.ap_text == [f"AP {result.ap[q]:.3f}", f"AP {result_b.ap[q]:.3f}"]
    browser.filter.value = "largest AP change"
    delta = np.abs(result_b.ap - result.ap)
    assert delta[browser.current_query] == np.nanmax(delta)
    assert np.all(np.diff(delta[browser.order]) <= 0)


def test_bad_input_raises(run, second):
    query, gallery, result, distmat, *_ = run
    with pytest.raises(ValueError, match="different query lists"):
        QueryBrowser([RunView("a", query, gallery, result), RunView("b", query[::-1], gallery, result)])
    with pytest.raises(ValueError, match="expected \\(num_query"):
        QueryBrowser(RunView("a", query[:3], gallery, result))
    with pytest.raises(ValueError, match="pass the gallery the result was computed on"):
        QueryBrowser(RunView("a", query, gallery[:5], result))
    with pytest.raises(ValueError, match="one or two RunView"):
        QueryBrowser([])
    with pytest.raises(ValueError, match="distances has shape"):
        QueryBrowser(RunView("a", query, gallery, result, distmat[:2]))
    missing = list(gallery)
    missing[result.ranked[0, 0]] = fakes.Record("/nonexistent/x.jpg", 1, 0)
    with pytest.raises(FileNotFoundError, match="check the dataset root"):
        QueryBrowser(RunView("a", query, missing, result))
