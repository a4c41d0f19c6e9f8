"""Feature extraction, query-gallery distances and the ranking metrics: CMC, mAP, mINP.

The protocol is the authors' Market-1501 one (reference section 8): per query, gallery items with the
query's identity *and* camera are dropped (the same shot seen twice is no retrieval), queries left without a
correct match are skipped, CMC is the fraction of valid queries whose first correct match is within rank k,
AP is non-interpolated (mean of the precision at each correct match), and mINP is the mean of
(number of correct matches) / (rank of the hardest one).

Ties are ordered as a stable sort on distance: of two equal distances the lower gallery index ranks first.
The ranking never sorts a whole (Q, G) row; it only needs the ranks of the query's own identity
(a few items per row), found by counting how many gallery distances fall below each of them.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from reidlab.collapse import feature_spread

FEATURES = ("f_t", "f_i")
METRICS = ("euclidean", "cosine")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CHUNK_ELEMENTS = 1 << 22  # per-chunk (queries x gallery) elements: about 100 MB of temporaries


# --- features -----------------------------------------------------------------------------------------

def _forward(model, images, feature, amp_dtype):
    autocast = (torch.autocast(images.device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    with autocast:
        return model(images) if feature is None else model.extract(images)[feature]


@torch.no_grad()
def extract_features(model, loader, device="cpu", flip=False, feature=None, amp="none", progress=True):
    """(features (N, D) float32 on the CPU, pids (N,), camids (N,)) of every image the loader yields.

    `loader` yields (images (B, 3, H, W), pids (B,), camids (B,)). The model runs in eval mode (and is put back
    in the mode it was in). `feature=None` takes `model(x)`, the model's configured test feature; "f_t" or
    "f_i" takes `model.extract(x)[feature]`. `flip=True` adds the features of the horizontally flipped images.
    """
    if feature is not None and feature not in FEATURES:
        raise ValueError(f"feature={feature!r} is not valid; use None (the model's test feature) or one of {FEATURES}")
    if feature is not None and not callable(getattr(model, "extract", None)):
        raise TypeError(f"feature={feature!r} needs model.extract(x) returning a dict of features; "
                        f"{type(model).__name__} has none: pass feature=None")
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp={amp!r} is not valid; allowed values: {', '.join(map(repr, AMP_DTYPES))}")
    device = torch.device(device)
    amp_dtype = AMP_DTYPES[amp]
    was_training = model.training
    model.eval()
    # on a CPU batch norm's own passes cost about a third of inference: folded into the convolutions of a copy
    if device.type == "cpu" and isinstance(model, nn.Module):
        from reidlab.model import fold_batch_norms
        net = fold_batch_norms(model)
    else:
        net = model
    feats, pids, camids = [], [], []
    try:
        # tqdm.auto calls iter() on what it wraps when built, and again to loop: given a DataLoader with workers,
        # that forks a second pass nobody reads, whose copies in the next workers then fail to shut it down
        try:
            total = len(loader)
        except TypeError:  # a generator, or an iterable-style dataset without a length
            total = None
        for batch in tqdm(iter(loader), total=total, desc="features", leave=False, disable=not progress):
            if len(batch) != 3:
                raise ValueError(f"the loader must yield (images, pids, camids), got {len(batch)} items per batch")
            images, batch_pids, batch_camids = batch
            images = images.to(device, non_blocking=True)
            f = _forward(net, images, feature, amp_dtype)
            if flip:
                f = f + _forward(net, images.flip(3), feature, amp_dtype)  # mirror the width axis
            feats.append(f.float().cpu())
            pids.append(np.asarray(batch_pids).reshape(-1))
            camids.append(np.asarray(batch_camids).reshape(-1))
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("the loader yielded no batches: is the query / gallery split empty?")
    return torch.cat(feats), np.concatenate(pids), np.concatenate(camids)


# --- distances ----------------------------------------------------------------------------------------

def compute_distance(qf, gf, metric="euclidean", normalize=True, chunk_size=4096):
    """Distance matrix (Q, G), float32 on the features' device.

    "euclidean": squared Euclidean distance, the authors' ranking (on L2-normalised features it is
    2 - 2 cos, so it ranks as cosine does); "cosine": 1 - cos. `normalize` L2-normalises both sides first
    (cosine normalises regardless). Computed `chunk_size` queries at a time, into the output.
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not valid; allowed values: {', '.join(map(repr, METRICS))}")
    qf, gf = torch.as_tensor(qf), torch.as_tensor(gf)
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
        raise ValueError(f"features must be (Q, D) and (G, D) with the same D; got {tuple(qf.shape)} and "
                         f"{tuple(gf.shape)}")
    if qf.device != gf.device:
        raise ValueError(f"query features are on {qf.device} but gallery features on {gf.device}; move both to "
                         f"one device")
    qf, gf = qf.float(), gf.float()
    if normalize or metric == "cosine":
        qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    out = torch.empty(qf.shape[0], gf.shape[0], dtype=torch.float32, device=qf.device)
    g_sq = gf.pow(2).sum(1)  # (G,)
    for start in range(0, qf.shape[0], chunk_size):
        q = qf[start:start + chunk_size]
        block = out[start:start + chunk_size]
        torch.matmul(q, gf.T, out=block)  # q . g
        if metric == "cosine":
            block.neg_().add_(1.0)  # 1 - cos
        else:
            # ||q - g||^2 = ||q||^2 + ||g||^2 - 2 q.g, clamped: rounding can dip below 0
            block.mul_(-2).add_(q.pow(2).sum(1, keepdim=True)).add_(g_sq).clamp_(min=0)
    return out


