"""The built-in synthetic dataset: procedurally drawn pedestrians, written in Market-1501's layout.

Every notebook and test runs end to end on a CPU with no download because of this module. Each identity
is a drawn person (skin, hair, a top with a pattern and maybe a print, bottoms, shoes, sometimes a bag).
Identities come in families that share everything but one fine detail (the shoes, the print, the bag...),
so a model has to look closely. Six cameras change the look (colour of the light, brightness, blur,
resolution, viewpoint, background), and boxes are loosely aligned and sometimes occluded, so raw pixels
match poorly across cameras and a learned metric has room to help.

    root/bounding_box_train/PPPP_cCs1_FFFFFF_01.jpg   the train identities
    root/query/...                                     one image per (test identity, camera)
    root/bounding_box_test/...                         the other test images + 0000_* distractors
    root/README.txt, root/synthetic.json              how it was made

The folder appears in one rename once every file is written, so a folder that exists is complete.
Every image is a pure function of (seed, its plan entry): the same seed gives byte-identical files.
"""
from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from reidlab.paths import resolve

HEIGHT, WIDTH = 128, 64  # the box size of Market-1501, (height, width)
SUPERSAMPLE = 2  # draw at 2x and downsample: cheap antialiasing
MARKER = "synthetic.json"  # written last inside the temp folder; its parameters identify a finished dataset
FORMAT_VERSION = 1  # bump when the drawing changes, so a cached folder from older code is not reused
SPLITS = ("bounding_box_train", "query", "bounding_box_test")
MAX_FRAME = 999_999  # six digits in the file name

RGB = tuple[int, int, int]

# --- palettes: dark and neutral clothes dominate, as on a real street --------------------------------
COLOURS: dict[str, RGB] = {
    "black": (28, 28, 32), "charcoal": (62, 62, 68), "grey": (130, 130, 134), "white": (226, 226, 220),
    "navy": (32, 42, 88), "blue": (48, 88, 172), "sky": (135, 175, 220), "denim": (68, 94, 138),
    "red": (172, 32, 38), "maroon": (104, 28, 40), "pink": (228, 145, 175), "orange": (232, 125, 42),
    "yellow": (232, 204, 58), "green": (44, 122, 62), "olive": (104, 108, 54), "purple": (104, 54, 134),
    "teal": (34, 132, 132), "beige": (214, 198, 168), "khaki": (188, 168, 120), "brown": (112, 72, 42),
}
TOP_WEIGHTS = dict(black=4, white=3, grey=3, charcoal=2, navy=2, blue=2, sky=1, red=2, maroon=1, pink=1,
                   orange=1, yellow=1, green=1, olive=1, purple=1, teal=1, beige=2, brown=1)
BOTTOM_WEIGHTS = dict(black=5, denim=4, navy=2, grey=2, charcoal=2, khaki=2, white=1, brown=1, beige=1, olive=1)
SHOE_WEIGHTS = dict(black=4, white=4, grey=1, brown=2, red=1, blue=1, beige=1)
BAG_WEIGHTS = dict(black=4, charcoal=1, navy=1, brown=2, red=1, beige=1, white=1, pink=1, olive=1, blue=1)
SKINS: tuple[RGB, ...] = ((238, 204, 176), (226, 184, 146), (200, 152, 112), (164, 114, 78), (112, 74, 50),
                          (84, 56, 40))
HAIRS: dict[str, tuple[RGB, float]] = {
    "black": ((22, 20, 20), 4), "dark": ((56, 40, 30), 3), "brown": ((102, 70, 44), 2),
    "blonde": ((204, 172, 112), 1), "grey": ((152, 150, 148), 1), "auburn": ((132, 62, 36), 1),
}
PATTERNS = {"plain": .34, "hstripes": .14, "vstripes": .08, "checks": .10, "jacket": .18, "blocks": .16}
FINE_DETAILS = ("print", "shoes", "hair", "bag", "top2", "sleeves", "cap")


@dataclass(frozen=True)
class Identity:
    """Everything that makes one person look like themselves, whatever the camera."""
    skin: RGB
    hair: RGB
    hair_style: str  # "short" | "long" | "bald" | "cap"
    cap: RGB
    height: float  # fraction of a tight box's height
    build: float  # width factor
    top: RGB
    top2: RGB  # the pattern's second colour
    pattern: str  # a key of PATTERNS
    stripe: float  # stripe period, as a fraction of the person's height
    sleeves: str  # "long" | "short"
    print_shape: str  # "none" | "circle" | "square" | "triangle" | "diamond"
    print_place: str  # "front" | "back": seen from that side only
    print_colour: RGB
    bottom: str  # "trousers" | "shorts" | "skirt" | "dress"
    bottom_colour: RGB
    shoes: RGB
    bag: str  # "none" | "backpack" | "shoulder" | "handbag"
    bag_colour: RGB
    bag_side: int  # +1 / -1: the body side that carries a shoulder bag or handbag


@dataclass(frozen=True)
class Camera:
    """What one camera does to everyone it sees."""
    name: str
    background: str  # a key of the background painters below
    cast: tuple[float, float, float]  # per-channel gain: the colour of the light
    brightness: float
    contrast: float
    blur: float  # Gaussian radius in output pixels
    resolution: float  # < 1: a far camera, captured at this fraction of the box size then upsampled
    noise: float  # sensor noise std on the 0..255 scale
    quality: int  # JPEG quality
    views: tuple[float, float, float]  # P(front), P(back), P(side): where people walk in this view


