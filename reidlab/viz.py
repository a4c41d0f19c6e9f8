"""Figures for the notebooks: the paper's plots, training curves and ranked lists.

Object-oriented matplotlib: every function takes an optional `ax` (one Axes, or a sequence of Axes for
the multi-panel figures), draws nothing globally and returns the Axes it drew on (single panel) or the
Figure (several panels). Figures are `matplotlib.figure.Figure` objects, not pyplot state, so a
notebook shows one by leaving it as the cell's last expression and `plt.show` is never needed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reidlab.paths import RESULTS_ROOT
from reidlab.runs import RunFolder, read_jsonl

# TMM Fig. 10: mean feature norms of the BNNeck model on Market
PAPER_NORM_MEANS = {"f_t": 5.214, "f_i": 18.620}
# ranked-list borders: same pid other camera / different pid / same pid same camera (ignored by the protocol)
KIND_COLOURS = {"match": "#2ca02c", "mismatch": "#d62728", "junk": "#9e9e9e", "query": "#1f77b4"}
METRIC_KEYS = ("rank1", "mAP", "mINP")
LOSS_KEYS = ("loss", "loss_id", "loss_triplet", "loss_center")


# --- helpers shared with reidlab.browser ------------------------------------------------------------

def match_kinds(query_pids, query_camids, gallery_pids, gallery_camids) -> np.ndarray:
    """Kind of each ranked gallery item: "match", "mismatch" or "junk" (same pid and same camera).

    Broadcasts: a query's (pid, camid) against its ranked gallery items' (pids, camids), or (Q, 1)
    against (Q, k) for many queries at once.
    """
    same_pid = np.asarray(gallery_pids) == np.asarray(query_pids)
    same_cam = np.asarray(gallery_camids) == np.asarray(query_camids)
    return np.where(same_pid, np.where(same_cam, "junk", "match"), "mismatch")


def rank1_correct(kinds: np.ndarray) -> np.ndarray:
    """Whether the first non-junk item of each row of kinds (Q, k) is a match (False if all are junk)."""
    kinds = np.atleast_2d(kinds)
    kept = kinds != "junk"
    first = kept.argmax(axis=1)  # (Q,) index of the first non-junk item
    return kept.any(axis=1) & (kinds[np.arange(len(kinds)), first] == "match")


def gather_topk_distances(distances, ranked: np.ndarray, num_gallery: int, k: int | None = None) -> np.ndarray | None:
    """Distances of the first k ranked items, (Q, <= k): from a full (Q, G) matrix, or top-k distances
    (Q, m <= keep).

    Top-k distances are aligned with the first m columns of `ranked`; a full matrix is indexed by
    gallery item. When m == G both readings fit and sorted rows tell them apart.
    """
    if distances is None:
        return None
    d = _numpy(distances, "distances")
    q, keep = ranked.shape
    if d.ndim != 2 or d.shape[0] != q:
        raise ValueError(f"distances has shape {d.shape}; expected (num_query={q}, num_gallery={num_gallery}) "
                         f"or the top-k distances ({q}, k <= {keep}) aligned with result.ranked")
    if d.shape[1] == num_gallery and not (keep == num_gallery and bool(np.all(np.diff(d, axis=1) >= 0))):
        return np.take_along_axis(d, ranked[:, :k], axis=1)
    if d.shape[1] > keep:
        raise ValueError(f"distances has {d.shape[1]} columns; expected num_gallery={num_gallery} (full matrix) "
                         f"or at most keep={keep} (top-k distances aligned with result.ranked)")
    return d[:, :k]


def savefig(fig: Figure | Axes, name: str, folder: str | Path | None = None, dpi: int = 150) -> list[Path]:
    """Write `name`.png and `name`.pdf into folder (default results/figures); returns both paths."""
    if Path(name).suffix in (".png", ".pdf", ".svg", ".jpg") or "/" in name or "\\" in name:
        raise ValueError(f"name={name!r} must be a bare file name without folder or extension; "
                         "savefig writes both .png and .pdf into `folder`")
    fig = fig.figure if isinstance(fig, Axes) else fig
    if not isinstance(fig, Figure):
        raise TypeError(f"savefig needs a matplotlib Figure or Axes, got {type(fig).__name__}")
    folder = Path(folder) if folder is not None else RESULTS_ROOT / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return paths


def _axes(ax, n: int, figsize: tuple[float, float], ncols: int | None = None) -> tuple[Figure, list[Axes]]:
    """The figure and n axes to draw on: new ones when ax is None, else the ones given (checked)."""
    if ax is None:
        ncols = ncols or n
        nrows = -(-n // ncols)
        with sns.axes_style("whitegrid"):
            fig = Figure(figsize=figsize, layout="constrained")
            axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
        for extra in axes[n:]:
            extra.remove()
        return fig, axes[:n]
    axes = [ax] if isinstance(ax, Axes) else list(np.ravel(ax))
    if len(axes) != n or not all(isinstance(a, Axes) for a in axes):
        raise ValueError(f"this plot draws {n} panel(s): pass ax as {'one Axes' if n == 1 else f'{n} Axes'}, "
                         f"or ax=None for a new figure (got {len(axes)} object(s))")
    return axes[0].figure, axes


def _numpy(x, name: str, ndim: int | None = None) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x)
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} has shape {x.shape}; expected a {ndim}-d array")
    return x


def _read_jsonl(source, file_name: str) -> pd.DataFrame:
    """A DataFrame from a run folder (reads its `file_name`), a .jsonl path, a DataFrame or a list of dicts."""
    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source)
        path = path / file_name if path.is_dir() else path
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: pass a run folder holding {file_name}, or the file itself")
        return pd.DataFrame(read_jsonl(path))
    return pd.DataFrame(list(source))


# --- the paper's figures ----------------------------------------------------------------------------

def sample_pairs(pids, max_pairs: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to max_pairs positive and max_pairs negative index pairs (i, j, same_pid), i != j."""
    pids = np.asarray(pids)
    rng = np.random.default_rng(seed)
    pos = []
    for pid in np.unique(pids):
        members = np.flatnonzero(pids == pid)
        if len(members) > 1:
            a, b = np.triu_indices(len(members), k=1)
            pos.append(np.stack([members[a], members[b]], 1))
    pos = np.concatenate(pos) if pos else np.zeros((0, 2), int)
    if len(pos) > max_pairs:
        pos = pos[rng.choice(len(pos), max_pairs, replace=False)]
    cand = rng.integers(0, len(pids), size=(4 * max_pairs, 2))  # random pairs; keep those of two ids
    neg = np.unique(cand[pids[cand[:, 0]] != pids[cand[:, 1]]], axis=0)[:max_pairs]
    pairs = np.concatenate([pos, neg])
    same = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    return pairs[:, 0], pairs[:, 1], same


