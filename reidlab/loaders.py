"""Dataset and DataLoaders for the CPU path: decode JPEGs in worker processes, batch P x K identities.

The resident fast path (data_path="resident", GPU or CPU: reidlab/gpu_data.py) yields the same batches
`(images, pids, camids)`; both decode files with `read_image`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from reidlab.records import DatasetError, Record
from reidlab.sampler import RandomIdentitySampler
from reidlab.transforms import build_test_transform, build_train_transform


class ImageReadError(DatasetError, OSError):
    """An image file that is missing, truncated or not an image."""


def read_image(path: str | Path) -> Image.Image:
    """Decode one image file to an RGB PIL image, naming the file if it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # forces the decode while the file is open
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(
            f"cannot read image {path}: {type(e).__name__}: {e}. The file is missing or corrupt; list every bad "
            f"file with `python -m reidlab verify DATASET` (reidlab.datasets.verify_images(dataset)), then "
            f"re-extract or delete them") from e


class ImageDataset(Dataset):
    """`dataset[i]` -> `(transform(image), pid, camid)`; `dataset[(i, seed)]` draws the transform's randomness
    from `seed` (what SeededSampler yields)."""

    def __init__(self, records: Sequence[Record], transform: Callable | None = None):
        if len(records) == 0:
            raise ValueError("records is empty: the dataset split has no images; check the data root")
        self.records, self.transform = records, transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item):
        if not isinstance(item, tuple):
            return self.load(item)
        index, seed = item
        # a worker's RNG is its own to overwrite; in this process the caller's stream is put back afterwards
        with torch.random.fork_rng(devices=[], enabled=get_worker_info() is None):
            torch.default_generator.manual_seed(seed)
            return self.load(index)

    def load(self, index: int):
        path, pid, camid = self.records[index][:3]
        image = read_image(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, pid, camid


class SeededSampler(Sampler):
    """The wrapped sampler's indices, each with the seed of its augmentation: `(index, seed)` pairs.

    The seeds are a pure function of (seed, the sampler's epoch and rank, position in the epoch), as on the GPU
    path: an epoch's batches are the same with 0, 1 or 8 workers, resumed or not, whatever the timing of the
    workers' prefetching and however many times the epoch's iteration is started. A per-epoch reseed of
    persistent workers is not: a worker's stream then depends on how many items it decoded before the reseed
    reached it. Everything else (`set_epoch`, `state_dict`, `num_batches`, `len`, ...) is the wrapped sampler's.
    """

    def __init__(self, sampler, seed: int):
        self.sampler, self.seed = sampler, int(seed)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = list(self.sampler)
        epoch, rank = getattr(self.sampler, "epoch", 0), getattr(self.sampler, "rank", 0)
        # 32-bit seeds: torch's CPU generator (mt19937) keeps only the low 32 bits of a seed
        seeds = np.random.SeedSequence([self.seed, epoch, rank]).generate_state(len(order), np.uint32)
        return zip(order, seeds.tolist())

    def __len__(self) -> int:
        return len(self.sampler)

    def __getattr__(self, name: str):
        if name == "sampler":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.sampler, name)


def build_train_loader(train_records: Sequence[Record], cfg, seed: int | None = None, sampler=None) -> DataLoader:
    """P x K batches of augmented training images; call `loader.sampler.set_epoch(e)` before each epoch.

    The augmentations are a pure function of (seed, epoch, position): see SeededSampler.

    `sampler`: another P x K sampler, e.g. a rank's share under DDP (reidlab.distributed).
    """
    sampler = sampler or RandomIdentitySampler([r[1] for r in train_records], cfg.P, cfg.K,
                                               seed=cfg.seed if seed is None else seed)
    workers = cfg.num_workers
    if workers < 0:
        raise ValueError(f"num_workers={workers} must be >= 0 (0 decodes in the main process)")
    seeded = SeededSampler(sampler, cfg.seed if seed is None else seed)
    return DataLoader(
        ImageDataset(train_records, build_train_transform(cfg)), sampler=seeded,
        batch_size=getattr(sampler, "batch_size", cfg.P * cfg.K), drop_last=True, num_workers=workers,
        persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
    )


def build_test_loader(records: Sequence[Record], cfg, batch_size: int = 128, workers: int | None = None) -> DataLoader:
    """Query or gallery images in their given order, test transform (resize, normalise).

    `workers` defaults to cfg.num_workers; 0 decodes in this process.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    return DataLoader(ImageDataset(records, build_test_transform(cfg)), batch_size=batch_size, shuffle=False,
                      num_workers=cfg.num_workers if workers is None else workers,
                      pin_memory=torch.cuda.is_available())