CAMERAS = (
    Camera("sunny plaza", "pavement", (1.08, 1.0, 0.86), 1.12, 1.10, 0.0, 1.0, 3.0, 92, (.5, .2, .3)),
    Camera("shaded walkway", "brick", (0.86, 0.97, 1.14), 0.80, 0.95, 0.5, 0.8, 5.0, 88, (.2, .55, .25)),
    Camera("far road camera", "road", (1.0, 1.0, 1.0), 1.0, 1.05, 0.3, 0.45, 4.0, 85, (.15, .15, .7)),
    Camera("shop entrance", "indoor", (0.94, 1.08, 0.96), 1.0, 0.82, 0.2, 0.9, 4.0, 90, (.6, .3, .1)),
    Camera("evening park", "park", (1.10, 0.92, 0.74), 0.66, 1.0, 0.8, 0.7, 8.0, 82, (.25, .25, .5)),
    Camera("overexposed arcade", "shops", (1.02, 0.96, 1.06), 1.28, 0.72, 0.4, 0.6, 3.0, 86, (.35, .35, .3)),
)


@dataclass(frozen=True)
class Shot:
    """One image to draw: who, seen by which camera, how, and where its file goes."""
    folder: str  # one of SPLITS
    name: str  # PPPP_cCs1_FFFFFF_BB.jpg
    pid: int  # 0 = distractor
    camid: int  # 0-based
    identity: Identity
    view: str  # "front" | "back" | "side"
    facing: int  # +1 / -1: the walking direction of a side view
    kind: str  # "person" | "fragment" (a distractor: a false detection)
    track_seed: int  # shared by the shots of one tracklet: background, clutter, occluder, light
    frame_seed: int  # this frame only: pose, box jitter, noise


# --- identities ----------------------------------------------------------------------------------------
def _pick(rng: np.random.Generator, weights: dict) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    return names[rng.choice(len(names), p=p / p.sum())]


def _jitter(rgb: RGB, rng: np.random.Generator, amount: int = 10) -> RGB:
    return tuple(min(255, max(0, c + int(d))) for c, d in zip(rgb, rng.integers(-amount, amount + 1, size=3)))


def _distance(a: RGB, b: RGB) -> float:
    return float(np.linalg.norm(np.subtract(a, b)))


def _colour(rng: np.random.Generator, weights: dict, avoid: RGB | None = None) -> RGB:
    """A jittered colour from `weights`, clearly different from `avoid` (a fine detail must be visible)."""
    for _ in range(100):
        rgb = _jitter(COLOURS[_pick(rng, weights)], rng)
        if avoid is None or _distance(rgb, avoid) > 90:
            return rgb
    return rgb


