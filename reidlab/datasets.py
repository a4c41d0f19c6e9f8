"""Dataset readers: Market-1501, DukeMTMC-reID, MSMT17, CUHK03-NP, a custom folder, and the synthetic set.

Every reader returns the same `ReidDataset` (reidlab.records) with the conventions of the authors' code
(bot_paper.md section 8): train pids relabelled 0..N-1 in the order of the original pids, junk (pid -1) dropped,
distractors (pid 0) kept in the gallery, cameras 0-based, query / gallery keeping their original pids, records
sorted by path. A custom folder is labelled by reidlab.folder_labels, the reader reidlab.own_data shares.
"""
from __future__ import annotations

import importlib
import inspect
import os
import re
import shutil
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

from reidlab.config import suggest
from reidlab.folder_labels import CUSTOM_SPLITS, MARKET_NAME, Labelled, camids_of, read_labels
from reidlab.images import check_image, list_images
from reidlab.paths import DATA_ROOT, resolve
from reidlab.records import DatasetError, Record, ReidDataset, build_dataset

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")
MARKET_FOLDERS = ("bounding_box_train", "query", "bounding_box_test")  # train, query, gallery

# (train ids, train images, query images, gallery images) after junk is dropped (bot_paper.md section 9)
EXPECTED_COUNTS = {
    "market1501": (751, 12936, 3368, 15913),
    "dukemtmc": (702, 16522, 2228, 17661),
    "msmt17": (1041, 32621, 11659, 82161),
    "cuhk03_detected": (767, 7365, 1400, 5332),
    "cuhk03_labeled": (767, 7368, 1400, 5328),
}

# where a user asks for each dataset; shown by the prepare scripts' --help and by the missing-data error
LICENCES = {
    "market1501": "Market-1501 is for non-commercial research only and may not be redistributed: ask its authors "
                  "(Liang Zheng et al., the Market-1501 project page) for the official release "
                  "Market-1501-v15.09.15.zip.",
    "dukemtmc": "DukeMTMC-reID was withdrawn by its creators (Duke University) in 2019 and has no official source "
                "any more; use it only if you already hold a copy under its original non-commercial terms. "
                "reidlab never ships it.",
    "msmt17": "MSMT17 is released for non-commercial research on signing its release agreement: ask its authors "
              "(Peking University, the dataset page of PKU-VMC, pkuvmc.com) for MSMT17_V1 or MSMT17_V2.",
    "cuhk03": "CUHK03 is released for non-commercial research on signing an agreement with its authors (Wei Li, "
              "Xiaogang Wang et al., The Chinese University of Hong Kong, the CUHK03 page); the new-protocol "
              "split 'cuhk03-np' is published by Zhun Zhong et al. with their re-ranking code (CVPR 2017).",
}


# --- Market-style folders: pid and camera in each file name -----------------------------------------------
def parse_market_name(path: Path, max_cam: int | None = None) -> Record:
    """`0002_c1s1_000451_03.jpg` -> Record(path, 2, 0): pid as written (-1 junk, 0 distractor), camera 0-based."""
    match = MARKET_NAME.match(path.name)
    if match is None:
        raise DatasetError(f"cannot read pid and camera from the file name {path}: expected a name that starts "
                           f"with PPPP_cC (e.g. 0002_c1s1_000451_03.jpg); rename or remove the file")
    pid, cam = int(match["pid"]), int(match["cam"])
    if pid < -1 or cam < 1 or (max_cam is not None and cam > max_cam):
        cams = f"1..{max_cam}" if max_cam else ">= 1"
        raise DatasetError(f"{path}: pid {pid} or camera c{cam} is out of range (pid >= -1, camera {cams}); "
                           f"rename or remove the file")
    return Record(str(path), pid, cam - 1)


def read_market_style(name: str, base: Path, max_cam: int | None) -> ReidDataset:
    splits = [[parse_market_name(p, max_cam) for p in list_images(base / folder)] for folder in MARKET_FOLDERS]
    return build_dataset(name, *splits)


