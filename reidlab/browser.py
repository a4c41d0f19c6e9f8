"""An ipywidgets browser of ranked lists: pick a query, see its top-k with green / red / grey borders.

Built for speed on a Market-size gallery: thumbnails are JPEG-encoded once and cached, the tiles are a
fixed pool updated in place, and borders are CSS classes (add_class / remove_class), so recolouring a
tile sends a class list, never the image again. One HTML widget injects the stylesheet.

    browser = QueryBrowser(RunView("bot", query, gallery, result, distmat))
    browser  # last expression of a notebook cell
"""
from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import ipywidgets as widgets
import numpy as np

from reidlab.viz import KIND_COLOURS, gather_topk_distances, match_kinds, rank1_correct

KINDS = ("match", "mismatch", "junk", "query")
FILTERS = ("all", "rank-1 failures", "worst AP first", "by camera")
COMPARE_FILTERS = ("largest AP change",)
STYLE = "\n".join(
    ["<style>",
     ".reid-tile { border: 4px solid transparent; border-radius: 2px; }"]
    + [f".reid-tile.reid-{kind} {{ border-color: {colour}; }}" for kind, colour in KIND_COLOURS.items()]
    + [".reid-caption, .reid-query-caption { font-size: 11px; line-height: 1.2; text-align: center; }",
       ".reid-caption .widget-html-content, .reid-header .widget-html-content { line-height: 1.2; }",
       "</style>"])


@dataclass
class RunView:
    """One evaluated run: query and gallery Records, its EvalResult, and its distances: a (Q, G)
    distance matrix or the top-k distances (Q, keep) aligned with result.ranked (None: not shown)."""
    name: str
    query: Sequence
    gallery: Sequence
    result: Any
    distances: Any = None


