"""P x K identity sampler: every batch holds P identities with K images each (batch-hard triplet needs both).

The authors' recipe (bot_paper.md section 8), once per epoch:
  1. shuffle every identity's image list; an identity with fewer than K images is drawn with
     replacement up to K;
  2. cut each list into chunks of K, dropping the remainder;
  3. repeatedly pick P identities at random among those with chunks left and take one chunk from each,
     until fewer than P identities have chunks left.
The epoch's order is a pure function of (seed, epoch): resuming a run needs only the epoch.

The random draws, in order, from `np.random.default_rng([seed, epoch])` (the tests replay them):
  - for each identity in ascending pid order: `rng.permutation(indices)` when it has >= K images, else
    `rng.choice(indices, size=K, replace=True)`;
  - for each batch: `rng.choice(available, size=P, replace=False)`, `available` the ascending pids with
    chunks left; the chosen identities' chunks follow one another in the drawn order.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class RandomIdentitySampler(Sampler[int]):
    """Yields dataset indices; every consecutive run of P*K indices is one batch of P ids x K images."""

    def __init__(self, pids: Sequence[int], P: int, K: int, seed: int = 0):
        super().__init__()
        for name, value in (("P", P), ("K", K)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed={seed!r} must be a non-negative integer")
        pids = np.asarray(pids)
        if pids.ndim != 1 or len(pids) == 0:
            raise ValueError("pids must be a non-empty 1-D sequence of identity labels, one per training image")
        if not np.issubdtype(pids.dtype, np.integer):
            raise ValueError(f"pids must be integers, got dtype {pids.dtype}; relabel identities to 0..N-1")
        self.ids, inverse = np.unique(pids, return_inverse=True)  # ascending pids
        if len(self.ids) < P:
            raise ValueError(f"P={P} identities per batch but the training set has only {len(self.ids)}; "
                             f"lower P to at most {len(self.ids)}")
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse, minlength=len(self.ids))
        self.index_lists = np.split(order, np.cumsum(counts)[:-1])  # index_lists[i]: the images of ids[i]
        self.P, self.K, self.seed = int(P), int(K), int(seed)
        self.epoch = 1  # epochs are 1-based, as in the training loop
        self._cache: tuple[int, list[int]] | None = None  # (epoch, indices)

    def set_epoch(self, epoch: int) -> None:
        if not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch={epoch!r} must be a non-negative integer")
        self.epoch = int(epoch)

    def _generate(self) -> list[int]:
        P, K = self.P, self.K
        rng = np.random.default_rng([self.seed, self.epoch])
        # 1-2: per identity, a (num_chunks, K) array of its shuffled indices, remainder dropped
        chunks = []
        for idx in self.index_lists:
            drawn = rng.permutation(idx) if len(idx) >= K else rng.choice(idx, size=K, replace=True)
            n = len(drawn) // K
            chunks.append(drawn[: n * K].reshape(n, K))  # (num_chunks, K)
        left = np.array([len(c) for c in chunks])  # chunks left per identity
        taken = np.zeros(len(chunks), dtype=int)
        # 3: P identities at a time, one chunk each, while at least P identities have chunks left
        out = []
        available = np.flatnonzero(left)
        while len(available) >= P:
            for i in rng.choice(available, size=P, replace=False):
                out.append(chunks[i][taken[i]])
                taken[i] += 1
                left[i] -= 1
            available = np.flatnonzero(left)
        return np.concatenate(out).tolist() if out else []

    def _indices(self) -> list[int]:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._generate())
        return self._cache[1]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        """The exact number of indices this epoch yields (a multiple of P*K)."""
        return len(self._indices())

    @property
    def num_batches(self) -> int:
        return len(self) // (self.P * self.K)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        missing = {"seed", "epoch"} - set(state)
        if missing:
            raise ValueError(f"sampler state lacks {sorted(missing)}; "
                             f"pass the dict from RandomIdentitySampler.state_dict()")
        self.seed = int(state["seed"])
        self.set_epoch(state["epoch"])
        self._cache = None
