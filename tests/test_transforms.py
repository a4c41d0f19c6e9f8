import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from reidlab.config import Config
from reidlab.transforms import (MEAN, STD, RandomErasing, build_test_transform, build_train_transform,
                                denormalize, erase_value)

SMALL = Config(image_size=(96, 48))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Thousands of tiny ops: threads only add overhead (and the test machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def noise_image(h=150, w=70, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def normalise_reference(img: Image.Image, size):
    """resize -> [0, 1] -> (x - mean) / std, in numpy."""
    h, w = size
    x = np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.float32) / 255  # (H, W, 3)
    x = (x - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)  # (3, H, W)


def erased_box(t: torch.Tensor, value):
    """The (top, left, height, width) of the pixels holding `value` in every channel, or None."""
    v = torch.tensor(value, dtype=t.dtype).reshape(3, 1, 1)
    mask = (t == v).all(0)  # (H, W)
    if not mask.any():
        return None
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    top, left = int(rows[0]), int(cols[0])
    h, w = int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
    assert int(mask.sum()) == h * w, "the erased pixels form one rectangle"
    return top, left, h, w


@pytest.mark.parametrize("cfg", [SMALL, Config()], ids=["96x48", "256x128"])
def test_output_shapes_and_dtypes(cfg):
    img = noise_image()
    for build in (build_train_transform, build_test_transform):
        out = build(cfg)(img)
        assert out.shape == (3, *cfg.image_size) and out.dtype == torch.float32


def test_test_transform_is_resize_and_normalise_only():
    img = noise_image()
    transform = build_test_transform(SMALL)
    torch.manual_seed(0)
    a = transform(img)
    b = transform(img)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, normalise_reference(img, SMALL.image_size), atol=1e-5, rtol=0)


def test_flip_rate_and_crop_offsets_uniform():
    H, W = SMALL.image_size
    r, c = 40, 10  # a single white pixel; flipped it sits at column W - 1 - c
    pixels = np.zeros((H, W, 3), dtype=np.uint8)
    pixels[r, c] = 255
    img = Image.fromarray(pixels)
    transform = build_train_transform(SMALL.replace(random_erasing=False))
    torch.manual_seed(0)
    n = 3000
    flips, di, dj = [], [], []
    for _ in range(n):
        out = transform(img)[0]  # (H, W), the marker is the only maximum
        row, col = divmod(int(out.argmax()), W)
        assert int((out == out.max()).sum()) == 1
        flipped = col > c + 10  # unflipped columns span [c - 10, c + 10], flipped [W - 11 - c, W + 9 - c]
        src_col = W - 1 - c if flipped else c
        # pad 10 then crop at (i, j): the marker moves from (r, col0) to (r + 10 - i, col0 + 10 - j)
        flips.append(flipped)
        di.append(r + 10 - row)
        dj.append(src_col + 10 - col)
    assert abs(np.mean(flips) - 0.5) < 4 * math.sqrt(0.25 / n)
    for offsets in (di, dj):
        counts = np.bincount(offsets, minlength=21)
        assert min(offsets) == 0 and max(offsets) == 20 and len(counts) == 21
        assert stats.chisquare(counts).pvalue > 1e-3  # uniform over the 21 offsets


def reference_boxes(n, H, W, seed=0, area=(0.02, 0.4), aspect=0.3, attempts=100):
    """The accepted-draw rule in numpy: area fractions and aspect ratios of the boxes that get erased."""
    rng = np.random.default_rng(seed)
    S_e = rng.uniform(*area, size=(n, attempts)) * H * W
    r_e = rng.uniform(aspect, 1 / aspect, size=(n, attempts))
    h, w = np.round(np.sqrt(S_e * r_e)), np.round(np.sqrt(S_e / r_e))  # (n, attempts)
    ok = (h < H) & (w < W)
    first = ok.argmax(1)  # the first accepted attempt of each draw
    rows = np.flatnonzero(ok.any(1))
    h, w = h[rows, first[rows]], w[rows, first[rows]]
    return h * w / (H * W), h / w


def test_erased_boxes_follow_the_paper_rule():
    H, W = 256, 128
    erase = RandomErasing(p=1.0, value=MEAN)
    x = torch.full((3, H, W), 5.0)
    torch.manual_seed(1)
    n = 3000
    fractions, ratios, tops, lefts = [], [], [], []
    for _ in range(n):
        top, left, h, w = erased_box(erase(x), MEAN)
        assert h < H and w < W
        # H_e, W_e are sqrt(S_e r_e), sqrt(S_e / r_e) rounded: the unrounded a, b lie within 0.5 of h, w,
        # and S_e = a * b must be in [0.02, 0.4] * S, r_e = a / b in [0.3, 1/0.3]
        assert (h - 0.5) * (w - 0.5) <= 0.4 * H * W and (h + 0.5) * (w + 0.5) >= 0.02 * H * W
        assert (h - 0.5) / (w + 0.5) <= 1 / 0.3 and (h + 0.5) / (w - 0.5) >= 0.3
        fractions.append(h * w / (H * W))
        ratios.append(h / w)
        tops.append(top / (H - h))
        lefts.append(left / (W - w))
    fractions, ratios = np.array(fractions), np.array(ratios)
    ref_f, ref_r = reference_boxes(50000, H, W)
    # large boxes too wide for the 128-px width are redrawn, so the mean area is below U(0.02, 0.4)'s 0.21
    assert 0.19 < ref_f.mean() < 0.208
    assert abs(fractions.mean() - ref_f.mean()) < 4 * ref_f.std() / math.sqrt(n)
    assert stats.ks_2samp(fractions, ref_f).pvalue > 1e-3
    assert stats.ks_2samp(ratios, ref_r).pvalue > 1e-3
    assert 0.019 <= fractions.min() < 0.03 and 0.36 < fractions.max() <= 0.41  # rounding moves the ends
    # the box's corner is uniform over where it fits
    for pos in (tops, lefts):
        assert abs(np.mean(pos) - 0.5) < 0.03 and min(pos) < 0.02 and max(pos) > 0.98


