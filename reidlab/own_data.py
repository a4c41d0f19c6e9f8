"""Your own folder of person crops: read it in any layout reidlab reads, check it, split it, train on it.

Two layouts:

    ROOT/train/, ROOT/query/, ROOT/gallery/   already split: read as it is (the `custom` layout, docs/datasets.md)
    ROOT/ (anything else)                     one pool of labelled images: split here by SPLIT_RULE

Each image's pid and camera come from a CSV, a regex or Market-style names, read by reidlab.folder_labels (the
reader reidlab.datasets' `custom` dataset uses too); here the camera is optional. pid -1 is junk and dropped.
Without a camera every image is its own camera: then no gallery image is left out of a ranking (the protocol
drops same-identity, same-camera images).
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from reidlab.datasets import build_custom_dataset
from reidlab.folder_labels import MARKET_NAME, Labelled, camids_of, number_cameras, read_labels
from reidlab.folder_labels import UnparseableNameError  # noqa: F401 (what check_folder raises, importable from here)
from reidlab.images import CorruptImageError, NoImagesError, check_image
from reidlab.paths import resolve
from reidlab.records import DatasetError, Record, ReidDataset, build_dataset

SPLIT_RULE = """\
How a pool of images is split (reidlab.own_data.split_pool):
1. Junk (pid -1) is dropped. An identity is *testable* when it was seen by at least two cameras (without cameras:
   at least two images), so each of its queries has a match in another camera.
2. round(test_fraction * testable) of the testable identities (at least 2), drawn by a seeded permutation of
   their sorted pids (numpy default_rng(seed)), are test identities; every other identity trains.
3. For a test identity, each camera holding two or more of its images gives one query, its first image by path;
   if no camera does, the identity's first image by path is its one query. All its other images are gallery.
   So every query has a gallery image of its identity from another camera.