def _hair_colour(rng: np.random.Generator, avoid: RGB | None = None) -> RGB:
    for _ in range(100):
        rgb = _jitter(HAIRS[_pick(rng, {k: w for k, (_, w) in HAIRS.items()})][0], rng, 6)
        if avoid is None or _distance(rgb, avoid) > 60:
            return rgb
    return rgb


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random person."""
    top = _colour(rng, TOP_WEIGHTS)
    pattern = _pick(rng, PATTERNS)
    bottom = _pick(rng, {"trousers": .68, "shorts": .14, "skirt": .10, "dress": .08})
    printed = rng.random() < 0.45
    return Identity(
        skin=_jitter(SKINS[rng.integers(len(SKINS))], rng, 8),
        hair=_hair_colour(rng),
        hair_style=_pick(rng, {"short": .45, "long": .30, "bald": .07, "cap": .18}),
        cap=_colour(rng, TOP_WEIGHTS),
        height=float(rng.uniform(0.9, 1.0)),
        build=float(rng.uniform(0.85, 1.15)),
        top=top,
        top2=_colour(rng, TOP_WEIGHTS, avoid=top),
        pattern=pattern,
        stripe=float(rng.uniform(0.035, 0.07)),
        sleeves="long" if rng.random() < 0.6 else "short",
        print_shape=_pick(rng, dict(circle=1, square=1, triangle=1, diamond=1)) if printed else "none",
        print_place="front" if rng.random() < 0.65 else "back",
        print_colour=_colour(rng, TOP_WEIGHTS, avoid=top),
        bottom=bottom,
        bottom_colour=top if bottom == "dress" else _colour(rng, BOTTOM_WEIGHTS),
        shoes=_colour(rng, SHOE_WEIGHTS),
        bag=_pick(rng, {"none": .45, "backpack": .25, "shoulder": .15, "handbag": .15}),
        bag_colour=_colour(rng, BAG_WEIGHTS),
        bag_side=int(rng.choice([-1, 1])),
    )


def vary_identity(base: Identity, detail: str, rng: np.random.Generator) -> Identity:
    """`base` with one fine detail changed: a family member that only a close look tells apart."""
    if detail == "print":
        if base.print_shape == "none":
            return replace(base, print_shape=_pick(rng, dict(circle=1, square=1, triangle=1, diamond=1)))
        return replace(base, print_colour=_colour(rng, TOP_WEIGHTS, avoid=base.print_colour))
    if detail == "shoes":
        return replace(base, shoes=_colour(rng, SHOE_WEIGHTS, avoid=base.shoes))
    if detail == "hair":
        style = "short" if base.hair_style == "bald" else base.hair_style
        return replace(base, hair=_hair_colour(rng, avoid=base.hair), hair_style=style)
    if detail == "bag":
        if base.bag == "none":
            return replace(base, bag=_pick(rng, {"backpack": 1, "shoulder": 1, "handbag": 1}))
        if rng.random() < 0.5:
            return replace(base, bag="none")
        return replace(base, bag_colour=_colour(rng, BAG_WEIGHTS, avoid=base.bag_colour))
    if detail == "top2":
        return replace(base, top2=_colour(rng, TOP_WEIGHTS, avoid=base.top2))
    if detail == "sleeves":
        return replace(base, sleeves="short" if base.sleeves == "long" else "long")
    if detail == "cap":
        if base.hair_style == "cap":
            return replace(base, hair_style="short")
        return replace(base, hair_style="cap", cap=_colour(rng, TOP_WEIGHTS, avoid=base.hair))
    raise ValueError(f"unknown fine detail {detail!r}; expected one of {FINE_DETAILS}")


def sample_family(size: int, rng: np.random.Generator) -> list[Identity]:
    """`size` identities: a random base, then one member per distinct fine detail changed."""
    base = sample_identity(rng)
    details = [d for d in FINE_DETAILS if not (d == "top2" and base.pattern == "plain")]
    chosen = rng.choice(len(details), size=min(size - 1, len(details)), replace=False)
    return [base] + [vary_identity(base, details[i], rng) for i in chosen]


# --- the plan: who is seen by which camera, file names, splits --------------------------------------------
def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**63))


def plan_synthetic(num_ids: int = 300, seed: int = 0, num_distractors: int | None = None,
                   test_scale: int = 1) -> list[Shot]:
    """Every image of the dataset, without drawing any: the promise `make_synthetic` writes to disk.

    Half the identities train, half test (Market's split). Each identity walks past 2..6 of the six
    cameras and is seen in 2..6 frames per camera. Each (test identity, camera) gives one query; the
    rest of the test images form the gallery, so every query has a match in another camera.
    `test_scale` > 1 draws (test_scale - 1) times as many test identities again, after that plan and from a
    random stream of their own, so the training set and the first test identities are the same whatever the scale:
    more test identities measure a model with less noise (results/benchmarks/cpu_profile_search.md).
    `num_distractors` random people and false detections join the gallery as pid 0; by default two per test
    identity (num_ids * test_scale).
    """
    _check_sizes(num_ids, num_distractors, test_scale)
    rng = np.random.default_rng([seed, 1501])
    pids = rng.permutation(np.arange(1, num_ids + 1)).tolist()
    splits = {"train": pids[:num_ids // 2], "test": pids[num_ids // 2:]}
    next_frame = {}  # a running frame counter per camera, shared by both streams
    shots = _plan_identities(splits, rng, next_frame, num_ids if num_distractors is None else num_distractors)
    extra = (test_scale - 1) * len(splits["test"])
    if extra:
        first = num_ids + 1
        shots += _plan_identities({"test": list(range(first, first + extra))}, np.random.default_rng([seed, 1501, 1]),
                                  next_frame, 2 * extra if num_distractors is None else 0)
    return shots


def _plan_identities(splits: dict[str, list[int]], rng: np.random.Generator, next_frame: dict,
                     num_distractors: int) -> list[Shot]:
    """The shots of `splits`' identities ("train" / "test" -> pids) and `num_distractors` distractors, from `rng`."""
    identities: dict[int, Identity] = {}
    for split_pids in splits.values():  # families stay inside a split: hard negatives in train and in test
        i = 0
        while i < len(split_pids):
            family = sample_family(int(rng.choice([1, 2, 3], p=[.4, .35, .25])), rng)
            for pid, ident in zip(split_pids[i:], family):
                identities[pid] = ident
            i += len(family)

    if not next_frame:
        next_frame.update(enumerate(rng.integers(1, 500, size=len(CAMERAS))))
    shots: list[Shot] = []

    def take_frames(cam: int, n: int) -> list[int]:
        start = next_frame[cam] + rng.integers(1, 40)
        frames = (start + np.cumsum(rng.integers(1, 9, size=n))).tolist()
        next_frame[cam] = frames[-1]
        if frames[-1] > MAX_FRAME:
            raise ValueError(f"{len(identities)} identities need more than {MAX_FRAME} frames per camera; use fewer")
        return frames

    def tracklet(pid: int, cam: int, n: int, folder: str, ident: Identity, kind: str = "person") -> list[Shot]:
        view = ("front", "back", "side")[rng.choice(3, p=CAMERAS[cam].views)]
        facing, track_seed = int(rng.choice([-1, 1])), _seed(rng)
        return [Shot(folder, f"{pid:04d}_c{cam + 1}s1_{frame:06d}_01.jpg", pid, cam, ident, view, facing, kind,
                     track_seed, _seed(rng))
                for frame in take_frames(cam, n)]

    for split, split_pids in splits.items():
        for pid in sorted(split_pids):
            cams = sorted(rng.choice(len(CAMERAS), size=int(rng.integers(2, 7)), replace=False).tolist())
            for cam in cams:
                track = tracklet(pid, cam, int(rng.integers(2, 7)), "bounding_box_train" if split == "train"
                                 else "bounding_box_test", identities[pid])
                if split == "test":
                    q = int(rng.integers(len(track)))
                    track[q] = replace(track[q], folder="query")
                shots += track
    for _ in range(num_distractors):
        kind = "fragment" if rng.random() < 0.3 else "person"
        shots += tracklet(0, int(rng.integers(len(CAMERAS))), 1, "bounding_box_test", sample_identity(rng), kind)
    return shots


def _check_sizes(num_ids, num_distractors, test_scale=1):
    if not isinstance(num_ids, (int, np.integer)) or not 2 <= num_ids <= 9998:
        raise ValueError(f"num_ids={num_ids!r} must be an int in 2..9998 (pids have four digits, 0 = distractor)")
    if not isinstance(test_scale, (int, np.integer)) or isinstance(test_scale, bool) or test_scale < 1:
        raise ValueError(f"test_scale={test_scale!r} must be an int >= 1 (1: as many test identities as train)")
    if num_ids + (test_scale - 1) * (num_ids - num_ids // 2) > 9998:
        raise ValueError(f"num_ids={num_ids} with test_scale={test_scale} needs pids above 9998 (four digits); "
                         "use fewer ids or a smaller scale")
    if num_distractors is not None and (not isinstance(num_distractors, (int, np.integer)) or num_distractors < 0):
        raise ValueError(f"num_distractors={num_distractors!r} must be an int >= 0, or None for two per test identity")


# --- drawing a person -------------------------------------------------------------------------------------
def _shade(c: RGB, f: float) -> RGB:
    return tuple(int(min(255, max(0, v * f))) for v in c)


def _print(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: RGB) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - 1.3 * r), (cx + r, cy), (cx, cy + 1.3 * r), (cx - r, cy)], fill=fill)


