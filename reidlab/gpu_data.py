"""The GPU-resident fast path: decode the training set once, then augment whole batches on the device.

The authors decode JPEGs and augment one image at a time in DataLoader workers. Market-1501's training
set (12,936 images) is 1.27 GB as uint8 at 256x128 (318 MB at 128x64), so it fits on a GPU whole. A batch
is then an index into that tensor plus a handful of batched ops with the semantics of
`reidlab.transforms.build_train_transform`:
    flip p=0.5 -> zero-pad 10 -> random crop -> /255 -> normalise -> random erasing p=0.5,
every random draw vectorised over the batch and taken from a seeded `torch.Generator` on the device.
"""
from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torchvision.transforms as T

from reidlab.loaders import read_image
from reidlab.paths import DATA_ROOT
from reidlab.transforms import MEAN, STD, erase_value

PAD = 10  # zero padding before the random crop: offsets 0..2*PAD in each axis
ERASE_P = 0.5
ERASE_AREA = (0.02, 0.4)  # fraction of the image
ERASE_ASPECT = 0.3  # aspect ratio (height / width) in [0.3, 1 / 0.3]
ERASE_ATTEMPTS = 100
CACHE_VERSION = 1  # bump when the decoded pixels would change


# --- decoding, with an on-disk cache ------------------------------------------------------------------

def cache_key(records: Sequence, image_size: tuple[int, int]) -> str:
    """A hash of the record paths (in order) and the image size: any change decodes again."""
    h = hashlib.sha256(f"v{CACHE_VERSION} {image_size[0]}x{image_size[1]}\n".encode())
    for r in records:
        h.update(str(r.path).encode())
        h.update(b"\n")
    return h.hexdigest()[:20]