# --- finding a dataset's folder: the folder itself, a folder holding it, or an archive beside -------------
def archive_stem(path: Path) -> str | None:
    """The name without the archive suffix (`MSMT17_V1.tar.gz` -> `MSMT17_V1`); None if not an archive."""
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if path.name.lower().endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def extract_archive(archive: Path, into: Path | None = None) -> Path:
    """Extract `archive` once into `into/<stem>` (default: beside the archive) and return that folder.

    An archive holding a single top folder (`Market-1501-v15.09.15.zip` -> `Market-1501-v15.09.15/`) is not nested
    twice. Extraction goes to a hidden `.partial` folder first, so an interrupted run leaves nothing that looks done.
    """
    stem = archive_stem(archive)
    if stem is None:
        raise DatasetError(f"{archive} is not an archive reidlab can open ({', '.join(ARCHIVE_SUFFIXES)})")
    into = into or archive.parent
    dest = into / stem
    if dest.exists():
        return dest
    partial = into / f".{stem}.partial"
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        print(f"extracting {archive} into {dest} (once)")
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                z.extractall(partial)
        else:
            with tarfile.open(archive) as t:  # the "data" filter refuses links and paths leaving `partial`
                t.extractall(partial, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        entries = [p for p in partial.iterdir() if p.name not in ("__MACOSX", ".DS_Store")]
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else partial
        top.rename(dest)
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as e:
        raise DatasetError(f"cannot extract {archive} into {into}: {e}. Check that the archive is complete and "
                           f"the folder is writable, or extract it yourself and pass the extracted folder") from e
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest


def locate(root: Path, name: str, find: Callable[[Path], Path | None], archives: tuple[str, ...], layout: str) -> Path:
    """The folder `find` accepts: root itself, one of its sub-folders, or what a known archive in root unpacks to."""
    if root.is_file():
        root = extract_archive(root)
    if not root.is_dir():
        raise missing_error(name, root, layout, f"{root} does not exist")
    if found := search(root, find, name):
        return found
    archive = next((root / a for a in archives if (root / a).is_file()), None)
    if archive is not None and (found := search(extract_archive(archive), find, name)):
        return found
    seen = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    found = f"{root} holds: {', '.join(seen[:12])}{' ...' if len(seen) > 12 else ''}" if seen else f"{root} is empty"
    raise missing_error(name, root, layout, found)


def search(root: Path, find: Callable[[Path], Path | None], name: str) -> Path | None:
    """What `find` accepts in root, its sub-folders or theirs: the first level with a hit wins."""
    level = [root]
    for _depth in range(3):
        hits = [f for p in level if (f := find(p))]
        if len(hits) > 1:
            raise DatasetError(f"{name}: several copies of the dataset under {root}: "
                               f"{', '.join(map(str, hits))}; pass root= one of them")
        if hits:
            return hits[0]
        level = [c for p in level for c in subfolders(p)]
    return None


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def missing_error(name: str, root: Path, layout: str, found: str) -> DatasetError:
    script = f"data_scripts/prepare_{name}.py"
    licence = f"\n{LICENCES[name]}" if name in LICENCES else ""
    prepare = "" if name == "synthetic" else (f"\nPrepare it with: python {script} SOURCE  "
                                                f"(SOURCE: the archive or folder you already have)")
    return DatasetError(f"{name}: no dataset found at {root} ({found}).\nExpected layout:\n{layout}{prepare}{licence}")


def has_folders(*names: str) -> Callable[[Path], Path | None]:
    return lambda p: p if all((p / n).is_dir() for n in names) else None


MARKET_LAYOUT = """  ROOT/bounding_box_train/, ROOT/bounding_box_test/, ROOT/query/   (names {names})
  or ROOT/{folder}/ holding those three folders
  or ROOT/{archive}   (extracted beside itself, once, on first load)"""


# --- the readers ------------------------------------------------------------------------------------------
def read_market1501(root: Path) -> ReidDataset:
    layout = MARKET_LAYOUT.format(names="PPPP_cCsS_FFFFFF_BB.jpg", folder="Market-1501-v15.09.15",
                                  archive="Market-1501-v15.09.15.zip")
    base = locate(root, "market1501", has_folders(*MARKET_FOLDERS),
                  ("Market-1501-v15.09.15.zip", "market1501.tar.xz"), layout)
    return read_market_style("market1501", base, max_cam=6)


def read_dukemtmc(root: Path) -> ReidDataset:
    layout = MARKET_LAYOUT.format(names="PPPP_cC_fFFFFFFF.jpg", folder="DukeMTMC-reID", archive="DukeMTMC-reID.zip")
    base = locate(root, "dukemtmc", has_folders(*MARKET_FOLDERS), ("DukeMTMC-reID.zip",), layout)
    return read_market_style("dukemtmc", base, max_cam=8)


MSMT17_LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
# V1 keeps the images in train/ and test/; V2 (faces blurred) in mask_train_v2/ and mask_test_v2/, same lists
MSMT17_FOLDERS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}  # (train, test)
# MSMT17 names: PPPP_III_CC_<date><time>_NNNN_N.jpg, e.g. 0000_000_01_0303morning_0015_0.jpg (camera 01..15)
MSMT17_NAME = re.compile(r"^\d+_\d+_(?P<cam>\d+)_")


