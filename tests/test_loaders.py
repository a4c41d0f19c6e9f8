import numpy as np
import pytest
import torch
from PIL import Image

from reidlab.config import Config
from reidlab.loaders import (ImageDataset, ImageReadError, Record, build_test_loader, build_train_loader,
                             read_image)
from reidlab.transforms import build_test_transform, denormalize

CFG = Config(image_size=(64, 32), P=4, K=3, num_workers=0, seed=5)
COUNTS = [1, 2, 3, 4, 5, 6, 7, 3, 2, 6]  # images per identity, some below K


def colour_of(pid):
    return np.array([(37 * pid) % 200 + 40, (91 * pid) % 200 + 40, (53 * pid) % 200 + 40])


@pytest.fixture
def records(tmp_path):
    """Small JPEGs, each identity a solid colour (plus a little noise), so a batch's labels can be checked."""
    rng = np.random.default_rng(0)
    out = []
    for pid, n in enumerate(COUNTS):
        for k in range(n):
            pixels = colour_of(pid) + rng.integers(-8, 9, (48, 24, 3))
            path = tmp_path / f"{pid:04d}_c{k % 3 + 1}s1_{k:06d}_00.jpg"
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=95)
            out.append(Record(str(path), pid, k % 3))
    return out


def check_batches(loader, records, cfg):
    P, K = cfg.P, cfg.K
    order = list(loader.sampler)
    batches = list(loader)
    assert len(batches) == len(loader) == loader.sampler.num_batches > 0
    for b, (images, pids, camids) in enumerate(batches):
        assert images.shape == (P * K, 3, *cfg.image_size) and images.dtype == torch.float32
        assert pids.dtype == torch.int64 and camids.dtype == torch.int64
        idx = order[b * P * K:(b + 1) * P * K]
        assert pids.tolist() == [records[i].pid for i in idx]
        assert camids.tolist() == [records[i].camid for i in idx]
        rows = pids.reshape(P, K)  # (P, K): one identity per row
        assert (rows == rows[:, :1]).all() and len(set(rows[:, 0].tolist())) == P
    return batches


@pytest.mark.parametrize("workers", [0, 2])
def test_train_loader_batches_are_P_by_K(records, workers):
    cfg = CFG.replace(num_workers=workers, random_erasing=False)
    loader = build_train_loader(records, cfg)
    assert loader.sampler.seed == cfg.seed and loader.batch_size == cfg.P * cfg.K and loader.drop_last
    assert loader.persistent_workers == (workers > 0)
    for epoch in (1, 2):
        loader.sampler.set_epoch(epoch)
        batches = check_batches(loader, records, cfg)
        # the pixels belong to the labelled identity: the centre survives flip, pad and crop
        for images, pids, _ in batches:
            centre = denormalize(images)[:, :, 32, 16] * 255  # (B, 3)
            expected = torch.tensor(np.stack([colour_of(p) for p in pids.tolist()]), dtype=torch.float32)
            assert (centre - expected).abs().max() < 20


@pytest.mark.parametrize("workers", [0, 2])
def test_epoch_reproducible_when_resumed(records, workers):
    """Epoch 2 is the same after epoch 1 or straight after a resume (persistent workers included)."""
    cfg = CFG.replace(num_workers=workers)

    def run(epochs):
        loader = build_train_loader(records, cfg, seed=3)
        for epoch in epochs:
            torch.manual_seed(1000 + epoch)  # what the training loop's seed_epoch does
            loader.sampler.set_epoch(epoch)
            batches = list(loader)
        return batches

    full, resumed = run([1, 2]), run([2])
    assert len(full) == len(resumed)
    for (a, pa, _), (b, pb, _) in zip(full, resumed):
        assert torch.equal(pa, pb) and torch.equal(a, b)
    torch.manual_seed(1000 + 2)
    other = build_train_loader(records, cfg, seed=3)
    other.sampler.set_epoch(2)
    torch.manual_seed(7)  # another torch seed: the same identities, other augmentations
    batches = list(other)
    assert all(torch.equal(p, q) for (_, p, _), (_, q, _) in zip(batches, full))
    assert not all(torch.equal(a, b) for (a, _, _), (b, _, _) in zip(batches, full))


def test_test_loader_keeps_order_and_matches_transform(records):
    loader = build_test_loader(records, CFG, batch_size=8)
    transform = build_test_transform(CFG)
    images = torch.cat([x for x, _, _ in loader])
    pids = torch.cat([p for _, p, _ in loader])
    assert images.shape == (len(records), 3, *CFG.image_size)
    assert pids.tolist() == [r.pid for r in records]
    expected = torch.stack([transform(Image.open(r.path).convert("RGB")) for r in records])
    assert torch.equal(images, expected)


def test_dataset_item_and_read_image(records):
    image, pid, camid = ImageDataset(records)[3]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (24, 48)
    assert (pid, camid) == (records[3].pid, records[3].camid)
    assert read_image(records[3].path).tobytes() == image.tobytes()


# with workers only one case: after a worker's error torch takes ~10 s to shut the workers down
@pytest.mark.parametrize("damage,workers", [("garbage", 0), ("truncated", 0), ("missing", 0), ("garbage", 2)])
def test_unreadable_image_names_the_file(records, damage, workers):
    bad = records[5].path
    data = open(bad, "rb").read()
    if damage == "garbage":
        open(bad, "wb").write(b"not a jpeg at all" * 10)
    elif damage == "truncated":
        open(bad, "wb").write(data[: len(data) // 2])
    else:
        records = records[:5] + [Record(bad + ".gone", records[5].pid, records[5].camid)] + records[6:]
    loader = build_test_loader(records, CFG.replace(num_workers=workers), batch_size=4)
    with pytest.raises(Exception) as info:
        list(loader)
    assert bad in str(info.value) and "verify_images" in str(info.value)
    if workers == 0:
        assert isinstance(info.value, ImageReadError)


def test_bad_inputs(records):
    with pytest.raises(ValueError, match="empty"):
        ImageDataset([], None)
    with pytest.raises(ValueError, match="lower P"):
        build_train_loader(records, CFG.replace(P=11))
    with pytest.raises(ValueError, match="batch_size"):
        build_test_loader(records, CFG, batch_size=0)
