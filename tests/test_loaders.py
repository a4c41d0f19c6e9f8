import numpy as np
import pytest
import torch
from PIL import Image

from reidlab.config import Config
from reidlab.loaders import (ImageDataset, ImageReadError, Record, build_test_loader, build_train_loader,
                             read_image)
from reidlab.transforms import build_test_transform, build_train_transform, denormalize

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
    order = [index for index, _ in loader.sampler]  # (index, augmentation seed) pairs
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


def same_batches(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) and torch.equal(p, q) for (x, p, _), (y, q, _) in zip(a, b))


def test_augmentations_do_not_depend_on_workers_timing_or_restarts(records):
    """The issue-13 race: tqdm.auto starts an epoch's iteration twice, and a per-epoch reseed of a persistent
    worker then landed after a timing-dependent number of decoded images. Seeds per image do not care."""
    cfg = CFG.replace(random_erasing=True)
    reference = build_train_loader(records, cfg.replace(num_workers=0), seed=3)
    reference.sampler.set_epoch(2)
    expected = list(reference)
    loader = build_train_loader(records, cfg.replace(num_workers=2), seed=3)
    for epoch in (1, 2):
        loader.sampler.set_epoch(epoch)
        abandoned = iter(loader)  # started, prefetching, never read: what tqdm.auto's constructor does
        torch.manual_seed(epoch)  # the caller's RNG plays no part
        got = list(loader)
    del abandoned
    assert same_batches(got, expected)
    other_epoch = build_train_loader(records, cfg.replace(num_workers=0), seed=3)
    other_epoch.sampler.set_epoch(1)
    first = next(iter(other_epoch))
    assert not torch.equal(first[0], expected[0][0])  # epochs differ


def test_seeded_item_is_a_function_of_its_seed(records):
    cfg = CFG.replace(random_erasing=True)
    dataset = ImageDataset(records, build_train_transform(cfg))
    state = torch.get_rng_state()
    a, b, c = dataset[(4, 11)], dataset[(4, 11)], dataset[(4, 12)]
    assert torch.equal(torch.get_rng_state(), state)  # in this process the caller's RNG is left as it was
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0]) and a[1:] == c[1:] == (records[4].pid,
                                                                                         records[4].camid)
    sampler = build_train_loader(records, cfg).sampler
    pairs = list(sampler)
    assert [i for i, _ in pairs] == list(sampler.sampler) and len(pairs) == len(sampler)
    assert len({s for _, s in pairs}) > len(pairs) * 0.99 and all(0 <= s < 2**32 for _, s in pairs)
    sampler.set_epoch(2)  # the wrapped sampler's methods, and another epoch's seeds
    assert sampler.epoch == sampler.sampler.epoch == 2 and [s for _, s in sampler] != [s for _, s in pairs]


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