def plot_angle_vs_distance(f_t, f_i, pids, max_pairs: int = 2000, seed: int = 0, ax=None) -> Figure:
    """Angle vs Euclidean distance of positive and negative pairs, for f_t and f_i (two panels).

    The triplet loss separates pairs by Euclidean distance (f_t), the ID loss by angle (f_i): BNNeck's
    point is that one BN layer lets each loss work in the space that suits it.
    """
    feats = {"f_t": _numpy(f_t, "f_t", 2), "f_i": _numpy(f_i, "f_i", 2)}
    pids = _numpy(pids, "pids", 1)
    if not len(feats["f_t"]) == len(feats["f_i"]) == len(pids):
        raise ValueError(f"f_t, f_i and pids must have the same length, got {len(feats['f_t'])}, "
                         f"{len(feats['f_i'])}, {len(pids)}")
    i, j, same = sample_pairs(pids, max_pairs, seed)
    fig, axes = _axes(ax, 2, (9, 4))
    for axis, (name, f) in zip(axes, feats.items()):
        a, b = f[i], f[j]
        dist = np.linalg.norm(a - b, axis=1)
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        for mask, label, colour in ((~same, "negative pairs", KIND_COLOURS["mismatch"]),
                                    (same, "positive pairs", KIND_COLOURS["match"])):
            axis.scatter(dist[mask], angle[mask], s=4, alpha=0.4, color=colour, label=label, rasterized=True)
        axis.set(title=name, xlabel="Euclidean distance", ylabel="angle (degrees)")
        axis.legend(loc="lower right", markerscale=3)
    return fig