def test_erase_probability():
    erase = RandomErasing(p=0.5, value=MEAN)
    x = torch.full((3, 64, 32), 5.0)
    torch.manual_seed(2)
    n = 4000
    rate = np.mean([erased_box(erase(x), MEAN) is not None for _ in range(n)])
    assert abs(rate - 0.5) < 4 * math.sqrt(0.25 / n)
    assert erased_box(RandomErasing(p=0.0)(x), MEAN) is None


@pytest.mark.parametrize("mode", ["paper", "corrected"])
def test_erase_values_in_the_train_transform(mode):
    cfg = SMALL.replace(erase_value=mode)
    value = erase_value(cfg)
    expected = MEAN if mode == "paper" else (0.0, 0.0, 0.0)
    assert value == expected
    transform = build_train_transform(cfg)
    img = noise_image(seed=3)
    torch.manual_seed(3)
    n = 600
    boxes = [erased_box(transform(img), value) for _ in range(n)]
    erased = [b for b in boxes if b is not None]
    assert abs(len(erased) / n - 0.5) < 4 * math.sqrt(0.25 / n)
    out = None
    while out is None or erased_box(out, value) is None:
        out = transform(img)
    top, left, h, w = erased_box(out, value)
    box = out[:, top:top + h, left:left + w]
    # paper: the normalised tensor holds exactly the ImageNet mean; corrected: exactly 0,
    # i.e. the mean pixel before normalisation
    assert torch.equal(box, torch.tensor(expected, dtype=torch.float32).reshape(3, 1, 1).expand_as(box))
    pixel = denormalize(box)[:, 0, 0]
    if mode == "corrected":
        torch.testing.assert_close(pixel, torch.tensor(MEAN), atol=1e-6, rtol=0)
    else:
        torch.testing.assert_close(pixel, torch.tensor(MEAN) * torch.tensor(STD) + torch.tensor(MEAN))


def test_no_erasing_when_switched_off():
    transform = build_train_transform(SMALL.replace(random_erasing=False))
    assert not any(isinstance(t, RandomErasing) for t in transform.transforms)
    assert any(isinstance(t, RandomErasing) for t in build_train_transform(SMALL).transforms)


def test_erasing_draws_only_from_torch_rng():
    erase = RandomErasing(p=0.5)
    x = torch.randn(3, 64, 32)
    py_state, np_state = random.getstate(), np.random.get_state()[1].copy()
    torch.manual_seed(4)
    a = [erase(x) for _ in range(20)]
    torch.manual_seed(4)
    b = [erase(x) for _ in range(20)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert random.getstate() == py_state and (np.random.get_state()[1] == np_state).all()
    assert any(not torch.equal(u, x) for u in a) and any(torch.equal(u, x) for u in a)  # p=0.5
    x0 = x.clone()
    torch.manual_seed(5)
    outs = [RandomErasing(p=1.0)(x) for _ in range(5)]
    assert torch.equal(x, x0) and not any(torch.equal(u, x0) for u in outs)  # the input is left untouched


def test_train_transform_reproducible_under_torch_seed():
    transform = build_train_transform(SMALL)
    img = noise_image()
    torch.manual_seed(6)
    a = [transform(img) for _ in range(10)]
    torch.manual_seed(6)
    b = [transform(img) for _ in range(10)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(a[0], u) for u in a[1:])


def test_denormalize_round_trip():
    x = torch.rand(2, 3, 8, 4)
    mean, std = torch.tensor(MEAN).reshape(3, 1, 1), torch.tensor(STD).reshape(3, 1, 1)
    torch.testing.assert_close(denormalize((x - mean) / std), x)
    torch.testing.assert_close(denormalize((x[0] - mean) / std), x[0])
    with pytest.raises(ValueError, match="shape"):
        denormalize(torch.zeros(4, 8, 8))


def test_bad_inputs():
    with pytest.raises(ValueError, match="p="):
        RandomErasing(p=1.5)
    with pytest.raises(ValueError, match="area="):
        RandomErasing(area=(0.5, 0.1))
    with pytest.raises(ValueError, match="aspect="):
        RandomErasing(aspect=3.0)
    with pytest.raises(ValueError, match="channels"):
        RandomErasing(p=1.0, value=(1.0, 2.0))(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="C, H, W"):
        RandomErasing()(torch.zeros(2, 3, 8, 8))
