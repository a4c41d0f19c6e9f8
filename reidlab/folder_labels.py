"""The pid and camera of every image in a user's folder: the one reader of a custom folder.

reidlab.datasets' `custom` dataset and reidlab.own_data both label a folder with `read_labels` and number its
cameras with `number_cameras`. Two layouts:

    ROOT/train/, ROOT/query/, ROOT/gallery/   already split
    ROOT/ (anything else)                     one pool of labelled images (reidlab.own_data splits it)

Each image's pid and camera come from `csv=FILE` (header `path,pid,camid`, or `path,pid` without cameras; paths
relative to ROOT); else from `regex=` (named groups (?P<pid>...) and, optionally, (?P<cam>...), searched in the
path relative to the split folder, or to ROOT for a pool); else from ROOT/labels.csv when it exists; else from
Market-style names (`0001_c3_anything.jpg`). pid -1 is junk (the caller drops it). Every image whose labels
cannot be read is named in one error.
"""
from __future__ import annotations

import csv as csv_module
import re
from dataclasses import dataclass
from pathlib import Path

from reidlab.images import IMAGE_SUFFIXES, NoImagesError, list_images
from reidlab.paths import resolve
from reidlab.records import DatasetError

CUSTOM_SPLITS = ("train", "query", "gallery")
# Market / Duke / CUHK03-NP names start with PPPP_cC: `0002_c1s1_000451_03.jpg`, `-1_c3s2_...`, `0001_c2_f0046182.jpg`
MARKET_NAME = re.compile(r"^(?P<pid>-?\d+)_c(?P<cam>\d+)")
INTEGER = re.compile(r"-?\d+")  # a pid; camera labels that all match are numbered in numeric order


class UnparseableNameError(DatasetError):
    """Images whose pid (or camera) cannot be read from the name, the regex or the CSV."""


@dataclass(frozen=True)
class Labelled:
    """One image of a user's folder: its split folder ("" in a pool), pid and camera label as written."""
    path: str
    split: str
    pid: int
    camera: str | None  # None: the layout has no camera


def number_cameras(labels) -> dict[str, int]:
    """Camera labels -> 0-based camids in sorted order: numeric order when every label is an integer, else the
    labels' string order (`c10` before `c2`). Equal integers written differently (`7`, `007`) stay distinct."""
    labels = set(labels)
    numeric = all(INTEGER.fullmatch(c) for c in labels)
    return {c: i for i, c in enumerate(sorted(labels, key=lambda c: (int(c), c) if numeric else c))}


def camids_of(images: list[Labelled]) -> list[int]:
    """0-based camids: the numbered labels, or one camera per image when the layout has none."""
    if any(im.camera is None for im in images):
        return list(range(len(images)))
    index = number_cameras(im.camera for im in images)
    return [index[im.camera] for im in images]


def find_layout(root: Path) -> bool:
    """True for ROOT/train, query, gallery; False for a pool. A partial split is refused, naming the fix."""
    present = [s for s in CUSTOM_SPLITS if (root / s).is_dir()]
    if present and len(present) < len(CUSTOM_SPLITS):
        missing = [s for s in CUSTOM_SPLITS if s not in present]
        raise DatasetError(f"{root} has {', '.join(s + '/' for s in present)} but no "
                           f"{', '.join(s + '/' for s in missing)}: add the missing folder(s), or rename the "
                           f"split folders away so that reidlab splits the whole folder itself "
                           f"(reidlab.own_data.SPLIT_RULE)")
    return bool(present)


def read_labels(root: str | Path, regex: str | None = None, csv: str | Path | None = None,
                cameras_required: bool = False) -> tuple[list[Labelled], bool, str]:
    """(labelled images, has_split, where the labels came from) of a user's folder, junk (pid -1) included.

    Raises NoImagesError for a folder without images, UnparseableNameError naming every image whose pid (or
    camera) cannot be read, and DatasetError for other bad input, each with the fix. cameras_required refuses
    labels without cameras (a regex without (?P<cam>...), a CSV without camid).
    """
    if regex and csv:
        raise DatasetError("pass regex= or csv=, not both")
    root = resolve(root)
    if not root.is_dir():
        raise NoImagesError(f"{root} is not a folder; pass the folder that holds your images")
    has_split = find_layout(root)
    folders = [root / s for s in CUSTOM_SPLITS] if has_split else [root]
    paths = [(p, f) for f in folders for p in list_images(f, recursive=True)]
    if not paths:
        searched = "in train/, query/, gallery/ and their sub-folders" if has_split else "in sub-folders too"
        raise NoImagesError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)}; searched {searched}); pass "
                            f"the folder that holds your crops")
    csv_file = resolve(csv) if csv else root / "labels.csv"
    if csv and not csv_file.is_file():
        raise DatasetError(f"csv={csv_file} does not exist; give the path of a `path,pid,camid` file")
    if not regex and csv_file.is_file():
        images = read_csv_labels(csv_file, root, paths, has_split, cameras_required)
        return images, has_split, str(csv_file)
    images = read_name_labels(root, paths, regex, has_split, cameras_required)
    return images, has_split, (f"regex {regex!r}" if regex else "Market-style names PPPP_cC...")