def msmt17_image_dirs(p: Path) -> tuple[Path, Path] | None:
    """The (train, test) image folders of V1 or V2, matched case-insensitively (`mask_train_v2` / `mask_train_V2`)."""
    names = {c.name.lower(): c for c in p.iterdir() if c.is_dir()}
    for train, test in MSMT17_FOLDERS.values():
        if train in names and test in names:
            return names[train], names[test]
    return None


def find_msmt17(p: Path) -> Path | None:
    return p if all((p / n).is_file() for n in MSMT17_LISTS) and msmt17_image_dirs(p) else None


def read_msmt17_list(list_file: Path, image_dir: Path) -> list[Record]:
    records = []
    for n, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        match = MSMT17_NAME.match(Path(fields[0]).name) if len(fields) == 2 else None
        if match is None or not fields[1].lstrip("-").isdigit():
            raise DatasetError(f"{list_file} line {n}: {line!r} is not `path label` with a name like "
                               f"0000/0000_000_01_0303morning_0015_0.jpg (camera = third field); fix the line")
        cam = int(match["cam"])
        if not 1 <= cam <= 15:
            raise DatasetError(f"{list_file} line {n}: camera {cam} is outside 1..15; fix the line")
        records.append(Record(str(image_dir / fields[0]), int(fields[1]), cam - 1))
    return records


def read_msmt17(root: Path, include_val: bool = True) -> ReidDataset:
    """MSMT17 V1 or V2. The train split is list_train + list_val (32,621 images, the usual protocol); 
    include_val=False keeps list_train only (30,248)."""
    layout = ("  ROOT/list_train.txt, list_val.txt, list_query.txt, list_gallery.txt (lines `path label`)\n"
              "  and ROOT/train/ + ROOT/test/ (V1) or ROOT/mask_train_v2/ + ROOT/mask_test_v2/ (V2)\n"
              "  or ROOT/MSMT17_V1/ (or MSMT17_V2/) holding them, or ROOT/MSMT17_V1.tar.gz / MSMT17_V2.zip")
    base = locate(root, "msmt17", find_msmt17,
                  ("MSMT17_V1.tar.gz", "MSMT17_V1.zip", "MSMT17_V2.zip", "MSMT17_V2.tar.gz"), layout)
    train_dir, test_dir = msmt17_image_dirs(base)
    train = read_msmt17_list(base / "list_train.txt", train_dir)
    if include_val:
        train += read_msmt17_list(base / "list_val.txt", train_dir)
    query = read_msmt17_list(base / "list_query.txt", test_dir)
    gallery = read_msmt17_list(base / "list_gallery.txt", test_dir)
    return build_dataset("msmt17", train, query, gallery)


def read_cuhk03(root: Path, variant: str = "detected") -> ReidDataset:
    if variant not in ("detected", "labeled"):
        raise DatasetError(f"cuhk03: variant={variant!r} is not valid; use 'detected' or 'labeled'")
    layout = (f"  ROOT/cuhk03-np/{variant}/ with bounding_box_train/, bounding_box_test/, query/ "
              f"(Market-style names PPPP_cC_N.png)\n  or ROOT/{variant}/ with those folders, or ROOT/cuhk03-np.zip")

    def find(p: Path) -> Path | None:
        for base in (p / variant, p / "cuhk03-np" / variant):
            if all((base / n).is_dir() for n in MARKET_FOLDERS):
                return base
        return None

    base = locate(root, "cuhk03", find, ("cuhk03-np.zip",), layout)
    return read_market_style(f"cuhk03_{variant}", base, max_cam=2)


CUSTOM_LAYOUT = """  ROOT/train/, ROOT/query/, ROOT/gallery/  (images, sub-folders allowed)
  pid and camera from each file name: PPPP_cC... (Market style; pid -1 = junk, dropped), or regex= with groups
  (?P<pid>...) and (?P<cam>...) searched in the path relative to its split folder, or ROOT/labels.csv
  (or csv=FILE) with the header `path,pid,camid` and paths relative to ROOT (train/a.jpg). See docs/datasets.md."""