def _torso(img: Image.Image, ident: Identity, view: str, polygon: list, box: tuple, h: float) -> None:
    """Fill the torso polygon with the top's pattern (drawn on a layer, pasted through the polygon's mask)."""
    x0, y0, x1, y1 = box
    layer = Image.new("RGB", img.size, ident.top)
    d = ImageDraw.Draw(layer)
    period = max(4.0, ident.stripe * h)
    if ident.pattern in ("hstripes", "checks"):
        for y in np.arange(y0, y1, period):
            d.rectangle([x0, y, x1, y + period * (0.5 if ident.pattern == "hstripes" else 0.3)], fill=ident.top2)
    if ident.pattern in ("vstripes", "checks"):
        for x in np.arange(x0 + period / 4, x1, period):
            d.rectangle([x, y0, x + period * (0.5 if ident.pattern == "vstripes" else 0.3), y1], fill=ident.top2)
    if ident.pattern == "blocks":
        d.rectangle([x0, y0, x1, y0 + 0.42 * (y1 - y0)], fill=ident.top2)
    if ident.pattern == "jacket" and view == "front":  # an open jacket shows the shirt beneath
        cx, half = (x0 + x1) / 2, 0.17 * (x1 - x0)
        d.rectangle([cx - half, y0, cx + half, y1], fill=ident.top2)
    if ident.print_shape != "none" and ident.print_place == view:
        r = 0.045 * h if view == "front" else 0.07 * h
        _print(d, ident.print_shape, (x0 + x1) / 2, y0 + 0.32 * (y1 - y0), r, ident.print_colour)
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).polygon(polygon, fill=255)
    img.paste(layer, (0, 0), mask)


