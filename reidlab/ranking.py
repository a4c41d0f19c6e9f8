"""Rank a gallery folder for each image of a query folder, with a run's model or an exported ONNX file.

    reidlab rank RUN --query DIR --gallery DIR --top 10 --html ranked.html

Every image is checked before any is embedded (a corrupt file is named, nothing is written), the top K are
printed with their distances, and the HTML page is self-contained (thumbnails inline as base64 JPEG), written
atomically.
"""
from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path

import torch

from reidlab.images import CorruptImageError, check_image, folder_images
from reidlab.paths import resolve


@dataclass
class Ranking:
    """Distances (Q, G) of every query image to every gallery image, and the top K of each row."""
    source: str  # the run folder or ONNX file that embedded the images
    metric: str
    query: list[Path]
    gallery: list[Path]
    distances: torch.Tensor  # (Q, G)
    top_k: int

    def top(self, i: int) -> list[tuple[Path, float]]:
        """The top K gallery images of query i, closest first (ties in gallery order)."""
        order = torch.argsort(self.distances[i], stable=True)[:self.top_k]
        return [(self.gallery[j], float(self.distances[i, j])) for j in order]


def readable_images(folder: str | Path, role: str) -> list[Path]:
    """The images of a folder (not its sub-folders), sorted, each decoded once; NoImagesError / CorruptImageError
    naming the fix."""
    folder = resolve(folder)
    paths = folder_images(folder, f"--{role} ")
    bad = [(p, e) for p in paths if (e := check_image(str(p)))]
    if bad:
        listed = "\n".join(f"  {p}: {e}" for p, e in bad[:10])
        raise CorruptImageError(f"{len(bad)} of {len(paths)} files in {folder} do not decode as images:\n{listed}\n"
                                f"Fix: replace or delete them, then run again (nothing was written)")
    return paths


def load_embedder(source: str | Path, device: str = "auto"):
    """(embed(paths) -> (N, D) features, distance metric) of a finished run folder or an exported .onnx file."""
    source = resolve(source)
    if source.suffix == ".onnx" or source.is_file():
        from reidlab.export import OnnxEmbedder

        onnx = OnnxEmbedder(source)
        return onnx.embed, onnx.distance
    from reidlab.export import check_finished_run
    from reidlab.inference import embed, load_run

    model, cfg = load_run(check_finished_run(source), device)
    return (lambda paths: embed(model, cfg, paths)), cfg.distance


def rank_folders(source: str | Path, query_dir: str | Path, gallery_dir: str | Path, top_k: int = 10,
                 device: str = "auto") -> Ranking:
    """Embed both folders with `source` and rank the gallery for every query image."""
    from reidlab.evaluate import compute_distance

    if top_k < 1:
        raise ValueError(f"top_k={top_k} must be >= 1")
    query, gallery = readable_images(query_dir, "query"), readable_images(gallery_dir, "gallery")
    embed, metric = load_embedder(source, device)
    qf, gf = embed(query), embed(gallery)  # (Q, D), (G, D)
    # the features are normalised (or not) as the run's config says; compute_distance must not change that
    distances = compute_distance(qf, gf, metric=metric, normalize=False).cpu()
    return Ranking(str(resolve(source)), metric, query, gallery, distances, min(top_k, len(gallery)))


def format_ranking(ranking: Ranking) -> str:
    """The top K of every query as text, one block per query."""
    lines = [f"{len(ranking.query)} queries x {len(ranking.gallery)} gallery images, {ranking.metric} distance "
             f"({'squared Euclidean' if ranking.metric == 'euclidean' else '1 - cos'}), model {ranking.source}"]
    for i, q in enumerate(ranking.query):
        lines.append(f"\nquery {q.name}")
        lines += [f"  {rank:>3}  {d:8.4f}  {g.name}" for rank, (g, d) in enumerate(ranking.top(i), 1)]
    return "\n".join(lines)


def thumbnail_uri(path: Path, size: tuple[int, int] = (128, 64), quality: int = 85) -> str:
    """A data: URI of the image as a JPEG resized to size (height, width)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)  # PIL wants (width, height)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


PAGE_STYLE = """
body { font-family: sans-serif; margin: 1em; }
.query { display: flex; align-items: flex-start; gap: 6px; margin: 0 0 14px; padding-bottom: 8px;
         border-bottom: 1px solid #ddd; }
figure { margin: 0; text-align: center; font-size: 11px; width: 76px; overflow-wrap: anywhere; }
figure img { border: 3px solid transparent; display: block; margin: 0 auto; }
figure.q img { border-color: #1f77b4; }
figure.q { margin-right: 12px; }
"""


def ranking_html(ranking: Ranking, size: tuple[int, int] = (128, 64)) -> str:
    """A self-contained page: per query, its image then the top K with rank and distance (no links out)."""
    cache: dict[Path, str] = {}

    def img(path: Path) -> str:
        if path not in cache:
            cache[path] = thumbnail_uri(path, size)
        return cache[path]

    rows = []
    for i, q in enumerate(ranking.query):
        tiles = [f'<figure class="q"><img src="{img(q)}" width="{size[1]}" height="{size[0]}" alt="query">'
                 f'<figcaption>query<br>{escape(q.name)}</figcaption></figure>']
        for rank, (g, d) in enumerate(ranking.top(i), 1):
            tiles.append(f'<figure class="g" data-rank="{rank}" data-distance="{d:.6f}"><img src="{img(g)}" '
                         f'width="{size[1]}" height="{size[0]}" alt="rank {rank}"><figcaption>#{rank} '
                         f'<span class="d">{d:.4f}</span><br>{escape(g.name)}</figcaption></figure>')
        rows.append(f'<section class="query" data-query="{escape(q.name)}">{"".join(tiles)}</section>')
    title = f"reidlab rank: top {ranking.top_k} of {len(ranking.gallery)}"
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{PAGE_STYLE}</style></head><body><h1>{escape(title)}</h1>"
            f"<p>model {escape(ranking.source)}; {ranking.metric} distance, smaller is closer</p>"
            + "\n".join(rows) + "</body></html>\n")


def write_html(ranking: Ranking, out: str | Path, size: tuple[int, int] = (128, 64)) -> Path:
    """ranking_html written atomically to `out` (a temp file beside it, then os.replace)."""
    out = resolve(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = ranking_html(ranking, size)  # every thumbnail is made before anything is written
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(text)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