def plot_feature_norms(f_t, f_i, paper: bool = True, ax=None) -> Axes:
    """Histograms of the L2 norms of f_t and f_i, with the paper's means (TMM Fig. 10) marked."""
    fig, (axis,) = _axes(ax, 1, (6, 3.5))
    palette = dict(zip(("f_t", "f_i"), sns.color_palette("deep", 2)))
    for name, f in (("f_t", f_t), ("f_i", f_i)):
        norms = np.linalg.norm(_numpy(f, name, 2), axis=1)
        sns.histplot(norms, ax=axis, color=palette[name], stat="density", element="step", alpha=0.3,
                     label=f"{name}: mean {norms.mean():.2f}, C.V. {norms.std() / norms.mean():.3f}")
        if paper:
            axis.axvline(PAPER_NORM_MEANS[name], color=palette[name], ls="--",
                         label=f"TMM {name} mean {PAPER_NORM_MEANS[name]:.1f}")
    axis.set(xlabel="L2 norm", ylabel="density", title="feature norms")
    axis.legend(fontsize="small")
    return axis


def plot_loss_curves(runs: Mapping, keys: Sequence[str] = ("loss_id", "loss_triplet"), ax=None) -> Figure:
    """ID and triplet loss over the first iterations, one line per run (TMM Fig. 7).

    runs: {name: run folder | iterations.jsonl path | DataFrame | list of dicts with "iteration"}.
    A run that does not train a loss (Neck1 has no triplet term) has no line in that panel.
    """
    if not runs:
        raise ValueError("runs is empty: pass {name: run folder} for at least one run")
    fig, axes = _axes(ax, len(keys), (5 * len(keys), 3.5))
    for name, source in runs.items():
        df = _read_jsonl(source, RunFolder.ITERATIONS)
        if "iteration" not in df:
            raise ValueError(f"run {name!r}: no 'iteration' column; was it trained with log_iterations > 0?")
        for axis, key in zip(axes, keys):
            if key in df and df[key].notna().any():
                axis.plot(df["iteration"], df[key], label=name, lw=1)
    for axis, key in zip(axes, keys):
        axis.set(xlabel="iteration", ylabel=key, title=key.replace("loss_", "") + " loss")
        if axis.lines:
            axis.legend(fontsize="small")
    return fig