def encode_thumbnail(path, size: tuple[int, int] = (128, 64), quality: int = 85) -> bytes:
    """JPEG bytes of the image resized to size (height, width)."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)  # PIL wants (width, height)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"image {path} not found; check the dataset root the records were loaded "
                                "from") from e
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class ThumbnailCache:
    """path -> JPEG bytes, encoded once; least recently used entries dropped beyond max_items."""

    def __init__(self, size: tuple[int, int] = (128, 64), quality: int = 85, max_items: int = 50_000):
        self.size, self.quality, self.max_items = tuple(size), quality, max_items
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self.encoded = 0  # how many encodes ran (tests check the cache works)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, path) -> bytes:
        key = str(path)
        data = self._items.get(key)
        if data is None:
            data = self._items[key] = encode_thumbnail(key, self.size, self.quality)
            self.encoded += 1
            if len(self._items) > self.max_items:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return data


class Tile:
    """One image with a caption; kind is its current border class ("match", ..., None when hidden)."""

    def __init__(self, size: tuple[int, int], caption_class: str = "reid-caption"):
        self.image = widgets.Image(format="jpeg", width=size[1], height=size[0])
        self.image.add_class("reid-tile")
        self.caption = widgets.HTML()
        self.caption.add_class(caption_class)
        self.box = widgets.VBox([self.image, self.caption],
                                layout=widgets.Layout(align_items="center", margin="0 2px"))
        self.kind: str | None = None

    def show(self, data: bytes, kind: str, caption: str) -> None:
        with self.image.hold_sync():  # image and border go out in one message
            if self.image.value != data:  # an unchanged image is not sent again
                self.image.value = data
            if kind != self.kind:
                if self.kind:
                    self.image.remove_class(f"reid-{self.kind}")
                self.image.add_class(f"reid-{kind}")
                self.kind = kind
        if self.caption.value != caption:
            self.caption.value = caption
        if self.box.layout.display == "none":
            self.box.layout.display = None

    def hide(self) -> None:
        if self.box.layout.display != "none":
            self.box.layout.display = "none"


class _Run:
    """A RunView with the arrays the browser reads on every switch, computed once."""

    def __init__(self, view: RunView, max_k: int):
        self.view = view
        result = view.result
        ranked = np.asarray(result.ranked)
        q, g = len(view.query), len(view.gallery)
        if ranked.ndim != 2 or ranked.shape[0] != q:
            raise ValueError(f"run {view.name!r}: result.ranked has shape {ranked.shape}; expected (num_query={q}, "
                             "keep): was the result computed on this query list?")
        if ranked.size and (ranked.max() >= g or ranked.min() < 0):
            raise ValueError(f"run {view.name!r}: result.ranked holds index {ranked.max()} but the gallery has {g} "
                             "items: pass the gallery the result was computed on")
        self.ap = np.asarray(result.ap, float)
        self.valid = np.asarray(result.valid, bool)
        if self.ap.shape != (q,) or self.valid.shape != (q,):
            raise ValueError(f"run {view.name!r}: result.ap / result.valid must have shape ({q},), got "
                             f"{self.ap.shape} / {self.valid.shape}")
        full = view.distances
        self.dist = None if full is None else gather_topk_distances(full, ranked, g, k=max_k)
        self.k = min(max_k, ranked.shape[1], max_k if self.dist is None else self.dist.shape[1])
        self.ranked = np.ascontiguousarray(ranked[:, :self.k])  # (Q, k): only what a tile can show
        self.gpids = np.array([r.pid for r in view.gallery])
        self.gcams = np.array([r.camid for r in view.gallery])
        self.gpaths = [str(r.path) for r in view.gallery]
        qpids = np.array([r.pid for r in view.query])
        qcams = np.array([r.camid for r in view.query])
        self.kinds = match_kinds(qpids[:, None], qcams[:, None], self.gpids[self.ranked], self.gcams[self.ranked])
        # rank-1 over the whole ranked list where the first k are all junk
        self.rank1 = rank1_correct(self.kinds)
        for row in np.flatnonzero((self.kinds == "junk").all(axis=1)):
            kinds = match_kinds(qpids[row], qcams[row], self.gpids[ranked[row]], self.gcams[ranked[row]])
            self.rank1[row] = rank1_correct(kinds[None])[0]


class QueryBrowser(widgets.VBox):
    """Query chooser, top-k, filter; the query and each run's top-k as tiles (two runs: one above the other).

    Filters order the queries: "all", "rank-1 failures" and "worst AP first" (of the first run; valid
    queries only), "by camera", and with two runs "largest AP change". The query slider moves through
    the filtered order; the id box jumps to the first query of a person id in it.
    """

    def __init__(self, runs: RunView | Sequence[RunView], k: int = 10, max_k: int = 20,
                 thumb_size: tuple[int, int] = (128, 64), cache: ThumbnailCache | None = None):
        runs = [runs] if isinstance(runs, RunView) else list(runs)
        if not 1 <= len(runs) <= 2 or not all(isinstance(r, RunView) for r in runs):
            raise ValueError(f"QueryBrowser shows one or two RunView objects, got {len(runs)} "
                             f"({', '.join(type(r).__name__ for r in runs)})")
        if not 1 <= k <= max_k:
            raise ValueError(f"k={k} must be in 1..max_k={max_k}")
        query = runs[0].query
        if len(runs) == 2 and [str(r.path) for r in runs[1].query] != [str(r.path) for r in query]:
            raise ValueError(f"runs {runs[0].name!r} and {runs[1].name!r} have different query lists; compare "
                             "runs evaluated on the same queries")
        if len(query) == 0:
            raise ValueError("the query list is empty")
        self.runs = [_Run(r, max_k) for r in runs]
        self.query = query
        self.qpids = np.array([r.pid for r in query])
        self.qcams = np.array([r.camid for r in query])
        self.cache = cache if cache is not None else ThumbnailCache(thumb_size)
        self.current_query: int | None = None
        self._busy = False
        max_k = min(max_k, min(r.k for r in self.runs))

        self.style = widgets.HTML(STYLE)
        self.query_slider = widgets.IntSlider(0, 0, len(query) - 1, description="query",
                                              continuous_update=False, layout=widgets.Layout(width="420px"))
        self.id_box = widgets.IntText(description="person id", layout=widgets.Layout(width="170px"))
        self.topk_slider = widgets.IntSlider(min(k, max_k), 1, max_k, description="top-k",
                                             layout=widgets.Layout(width="300px"))
        options = FILTERS + (COMPARE_FILTERS if len(self.runs) == 2 else ())
        self.filter = widgets.Dropdown(options=options, value="all", description="filter")
        cams = sorted(set(self.qcams.tolist()))
        self.camera = widgets.Dropdown(options=cams, value=cams[0], description="camera",
                                       layout=widgets.Layout(display="none", width="170px"))
        self.status = widgets.HTML()
        self.query_tile = Tile(thumb_size, "reid-query-caption")
        self.rows = [[Tile(thumb_size) for _ in range(max_k)] for _ in self.runs]
        self.headers = [widgets.HTML() for _ in self.runs]
        for header in self.headers:
            header.add_class("reid-header")
        lists = widgets.VBox([widgets.VBox([h, widgets.HBox([t.box for t in tiles])])
                              for h, tiles in zip(self.headers, self.rows)])
        controls = widgets.VBox([widgets.HBox([self.query_slider, self.id_box, self.topk_slider]),
                                 widgets.HBox([self.filter, self.camera])])
        super().__init__([self.style, controls, self.status,
                          widgets.HBox([self.query_tile.box, lists], layout=widgets.Layout(overflow="auto"))])
        self.add_class("reid-browser")

        self.order = self._order()
        self.query_slider.observe(self._on_slider, "value")
        self.topk_slider.observe(lambda _: self._render(), "value")
        self.filter.observe(self._on_filter, "value")
        self.camera.observe(self._on_filter, "value")
        self.id_box.observe(self._on_id, "value")
        self._render()

    # --- the filtered order of queries ---
    def _order(self) -> np.ndarray:
        mode, first = self.filter.value, self.runs[0]
        every = np.arange(len(self.query))
        if mode == "all":
            return every
        if mode == "rank-1 failures":
            return np.flatnonzero(first.valid & ~first.rank1)
        if mode == "worst AP first":
            idx = np.flatnonzero(first.valid)
            return idx[np.argsort(first.ap[idx], kind="stable")]
        if mode == "by camera":
            return np.flatnonzero(self.qcams == self.camera.value)
        if mode == "largest AP change":
            delta = np.abs(self.runs[1].ap - first.ap)
            idx = np.flatnonzero(first.valid & self.runs[1].valid)
            return idx[np.argsort(-delta[idx], kind="stable")]
        raise ValueError(f"unknown filter {mode!r}")

    def _on_filter(self, _change) -> None:
        self.camera.layout.display = None if self.filter.value == "by camera" else "none"
        self.order = self._order()
        self._busy = True
        try:  # reset the slider without rendering twice
            self.query_slider.value = 0
            self.query_slider.max = max(len(self.order) - 1, 0)
        finally:
            self._busy = False
        self._render()

    def _on_slider(self, _change) -> None:
        if not self._busy:
            self._render()

    def _on_id(self, change) -> None:
        if self._busy:
            return
        hits = np.flatnonzero(self.qpids[self.order] == change["new"])
        if len(hits) == 0:
            self.status.value = (f"<b>person id {change['new']} has no query in this filter</b> "
                                 f"({self.filter.value}); try filter 'all'")
            return
        self.query_slider.value = int(hits[0])  # renders through _on_slider

    def select(self, query_index: int) -> None:
        """Show query query_index (an index into the query list), switching the filter to "all" if needed."""
        if not 0 <= query_index < len(self.query):
            raise IndexError(f"query_index={query_index} is outside 0..{len(self.query) - 1}")
        if query_index not in self.order:
            self.filter.value = "all"
        self.query_slider.value = int(np.flatnonzero(self.order == query_index)[0])

    # --- drawing: widgets updated in place ---
    def _render(self) -> None:
        if len(self.order) == 0:
            self.current_query = None
            self.status.value = f"<b>no query matches the filter '{escape(self.filter.value)}'</b>"
            self.query_tile.hide()
            for tiles in self.rows:
                for tile in tiles:
                    tile.hide()
            return
        q = int(self.order[min(self.query_slider.value, len(self.order) - 1)])
        self.current_query = q
        k = self.topk_slider.value
        self.query_tile.show(self.cache.get(self.query[q].path), "query",
                             f"query {q}<br>pid {self.qpids[q]} · cam {self.qcams[q]}")
        for run, header, tiles in zip(self.runs, self.headers, self.rows):
            ap = run.ap[q]
            ap_text = f"AP {ap:.3f}" if np.isfinite(ap) else "AP n/a (no valid match in the gallery)"
            rank1 = ("rank-1 ✓" if run.rank1[q] else "rank-1 ✗") if run.valid[q] else ""
            header_value = f"<b>{escape(run.view.name)}</b> · <span class='reid-ap'>{ap_text}</span> · {rank1}"
            if header.value != header_value:
                header.value = header_value
            for i, tile in enumerate(tiles):
                if i >= k:
                    tile.hide()
                    continue
                g = run.ranked[q, i]
                dist = "" if run.dist is None else f"<br>d {run.dist[q, i]:.3f}"
                tile.show(self.cache.get(run.gpaths[g]), str(run.kinds[q, i]),
                          f"#{i + 1} pid {run.gpids[g]} · cam {run.gcams[g]}{dist}")
        self._busy = True
        try:
            self.id_box.value = int(self.qpids[q])
        finally:
            self._busy = False
        self.status.value = (f"query {q} ({self.query_slider.value + 1} of {len(self.order)} in "
                             f"'{escape(self.filter.value)}') · pid {self.qpids[q]} · camera {self.qcams[q]}")

    @property
    def ap_text(self) -> list[str]:
        """The AP shown for each run (as displayed)."""
        return [h.value.split("<span class='reid-ap'>")[1].split("</span>")[0] for h in self.headers]