def read_custom(root: Path, regex: str | None = None, csv: str | Path | None = None) -> ReidDataset:
    """A folder split into train/, query/, gallery/, labelled by reidlab.folder_labels.read_labels, a camera for
    every image. Camera labels may be anything (`c3`, `3`, `north`): see folder_labels.number_cameras."""
    base = locate(root, "custom", has_folders(*CUSTOM_SPLITS), (), CUSTOM_LAYOUT)
    try:
        images, _, _ = read_labels(base, regex, csv, cameras_required=True)
    except DatasetError as e:
        e.args = (f"custom: {e}",)  # which dataset the reader was reading
        raise
    return build_custom_dataset(images)


def build_custom_dataset(images: list[Labelled], name: str = "custom") -> ReidDataset:
    """The dataset of labelled images of a train/, query/, gallery/ folder; junk (pid -1) is dropped before the
    cameras are numbered, so reidlab.own_data numbers them the same way."""
    images = [im for im in images if im.pid != -1]
    records = [Record(im.path, im.pid, camid) for im, camid in zip(images, camids_of(images))]
    splits = [[r for r, im in zip(records, images) if im.split == split] for split in CUSTOM_SPLITS]
    return build_dataset(name, *splits)


# The built-in synthetic set: 300 identities (150 train, 150 test), then three times as many test identities again
# (test_scale=4: 600 in all) so that a model's rank-1 and mAP move less with the test set (issue 17,
# results/benchmarks/cpu_profile_search.md). The training set is the one drawn before the test set grew.
SYNTHETIC_SET = dict(num_ids=300, seed=0, test_scale=4)
# what the built-in set's marker said before its test set grew: such a folder is redrawn, not read as it is
SYNTHETIC_SET_BEFORE = dict(format_version=1, num_ids=300, seed=0, num_distractors=300)


def read_synthetic(root: Path, **make_options) -> ReidDataset:
    """Read the synthetic set as Market, drawing it first (SYNTHETIC_SET, then `make_options`) if root is missing
    or empty, or if options are given (make_synthetic then returns a matching set as it is and refuses to mix up a
    different one). A set drawn by an older reidlab as its built-in default is redrawn as today's."""
    synthetic = importlib.import_module("reidlab.synthetic")
    empty = not root.exists() or (root.is_dir() and not any(root.iterdir()))
    marker = None if empty or not root.is_dir() else synthetic.read_marker(root)
    stale = not make_options and marker is not None and marker.get("params") == SYNTHETIC_SET_BEFORE
    if stale:
        print(f"{root} holds the built-in synthetic set as older versions drew it (150 test identities); "
              "redrawing it with 600 test identities (about half a minute)")
    if make_options or empty or stale:
        try:
            drawing = dict(SYNTHETIC_SET, workers=min(4, os.cpu_count() or 1), overwrite=stale)
            root = Path(synthetic.make_synthetic(root, **{**drawing, **make_options}))
        except FileExistsError as e:
            raise DatasetError(str(e)) from e
    layout = MARKET_LAYOUT.splitlines()[0].format(names="PPPP_cC..._NN.jpg")
    base = locate(root, "synthetic", has_folders(*MARKET_FOLDERS), (), layout + "\n  (delete the folder to redraw it)")
    return read_market_style("synthetic", base, max_cam=None)


def read_synthetic_small(root: Path, **make_options) -> ReidDataset:
    """A 24-identity synthetic set for smoke runs and tests: drawn in seconds."""
    return read_synthetic(root, **{"num_ids": 24, "num_distractors": 12, "test_scale": 1, **make_options})


READERS: dict[str, Callable[..., ReidDataset]] = {
    "synthetic": read_synthetic,
    "synthetic_small": read_synthetic_small,
    "market1501": read_market1501,
    "dukemtmc": read_dukemtmc,
    "msmt17": read_msmt17,
    "cuhk03": read_cuhk03,
    "custom": read_custom,
}


def load_dataset(name: str, root: str | Path | None = None, verbose: bool = True, **options) -> ReidDataset:
    """Read a dataset; root defaults to data/<name>. verbose prints its one-line summary."""
    if name not in READERS:
        raise DatasetError(f"unknown dataset {name!r}{suggest(name, READERS)} Valid names: {', '.join(READERS)}")
    reader = READERS[name]
    params = inspect.signature(reader).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [p for p in params if p != "root"]
        for key in options:
            if key not in allowed:
                raise DatasetError(f"{name}: unknown option {key!r}; valid options: {', '.join(allowed) or 'none'}")
    dataset = reader(resolve(root) if root is not None else DATA_ROOT / name, **options)
    if verbose:
        print(dataset.summary())
    return dataset


