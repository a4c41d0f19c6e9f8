"""Train / test transforms (PIL image -> normalised float tensor (3, H, W)) and random erasing.

Every random draw comes from torch's global RNG (torchvision's flip and crop draw from it too), which the
training loader seeds for each image (reidlab.loaders.SeededSampler), so an epoch's augmentations are reproducible.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torchvision.transforms as T

MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, as the pretrained backbones expect
STD = (0.229, 0.224, 0.225)


class RandomErasing:
    """Random erasing (Zhong et al., AAAI 2020) on a (C, H, W) tensor, as the authors run it.

    With probability p, try up to `attempts` random boxes; write `value` into the first that fits.
    """

    def __init__(self, p: float = 0.5, area: tuple[float, float] = (0.02, 0.4), aspect: float = 0.3,
                 value: float | Sequence[float] = MEAN, attempts: int = 100):
        if not 0 <= p <= 1:
            raise ValueError(f"p={p} must be a probability in [0, 1]")
        if not 0 < area[0] <= area[1] <= 1:
            raise ValueError(f"area={area} must satisfy 0 < low <= high <= 1 (fractions of the image)")
        if not 0 < aspect <= 1:
            raise ValueError(f"aspect={aspect} must be in (0, 1]: boxes get aspect ratios in [aspect, 1/aspect]")
        if attempts < 1:
            raise ValueError(f"attempts={attempts} must be >= 1")
        self.p, self.area, self.aspect, self.attempts = p, tuple(area), aspect, attempts
        self.value = torch.as_tensor(value, dtype=torch.float32).reshape(-1, 1, 1)  # (C or 1, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 3:
            raise ValueError(f"RandomErasing expects a (C, H, W) tensor, got shape {tuple(img.shape)}; "
                             f"apply it after ToTensor, one image at a time")
        if self.value.shape[0] not in (1, img.shape[0]):
            raise ValueError(f"erase value has {self.value.shape[0]} channels but the image has {img.shape[0]}")
        if torch.rand(()).item() >= self.p:
            return img
        _, H, W = img.shape
        S = H * W
        for _ in range(self.attempts):
            # S_e ~ U(s_l, s_h) * S: the box's area
            S_e = torch.empty(()).uniform_(*self.area).item() * S
            # r_e ~ U(r_1, 1 / r_1): its aspect ratio (height / width)
            r_e = torch.empty(()).uniform_(self.aspect, 1 / self.aspect).item()
            # H_e = sqrt(S_e * r_e), W_e = sqrt(S_e / r_e)
            H_e = int(round(math.sqrt(S_e * r_e)))
            W_e = int(round(math.sqrt(S_e / r_e)))
            # accept the box if it fits inside the image, else draw again
            if H_e < H and W_e < W:
                # top-left corner (x_e, y_e) uniform over the positions where the box fits
                x_e = int(torch.randint(0, H - H_e + 1, ()).item())
                y_e = int(torch.randint(0, W - W_e + 1, ()).item())
                img = img.clone()
                img[:, x_e:x_e + H_e, y_e:y_e + W_e] = self.value.to(img.dtype)
                return img
        return img

    def __repr__(self) -> str:
        return (f"RandomErasing(p={self.p}, area={self.area}, aspect={self.aspect}, "
                f"value={self.value.flatten().tolist()}, attempts={self.attempts})")


def erase_value(cfg) -> tuple[float, ...]:
    """The value random erasing writes into the *normalised* tensor.

    "paper": the authors' quirk, the ImageNet mean itself written after normalisation (a pixel of
    about (0.485*0.229+0.485, ...) in [0, 1], lighter than the mean); "corrected": the mean pixel
    before normalisation, i.e. 0 after it.
    """
    mode = getattr(cfg, "erase_value", "paper")
    if mode == "paper":
        return MEAN
    if mode == "corrected":
        return (0.0, 0.0, 0.0)
    raise ValueError(f"erase_value={mode!r} is not valid; allowed values: 'paper', 'corrected'")


def build_train_transform(cfg) -> T.Compose:
    """resize -> flip -> pad (10) -> random crop -> tensor -> normalise -> random erasing (section 8)."""
    size = tuple(cfg.image_size)  # (height, width)
    steps = [
        T.Resize(size, interpolation=T.InterpolationMode.BILINEAR),
        T.RandomHorizontalFlip(p=0.5),
        T.Pad(cfg.padding, fill=0),
        T.RandomCrop(size),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ]
    if cfg.random_erasing:
        steps.append(RandomErasing(p=0.5, area=(0.02, 0.4), aspect=0.3, value=erase_value(cfg), attempts=100))
    return T.Compose(steps)


def build_test_transform(cfg) -> T.Compose:
    """resize -> tensor -> normalise: deterministic."""
    return T.Compose([
        T.Resize(tuple(cfg.image_size), interpolation=T.InterpolationMode.BILINEAR),
        T.ToTensor(),
        T.Normalize(MEAN, STD),
    ])


def denormalize(t: torch.Tensor) -> torch.Tensor:
    """Undo Normalize for plotting: (3, H, W) or (B, 3, H, W) -> values in [0, 1]."""
    if t.ndim not in (3, 4) or t.shape[-3] != 3:
        raise ValueError(f"denormalize expects (3, H, W) or (B, 3, H, W), got shape {tuple(t.shape)}")
    mean = torch.tensor(MEAN, dtype=t.dtype, device=t.device).reshape(3, 1, 1)  # (3, 1, 1)
    std = torch.tensor(STD, dtype=t.dtype, device=t.device).reshape(3, 1, 1)
    return (t * std + mean).clamp(0, 1)