def draw_person(img: Image.Image, ident: Identity, view: str, facing: int, cx: float, top: float, h: float,
                phase: float) -> None:
    """Draw `ident` standing `h` pixels tall with the top of the head at `top`, centred on `cx`.

    `phase` in [-1, 1] is the walking cycle (legs and arms swing). A side view faces `facing`.
    """
    draw = ImageDraw.Draw(img)
    y = lambda f: top + f * h  # noqa: E731  (a height fraction to pixels)
    b = ident.build
    sw = (0.14 if view != "side" else 0.085) * h * b  # half shoulder width
    mirror = -1 if view == "back" else 1  # seen from behind, the left-hand side is on the right
    limb, leg_w = 0.056 * h * b, 0.095 * h * b
    legs_col = ident.skin if ident.bottom in ("shorts", "skirt", "dress") else ident.bottom_colour
    hip_y, foot_y = y(0.48), y(0.945)

    def leg(x_hip: float, x_foot: float, foot_y_: float, shade: float) -> None:
        draw.line([(x_hip, hip_y), (x_foot, foot_y_)], fill=_shade(legs_col, shade), width=int(leg_w))
        if ident.bottom == "shorts":
            t = 0.42
            draw.line([(x_hip, hip_y), (x_hip + t * (x_foot - x_hip), hip_y + t * (foot_y_ - hip_y))],
                      fill=_shade(ident.bottom_colour, shade), width=int(leg_w * 1.15))
        sx = 0.055 * h if view != "side" else 0.075 * h
        dx = facing * 0.02 * h if view == "side" else 0
        draw.ellipse([x_foot - sx + dx, foot_y_ - 0.015 * h, x_foot + sx * (0.9 if view != "side" else 1) + dx,
                      foot_y_ + 0.035 * h], fill=_shade(ident.shoes, shade))

    def arm(x_sh: float, y_sh: float, x_hand: float, y_hand: float, shade: float) -> None:
        draw.line([(x_sh, y_sh), (x_hand, y_hand)], fill=_shade(ident.skin, shade), width=int(limb))
        t = 0.88 if ident.sleeves == "long" else 0.38
        draw.line([(x_sh, y_sh), (x_sh + t * (x_hand - x_sh), y_sh + t * (y_hand - y_sh))],
                  fill=_shade(ident.top, shade), width=int(limb * 1.2))
        r = 0.024 * h
        draw.ellipse([x_hand - r, y_hand - r, x_hand + r, y_hand + r], fill=_shade(ident.skin, shade))

    def hand_bag(x: float, y_hand: float) -> None:
        w = 0.06 * h
        draw.rectangle([x - w, y_hand + 0.01 * h, x + w, y_hand + 0.1 * h], fill=ident.bag_colour)
        draw.line([(x - 0.5 * w, y_hand + 0.01 * h), (x, y_hand - 0.01 * h), (x + 0.5 * w, y_hand + 0.01 * h)],
                  fill=_shade(ident.bag_colour, 0.6), width=2)

    # legs and shoes
    if view == "side":
        swing = phase * 0.42  # radians
        length = foot_y - hip_y
        for sign, shade in ((-1, 0.75), (1, 1.0)):  # far leg first, darker
            a = sign * swing
            leg(cx, cx + facing * length * math.sin(a), hip_y + length * math.cos(a), shade)
    else:
        lift = 0.025 * h * phase
        off = 0.052 * h * b
        leg(cx - off, cx - off * 1.15, foot_y - max(lift, 0), 1.0)
        leg(cx + off, cx + off * 1.15, foot_y - max(-lift, 0), 1.0)
    if ident.bottom == "trousers":  # the seat joining the legs
        half = 0.095 * h * b if view != "side" else 0.07 * h * b
        draw.polygon([(cx - half, y(0.46)), (cx + half, y(0.46)), (cx + half * 0.7, y(0.56)),
                      (cx - half * 0.7, y(0.56))], fill=ident.bottom_colour)
    if ident.bottom in ("skirt", "dress"):
        half, hem = 0.1 * h * b, 0.15 * h * b
        colour = ident.top if ident.bottom == "dress" else ident.bottom_colour
        draw.polygon([(cx - half, y(0.44)), (cx + half, y(0.44)), (cx + hem, y(0.68)), (cx - hem, y(0.68))],
                     fill=colour)

    # the far arm and side-view backpack sit behind the torso
    sh_y = y(0.17)
    if view == "side":
        a = -phase * 0.5
        arm(cx, sh_y, cx + facing * 0.3 * h * math.sin(a), sh_y + 0.3 * h * math.cos(a), 0.75)
        if ident.bag == "backpack":
            bx = cx - facing * (sw + 0.035 * h)
            draw.rounded_rectangle([bx - 0.045 * h, y(0.17), bx + 0.045 * h, y(0.42)], radius=0.02 * h,
                                   fill=ident.bag_colour)

    # torso with its pattern
    waist = 0.85 * sw
    lean = facing * 0.015 * h if view == "side" else 0
    poly = [(cx - sw + lean, y(0.155)), (cx + sw + lean, y(0.155)), (cx + waist, y(0.48)), (cx - waist, y(0.48))]
    _torso(img, ident, view, poly, (cx - sw, y(0.15), cx + sw, y(0.48)), h)
    top_ = ident.top2 if ident.pattern == "blocks" else ident.top
    if view != "side":  # rounded shoulders
        r = 0.035 * h
        draw.ellipse([cx - sw - r * 0.3, y(0.15), cx - sw + 2 * r, y(0.15) + 2 * r], fill=top_)
        draw.ellipse([cx + sw - 2 * r, y(0.15), cx + sw + r * 0.3, y(0.15) + 2 * r], fill=top_)

    # bags worn on the torso
    strap = _shade(ident.bag_colour, 0.7)
    if ident.bag == "backpack" and view == "back":
        draw.rounded_rectangle([cx - 0.8 * sw, y(0.17), cx + 0.8 * sw, y(0.43)], radius=0.03 * h,
                               fill=ident.bag_colour)
        draw.rectangle([cx - 0.5 * sw, y(0.33), cx + 0.5 * sw, y(0.41)], fill=strap)
    if ident.bag == "backpack" and view == "front":
        for s in (-1, 1):
            draw.line([(cx + s * 0.55 * sw, y(0.155)), (cx + s * 0.6 * sw, y(0.36))], fill=strap, width=3)
    if ident.bag == "shoulder" and view != "side":
        s = ident.bag_side * mirror
        draw.line([(cx - s * 0.7 * sw, y(0.155)), (cx + s * sw, y(0.45))], fill=strap, width=3)
        draw.rectangle([cx + s * sw - 0.06 * h, y(0.43), cx + s * sw + 0.06 * h, y(0.54)], fill=ident.bag_colour)

    # near arms and hands
    if view == "side":
        a = phase * 0.5
        hx, hy = cx + facing * 0.3 * h * math.sin(a), sh_y + 0.3 * h * math.cos(a)
        arm(cx, sh_y, hx, hy, 1.0)
        if ident.bag == "shoulder" and ident.bag_side == facing:
            draw.line([(cx + facing * 0.3 * sw, y(0.155)), (cx - facing * 0.3 * sw, y(0.45))], fill=strap, width=3)
            draw.rectangle([cx - facing * 0.02 * h - 0.05 * h, y(0.42), cx - facing * 0.02 * h + 0.05 * h, y(0.54)],
                           fill=ident.bag_colour)
        if ident.bag == "handbag" and ident.bag_side == facing:
            hand_bag(hx, hy)
    else:
        swing = 0.015 * h * phase
        for s in (-1, 1):
            x_sh = cx + s * (sw + 0.3 * limb)
            hx, hy = x_sh + s * 0.02 * h, y(0.47) + s * swing
            arm(x_sh, sh_y, hx, hy, 1.0)
            if ident.bag == "handbag" and s == ident.bag_side * mirror:
                hand_bag(hx, hy)

    # neck, head, hair
    nw = 0.025 * h
    draw.rectangle([cx - nw, y(0.11), cx + nw, y(0.165)], fill=_shade(ident.skin, 0.9))
    hx0, hx1, hy0, hy1 = cx - 0.052 * h, cx + 0.052 * h, y(0.005), y(0.135)
    hair = ident.skin if ident.hair_style == "bald" else ident.hair
    if ident.hair_style == "long" and view != "front":  # long hair falls over the back
        hang = y(0.27) if view == "back" else y(0.23)
        dx = -facing * 0.02 * h if view == "side" else 0
        draw.rounded_rectangle([hx0 + dx, y(0.04), hx1 + dx, hang], radius=0.04 * h, fill=hair)
    if ident.hair_style == "long" and view == "front":
        draw.rounded_rectangle([hx0 - 0.008 * h, y(0.03), hx1 + 0.008 * h, y(0.2)], radius=0.04 * h, fill=hair)
    if view == "back":
        draw.ellipse([hx0, hy0, hx1, hy1], fill=_shade(hair, 0.95) if ident.hair_style != "bald" else ident.skin)
    else:
        draw.ellipse([hx0, hy0, hx1, hy1], fill=ident.skin)
        if ident.hair_style in ("short", "long", "cap"):
            if view == "front":
                draw.chord([hx0 - 1, hy0 - 1, hx1 + 1, hy1 - 0.04 * h], 180, 360, fill=hair)
            else:  # side: the hair covers the back half of the head
                start = 90 if facing > 0 else -90
                draw.pieslice([hx0 - 1, hy0 - 1, hx1 + 1, hy1 - 0.01 * h], start, start + 180, fill=hair)
                draw.chord([hx0 - 1, hy0 - 1, hx1 + 1, hy1 - 0.05 * h], 180, 360, fill=hair)
        if view == "front":
            e = 0.007 * h
            for s in (-1, 1):
                ex, ey = cx + s * 0.02 * h, y(0.075)
                draw.ellipse([ex - e, ey - e, ex + e, ey + e], fill=(40, 30, 28))
    if ident.hair_style == "cap":
        draw.chord([hx0 - 2, hy0 - 2, hx1 + 2, hy1 - 0.035 * h], 180, 360, fill=ident.cap)
        if view == "front":
            draw.rectangle([hx0, y(0.045), hx1, y(0.058)], fill=_shade(ident.cap, 0.8))
        elif view == "side":
            x = hx1 if facing > 0 else hx0
            draw.rectangle([min(x, x + facing * 0.05 * h), y(0.045), max(x, x + facing * 0.05 * h), y(0.058)],
                           fill=_shade(ident.cap, 0.8))


