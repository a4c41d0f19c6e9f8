"""What every dataset reader returns: `Record(path, pid, camid)` in a `ReidDataset`, built by `build_dataset`.

The conventions are the authors' code's (bot_paper.md section 8): train pids relabelled 0..N-1 in the order of
the original pids, junk (pid -1) dropped, distractors (pid 0) kept in the gallery, cameras 0-based, query /
gallery keeping their original pids, records sorted by path.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Iterable, NamedTuple

import numpy as np


class Record(NamedTuple):
    path: str
    pid: int
    camid: int


class DatasetError(ValueError):
    """A dataset is missing, mis-laid, mis-named or corrupt; the message names the file or layout and the fix."""


@dataclass(frozen=True)
class ReidDataset:
    name: str
    train: list[Record]
    query: list[Record]
    gallery: list[Record]

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({r.camid for r in self.train})

    def split_keys(self) -> dict[str, str]:
        """{"train_set": ..., "test_set": ...}: each split's image count and a short hash of its image names with
        their pids and cameras (not of where the folder lies). fit keeps them in metrics.json, so a finished run is
        not read as one of a dataset that has changed since (reidlab.runs.read_finished)."""
        def key(splits: dict[str, list[Record]]) -> str:
            rows = [(split, PurePath(r.path).name, r.pid, r.camid) for split, recs in splits.items() for r in recs]
            digest = hashlib.sha1(json.dumps(rows).encode()).hexdigest()[:8]
            return ", ".join(f"{len(recs)} {split} images" for split, recs in splits.items()) + f" ({digest})"
        return {"train_set": key({"train": self.train}),
                "test_set": key({"query": self.query, "gallery": self.gallery})}

    def summary(self) -> str:
        parts = [f"{split} {len({r.pid for r in recs})} ids / {len(recs)} images / {len({r.camid for r in recs})} cams"
                 for split, recs in (("train", self.train), ("query", self.query), ("gallery", self.gallery))]
        return f"{self.name}: " + " | ".join(parts)


def build_dataset(name: str, train: Iterable[Record], query: Iterable[Record],
                  gallery: Iterable[Record]) -> ReidDataset:
    """Drop junk (pid -1) everywhere, relabel train pids to 0..N-1 by sorted original pid, sort every split by path."""
    train = [r for r in train if r.pid != -1]
    query = sorted((r for r in query if r.pid != -1), key=lambda r: r.path)
    gallery = sorted((r for r in gallery if r.pid != -1), key=lambda r: r.path)
    label = {pid: i for i, pid in enumerate(sorted({r.pid for r in train}))}
    train = sorted((r._replace(pid=label[r.pid]) for r in train), key=lambda r: r.path)
    for split, recs in (("train", train), ("query", query), ("gallery", gallery)):
        if not recs:
            raise DatasetError(f"{name}: the {split} split has no images (after dropping junk, pid -1); "
                               f"check that its folder holds the dataset's images")
    return ReidDataset(name, train, query, gallery)


def keep_train_identities(dataset: ReidDataset, n: int, seed: int = 0) -> ReidDataset:
    """The dataset with only `n` of its training identities (0, or n >= their number: all of them), relabelled
    0..n-1 in their original order; query and gallery untouched, so the metrics keep the dataset's protocol.

    Which identities: the first n of a permutation of the training labels drawn from a fixed seed, so the subset of
    a given copy of a dataset is the same on every machine (a documented subset, not a sample per run)."""
    total = dataset.num_train_pids
    if n < 0:
        raise ValueError(f"train_ids={n} must be >= 0 (0: every training identity)")
    if n == 0 or n >= total:
        return dataset
    kept = sorted(np.random.default_rng([seed, 1501]).permutation(total)[:n].tolist())
    label = {pid: i for i, pid in enumerate(kept)}
    train = [r._replace(pid=label[r.pid]) for r in dataset.train if r.pid in label]
    return replace(dataset, name=f"{dataset.name} ({n} of {total} training identities)", train=train)