# --- ranking metrics ----------------------------------------------------------------------------------

@dataclass
class EvalResult:
    cmc: np.ndarray  # (max_rank,) fraction of valid queries with a correct match within rank k
    mAP: float  # 0..1
    mINP: float  # 0..1
    ap: np.ndarray  # (Q,) average precision, nan for invalid queries
    valid: np.ndarray  # (Q,) bool: the query has a correct match once its own camera's shots are dropped
    ranked: np.ndarray  # (Q, keep) gallery indices by increasing distance, unfiltered

    def metrics(self) -> dict[str, float]:
        """rank-1/5/10 (those within max_rank), mAP and mINP in percent, as in the paper's tables."""
        out = {f"rank{k}": 100 * float(self.cmc[k - 1]) for k in (1, 5, 10) if k <= len(self.cmc)}
        out.update(mAP=100 * self.mAP, mINP=100 * self.mINP)
        return out


def _sort_keys(dist):
    """int64 keys (C, G) whose order is the stable-sort order of float32 distances: (distance, gallery index),
    or None if `dist` holds NaN."""
    bits = dist.view(torch.int32)
    low, high = torch.aminmax(bits)
    if low < 0 or high > 0x7F800000:  # a sign bit set (negative, -0.0, a NaN) or a positive NaN
        if torch.isnan(dist).any():
            return None
        # IEEE-754 floats order like sign-magnitude integers: add +0.0 so -0.0 ties with 0.0, then flip the
        # magnitude bits of negatives to get two's-complement order
        bits = (dist + 0.0).view(torch.int32)
        bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    # non-negative floats order like their bit patterns: key = bits * 2^32 + gallery index
    return torch.add(torch.arange(dist.shape[1], device=dist.device), bits, alpha=1 << 32)


class _GalleryIndex:
    """Gallery items grouped by identity, so a query finds its identity's items without scanning the gallery."""

    def __init__(self, g_pids):
        self.order = torch.argsort(g_pids, stable=True)  # gallery indices grouped by pid
        self.pids, counts = torch.unique_consecutive(g_pids[self.order], return_counts=True)
        self.counts = torch.cat([counts, counts.new_zeros(1)])  # the last slot: pids absent from the gallery
        self.starts = self.counts.cumsum(0) - self.counts

    def items(self, q_pids):
        """(row, gallery index) of every gallery item with the query's pid, grouped by row; count per row."""
        slot = torch.searchsorted(self.pids, q_pids).clamp_(max=len(self.pids) - 1)
        slot = torch.where(self.pids[slot] == q_pids, slot, len(self.pids))
        counts = self.counts[slot]  # (C,)
        rows = torch.repeat_interleave(torch.arange(len(q_pids), device=q_pids.device), counts)
        offsets = counts.cumsum(0) - counts
        within = torch.arange(len(rows), device=q_pids.device) - offsets[rows]
        return rows, self.order[self.starts[slot][rows] + within], within, counts


