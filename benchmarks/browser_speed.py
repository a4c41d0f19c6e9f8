"""How long QueryBrowser takes to switch queries on a Market-size gallery (target: <= 100 ms after the first view).

Generated images only (coloured stripes, no people): 3,368 queries and 15,913 gallery images of 128x64,
written once to a temporary folder (or --images DIR, kept for reruns). Times are wall-clock seconds of
the Python side of a switch: ranking lookup, thumbnail encoding (cold) or cache hit (warm), widget
updates and the serialisation of every state message (the comm that would carry them is recorded).

    .venv/bin/python benchmarks/browser_speed.py            # about a minute on 2 cores
    .venv/bin/python benchmarks/browser_speed.py --switches 100 --k 20
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import comm
import numpy as np
from PIL import Image

NUM_QUERY, NUM_GALLERY, NUM_IDS, NUM_CAMS = 3368, 15913, 750, 6


class Record(NamedTuple):  # same fields as reidlab.datasets.Record
    path: str
    pid: int
    camid: int


class Result(NamedTuple):  # the fields of reidlab.evaluate.EvalResult the browser reads
    ranked: np.ndarray
    ap: np.ndarray
    valid: np.ndarray


class CountingComm(comm.DummyComm):
    """Counts the messages and bytes a live kernel would send to the page."""
    messages = 0
    bytes = 0

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        CountingComm.messages += 1
        CountingComm.bytes += len(json.dumps(data or {}, default=str)) + sum(len(b) for b in buffers or [])


def write_images(folder: Path, pids, cams, prefix: str) -> list[Record]:
    rng = np.random.default_rng(0)
    palette = rng.integers(30, 226, size=(NUM_IDS + 1, 3, 3), dtype=np.uint8)
    records = []
    for n, (pid, cam) in enumerate(zip(pids, cams)):
        path = folder / f"{prefix}_{pid:04d}_c{cam}_{n:05d}.jpg"
        if not path.exists():
            img = np.empty((128, 64, 3), np.uint8)  # (H, W, 3): three stripes in the identity's colours
            img[:] = rng.integers(0, 60, 3, dtype=np.uint8)
            for s in range(3):
                img[8 + 38 * s: 8 + 38 * s + 34, 4 + cam:60] = palette[pid, s]
            img += rng.integers(0, 20, img.shape, dtype=np.uint8)  # texture, so JPEG sizes are realistic
            Image.fromarray(img).save(path, quality=90)
        records.append(Record(str(path), int(pid), int(cam)))
    return records


def make_run(query, gallery, noise: float, seed: int, keep: int = 100):
    """A ranking from clustered random features: (Result, top-k distances (Q, keep))."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(NUM_IDS + 1, 64)).astype(np.float32)
    qp, gp = np.array([r.pid for r in query]), np.array([r.pid for r in gallery])
    qf = centres[qp] + noise * rng.normal(size=(len(qp), 64)).astype(np.float32)
    gf = centres[gp] + noise * rng.normal(size=(len(gp), 64)).astype(np.float32)
    d = (qf ** 2).sum(1)[:, None] + (gf ** 2).sum(1)[None] - 2 * qf @ gf.T  # (Q, G) squared Euclidean
    part = np.argpartition(d, keep, axis=1)[:, :keep]
    ranked = np.take_along_axis(part, np.argsort(np.take_along_axis(d, part, 1), 1), 1)  # (Q, keep)
    dist = np.take_along_axis(d, ranked, 1)
    hits = gp[ranked] == qp[:, None]
    ap = (hits.cumsum(1) / np.arange(1, keep + 1) * hits).sum(1) / np.maximum(hits.sum(1), 1)  # AP within top-k
    return Result(ranked, ap, hits.any(1)), dist


def time_switches(browser, queries) -> np.ndarray:
    out = []
    for q in queries:
        t = time.perf_counter()
        browser.query_slider.value = int(q)
        out.append(time.perf_counter() - t)
        assert browser.current_query == q
    return np.array(out)


def summary(name: str, seconds: np.ndarray, messages: int | None = None, nbytes: int | None = None) -> dict:
    ms = 1000 * seconds
    row = {"case": name, "n": len(ms), "median_ms": round(float(np.median(ms)), 2),
           "p95_ms": round(float(np.percentile(ms, 95)), 2), "max_ms": round(float(ms.max()), 2)}
    if messages is not None:
        row["messages_per_switch"] = round(messages / len(ms), 1)
        row["kB_per_switch"] = round(nbytes / len(ms) / 1024, 1)
    print(f"{name:50s} n={row['n']:4d}  median {row['median_ms']:7.2f} ms  p95 {row['p95_ms']:7.2f} ms  "
          f"max {row['max_ms']:7.2f} ms" + (f"  {row['messages_per_switch']} msgs, {row['kB_per_switch']} kB"
                                              if messages is not None else ""))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, help="folder for the generated images (kept); default: a temp folder")
    parser.add_argument("--switches", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    comm.create_comm = CountingComm
    from reidlab.browser import QueryBrowser, RunView

    folder = args.images or Path(tempfile.mkdtemp(prefix="browser_speed_"))
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    t = time.perf_counter()
    query = write_images(folder, rng.integers(1, NUM_IDS + 1, NUM_QUERY), rng.integers(0, NUM_CAMS, NUM_QUERY), "q")
    gallery = write_images(folder, rng.integers(0, NUM_IDS + 1, NUM_GALLERY), rng.integers(0, NUM_CAMS, NUM_GALLERY),
                           "g")
    print(f"images: {len(query)} query + {len(gallery)} gallery in {folder} ({time.perf_counter() - t:.1f} s)")
    t = time.perf_counter()
    (res_a, dist_a), (res_b, dist_b) = make_run(query, gallery, 0.8, 0), make_run(query, gallery, 0.9, 1)
    print(f"rankings: {res_a.ranked.shape} in {time.perf_counter() - t:.1f} s")

    rows = []
    order = np.random.default_rng(2).permutation(NUM_QUERY)
    cold, warm = order[:args.switches], order[:args.switches][::-1]
    for label, views in (("one run", [RunView("A", query, gallery, res_a, dist_a)]),
                         ("two runs", [RunView("A", query, gallery, res_a, dist_a),
                                       RunView("B", query, gallery, res_b, dist_b)])):
        t = time.perf_counter()
        browser = QueryBrowser(views, k=args.k)
        rows.append(summary(f"{label}: first view (build + render)", np.array([time.perf_counter() - t])))
        for case, queries in (("switch, new query (encode thumbnails)", cold),
                              ("switch, seen query (cached thumbnails)", warm)):
            CountingComm.messages = CountingComm.bytes = 0
            rows.append(summary(f"{label}: {case}", time_switches(browser, queries),
                                CountingComm.messages, CountingComm.bytes))
        t = time.perf_counter()
        browser.filter.value = "worst AP first"
        rows.append(summary(f"{label}: filter -> worst AP first", np.array([time.perf_counter() - t])))
    switch_rows = [r for r in rows if "switch" in r["case"]]
    worst = max(r["p95_ms"] for r in switch_rows)
    verdict = "PASS" if worst <= 100 else "FAIL"
    print(f"{verdict}: worst p95 switch {worst:.1f} ms (target <= 100 ms after the first view)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "worst_p95_ms": worst, "verdict": verdict}, indent=2) + "\n")
    if args.images is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