# --- backgrounds, clutter, occluders -------------------------------------------------------------------
def draw_background(kind: str, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A scene of `kind` (one per camera), varied per tracklet by `rng`; size is (width, height)."""
    w, h = size
    horizon = h * rng.uniform(0.35, 0.6)  # where the wall or far side meets the ground
    if kind == "pavement":
        img = Image.new("RGB", size, _jitter((150, 146, 138), rng))
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, w, horizon], fill=_jitter((118, 120, 126), rng))
        tile, line = rng.uniform(14, 26), _jitter((120, 116, 110), rng, 8)
        for yy in np.arange(horizon, h, tile):
            d.line([(0, yy), (w, yy)], fill=line, width=2)
        for xx in np.arange(rng.uniform(0, tile), w, tile * 1.6):
            d.line([(xx, horizon), (xx, h)], fill=line, width=2)
    elif kind == "brick":
        img = Image.new("RGB", size, _jitter((128, 126, 120), rng))
        d = ImageDraw.Draw(img)
        brick = _jitter((150, 72, 52), rng)
        bh, bw = rng.uniform(8, 12), rng.uniform(22, 30)
        for row, yy in enumerate(np.arange(0, horizon, bh)):
            for xx in np.arange(-bw + (row % 2) * bw / 2, w, bw):
                d.rectangle([xx + 1, yy + 1, xx + bw - 1, yy + bh - 1], fill=_jitter(brick, rng, 10))
    elif kind == "road":
        img = Image.new("RGB", size, _jitter((72, 72, 76), rng))
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, w, horizon], fill=_jitter((112, 118, 104), rng))
        d.rectangle([0, horizon, w, horizon + 6], fill=_jitter((170, 170, 164), rng))
        y0 = rng.uniform(horizon + 20, h)
        for xx in np.arange(rng.uniform(-30, 0), w, 40):
            d.polygon([(xx, y0), (xx + 22, y0 - 6), (xx + 24, y0 - 2), (xx + 2, y0 + 4)], fill=(214, 214, 204))
    elif kind == "indoor":
        img = Image.new("RGB", size, _jitter((196, 186, 160), rng))
        d = ImageDraw.Draw(img)
        d.rectangle([0, horizon, w, h], fill=_jitter((170, 168, 166), rng))
        for xx in np.arange(rng.uniform(-20, 0), w, 34):
            d.line([(xx, horizon), (xx - 20, h)], fill=_jitter((150, 148, 146), rng, 6), width=2)
        x = rng.uniform(-10, w - 30)
        d.rectangle([x, horizon * 0.2, x + rng.uniform(30, 60), horizon], fill=_jitter((120, 100, 80), rng, 20))
    elif kind == "park":
        img = Image.new("RGB", size, _jitter((70, 112, 60), rng))
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, w, horizon * 0.7], fill=_jitter((60, 90, 58), rng))
        d.polygon([(w * rng.uniform(0.2, 0.5), horizon), (w * rng.uniform(0.5, 0.8), horizon), (w, h), (0, h)],
                  fill=_jitter((176, 160, 130), rng))
        for _ in range(int(rng.integers(3, 7))):
            x, yy, r = rng.uniform(0, w), rng.uniform(0, horizon), rng.uniform(8, 22)
            d.ellipse([x - r, yy - r, x + r, yy + r], fill=_jitter((52, 96, 50), rng, 18))
    elif kind == "shops":
        img = Image.new("RGB", size, _jitter((160, 156, 150), rng))
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, w, horizon * 0.25], fill=_jitter(COLOURS[_pick(rng, TOP_WEIGHTS)], rng))
        for xx in np.arange(rng.uniform(-40, 0), w, 48):
            d.rectangle([xx, horizon * 0.3, xx + 40, horizon], fill=_jitter((150, 176, 190), rng, 20),
                        outline=(50, 52, 56), width=3)
    else:
        raise ValueError(f"unknown background {kind!r}")
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 4))):  # clutter: poles, bins, bicycles
        x, what = rng.uniform(0, w), rng.integers(3)
        col = _jitter((60, 64, 60), rng, 30)
        if what == 0:
            d.rectangle([x, 0, x + rng.uniform(3, 8), horizon + rng.uniform(10, 60)], fill=col)
        elif what == 1:
            yy = horizon + rng.uniform(0, 40)
            d.rounded_rectangle([x, yy - 34, x + 22, yy], radius=4, fill=col)
        else:
            yy, r = horizon + rng.uniform(10, 50), rng.uniform(9, 14)
            for dx in (0, 2.4 * r):
                d.ellipse([x + dx - r, yy - r, x + dx + r, yy + r], outline=col, width=2)
            d.line([(x, yy), (x + 1.2 * r, yy - r), (x + 2.4 * r, yy)], fill=col, width=2)
    if rng.random() < 0.3:  # a passer-by further back
        ph = h * rng.uniform(0.35, 0.6)
        draw_person(img, sample_identity(rng), ("front", "back", "side")[rng.integers(3)], int(rng.choice([-1, 1])),
                    rng.uniform(0, w), horizon - 0.7 * ph, ph, rng.uniform(-1, 1))
    return img


def draw_occluder(img: Image.Image, kind: str, rng: np.random.Generator, occ_rng: np.random.Generator) -> None:
    """Something between the camera and the person: `occ_rng` is the tracklet's, `rng` moves it per frame."""
    w, h = img.size
    d = ImageDraw.Draw(img)
    colour = _jitter(COLOURS[_pick(occ_rng, dict(grey=2, charcoal=2, white=1, red=1, blue=1, black=2))], occ_rng)
    side = occ_rng.choice([-1, 1])
    drift = rng.uniform(-0.06, 0.06) * w
    if kind == "pole":
        x = w * occ_rng.uniform(0.2, 0.8) + drift
        d.rectangle([x, 0, x + w * occ_rng.uniform(0.06, 0.12), h], fill=colour)
    elif kind == "car":
        y0 = h * occ_rng.uniform(0.62, 0.8) + rng.uniform(-4, 4)
        d.rounded_rectangle([-20, y0, w + 20, h + 20], radius=12, fill=colour)
        d.rectangle([-20, y0 + 8, w + 20, y0 + 14], fill=_shade(colour, 0.6))
    elif kind == "bin":
        x = (w * 0.75 if side > 0 else w * 0.25) + drift
        d.rounded_rectangle([x - 0.2 * w, h * 0.72, x + 0.2 * w, h + 5], radius=6, fill=colour)
    elif kind == "person":
        ph = h * occ_rng.uniform(0.9, 1.1)
        draw_person(img, sample_identity(occ_rng), ("front", "back", "side")[occ_rng.integers(3)], int(side),
                    w / 2 + side * w * occ_rng.uniform(0.45, 0.6) + drift, h * 0.05, ph, rng.uniform(-1, 1))


_YS, _XS = np.mgrid[-1:1:complex(HEIGHT), -1:1:complex(WIDTH)].astype(np.float32)  # (HEIGHT, WIDTH) each


# --- one image --------------------------------------------------------------------------------------
def render_shot(shot: Shot) -> bytes:
    """The JPEG bytes of one shot: a pure function of the shot (and so of the dataset's seed)."""
    cam = CAMERAS[shot.camid]
    track, frame = np.random.default_rng(shot.track_seed), np.random.default_rng(shot.frame_seed)
    W, H = WIDTH * SUPERSAMPLE, HEIGHT * SUPERSAMPLE
    margin = 24  # the box follows the person, so the background slides a little between frames
    scene = draw_background(cam.background, (W + 2 * margin, H + 2 * margin), track)
    ox, oy = (int(v) for v in frame.integers(0, 2 * margin + 1, size=2))
    img = scene.crop((ox, oy, ox + W, oy + H))

    # a loosely aligned box: the person's size and position jitter per frame
    if shot.kind == "person":
        ph = H * shot.identity.height * frame.uniform(0.88, 1.02)
        cx = W / 2 + frame.normal(0, 0.06) * W
        top = (H - ph) / 2 + frame.normal(0, 0.03) * H
        if frame.random() < 0.08:  # a badly placed box cuts the head or the feet
            top += frame.choice([-1, 1]) * 0.12 * H
    else:  # a false detection: a close-up part of someone, or nobody
        ph = H * frame.uniform(1.4, 2.2)
        cx, top = W / 2 + frame.uniform(-0.5, 0.5) * W, -frame.uniform(0, 0.6) * ph
    phase = math.sin(track.uniform(0, 2 * math.pi) + frame.uniform(0, 2 * math.pi))
    if shot.kind == "person" or frame.random() < 0.6:
        draw_person(img, shot.identity, shot.view, shot.facing, cx, top, ph, phase)
    occluder = _pick(track, {"none": .66, "pole": .08, "car": .1, "bin": .06, "person": .1})
    if occluder != "none":
        draw_occluder(img, occluder, frame, track)

    # the camera: light colour and level, a light gradient across the scene, contrast
    img = img.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    x = np.asarray(img, dtype=np.float32) / 255  # (HEIGHT, WIDTH, 3)
    angle, strength = track.uniform(0, 2 * math.pi), track.uniform(0, 0.35)
    gradient = 1 + strength * (math.cos(angle) * _XS + math.sin(angle) * _YS) / 2  # (HEIGHT, WIDTH)
    gain = np.array(cam.cast, dtype=np.float32) * cam.brightness * track.uniform(0.85, 1.15)
    x = x * gain * gradient[..., None]
    x = (x - 0.5) * cam.contrast + 0.5
    img = Image.fromarray((np.clip(x, 0, 1) * 255).astype(np.uint8))
    if cam.resolution < 1:  # a far camera: fewer pixels on the person, then upsampled
        res = cam.resolution * track.uniform(0.85, 1.15)
        small = (max(8, round(WIDTH * res)), max(16, round(HEIGHT * res)))
        img = img.resize(small, Image.Resampling.BILINEAR).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    if cam.blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(cam.blur * track.uniform(0.7, 1.3)))
    noisy = np.asarray(img, dtype=np.float32) + frame.normal(0, cam.noise, size=(HEIGHT, WIDTH, 3))
    img = Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=cam.quality)
    return buf.getvalue()


