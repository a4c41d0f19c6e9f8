"""Shared fixtures: tiny datasets made on the fly (never real people)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# The tests' tensors are tiny: one intra-op thread is faster than two fighting over a loaded machine.
torch.set_num_threads(1)


def write_market_layout(root, num_train_ids=6, num_test_ids=4, per_cam=2, cams=(1, 2, 3), size=(32, 16), seed=0):
    """A tiny Market-1501-layout dataset: each identity a colour, each camera a brightness."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (num_train_ids + num_test_ids + 1, 3))
    folders = {s: root / s for s in ("bounding_box_train", "bounding_box_test", "query")}
    for f in folders.values():
        f.mkdir(parents=True, exist_ok=True)

    def draw(pid_index, cam):
        base = colours[pid_index] * (0.6 + 0.15 * cam)
        pixels = np.clip(base + rng.normal(0, 20, (*size, 3)), 0, 255).astype(np.uint8)
        return Image.fromarray(pixels)

    for i in range(num_train_ids + num_test_ids):
        pid = 2 * i + 1  # sparse original pids, to check relabelling
        for cam in cams:
            for k in range(per_cam):
                name = f"{pid:04d}_c{cam}s1_{k:06d}_01.jpg"
                if i < num_train_ids:
                    draw(i, cam).save(folders["bounding_box_train"] / name)
                elif cam == cams[0] and k == 0:
                    draw(i, cam).save(folders["query"] / name)
                else:
                    draw(i, cam).save(folders["bounding_box_test"] / name)
    for k in range(3):  # distractors
        draw(num_train_ids + num_test_ids, 1 + k % len(cams)).save(
            folders["bounding_box_test"] / f"0000_c{cams[k % len(cams)]}s1_{k:06d}_01.jpg")
    return root


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory):
    return write_market_layout(tmp_path_factory.mktemp("tiny_market"))


def load_fakes():
    """tests/fixtures/reid_fakes.py: generated runs (never real people) for the plot and browser tests."""
    spec = importlib.util.spec_from_file_location("reid_fakes", Path(__file__).parent / "fixtures" / "reid_fakes.py")
    module = sys.modules.setdefault("reid_fakes", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_run(tiny_market, tmp_path_factory):
    """A finished run (full BoT, ResNet-18, one epoch) on tiny_market; tests copy it before changing it."""
    from reidlab.config import PRESETS
    from reidlab.datasets import load_dataset
    from reidlab.train import fit

    out = tmp_path_factory.mktemp("run")
    cfg = PRESETS["bot"].replace(backbone="resnet18", pretrained=None, image_size=(32, 16), P=3, K=2, epochs=1,
                                 num_workers=0, progress=False, device="cpu")
    fit(cfg, out, dataset=load_dataset("market1501", tiny_market, verbose=False))
    return out
