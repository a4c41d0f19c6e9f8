"""Image files: the suffixes reidlab reads, the one way to list a folder's images, and a check that one decodes."""
from __future__ import annotations

from pathlib import Path

from reidlab.records import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # compared with the lower-cased suffix; PIL reads all


class NoImagesError(DatasetError):
    """A folder holds no image reidlab reads."""


class CorruptImageError(DatasetError):
    """Files that do not decode as images."""


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """The image files in folder (recursive: in its sub-folders too), sorted by path."""
    folder = Path(folder)
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def folder_images(folder: str | Path, label: str = "") -> list[Path]:
    """list_images of a folder that must hold some (its sub-folders are not searched); NoImagesError naming
    `label folder` and the fix when it is no folder or holds no image."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NoImagesError(f"{label}{folder} is not a folder; pass a folder of image files")
    paths = list_images(folder)
    if not paths:
        raise NoImagesError(f"{label}{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}; sub-folders are not "
                            f"searched); pass the folder that holds them")
    return paths


def check_image(path: str) -> str | None:
    """None if the file decodes fully, else why not."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()  # decodes every pixel: catches truncated and corrupt data, not just a bad header
    except Exception as e:  # any failure to decode is what we report, whatever PIL raises
        return f"{type(e).__name__}: {e}"
    return None