The same folder, test_fraction and seed give the same split on every machine."""
MIN_TRAIN_IDS = 2  # batch-hard mining needs another identity in the batch
MIN_TEST_IDS = 2  # with one test identity every gallery image is a match: the metrics would say nothing
EXAMPLE_REGEX = r"^person_(?P<pid>\d+)/cam(?P<cam>\d+)_"


class TooFewIdentitiesError(DatasetError):
    """Too few identities to train and test (one identity, or none seen twice)."""


@dataclass
class FolderCheck:
    """What check_folder found: the labelled images and what may go wrong with them."""
    root: Path
    images: list[Labelled]
    has_split: bool
    rule: str
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> why it does not decode

    @property
    def has_cameras(self) -> bool:
        return all(im.camera is not None for im in self.images)

    def per_identity(self) -> pd.DataFrame:
        """One row per pid: images, cameras (distinct), split folders."""
        rows = defaultdict(lambda: {"images": 0, "cameras": set(), "splits": set()})
        for im in self.images:
            row = rows[im.pid]
            row["images"] += 1
            row["cameras"].add(im.camera if im.camera is not None else im.path)
            row["splits"].add(im.split or "pool")
        table = pd.DataFrame([{"pid": pid, "images": r["images"], "cameras": len(r["cameras"]),
                               "splits": ",".join(sorted(r["splits"]))} for pid, r in sorted(rows.items())])
        return table.set_index("pid")

    def per_camera(self) -> pd.DataFrame:
        """One row per camera label: images and identities (empty without cameras)."""
        if not self.has_cameras:
            return pd.DataFrame(columns=["images", "identities"])
        images, ids = Counter(im.camera for im in self.images), defaultdict(set)
        for im in self.images:
            ids[im.camera].add(im.pid)
        cams = number_cameras({im.camera for im in self.images})
        return pd.DataFrame([{"camera": c, "camid": cams[c], "images": images[c], "identities": len(ids[c])}
                             for c in sorted(cams, key=cams.get)]).set_index("camera")

    def single_image_ids(self) -> list[int]:
        """Identities with one image: they can train (ID loss) but give no positive pair and no query."""
        return sorted(pid for pid, n in Counter(im.pid for im in self.images).items() if n == 1)

    def summary(self) -> str:
        ids = self.per_identity()
        cams = f"{len(self.per_camera())} cameras" if self.has_cameras else "no camera labels"
        layout = "split into train/ query/ gallery/" if self.has_split else "one pool (split by SPLIT_RULE)"
        return (f"{self.root}: {len(self.images)} images, {len(ids)} identities, {cams}; {layout}; labels from "
                f"{self.rule}; {len(self.single_image_ids())} identities with one image; "
                f"{len(self.unreadable)} unreadable files")


def plot_folder_check(check: FolderCheck, ax=None):
    """Two panels: how many images each identity has (a histogram), and images per camera."""
    from reidlab.viz import _axes

    fig, (left, right) = _axes(ax, 2, (10, 3.2))
    per_id = check.per_identity()["images"]
    left.hist(per_id, bins=range(1, int(per_id.max()) + 2), color="#1f77b4", edgecolor="white", align="left")
    left.set(xlabel="images of the identity", ylabel="identities",
             title=f"{len(per_id)} identities, {int((per_id == 1).sum())} with one image")
    cams = check.per_camera()
    if len(cams):
        right.bar(cams.index.astype(str), cams["images"], color="#2ca02c")
        right.set(xlabel="camera label", ylabel="images", title=f"{len(cams)} cameras")
    else:
        right.text(0.5, 0.5, "no camera labels:\neach image is its own camera", ha="center", va="center")
        right.set_axis_off()
    return fig


def check_folder(root: str | Path, regex: str | None = None, csv: str | Path | None = None,
                 decode: bool = True) -> FolderCheck:
    """Label every image of a user's folder and (decode=True) try decoding each; nothing is raised for
    unreadable files here: they are listed in `.unreadable` (require_readable raises)."""
    images, has_split, rule = read_labels(root, regex, csv)
    check = FolderCheck(resolve(root), images, has_split, rule)
    if decode:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:  # PIL releases the GIL while decoding
            errors = pool.map(check_image, [im.path for im in images], chunksize=32)
            check.unreadable = {im.path: e for im, e in zip(images, errors) if e}
    return check


def to_dataset(check: FolderCheck, test_fraction: float = 0.5, seed: int = 0,
               drop_unreadable: bool = False, name: str = "custom") -> ReidDataset:
    """The ReidDataset of a checked folder: its own split, or SPLIT_RULE's for a pool.

    Unreadable files raise CorruptImageError (listing each) unless drop_unreadable; then they are left out.
    """
    if check.unreadable and not drop_unreadable:
        listed = "\n".join(f"  {p}: {e}" for p, e in list(check.unreadable.items())[:10])
        more = f"\n  ... and {len(check.unreadable) - 10} more" if len(check.unreadable) > 10 else ""
        raise CorruptImageError(f"{len(check.unreadable)} of {len(check.images)} files in {check.root} do not decode "
                                f"as images:\n{listed}{more}\nFix: replace or delete them, or pass "
                                f"drop_unreadable=True to leave them out")
    images = [im for im in check.images if im.path not in check.unreadable and im.pid != -1]
    if not images:
        raise NoImagesError(f"{check.root}: no readable image with a pid other than -1 (junk) is left")
    if check.has_split:
        return split_as_given(images, name)
    return split_pool(images, test_fraction, seed, name)


def split_as_given(images: list[Labelled], name: str = "custom") -> ReidDataset:
    train_ids = len({im.pid for im in images if im.split == "train" and im.pid != -1})
    if train_ids < MIN_TRAIN_IDS:
        raise TooFewIdentitiesError(f"train/ holds {train_ids} identity: training needs at least "
                                    f"{MIN_TRAIN_IDS} (batch-hard mining compares identities); add identities")
    return build_custom_dataset(images, name)


def split_pool(images: list[Labelled], test_fraction: float = 0.5, seed: int = 0,
               name: str = "custom") -> ReidDataset:
    """Train / query / gallery of a pool by SPLIT_RULE."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must be in (0, 1): the share of testable identities tested")
    camids = camids_of(images)
    by_pid: dict[int, list[tuple[Labelled, int]]] = defaultdict(list)
    for im, cam in zip(images, camids):
        by_pid[im.pid].append((im, cam))
    testable = sorted(pid for pid, items in by_pid.items() if len({c for _, c in items}) >= 2)
    n_test = min(max(MIN_TEST_IDS, round(test_fraction * len(testable))), len(testable))
    if len(by_pid) - n_test < MIN_TRAIN_IDS or n_test < MIN_TEST_IDS:
        seen = "cameras" if all(im.camera is not None for im in images) else "images"
        raise TooFewIdentitiesError(
            f"{len(by_pid)} identit{'y' if len(by_pid) == 1 else 'ies'} ({len(testable)} seen in two or more "
            f"{seen}): a split needs at least {MIN_TRAIN_IDS + MIN_TEST_IDS} identities, {MIN_TEST_IDS} of them seen "
            f"in two or more {seen}, to train on {MIN_TRAIN_IDS} and test on {MIN_TEST_IDS}. Fix: add identities, "
            f"or check that the labels give each person their own pid (regex= / labels.csv)")
    order = np.random.default_rng(seed).permutation(len(testable))
    test_ids = {testable[i] for i in order[:n_test]}
    train, query, gallery = [], [], []
    for pid, items in sorted(by_pid.items()):
        items = sorted(items, key=lambda x: x[0].path)
        records = [Record(im.path, pid, cam) for im, cam in items]
        if pid not in test_ids:
            train += records
            continue
        per_cam = Counter(r.camid for r in records)
        firsts = {cam: next(r for r in records if r.camid == cam) for cam, n in per_cam.items() if n >= 2}
        queries = set(firsts.values()) or {records[0]}
        query += [r for r in records if r in queries]
        gallery += [r for r in records if r not in queries]
    return build_dataset(name, train, query, gallery)


