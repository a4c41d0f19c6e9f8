"""Evaluation from device memory, the fast path's test half (cfg.data_path == "resident").

The loader path (reidlab.loaders.build_test_loader + reidlab.evaluate.evaluate_model) decodes every JPEG in
DataLoader workers at every evaluation; on a GPU that is nearly all of its time (Market-1501: 10-12 s for
19,281 images, against 0.025 s for distances and metrics). Here query and gallery are decoded once into the
training set's on-disk uint8 cache (reidlab.gpu_data.decode_images, whose Resize is the test transform's),
kept on the device, normalised batch by batch there with the float ops of ToTensor + Normalize, and ranked
(and re-ranked) where they are. In fp32 the features, and so the metrics, are the loader path's: bit for bit on a
CPU (tests/test_gpu_eval.py); on a GPU cuDNN may choose other kernels for other batch sizes, which
benchmarks/eval_paths.py measures (batch 128, the loader's, and 512).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from reidlab.evaluate import extract_features, score_features
from reidlab.gpu_data import decode_images
from reidlab.transforms import MEAN, STD

BATCH_SIZE = 512  # images per forward pass: large batches keep a GPU busy; the loader path uses 128
CPU_BATCH_SIZE = 256  # on a CPU: MobileNetV2 at 64 x 32 ran faster than at 128 or 512 (its activations fit the caches)


class DeviceTestSet(NamedTuple):
    images: torch.Tensor  # (Q + G, 3, H, W) uint8 on the device: the queries, then the gallery
    pids: np.ndarray  # (Q + G,)
    camids: np.ndarray  # (Q + G,)
    num_query: int


def load_test_set(dataset, image_size, device, cache_dir: str | Path | None = None,
                  progress: bool = True) -> DeviceTestSet:
    """Query + gallery of `dataset` as uint8 on `device`, decoded once (the on-disk cache of decode_images).

    The last test set loaded stays resident (a cache of one), so evaluating every few epochs, or the runs of a
    grid one after another in one process, decodes and copies nothing again; free_test_set() lets it go.
    """
    records = tuple(dataset.query) + tuple(dataset.gallery)
    return _load_resident(records, len(dataset.query), tuple(image_size), str(torch.device(device)),
                          None if cache_dir is None else str(cache_dir), progress)


def free_test_set() -> None:
    """Drop the resident test set (its device memory returns to PyTorch's allocator)."""
    _load_resident.cache_clear()


@lru_cache(maxsize=1)
def _load_resident(records, num_query, image_size, device, cache_dir, progress) -> DeviceTestSet:
    images = decode_images(records, image_size, cache_dir, progress=progress)  # (N, 3, H, W) uint8, CPU
    return DeviceTestSet(images.to(device), np.array([r.pid for r in records]), np.array([r.camid for r in records]),
                         num_query)


def iterate_batches(test_set: DeviceTestSet, batch_size: int = BATCH_SIZE, channels_last: bool = False):
    """(images (B, 3, H, W) float32, pids (B,), camids (B,)) in order, normalised on the device: what the test
    loader yields, without decoding."""
    images = test_set.images
    mean, std = (torch.tensor(v, dtype=torch.float32, device=images.device)[:, None, None] for v in (MEAN, STD))
    for start in range(0, len(images), batch_size):
        rows = slice(start, start + batch_size)
        # the same float ops as ToTensor + Normalize: bit for bit the CPU test transform's tensor
        x = images[rows].float().div(255).sub(mean).div(std)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield x, test_set.pids[rows], test_set.camids[rows]


def extract_device_features(model, cfg, dataset, device, batch_size: int | None = None,
                            cache_dir: str | Path | None = None):
    """(features (Q + G, D) float32 on the CPU, pids, camids, Q): the test features (cfg.flip_test, cfg.amp)
    of query then gallery, from the resident test set."""
    progress = getattr(cfg, "progress", True)
    batch_size = batch_size or (CPU_BATCH_SIZE if torch.device(device).type == "cpu" else BATCH_SIZE)
    test_set = load_test_set(dataset, cfg.image_size, device, cache_dir, progress)
    batches = iterate_batches(test_set, batch_size, bool(getattr(cfg, "channels_last", False)))
    feats, pids, camids = extract_features(model, batches, device, flip=cfg.flip_test, amp=getattr(cfg, "amp", "none"),
                                           progress=progress)
    return feats, pids, camids, test_set.num_query


def evaluate_on_device(model, cfg, dataset, device, batch_size: int | None = None,
                       cache_dir: str | Path | None = None):
    """(metrics dict in percent, EvalResult): reidlab.evaluate.evaluate_model's result, from device memory."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    feats, pids, camids, q = extract_device_features(model, cfg, dataset, device, batch_size, cache_dir)
    feats = feats.to(device)
    return score_features(feats[:q], pids[:q], camids[:q], feats[q:], pids[q:], camids[q:], cfg)


def decode_ahead(configs, cache_dir: str | Path | None = None, progress: bool = True) -> int:
    """Fill the on-disk caches of decode_images (training set, then query + gallery) for every distinct dataset and
    image size among `configs` with data_path="resident"; returns how many were filled. Runs that start side by side
    then read the caches instead of each decoding the same images at once. A dataset that fails to decode is
    left to its runs, which report it."""
    from reidlab.datasets import load_dataset
    from reidlab.paths import resolve

    seen, filled = set(), 0
    for cfg in configs:
        key = (cfg.dataset, cfg.data_root, tuple(cfg.image_size))
        if cfg.data_path != "resident" or key in seen:
            continue
        seen.add(key)
        try:
            dataset = load_dataset(cfg.dataset, resolve(cfg.data_root) / cfg.dataset, verbose=False)
            decode_images(dataset.train, cfg.image_size, cache_dir, progress=progress)
            decode_images(tuple(dataset.query) + tuple(dataset.gallery), cfg.image_size, cache_dir, progress=progress)
        except Exception as e:  # e.g. a corrupt image: each run that reads this dataset reports it
            print(f"warning: decoding {cfg.dataset} ahead failed ({type(e).__name__}: {e}); its runs decode alone")
            continue
        filled += 1
    return filled