def plot_embeddings_2d(embeddings: Mapping, ax=None, ncols: int | None = None) -> Figure:
    """2-D features of a small labelled set, one panel per neck, coloured by class (TMM Fig. 9).

    embeddings: {neck: (features (N, 2), labels (N,))}.
    """
    if not embeddings:
        raise ValueError("embeddings is empty: pass {neck: (features (N, 2), labels (N,))}")
    n = len(embeddings)
    ncols = ncols or min(n, 4)
    fig, axes = _axes(ax, n, (3.2 * ncols, 3.2 * -(-n // ncols)), ncols=ncols)
    for axis, (neck, (feats, labels)) in zip(axes, embeddings.items()):
        feats, labels = _numpy(feats, f"{neck} features", 2), _numpy(labels, f"{neck} labels", 1)
        if feats.shape[1] != 2:
            raise ValueError(f"{neck}: features have shape {feats.shape}; expected (N, 2) (train a 2-d neck "
                             "or project with plot_tsne)")
        classes = np.unique(labels)
        colours = sns.color_palette("tab10" if len(classes) <= 10 else "husl", len(classes))
        for colour, c in zip(colours, classes):
            pts = feats[labels == c]
            axis.scatter(pts[:, 0], pts[:, 1], s=4, color=colour, alpha=0.6, label=str(c), rasterized=True)
        axis.axhline(0, color="k", lw=0.5)
        axis.axvline(0, color="k", lw=0.5)
        axis.set(title=neck, aspect="equal")
    return fig


def plot_cmc(runs: Mapping, max_rank: int = 20, ax=None) -> Axes:
    """CMC curves (matching rate in % against rank), one line per run.

    runs: {name: EvalResult or cmc array in 0..1}.
    """
    if not runs:
        raise ValueError("runs is empty: pass {name: EvalResult or cmc array}")
    fig, (axis,) = _axes(ax, 1, (5, 3.5))
    for name, run in runs.items():
        cmc = _numpy(getattr(run, "cmc", run), f"{name} cmc", 1)
        if cmc.max() > 1 + 1e-6:
            raise ValueError(f"run {name!r}: cmc goes above 1 ({cmc.max():.3g}); pass the 0..1 curve of "
                             "EvalResult.cmc (divide percentages by 100)")
        ranks = np.arange(1, min(max_rank, len(cmc)) + 1)
        axis.plot(ranks, 100 * cmc[:len(ranks)], marker="o", ms=3, label=f"{name} (R1 {100 * cmc[0]:.1f})")
    axis.set(xlabel="rank", ylabel="matching rate (%)", title="CMC")
    axis.legend(fontsize="small")
    return axis


def plot_trick_bars(df: pd.DataFrame, ax=None) -> Figure:
    """Rank-1 and mAP of each row of a trick grid, ours beside the paper's (two panels).

    df: columns row, ours_rank1, ours_mAP, paper_rank1, paper_mAP (percent); a row not yet run has NaN.
    """
    need = ["row", "ours_rank1", "ours_mAP", "paper_rank1", "paper_mAP"]
    missing = [c for c in need if c not in df]
    if missing:
        raise ValueError(f"df lacks column(s) {missing}; expected columns {need}")
    fig, axes = _axes(ax, 2, (max(8, 1.3 * len(df)), 4.5), ncols=1)
    x = np.arange(len(df))
    colours = sns.color_palette("deep", 2)
    for axis, metric in zip(axes, ("rank1", "mAP")):
        for offset, who, colour in ((-0.2, "ours", colours[0]), (0.2, "paper", colours[1])):
            bars = axis.bar(x + offset, df[f"{who}_{metric}"], width=0.4, label=who, color=colour)
            axis.bar_label(bars, fmt="%.1f", fontsize="x-small", padding=1)
        axis.set_xticks(x, df["row"], rotation=20, ha="right")
        axis.set(ylabel=f"{metric} (%)", ylim=(0, 105), title=metric)
        axis.legend(loc="lower right", fontsize="small")
    return fig


def plot_history(history, ax=None) -> Figure:
    """Training curves from history.jsonl: the loss terms, and the eval metrics on eval epochs."""
    df = _read_jsonl(history, RunFolder.HISTORY)
    if "epoch" not in df:
        raise ValueError("history has no 'epoch' column: pass a run folder or its history.jsonl")
    fig, (loss_ax, metric_ax) = _axes(ax, 2, (10, 3.5))
    for key in LOSS_KEYS:
        if key in df and df[key].notna().any():
            loss_ax.plot(df["epoch"], df[key], marker=".", label=key)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="training losses")
    loss_ax.legend(fontsize="small")
    for key in METRIC_KEYS:
        if key in df and df[key].notna().any():
            rows = df[df[key].notna()]
            metric_ax.plot(rows["epoch"], rows[key], marker="o", label=key)
    metric_ax.set(xlabel="epoch", ylabel="metric", title="evaluation")
    if metric_ax.lines:
        metric_ax.legend(fontsize="small")
    else:
        metric_ax.text(0.5, 0.5, "no evaluation epochs in this history\n(set eval_every > 0)",
                       ha="center", va="center", transform=metric_ax.transAxes)
    return fig


def plot_lr_schedule(epochs, lrs, milestones: Sequence[int] = (), log: bool = True, ax=None) -> Axes:
    """The learning rate of each epoch, a step plot (the lr holds for the whole epoch)."""
    epochs, lrs = _numpy(epochs, "epochs", 1), _numpy(lrs, "lrs", 1)
    if len(epochs) != len(lrs) or len(epochs) == 0:
        raise ValueError(f"epochs and lrs must be non-empty and of equal length, got {len(epochs)} and {len(lrs)}")
    fig, (axis,) = _axes(ax, 1, (6, 3))
    axis.step(epochs, lrs, where="post", label="lr")
    for m in milestones:
        axis.axvline(m, color="grey", ls=":", lw=1)
    axis.set(xlabel="epoch", ylabel="learning rate", title="learning-rate schedule")
    if log:
        axis.set_yscale("log")
    return axis


def plot_tsne(features, pids, max_ids: int = 20, perplexity: float = 30.0, seed: int = 0, ax=None) -> Axes:
    """t-SNE of (query) features coloured by identity, for the first max_ids identities."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as e:
        raise ImportError("plot_tsne needs scikit-learn: pip install scikit-learn") from e
    feats, pids = _numpy(features, "features", 2), _numpy(pids, "pids", 1)
    if len(feats) != len(pids):
        raise ValueError(f"features ({len(feats)}) and pids ({len(pids)}) must have the same length")
    keep = np.isin(pids, np.unique(pids)[:max_ids])
    feats, pids = feats[keep], pids[keep]
    if len(feats) < 5:
        raise ValueError(f"only {len(feats)} samples to embed; t-SNE needs at least 5")
    xy = TSNE(2, perplexity=min(perplexity, (len(feats) - 1) / 3), init="pca", random_state=seed).fit_transform(feats)
    fig, (axis,) = _axes(ax, 1, (5, 5))
    ids = np.unique(pids)
    for colour, pid in zip(sns.color_palette("husl", len(ids)), ids):
        pts = xy[pids == pid]
        axis.scatter(pts[:, 0], pts[:, 1], s=10, color=colour, label=str(pid))
    axis.set(title=f"t-SNE of {len(feats)} features, {len(ids)} ids", xticks=[], yticks=[])
    return axis


# --- ranked lists -------------------------------------------------------------------------------------

def _thumbnail(path, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image
    if not Path(path).exists():
        raise FileNotFoundError(f"image {path} not found; check the dataset root the records were loaded from")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((size[1], size[0])))  # PIL wants (width, height)


def _draw_tile(axis: Axes, path, size, kind: str, caption: str) -> None:
    axis.imshow(_thumbnail(path, size))
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_visible(True)
        spine.set_color(KIND_COLOURS[kind])
        spine.set_linewidth(4)
    axis.set_xlabel(caption, fontsize=7, linespacing=1.1)


def select_queries(results: Sequence, queries=None, order: str = "index", n: int = 4) -> list[int]:
    """Query indices to show: as given, or the first n by order "index", "worst_ap" (of the first
    result) or "changed" (largest AP change between the first two results)."""
    if queries is not None:
        return [int(q) for q in np.atleast_1d(queries)]
    ap = np.asarray(results[0].ap, float)
    valid = np.asarray(results[0].valid, bool)
    if order == "index":
        return list(range(min(n, len(ap))))
    if order == "worst_ap":
        idx = np.flatnonzero(valid)
        return idx[np.argsort(ap[idx], kind="stable")][:n].tolist()
    if order == "changed":
        if len(results) < 2:
            raise ValueError("order='changed' compares two results; pass two")
        delta = np.abs(np.asarray(results[1].ap, float) - ap)
        idx = np.flatnonzero(valid & np.isfinite(delta))
        return idx[np.argsort(-delta[idx], kind="stable")][:n].tolist()
    raise ValueError(f"order={order!r} is not valid; allowed: 'index', 'worst_ap', 'changed'")


def plot_ranked_comparison(query, gallery, results: Sequence, labels: Sequence[str], distances=None,
                           queries=None, order: str = "index", n: int = 3, k: int = 8,
                           size: tuple[int, int] = (128, 64), ax=None) -> Figure:
    """For each chosen query, one row per result: the query then its top-k gallery images.

    Borders: green = same pid other camera, red = different pid, grey = same pid same camera (junk,
    ignored by the protocol but still in the unfiltered list). Under each: pid, camera, distance.
    results: EvalResult-like objects with ranked (Q, keep), ap, valid; distances: one per result,
    each a (Q, G) matrix, top-k distances (Q, keep) or None.
    """
    if len(labels) != len(results):
        raise ValueError(f"{len(results)} results but {len(labels)} labels; give one label per result")
    distances = [None] * len(results) if distances is None else list(distances)
    if len(distances) != len(results):
        raise ValueError(f"{len(results)} results but {len(distances)} distance arrays; give one per result "
                         "(None where unknown)")
    qpids = np.array([r.pid for r in query])
    qcams = np.array([r.camid for r in query])
    gpids = np.array([r.pid for r in gallery])
    gcams = np.array([r.camid for r in gallery])
    for label, res in zip(labels, results):
        ranked = np.asarray(res.ranked)
        if ranked.ndim != 2 or ranked.shape[0] != len(query) or ranked.max() >= len(gallery):
            raise ValueError(f"{label}: ranked has shape {ranked.shape} (max {ranked.max()}); expected "
                             f"({len(query)}, keep) indices into a gallery of {len(gallery)}: was it "
                             "evaluated on this query / gallery?")
    topk_d = [gather_topk_distances(d, np.asarray(r.ranked), len(gallery)) for d, r in zip(distances, results)]
    k = min(k, *(np.asarray(r.ranked).shape[1] for r in results), *(d.shape[1] for d in topk_d if d is not None))
    chosen = select_queries(results, queries, order, n)
    rows = [(q, j) for q in chosen for j in range(len(results))]
    fig, axes = _axes(ax, len(rows) * (k + 1), (0.95 * (k + 1), 2.3 * len(rows)), ncols=k + 1)
    for row, (q, j) in enumerate(rows):
        res, ranked = results[j], np.asarray(results[j].ranked)[q, :k]
        cells = axes[row * (k + 1):(row + 1) * (k + 1)]
        ap = float(np.asarray(res.ap)[q])
        ap_text = f"AP {ap:.2f}" if np.isfinite(ap) else "no match"
        _draw_tile(cells[0], query[q].path, size, "query", f"pid {qpids[q]} cam {qcams[q]}\n{ap_text}")
        cells[0].set_title(f"{labels[j]}\nquery {q}" if len(results) > 1 else f"query {q}", fontsize=8)
        kinds = match_kinds(qpids[q], qcams[q], gpids[ranked], gcams[ranked])
        for i, (axis, g, kind) in enumerate(zip(cells[1:], ranked, kinds)):
            dist = "" if topk_d[j] is None else f"\nd {topk_d[j][q, i]:.3f}"
            _draw_tile(axis, gallery[g].path, size, str(kind), f"pid {gpids[g]} cam {gcams[g]}{dist}")
            axis.set_title(str(i + 1), fontsize=8)
    return fig


def plot_ranked_lists(query, gallery, result, distances=None, queries=None, worst_first: bool = False,
                      n: int = 4, k: int = 10, size: tuple[int, int] = (128, 64), ax=None) -> Figure:
    """Queries and their top-k (worst-AP queries first when worst_first); see plot_ranked_comparison."""
    return plot_ranked_comparison(query, gallery, [result], ["run"], None if distances is None else [distances],
                                  queries, "worst_ap" if worst_first else "index", n, k, size, ax)


def plot_rerank_comparison(query, gallery, before, after, distances=(None, None), queries=None,
                           order: str = "changed", n: int = 3, k: int = 8, ax=None) -> Figure:
    """The same queries before and after re-ranking, largest AP change first by default."""
    return plot_ranked_comparison(query, gallery, [before, after], ["before re-ranking", "after re-ranking"],
                                  distances, queries, order, n, k, ax=ax)