def load_own_data(root: str | Path, regex: str | None = None, csv: str | Path | None = None,
                  test_fraction: float = 0.5, seed: int = 0, drop_unreadable: bool = False
                  ) -> tuple[ReidDataset, FolderCheck]:
    """check_folder + to_dataset: the dataset to train on and the check it came from."""
    check = check_folder(root, regex, csv)
    return to_dataset(check, test_fraction, seed, drop_unreadable), check


def describe_split(dataset: ReidDataset) -> pd.DataFrame:
    """Identities, images and cameras per split."""
    return pd.DataFrame([{"split": s, "identities": len({r.pid for r in recs}), "images": len(recs),
                          "cameras": len({r.camid for r in recs})}
                         for s, recs in (("train", dataset.train), ("query", dataset.query),
                                         ("gallery", dataset.gallery))]).set_index("split")


def write_split(dataset: ReidDataset, path: str | Path) -> Path:
    """`split,path,pid,camid` for every image (train pids relabelled 0..N-1, query / gallery as written)."""
    path = resolve(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [(s, r.path, r.pid, r.camid) for s, recs in (("train", dataset.train), ("query", dataset.query),
                                                        ("gallery", dataset.gallery)) for r in recs]
    pd.DataFrame(rows, columns=["split", "path", "pid", "camid"]).to_csv(path, index=False)
    return path


def dataset_key(dataset: ReidDataset) -> str:
    """A short hash of the split (paths, pids, cameras): a run trained on one split is not reused for another."""
    text = json.dumps([dataset.train, dataset.query, dataset.gallery])
    return hashlib.sha1(text.encode()).hexdigest()[:8]


# --- training on it ---------------------------------------------------------------------------------------
def pick_own_profile(profile: str = "auto", smoke: bool = False) -> str:
    """"smoke" under smoke; "auto" is the full recipe with a CUDA GPU, else the CPU profile."""
    from reidlab.notebook import pick_profile

    return pick_profile(profile, smoke, real_data=True)  # a user's folder is real data


def own_config(dataset: ReidDataset, preset: str = "bot", profile: str = "auto", device: str = "auto",
               smoke: bool = False, **overrides):
    """The Config to train on `dataset`: the preset under the chosen profile, P capped at its train identities."""
    from reidlab.notebook import run_config

    cfg = run_config(preset, pick_own_profile(profile, smoke), dataset=dataset.name, device=device, smoke=smoke)
    return cfg.replace(P=min(cfg.P, dataset.num_train_pids), **overrides)


def train_own(cfg, dataset: ReidDataset, runs_dir: str | Path, name: str = "own") -> Path:
    """Train `cfg` on `dataset` into `runs_dir/<name>-<config key>-<dataset key>`; a finished run is reused,
    an interrupted one resumes. Returns the run folder (what `reidlab export` and `reidlab rank` take)."""
    from reidlab.notebook import config_key
    from reidlab.runs import is_finished
    from reidlab.train import fit

    run_dir = resolve(runs_dir) / f"{name}-{config_key(cfg)}-{dataset_key(dataset)}"
    if not is_finished(run_dir):
        fit(cfg, run_dir, dataset=dataset)
    return run_dir


# --- an example folder of synthetic people, in a layout of its own ---------------------------------------
def write_example_folder(root: str | Path, num_ids: int = 24, seed: int = 0) -> tuple[Path, str]:
    """(root, regex): the synthetic people (reidlab.synthetic; no real person) copied into one pool,
    `root/person_<pid>/cam<camera>_<frame>.jpg`, without a split and without distractors. The drawing is
    the cached `data/synthetic_small` (num_ids=24) or `data/synthetic` (300) when the numbers match."""
    import shutil

    from reidlab.datasets import load_dataset

    root = resolve(root)
    marker = root / "example.json"
    params = {"num_ids": num_ids, "seed": seed, "regex": EXAMPLE_REGEX}
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root, EXAMPLE_REGEX
    if marker.is_file():  # an example of other numbers: ours to replace
        shutil.rmtree(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not an example folder written by write_example_folder; "
                              f"pick another folder or delete it yourself")
    if (num_ids, seed) == (24, 0):
        source = load_dataset("synthetic_small", verbose=False)
    elif num_ids == 300 and seed == 0:
        source = load_dataset("synthetic", verbose=False)
    else:
        source = load_dataset("synthetic", resolve("data") / f"synthetic_{num_ids}_{seed}", verbose=False,
                              num_ids=num_ids, seed=seed)
    tmp = root.with_name(f".{root.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for r in [*source.train, *source.query, *source.gallery]:
        name = Path(r.path).name  # PPPP_cCs1_FFFFFF_01.jpg: the original pid and camera, not the relabelled pid
        match = MARKET_NAME.match(name)
        pid, cam, frame = int(match["pid"]), int(match["cam"]), name.split("_")[2]
        if pid <= 0:
            continue  # distractors stay out: in a pool every pid is a person
        dest = tmp / f"person_{pid:04d}" / f"cam{cam}_{frame}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(r.path, dest)
    (tmp / "example.json").write_text(json.dumps(params) + "\n")
    root.parent.mkdir(parents=True, exist_ok=True)
    if root.exists():
        root.rmdir()
    tmp.rename(root)
    return root, EXAMPLE_REGEX