def _render_chunk(shots: list[Shot]) -> list[bytes]:
    return [render_shot(s) for s in shots]


# --- the dataset on disk ----------------------------------------------------------------------------------
def read_marker(root: str | Path) -> dict | None:
    """The metadata of a finished synthetic dataset at `root`, or None if there is none."""
    path = resolve(root) / MARKER
    return json.loads(path.read_text()) if path.is_file() else None


def make_synthetic(root: str | Path, num_ids: int = 300, seed: int = 0, progress: bool = True,
                   num_distractors: int | None = None, workers: int = 1, overwrite: bool = False,
                   test_scale: int = 1) -> Path:
    """Draw the synthetic dataset into `root` (Market-1501 layout) and return `root`.

    A `root` that already holds the same dataset (same parameters and format) is returned as it is.
    The files are written into a hidden temp folder beside `root` and renamed into place at the end, so an
    interrupted run leaves no `root`. `workers` > 1 draws in that many processes (same bytes either way).
    """
    _check_sizes(num_ids, num_distractors)
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be an int >= 1 (1 draws in this process)")
    root = resolve(root)
    params = synthetic_params(num_ids, seed, num_distractors, test_scale)
    existing = read_marker(root) if root.is_dir() else None
    if existing is not None and existing.get("params") == params and not overwrite:
        return root
    if root.exists() and not (root.is_dir() and not any(root.iterdir())):
        if existing is None:
            raise FileExistsError(f"{root} exists and is not a synthetic dataset made by reidlab; "
                                  "pick another root or delete that folder yourself")
        if not overwrite:
            raise FileExistsError(f"{root} holds a synthetic dataset made with {existing.get('params')}, not "
                                  f"{params}; pass overwrite=True to replace it, or pick another root")

    shots = plan_synthetic(num_ids, seed, num_distractors, test_scale)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        _write_all(tmp, shots, progress, workers)
        counts = {folder: sum(s.folder == folder for s in shots) for folder in SPLITS}
        meta = dict(params=params, image_size=[HEIGHT, WIDTH], counts=counts,
                    train_ids=len({s.pid for s in shots if s.folder == "bounding_box_train"}),
                    test_ids=len({s.pid for s in shots if s.folder == "query"}),
                    distractors=sum(s.pid == 0 for s in shots),
                    cameras=[asdict(c) for c in CAMERAS])
        (tmp / "README.txt").write_text(_readme(meta))
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n")  # last: the folder is complete
        _move_into_place(tmp, root, params)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def synthetic_params(num_ids: int = 300, seed: int = 0, num_distractors: int | None = None,
                     test_scale: int = 1) -> dict:
    """What identifies a drawn set (its marker's "params"); test_scale only when above 1, so that a set drawn
    before the option existed keeps its params."""
    params = dict(format_version=FORMAT_VERSION, num_ids=int(num_ids), seed=int(seed),
                  num_distractors=int(num_ids * test_scale if num_distractors is None else num_distractors))
    return params | ({"test_scale": int(test_scale)} if test_scale != 1 else {})