def _rank_chunk(keys, q_pids, q_camids, g_camids, gallery, keep):
    """Per query of a chunk: (1-based filtered rank of the first match, AP, INP), float64, nan if invalid,
    and the unfiltered top-`keep` gallery indices."""
    device = keys.device
    ranked = torch.topk(keys, keep, dim=1, largest=False).indices  # unique keys: the stable order

    # the query's identity in the gallery: the only items whose ranks the metrics need
    rows, cols, slot, counts = gallery.items(q_pids)
    width = max(int(counts.max()), 1)
    sentinel = torch.iinfo(torch.int64).max
    id_keys = torch.full((len(counts), width), sentinel, dtype=torch.int64, device=device)
    id_keys[rows, slot] = keys[rows, cols]
    id_junk = torch.zeros_like(id_keys, dtype=torch.bool)
    id_junk[rows, slot] = g_camids[cols] == q_camids[rows]  # same identity, same camera: dropped
    id_keys, order = id_keys.sort(dim=1)  # (C, width) the identity's items in ranking order
    real = id_keys != sentinel
    junk = id_junk.gather(1, order) & real

    # unfiltered 0-based rank of identity item k = #{gallery keys < key_k}: bucket every gallery key by how
    # many identity keys lie below it; items in buckets 0..k are those below key_k, plus item k itself
    below = torch.searchsorted(id_keys, keys)  # (C, G) in 0..width
    hist = torch.zeros(len(counts), width + 1, dtype=torch.int64, device=device)
    hist.scatter_add_(1, below, torch.ones(1, dtype=torch.int64, device=device).expand(below.shape))
    rank0 = hist.cumsum(1)[:, :width] - 1  # (C, width)

    good = real & ~junk
    junk_before = junk.cumsum(1) - junk.long()
    filtered_rank = (rank0 - junk_before + 1).double()  # 1-based rank once junk is dropped
    hits = good.cumsum(1).double()  # correct matches up to and including this one
    num_pos = good.sum(1).double()
    valid = num_pos > 0
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=device)
    # AP = (1 / #pos) sum_k precision@k over the correct matches k
    ap = torch.where(good, hits / filtered_rank, 0.0).sum(1) / num_pos
    first = torch.where(good, filtered_rank, float("inf")).amin(1)
    # INP = #pos / rank of the hardest (last) correct match
    inp = num_pos / torch.where(good, filtered_rank, 0.0).amax(1)
    return (torch.where(valid, first, nan), torch.where(valid, ap, nan), torch.where(valid, inp, nan),
            ranked)


def _as_ids(values, name, length, device):
    t = torch.as_tensor(np.asarray(values), device=device)
    if t.ndim != 1 or len(t) != length:
        raise ValueError(f"{name} must be 1-D with {length} entries (one per distmat "
                         f"{'row' if name.startswith('q') else 'column'}), got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got {t.dtype}")
    return t.long().contiguous()


def evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, keep=100, chunk_size=None):
    """CMC, AP, mAP and mINP of a distance matrix (Q, G) under the Market protocol (see the module docstring).

    Runs in torch on distmat's device, `chunk_size` queries at a time (None: about 4M distances per chunk).
    Distances are ranked as float32. Ties: stable sort on distance (lower gallery index first).
    """
    distmat = torch.as_tensor(distmat)
    if distmat.ndim != 2 or 0 in distmat.shape:
        raise ValueError(f"distmat must be a non-empty (Q, G) matrix, got shape {tuple(distmat.shape)}")
    if max_rank < 1 or keep < 0:
        raise ValueError(f"max_rank={max_rank} must be >= 1 and keep={keep} >= 0")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1 (or None for automatic)")
    num_q, num_g = distmat.shape
    device = distmat.device
    q_pids, q_camids = (_as_ids(v, n, num_q, device) for v, n in ((q_pids, "q_pids"), (q_camids, "q_camids")))
    g_pids, g_camids = (_as_ids(v, n, num_g, device) for v, n in ((g_pids, "g_pids"), (g_camids, "g_camids")))
    chunk_size = chunk_size or max(1, CHUNK_ELEMENTS // num_g)
    keep = min(keep, num_g)

    gallery = _GalleryIndex(g_pids)
    first, ap, inp, ranked = [], [], [], []
    for start in range(0, num_q, chunk_size):
        rows = slice(start, start + chunk_size)
        keys = _sort_keys(distmat[rows].float())
        if keys is None:
            raise ValueError("distmat contains NaN: check the features for NaN / inf (a diverged model?)")
        out = _rank_chunk(keys, q_pids[rows], q_camids[rows], g_camids, gallery, keep)
        for acc, value in zip((first, ap, inp, ranked), out):
            acc.append(value.cpu())
    first, ap, inp = (torch.cat(v).numpy() for v in (first, ap, inp))
    valid = ~np.isnan(ap)
    if not valid.any():
        raise ValueError("no query has a correct match in the gallery once same-camera shots of its identity are "
                         "dropped: check that q_pids / g_pids share identities and that camids are right")
    # CMC[k-1] = fraction of valid queries whose first correct match is at rank <= k
    first_hits = np.bincount(np.minimum(first[valid], max_rank + 1).astype(np.int64) - 1, minlength=max_rank + 1)
    cmc = np.cumsum(first_hits[:max_rank]) / valid.sum()
    return EvalResult(cmc=cmc, mAP=float(ap[valid].mean()), mINP=float(inp[valid].mean()), ap=ap, valid=valid,
                      ranked=torch.cat(ranked).numpy())


# --- the whole evaluation -----------------------------------------------------------------------------

def evaluate_model(model, query_loader, gallery_loader, cfg, device):
    """(metrics dict in percent, EvalResult) of `model` on a query / gallery split, as `cfg` says.

    Features: the model's test feature (it knows cfg.test_feature), with cfg.flip_test; distance per
    cfg.distance / cfg.normalize_features; with cfg.rerank also k-reciprocal re-ranking (rerank_k1/k2/lambda),
    adding "rerank_rank1", "rerank_mAP", "rerank_mINP". The EvalResult is the plain ranking's.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    amp, progress = getattr(cfg, "amp", "none"), getattr(cfg, "progress", True)
    qf, q_pids, q_camids = extract_features(model, query_loader, device, flip=cfg.flip_test, amp=amp,
                                            progress=progress)
    gf, g_pids, g_camids = extract_features(model, gallery_loader, device, flip=cfg.flip_test, amp=amp,
                                            progress=progress)
    return score_features(qf.to(device), q_pids, q_camids, gf.to(device), g_pids, g_camids, cfg)


def score_features(qf, q_pids, q_camids, gf, g_pids, g_camids, cfg):
    """(metrics dict in percent, EvalResult) of query / gallery features, ranked (and re-ranked) on their device.

    What evaluate_model does once it has the features; reidlab.gpu_eval (features from device memory) calls it too.
    """
    progress = getattr(cfg, "progress", True)
    distmat = compute_distance(qf, gf, metric=cfg.distance, normalize=cfg.normalize_features)
    result = evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids)
    metrics = result.metrics()
    metrics["feature_spread"] = feature_spread(qf, gf)  # about 0: a collapsed model (reidlab.collapse)
    if cfg.rerank:
        from reidlab.rerank import re_rank

        if cfg.normalize_features:
            qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
        reranked = re_rank(qf, gf, k1=cfg.rerank_k1, k2=cfg.rerank_k2, lambda_=cfg.rerank_lambda, progress=progress)
        rr = evaluate_ranking(reranked, q_pids, g_pids, q_camids, g_camids).metrics()
        metrics.update(rerank_rank1=rr["rank1"], rerank_mAP=rr["mAP"], rerank_mINP=rr["mINP"])
    return metrics, result