# --- checks -----------------------------------------------------------------------------------------------
def verify_images(records_or_dataset: ReidDataset | Iterable[Record | str | Path], progress: bool = True,
                  workers: int | None = None) -> None:
    """Decode every image once (a thread pool; PIL releases the GIL while decoding); raise listing each bad file."""
    if isinstance(records_or_dataset, ReidDataset):
        items = [*records_or_dataset.train, *records_or_dataset.query, *records_or_dataset.gallery]
    else:
        items = list(records_or_dataset)
    paths = sorted({item.path if isinstance(item, Record) else str(item) for item in items})
    workers = workers or min(32, 4 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(check_image, paths, chunksize=64)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(paths), desc="verify images", unit="img")
        bad = [f"  {path}: {error}" for path, error in zip(paths, results) if error]
    if bad:
        raise DatasetError(f"{len(bad)} of {len(paths)} images cannot be decoded; replace or delete them:\n"
                           + "\n".join(bad))


def check_counts(dataset: ReidDataset, expected: tuple[int, int, int, int] | None = None) -> None:
    """Compare (train ids, train images, query images, gallery images) with the published counts."""
    if expected is None and dataset.name not in EXPECTED_COUNTS:
        raise DatasetError(f"no published counts for {dataset.name!r}; pass expected=(ids, train, query, gallery)")
    expected = expected or EXPECTED_COUNTS[dataset.name]
    got = (dataset.num_train_pids, len(dataset.train), len(dataset.query), len(dataset.gallery))
    if got != expected:
        labels = ("train ids", "train images", "query images", "gallery images")
        diff = ", ".join(f"{k} {g} (expected {e})" for k, g, e in zip(labels, got, expected) if g != e)
        raise DatasetError(f"{dataset.name}: counts differ from the published ones: {diff}. The copy is incomplete "
                           f"or a different release; re-extract the official archive")


def place_source(source: str | Path, dest_root: Path, copy: bool = False) -> Path:
    """Put a user's archive or folder under dest_root: extract an archive, symlink (or copy) a folder."""
    source = Path(source).expanduser().resolve()
    if not source.exists():
        raise DatasetError(f"{source} does not exist; pass the path of the archive or folder you have")
    dest_root.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        return extract_archive(source, into=dest_root)
    dest = dest_root / source.name
    if dest.exists() or dest.is_symlink():
        if dest.resolve() != source:
            raise DatasetError(f"{dest} already exists and is not {source}; remove it or pass another --root")
        return dest
    if copy:
        shutil.copytree(source, dest)
    else:
        dest.symlink_to(source, target_is_directory=True)
    return dest


# --- what data_scripts/prepare_<name>.py run: place the user's copy under data/<name>/, load it, check it ----
def prepare_dataset(name: str, source: str | Path, root: str | Path | None = None, copy: bool = False,
                    verify: bool = False, **options) -> ReidDataset:
    """Extract (archive) or symlink / copy (folder) `source` under root (default data/<name>/), load it, check
    the published counts where there are some, and optionally decode every image. Never downloads."""
    root = Path(root).expanduser().resolve() if root is not None else DATA_ROOT / name
    place_source(source, root, copy)
    dataset = load_dataset(name, root, **options)
    if dataset.name in EXPECTED_COUNTS:
        check_counts(dataset)
        print(f"{dataset.name}: counts match the published ones {EXPECTED_COUNTS[dataset.name]}")
    if verify:
        verify_images(dataset)
    return dataset


def build_prepare_parser(name: str, description: str):
    import argparse

    parser = argparse.ArgumentParser(description=description, epilog=LICENCES.get(name),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the archive (.zip / .tar.*) or extracted folder you already have")
    parser.add_argument("--root", help=f"where to place it (default: data/{name}/ in the repository)")
    parser.add_argument("--copy", action="store_true", help="copy a source folder instead of symlinking it")
    parser.add_argument("--verify", action="store_true", help="also decode every image (finds corrupt files)")
    return parser


def run_prepare(name: str, args, **options) -> int:
    """Run prepare_dataset for a prepare script; a DatasetError becomes a message and exit status 1."""
    import sys

    try:
        prepare_dataset(name, args.source, args.root, args.copy, args.verify, **options)
    except DatasetError as e:
        licence = f"\n{LICENCES[name]}" if name in LICENCES and LICENCES[name] not in str(e) else ""
        print(f"error: {e}{licence}", file=sys.stderr)
        return 1
    return 0