def _write_all(tmp: Path, shots: list[Shot], progress: bool, workers: int) -> None:
    from tqdm.auto import tqdm

    for folder in SPLITS:
        (tmp / folder).mkdir()
    bar = tqdm(total=len(shots), desc="drawing synthetic people", unit="img", disable=not progress)
    chunks = [shots[i:i + 64] for i in range(0, len(shots), 64)]
    if workers == 1:
        results = (_render_chunk(c) for c in chunks)
        pool = None
    else:
        # spawn, not fork: forking a process that runs torch's thread pools can hang
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(_render_chunk, chunks)
    try:
        for chunk, images in zip(chunks, results):
            for shot, data in zip(chunk, images):
                (tmp / shot.folder / shot.name).write_bytes(data)
            bar.update(len(chunk))
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _move_into_place(tmp: Path, root: Path, params: dict) -> None:
    old = None
    if root.exists() and any(root.iterdir()):  # overwrite=True on our own dataset: swap, then delete the old
        old = root.with_name(f".{root.name}.old-{os.getpid()}")
        root.rename(old)
    elif root.exists():
        root.rmdir()
    try:
        tmp.rename(root)
    except OSError:  # another process finished the same dataset first: keep theirs if it is ours too
        other = read_marker(root)
        if other is None or other.get("params") != params:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _readme(meta: dict) -> str:
    p, c = meta["params"], meta["counts"]
    cams = "\n".join(f"  c{i + 1}: {cam['name']} ({cam['background']} background)"
                     for i, cam in enumerate(meta["cameras"]))
    return (
        "Synthetic pedestrians drawn by reidlab.synthetic.make_synthetic (numpy + PIL); no real person.\n"
        f"Made with: make_synthetic(root, num_ids={p['num_ids']}, seed={p['seed']}, "
        f"num_distractors={p['num_distractors']}, test_scale={p.get('test_scale', 1)})  "
        f"(format version {p['format_version']})\n"
        "The same call gives byte-identical files (with the same numpy and Pillow versions).\n\n"
        "Layout and names follow Market-1501: PPPP_cCs1_FFFFFF_BB.jpg (pid, camera 1-6, sequence, frame, box);\n"
        "pid 0000 = distractor (a random person or a false detection), in bounding_box_test only.\n"
        f"Images are {meta['image_size'][0]} x {meta['image_size'][1]} (height x width) RGB JPEGs.\n\n"
        f"bounding_box_train: {c['bounding_box_train']} images of {meta['train_ids']} identities\n"
        f"query:              {c['query']} images, one per (test identity, camera), {meta['test_ids']} identities\n"
        f"bounding_box_test:  {c['bounding_box_test']} images: the other test images + "
        f"{meta['distractors']} distractors\n\n"
        f"Cameras:\n{cams}\n"
    )
