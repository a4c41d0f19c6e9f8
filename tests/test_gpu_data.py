"""The GPU fast path against the CPU transforms: exact for given draws, in distribution for random ones."""
import os
from collections import namedtuple

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from reidlab import gpu_data
from reidlab.config import Config
from reidlab.gpu_data import (PAD, AugmentParams, GpuTrainBatches, augment_batch, decode_images,
                              draw_augment_params)
from reidlab.transforms import MEAN, STD, RandomErasing, build_test_transform

Record = namedtuple("Record", "path pid camid")  # duck-types reidlab.datasets.Record
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def write_jpegs(folder, n, size=(60, 30), seed=0):
    """n random JPEGs of (height, width) `size`, 4 per identity."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        # smooth noise upsampled, so the JPEG looks like a photo rather than pure noise
        small = rng.integers(0, 256, (size[0] // 6, size[1] // 6, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size[1], size[0]), Image.BILINEAR)
        path = folder / f"{i:04d}.jpg"
        img.save(path, quality=90)
        records.append(Record(path, i // 4, i % 3))
    return records


def reference_augment(img: Image.Image, flip, top, left, erase, box, fill):
    """The same draws applied with torchvision's functional ops on one PIL image, as the CPU transform does."""
    W, H = img.size
    if flip:
        img = TF.hflip(img)
    img = TF.pad(img, PAD, fill=0)
    img = TF.crop(img, top, left, H, W)
    t = TF.normalize(TF.to_tensor(img), MEAN, STD)
    if erase:
        y, x, h, w = box
        t[:, y:y + h, x:x + w] = torch.tensor(fill)[:, None, None]
    return t


@pytest.mark.parametrize("fill", [MEAN, (0.0, 0.0, 0.0)], ids=["paper", "corrected"])
def test_augment_batch_matches_torchvision_for_given_draws(fill):
    H, W = 40, 24
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    # extremes of the offsets (0, 20 = all padding on one side), both flips, boxes touching the borders
    cases = [(False, 0, 0, False, (0, 0, 1, 1)), (True, 20, 20, True, (0, 0, 5, 3)),
             (True, 0, 20, True, (30, 20, 10, 4)), (False, 20, 0, True, (12, 7, 9, 11)),
             (True, 10, 10, False, (1, 1, 2, 2)), (False, 3, 17, True, (0, 5, 39, 2))]
    for _ in range(10):
        h, w = int(rng.integers(1, H)), int(rng.integers(1, W))
        cases.append((bool(rng.integers(2)), int(rng.integers(21)), int(rng.integers(21)), bool(rng.integers(2)),
                      (int(rng.integers(H - h + 1)), int(rng.integers(W - w + 1)), h, w)))
    params = AugmentParams(
        flip=torch.tensor([c[0] for c in cases]), top=torch.tensor([c[1] for c in cases]),
        left=torch.tensor([c[2] for c in cases]), erase=torch.tensor([c[3] for c in cases]),
        box=torch.tensor([c[4] for c in cases]))
    images = torch.from_numpy(arr).permute(2, 0, 1)[None].repeat(len(cases), 1, 1, 1)  # (B, 3, H, W)
    out = augment_batch(images, params, fill)
    assert out.shape == (len(cases), 3, H, W) and out.dtype == torch.float32
    for i, case in enumerate(cases):
        expected = reference_augment(img, *case, fill)
        assert torch.equal(out[i], expected), f"case {i} {case} differs"


def test_decode_matches_cpu_resize_and_test_transform(tmp_path):
    records = write_jpegs(tmp_path, 6, size=(90, 37))  # odd sizes: a real resize
    cfg = Config(image_size=(32, 16))
    images = decode_images(records, cfg.image_size, cache_dir=tmp_path / "cache", progress=False, workers=2)
    assert images.shape == (6, 3, 32, 16) and images.dtype == torch.uint8
    test_tf = build_test_transform(cfg)
    for i, r in enumerate(records):
        pil = Image.open(r.path).convert("RGB")
        resized = np.asarray(T.Resize((32, 16), interpolation=T.InterpolationMode.BILINEAR)(pil))
        assert np.array_equal(images[i].permute(1, 2, 0).numpy(), resized)
        # decoded -> /255 -> normalise is exactly the CPU test transform
        normalised = images[i].float().div(255).sub(torch.tensor(MEAN)[:, None, None]).div(
            torch.tensor(STD)[:, None, None])
        assert torch.equal(normalised, test_tf(pil))