def decode_image(path, resize: T.Resize) -> np.ndarray:
    """One image -> (3, H, W) uint8: read as the CPU loaders read it, resized with the train transform's Resize."""
    img = resize(read_image(path))
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def decode_images(records: Sequence, image_size: tuple[int, int], cache_dir: str | Path | None = None,
                  progress: bool = True, workers: int | None = None) -> torch.Tensor:
    """Decode every record's image once: a uint8 tensor (N, 3, H, W), cached on disk for the next run.

    The cache file is `cache_dir / decoded_<H>x<W>_<hash>.npy`, the hash over the paths and the size
    (`cache_key`); it is written atomically, so an interrupted run never leaves a half-written cache.
    """
    if len(records) == 0:
        raise ValueError("records is empty: pass the dataset's training records (dataset.train)")
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size={image_size!r} must be (height, width)")
    H, W = int(image_size[0]), int(image_size[1])
    cache_dir = Path(cache_dir) if cache_dir is not None else DATA_ROOT / "cache"
    cache_file = cache_dir / f"decoded_{H}x{W}_{cache_key(records, (H, W))}.npy"
    expected = (len(records), 3, H, W)
    if cache_file.exists():
        try:
            arr = np.load(cache_file)
            if arr.shape == expected and arr.dtype == np.uint8:
                return torch.from_numpy(arr)
        except (OSError, ValueError):
            pass  # unreadable cache: decode again and overwrite it

    resize = T.Resize((H, W), interpolation=T.InterpolationMode.BILINEAR)
    out = np.empty(expected, dtype=np.uint8)

    def decode_into(i: int) -> None:
        out[i] = decode_image(records[i].path, resize)

    # PIL releases the GIL while decoding and resizing, so threads scale across cores
    workers = workers or min(32, (os.cpu_count() or 1) + 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(decode_into, range(len(records)), chunksize=64)
        if progress:
            from tqdm.auto import tqdm
            done = tqdm(done, total=len(records), desc=f"decoding {len(records)} images at {H}x{W}")
        for _ in done:
            pass

    cache_dir.mkdir(parents=True, exist_ok=True)
    # write beside, then rename: readers see the whole file or none (a per-process name: no clash)
    tmp = cache_dir / f".{cache_file.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.save(f, out)
        os.replace(tmp, cache_file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return torch.from_numpy(out)


# --- batched augmentation -----------------------------------------------------------------------------

class AugmentParams(NamedTuple):
    """Per-sample random draws for one batch of B images."""
    flip: torch.Tensor  # (B,) bool
    top: torch.Tensor  # (B,) long, crop row offset in the padded image, 0..2*PAD
    left: torch.Tensor  # (B,) long, crop column offset, 0..2*PAD
    erase: torch.Tensor  # (B,) bool, erase this sample
    box: torch.Tensor  # (B, 4) long: erased rows [y, y + h), columns [x, x + w) as (y, x, h, w)


def draw_augment_params(n: int, image_size: tuple[int, int], generator: torch.Generator | None = None,
                        erase_p: float = ERASE_P, device: torch.device | str = "cpu", pad: int = PAD) -> AugmentParams:
    """Draw flips, crop offsets and erasing boxes for n samples, all at once (static shapes)."""
    H, W = image_size
    kw = dict(generator=generator, device=device)
    flip = torch.rand(n, **kw) < 0.5
    top = torch.randint(0, 2 * pad + 1, (n,), **kw)
    left = torch.randint(0, 2 * pad + 1, (n,), **kw)
    # random erasing's rejection sampling, all 100 attempts at once; the first box that fits wins
    lo, hi = ERASE_AREA
    # S_e ~ U(s_l, s_h) * S, r_e ~ U(r_1, 1 / r_1)
    area = (lo + (hi - lo) * torch.rand(n, ERASE_ATTEMPTS, **kw, dtype=torch.float64)) * (H * W)  # (n, A)
    aspect = ERASE_ASPECT + (1 / ERASE_ASPECT - ERASE_ASPECT) * torch.rand(n, ERASE_ATTEMPTS, **kw,
                                                                           dtype=torch.float64)
    # H_e = round(sqrt(S_e * r_e)), W_e = round(sqrt(S_e / r_e)); round half to even, as Python's round
    h = torch.round(torch.sqrt(area * aspect)).long()  # (n, A)
    w = torch.round(torch.sqrt(area / aspect)).long()
    fits = (h < H) & (w < W)  # (n, A)
    first = fits.int().argmax(dim=1, keepdim=True)  # (n, 1): index of the first accepted attempt
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)  # (n,)
    # top-left corner uniform over the H - h + 1 (W - w + 1) positions where the box fits
    y = (torch.rand(n, **kw, dtype=torch.float64) * (H - h + 1)).long().clamp(max=H - h)
    x = (torch.rand(n, **kw, dtype=torch.float64) * (W - w + 1)).long().clamp(max=W - w)
    erase = (torch.rand(n, **kw) < erase_p) & fits.any(dim=1)
    return AugmentParams(flip, top, left, erase, torch.stack([y, x, h, w], dim=1))


def augment_batch(images: torch.Tensor, params: AugmentParams, fill: Sequence[float] | torch.Tensor = MEAN,
                  mean: Sequence[float] | torch.Tensor = MEAN,
                  std: Sequence[float] | torch.Tensor = STD, pad: int = PAD) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> flipped, padded + cropped, normalised, erased float32 (B, 3, H, W).

    `fill` is the value erasing writes into the normalised tensor (reidlab.transforms.erase_value). Pass
    fill / mean / std as float32 tensors on the device in a loop: a list is copied from pageable host memory
    each call, which on CUDA waits for the stream, so the CPU could no longer run ahead of the GPU.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"augment_batch expects uint8 (B, C, H, W) images, got {images.dtype} "
                         f"{tuple(images.shape)}; pass the output of decode_images")
    B, C, H, W = images.shape
    dev = images.device
    rows = params.top[:, None] - pad + torch.arange(H, device=dev)  # (B, H): row in the unpadded image
    cols = params.left[:, None] - pad + torch.arange(W, device=dev)  # (B, W): column in the flipped image
    inside = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]  # (B, H, W)
    # flipped[y, c] = image[y, W - 1 - c]
    cols = torch.where(params.flip[:, None], W - 1 - cols, cols)
    src = rows.clamp(0, H - 1)[:, :, None] * W + cols.clamp(0, W - 1)[:, None, :]  # (B, H, W) flat index
    out = images.flatten(2).gather(2, src.flatten(1)[:, None, :].expand(B, C, H * W))  # (B, C, H*W)
    out = out.view(B, C, H, W).masked_fill(~inside[:, None], 0)  # the zero padding
    # the same float ops as ToTensor + Normalize, so results match bit for bit
    x = out.float().div(255)
    mean, std = (torch.as_tensor(v, dtype=torch.float32, device=dev) for v in (mean, std))
    x = x.sub(mean[:, None, None]).div(std[:, None, None])
    y0, x0, h, w = params.box.unbind(1)  # (B,) each
    ys, xs = torch.arange(H, device=dev), torch.arange(W, device=dev)
    in_rows = (ys >= y0[:, None]) & (ys < (y0 + h)[:, None])  # (B, H)
    in_cols = (xs >= x0[:, None]) & (xs < (x0 + w)[:, None])  # (B, W)
    box = params.erase[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    value = torch.as_tensor(fill, dtype=x.dtype, device=dev).reshape(1, -1, 1, 1)  # (1, C, 1, 1)
    return torch.where(box[:, None], value, x)


# --- the batches ------------------------------------------------------------------------------------

class GpuTrainBatches:
    """Training batches `(images, pids, camids)` of P*K, sampled and augmented on `device`.

    Drop-in for the DataLoader of `reidlab.loaders.build_train_loader`: the same RandomIdentitySampler
    (`.sampler`, with `set_epoch`), `len()` = batches this epoch. The augmentation of an epoch is a pure
    function of (seed, epoch, rank): the generator is reseeded from them at the start of every pass.
    """

    def __init__(self, records: Sequence, cfg, device: torch.device | str, seed: int | None = None,
                 sampler=None, images: torch.Tensor | None = None, cache_dir: str | Path | None = None):
        if len(records) == 0:
            raise ValueError("records is empty: pass the dataset's training records (dataset.train)")
        self.device = torch.device(device)
        self.seed = cfg.seed if seed is None else int(seed)
        if images is None:
            images = decode_images(records, cfg.image_size, cache_dir, progress=getattr(cfg, "progress", True))
        if images.dtype != torch.uint8 or tuple(images.shape) != (len(records), 3, *cfg.image_size):
            raise ValueError(f"images must be uint8 {(len(records), 3, *cfg.image_size)}, got {images.dtype} "
                             f"{tuple(images.shape)}; decode them with decode_images(records, cfg.image_size)")
        self.images = images.to(self.device)  # (N, 3, H, W) uint8, resident
        pids = [r.pid for r in records]
        self.pids = torch.tensor(pids, dtype=torch.long, device=self.device)  # (N,)
        self.camids = torch.tensor([r.camid for r in records], dtype=torch.long, device=self.device)
        if sampler is None:
            from reidlab.sampler import RandomIdentitySampler
            sampler = RandomIdentitySampler(pids, cfg.P, cfg.K, self.seed)
        self.sampler = sampler
        # a DistributedIdentitySampler yields this rank's share: (P / world) * K per step
        self.batch_size = getattr(sampler, "batch_size", cfg.P * cfg.K)
        self.image_size = tuple(cfg.image_size)
        self.erase_p = ERASE_P if cfg.random_erasing else 0.0
        self.pad = cfg.padding
        # constants on the device once (see augment_batch)
        self.fill, self.mean, self.std = (torch.tensor(v, dtype=torch.float32, device=self.device)
                                          for v in (erase_value(cfg), MEAN, STD))
        self.channels_last = bool(getattr(cfg, "channels_last", False))
        self.generator = torch.Generator(device=self.device)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self):
        epoch = getattr(self.sampler, "epoch", 0)
        rank = getattr(self.sampler, "rank", 0)
        self.generator.manual_seed((self.seed * 100_003 + epoch) * 1_009 + rank)
        order = list(self.sampler)
        n = len(order) // self.batch_size
        batches = torch.tensor(order[: n * self.batch_size], dtype=torch.long, device=self.device)
        for idx in batches.view(n, self.batch_size):  # (num_batches, B) -> (B,)
            params = draw_augment_params(len(idx), self.image_size, self.generator, self.erase_p, self.device,
                                         self.pad)
            x = augment_batch(self.images[idx], params, self.fill, self.mean, self.std, self.pad)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.pids[idx], self.camids[idx]