def split_of(path: Path, root: Path, has_split: bool) -> str:
    return path.relative_to(root).parts[0] if has_split else ""


def fix_labels(has_split: bool, cameras_required: bool) -> str:
    """How to give pids (and cameras) to images whose names do not hold them."""
    example = "ROOT/train/0001/cam3_x.jpg" if has_split else "ROOT/0001/cam3_x.jpg"
    without = "" if cameras_required else r" or '^(?P<pid>\d+)/' without cameras"
    return (r"pass regex= with the named groups (?P<pid>...) and (?P<cam>...), e.g. '^(?P<pid>\d+)/cam(?P<cam>\d+)_' "
            f"for {example}{without}, or list every image in ROOT/labels.csv (header path,pid,camid)")


def read_name_labels(root: Path, paths: list[tuple[Path, Path]], regex: str | None, has_split: bool,
                     cameras_required: bool = False) -> list[Labelled]:
    """Labels from a regex searched in each path below its split folder (or root), or from Market-style names."""
    try:
        pattern = re.compile(regex) if regex else MARKET_NAME
    except re.error as e:
        raise DatasetError(f"regex={regex!r} does not compile: {e}") from e
    if cameras_required and not {"pid", "cam"} <= set(pattern.groupindex):
        raise DatasetError(f"regex={regex!r} needs the named groups (?P<pid>...) and (?P<cam>...): cameras are "
                           f"required here (reidlab.own_data.load_own_data reads a folder without cameras)")
    if "pid" not in pattern.groupindex:
        raise DatasetError(f"regex={regex!r} needs the named group (?P<pid>...) (and (?P<cam>...) for cameras)")
    has_cam = "cam" in pattern.groupindex
    images, bad = [], []
    for path, folder in paths:
        rel = path.relative_to(folder).as_posix()
        match = pattern.search(rel) if regex else pattern.match(path.name)
        if match is None or not INTEGER.fullmatch(match["pid"] or "") or (has_cam and not match["cam"]):
            bad.append((path, rel))
            continue
        camera = match["cam"] if has_cam else None
        images.append(Labelled(str(path), split_of(path, root, has_split), int(match["pid"]), camera))
    if bad:
        below = "its split folder" if has_split else "the root"
        rule = (f"regex {regex!r} (searched in each path below {below}, e.g. {bad[0][1]!r})" if regex
                else "Market-style names PPPP_cC... (e.g. 0002_c1_x.jpg)")
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        shown = "\n".join(f"  {p}" for p, _ in bad[:10]) + more
        raise UnparseableNameError(f"cannot read an integer pid{' and a camera' if has_cam else ''} from "
                                   f"{len(bad)} of {len(paths)} images with {rule}:\n{shown}\n"
                                   f"Fix: {fix_labels(has_split, cameras_required)}; or rename or remove these files")
    return images


def read_csv_labels(csv_file: Path, root: Path, paths: list[tuple[Path, Path]], has_split: bool,
                    cameras_required: bool = False) -> list[Labelled]:
    """Labels from a `path,pid,camid` (or `path,pid`) file that lists every image under the folder(s), no more."""
    with open(csv_file, newline="") as f:
        reader = csv_module.DictReader(f)
        header = {h.strip() for h in reader.fieldnames or []}
        if not {"path", "pid"} <= header or (cameras_required and "camid" not in header):
            wanted = "`path,pid,camid`" + ("" if cameras_required else " (or `path,pid`)")
            raise DatasetError(f"{csv_file}: the first line must be the header {wanted}, got {reader.fieldnames}")
        has_cam = "camid" in header
        images, listed = [], set()
        for n, row in enumerate(reader, 2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            rel = Path(row["path"])
            path = root / rel
            if rel.is_absolute() or (has_split and (not rel.parts or rel.parts[0] not in CUSTOM_SPLITS)):
                start = " and start with train/, query/ or gallery/" if has_split else ""
                raise DatasetError(f"{csv_file} line {n}: path {row['path']!r} must be relative to {root}{start}")
            if not INTEGER.fullmatch(row["pid"]) or (has_cam and not row["camid"]):
                raise UnparseableNameError(f"{csv_file} line {n}: pid {row['pid']!r} must be an integer"
                                           f"{' and camid non-empty' if has_cam else ''}; fix the line")
            if not path.is_file():
                raise DatasetError(f"{csv_file} line {n}: {path} does not exist; fix the path or remove the line")
            images.append(Labelled(str(path), split_of(path, root, has_split), int(row["pid"]),
                                   row["camid"] if has_cam else None))
            listed.add(path)
    unlisted = [p for p, _ in paths if p not in listed]
    if unlisted:
        away = "train/, query/, gallery/" if has_split else "the folder"
        raise UnparseableNameError(f"{csv_file} does not list {len(unlisted)} image(s) under {root}, e.g. "
                                   f"{unlisted[0]}; add a line for each or move them out of {away}")
    return images