def test_decode_cache_reused_then_invalidated(tmp_path, monkeypatch):
    records = write_jpegs(tmp_path, 5)
    cache = tmp_path / "cache"
    first = decode_images(records, (24, 12), cache_dir=cache, progress=False)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy"  # written atomically: no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert files[0].stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not a private temp file

    def fail(*args, **kwargs):
        raise AssertionError("decoded again although the cache holds these records")
    monkeypatch.setattr(gpu_data, "decode_image", fail)
    second = decode_images(records, (24, 12), cache_dir=cache, progress=False)
    assert torch.equal(first, second)
    # other records, other order or another size: a different key, so decoding runs (and fails here)
    for recs, size in ((records[:4], (24, 12)), (records[::-1], (24, 12)), (records, (24, 14))):
        with pytest.raises(AssertionError, match="decoded again"):
            decode_images(recs, size, cache_dir=cache, progress=False)


def test_decode_bad_input_raises_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="records is empty"):
        decode_images([], (32, 16), cache_dir=tmp_path)
    with pytest.raises(OSError, match="cannot read image .*missing.jpg"):
        decode_images([Record(tmp_path / "missing.jpg", 0, 0)], (32, 16), cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(torch.zeros(2, 3, 8, 8), draw_augment_params(2, (8, 8)))


def test_draws_follow_the_cpu_transform_distributions():
    n, (H, W) = 40_000, (256, 128)
    g = torch.Generator().manual_seed(0)
    p = draw_augment_params(n, (H, W), g)
    assert abs(p.flip.float().mean().item() - 0.5) < 0.015
    for offsets in (p.top, p.left):
        freq = torch.bincount(offsets, minlength=2 * PAD + 1).float() / n  # (21,)
        assert len(freq) == 21 and offsets.min() == 0 and offsets.max() == 20
        assert (freq - 1 / 21).abs().max() < 0.006  # uniform over 0..20
    # at 256x128 some box of the first few attempts always fits: the erase rate is p = 0.5
    assert abs(p.erase.float().mean().item() - 0.5) < 0.015
    y, x, h, w = p.box.unbind(1)
    assert ((y >= 0) & (x >= 0) & (y + h <= H) & (x + w <= W) & (h < H) & (w < W)).all()
    frac = (h * w).double() / (H * W)
    aspect = h.double() / w
    # rounding h and w moves area and aspect slightly past the continuous bounds
    assert frac.min() > 0.02 * 0.93 and frac.max() < 0.4 * 1.07
    assert aspect.min() > 0.3 * 0.93 and aspect.max() < 3.34 * 1.07
    assert frac.min() < 0.025 and frac.max() > 0.37  # the whole range is drawn
    # the corner is uniform over the positions where the box fits: mean relative position 1/2
    assert abs((y.double() / (H - h)).mean().item() - 0.5) < 0.01


def cpu_erasing_boxes(n, H, W, seed=0):
    """(erased, boxes (y, x, h, w)) of the reference RandomErasing, read back from the written mask."""
    torch.manual_seed(seed)
    erasing = RandomErasing(p=0.5, value=1.0)
    erased, boxes = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny ops: threads only add overhead
    try:
        for _ in range(n):
            mask = erasing(torch.zeros(1, H, W))[0].numpy() > 0  # (H, W)
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            erased.append(len(rows) > 0)
            if len(rows):
                boxes.append((rows[0], cols[0], len(rows), len(cols)))
    finally:
        torch.set_num_threads(threads)
    return np.array(erased), np.array(boxes)


@pytest.mark.parametrize("size", [(256, 128), (12, 6)], ids=["market", "tiny"])
def test_erasing_boxes_match_reference_random_erasing(size):
    """At 12x6 most attempts are rejected: the vectorised rejection must keep the same distribution."""
    H, W = size
    ref_erased, ref = cpu_erasing_boxes(4000, H, W)
    p = draw_augment_params(20_000, size, torch.Generator().manual_seed(1))
    ours = p.box[p.erase].numpy()  # (n_erased, 4): y, x, h, w
    assert abs(p.erase.float().mean().item() - ref_erased.mean()) < 0.03
    for col, dim in ((2, H), (3, W)):  # box height, width
        assert abs(ours[:, col].mean() - ref[:, col].mean()) < 0.03 * dim
        for q in (0.1, 0.5, 0.9):
            assert abs(np.quantile(ours[:, col], q) - np.quantile(ref[:, col], q)) <= max(1, 0.04 * dim)
    for col, dim in ((0, H), (1, W)):  # corner: uniform over 0..dim - size, the far edge included
        for boxes in (ours, ref):
            room = dim - boxes[:, col + 2]
            assert abs((boxes[:, col] == room).mean() - (1 / (room + 1)).mean()) < 0.03
            assert abs((boxes[:, col] / np.maximum(room, 1)).mean() - 0.5 * (room > 0).mean()) < 0.03


def make_batches(n_ids=12, per_id=4, size=(32, 16), device="cpu", **cfg_changes):
    cfg = Config(image_size=size, P=4, K=4, progress=False, **cfg_changes)
    N = n_ids * per_id
    pids = [i // per_id for i in range(N)]
    # every image of identity p is filled with 10 * (p + 1), so a batch shows whose pixels it gathered
    images = torch.tensor([10 * (p + 1) for p in pids], dtype=torch.uint8)[:, None, None, None].expand(
        N, 3, *size).contiguous()
    records = [Record(f"img{i}.jpg", pid, i % 6) for i, pid in enumerate(pids)]
    return GpuTrainBatches(records, cfg, device, seed=3, images=images), cfg


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_batches_follow_the_sampler_and_are_reproducible(device):
    from reidlab.sampler import RandomIdentitySampler
    batches, cfg = make_batches(device=device, erase_value="corrected")
    batches.sampler.set_epoch(2)
    ref = RandomIdentitySampler(batches.pids.tolist(), 4, 4, seed=3)
    ref.set_epoch(2)
    order = torch.tensor(list(ref)).view(-1, 16)  # (num_batches, P * K)
    assert len(batches) == ref.num_batches == len(order) > 0
    first = list(batches)
    assert len(first) == len(order)
    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    for (x, pids, camids), idx in zip(first, order):
        assert x.shape == (16, 3, *cfg.image_size) and x.dtype == torch.float32 and x.device.type == device
        assert torch.equal(pids.cpu(), batches.pids[idx].cpu()) and torch.equal(camids.cpu(), idx % 6)
        pixels = torch.round((x.cpu() * std + mean) * 255).flatten(1)  # (B, 3*H*W) back to 0..255
        for row, pid in zip(pixels, pids.cpu()):
            # every pixel is the identity's value, the zero padding, or the erased mean pixel (0 normalised)
            values = set(row.unique().tolist())
            assert 10 * (pid.item() + 1) in values and values <= {0.0, 10 * (pid.item() + 1), 124.0, 116.0, 104.0}
    again = list(batches)  # the same epoch draws the same augmentation
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    batches.sampler.set_epoch(3)
    assert not torch.equal(next(iter(batches))[0], first[0][0])


def test_gpu_batches_erasing_switches_and_channels_last():
    erased_paper = torch.stack([x for x, _, _ in make_batches(erase_value="paper")[0]])  # (n, B, 3, H, W)
    # a "paper" box holds the mean (0.485, 0.456, 0.406) itself in the normalised tensor, per channel
    is_box = (erased_paper == torch.tensor(MEAN)[:, None, None]).all(dim=2)  # (n, B, H, W)
    frac = is_box.flatten(2).float().mean(2)  # (n, B): erased fraction of each image
    rate = (frac > 0).float().mean().item()
    assert 0.25 < rate < 0.75 and frac.max() <= 0.4 * 1.25
    plain = torch.stack([x for x, _, _ in make_batches(random_erasing=False)[0]])
    assert not (plain == torch.tensor(MEAN)[:, None, None]).all(dim=2).any()
    x, _, _ = next(iter(make_batches(channels_last=True)[0]))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_gpu_batches_bad_images_raise():
    cfg = Config(image_size=(32, 16), P=2, K=2, progress=False)
    records = [Record(f"{i}.jpg", i // 2, 0) for i in range(8)]
    with pytest.raises(ValueError, match="images must be uint8"):
        GpuTrainBatches(records, cfg, "cpu", images=torch.zeros(8, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="records is empty"):
        GpuTrainBatches([], cfg, "cpu")
