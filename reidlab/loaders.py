"""Dataset and DataLoaders for the CPU path: decode JPEGs in worker processes, batch P x K identities.

The GPU-resident fast path (reidlab/gpu_data.py) yields the same batches `(images, pids, camids)`;
both decode files with `read_image`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, get_worker_info

from reidlab.sampler import RandomIdentitySampler
from reidlab.transforms import build_test_transform, build_train_transform

try:
    from reidlab.datasets import DatasetError, Record
except ModuleNotFoundError as e:  # reidlab.datasets not written yet: the same names
    if e.name != "reidlab.datasets":
        raise

    class Record(NamedTuple):
        path: str
        pid: int
        camid: int

    class DatasetError(ValueError):
        pass


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
    """`records[i]` -> `(transform(image), pid, camid)`."""

    def __init__(self, records: Sequence[Record], transform: Callable | None = None):
        if len(records) == 0:
            raise ValueError("records is empty: the dataset split has no images; check the data root")
        self.records, self.transform = records, transform
        # persistent workers keep their torch RNG across epochs, so the per-epoch reseed of the main
        # process would not reach them: the main process writes (generation, seed) here at the start of
        # every epoch and each worker reseeds itself on the first item of a new generation
        self.epoch_seed = torch.zeros(2, dtype=torch.int64).share_memory_()
        self._seen_generation = 0

    def __len__(self) -> int:
        return len(self.records)

    def reseed_workers(self) -> None:
        """Called in the main process before each epoch: the workers' seed is drawn from torch's RNG."""
        self.epoch_seed[1] = torch.randint(0, 2**62, ()).item()
        self.epoch_seed[0] += 1

    def __getitem__(self, index: int):
        info = get_worker_info()
        if info is not None:
            generation, seed = self.epoch_seed.tolist()
            if generation != self._seen_generation:
                self._seen_generation = generation
                torch.manual_seed(seed + info.id)
        path, pid, camid = self.records[index][:3]
        image = read_image(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, pid, camid


class TrainLoader(DataLoader):
    """A DataLoader that reseeds its workers from torch's RNG each time an epoch's iteration starts."""

    def __iter__(self):
        self.dataset.reseed_workers()
        return super().__iter__()


def build_train_loader(train_records: Sequence[Record], cfg, seed: int | None = None, sampler=None) -> DataLoader:
    """P x K batches of augmented training images; call `loader.sampler.set_epoch(e)` before each epoch.

    `sampler`: another P x K sampler, e.g. a rank's share under DDP (reidlab.distributed).
    """
    sampler = sampler or RandomIdentitySampler([r[1] for r in train_records], cfg.P, cfg.K,
                                               seed=cfg.seed if seed is None else seed)
    workers = cfg.num_workers
    if workers < 0:
        raise ValueError(f"num_workers={workers} must be >= 0 (0 decodes in the main process)")
    return TrainLoader(
        ImageDataset(train_records, build_train_transform(cfg)),
        batch_size=getattr(sampler, "batch_size", cfg.P * cfg.K), sampler=sampler, drop_last=True, num_workers=workers,
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
