"""Evaluation from device memory (reidlab.gpu_eval) against the loader path: the same metrics, and the time.

One model, one dataset, each precision (fp32, bf16): the loader path (build_test_loader decoding JPEGs in
workers + evaluate_model) and evaluate_on_device at batch 128 (the loader's) and 512 (its default), re-ranking
included; then the largest metric difference between the paths. Goal: equal in fp32, within 0.1 points in bf16.

    python benchmarks/eval_paths.py                 # GPU: MobileNetV2 (random init, or --run DIR), 256x128,
                                                    #      Market-1501 when prepared, else the synthetic set
    python benchmarks/eval_paths.py --quick         # CPU: synthetic_small at 64x32

Writes results/benchmarks/eval_paths_<device>[_quick].json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import torch

from reidlab.config import PRESETS, SMOKE_PROFILE
from reidlab.paths import DATA_ROOT, RESULTS_ROOT, resolve

KEYS = ("rank1", "mAP", "mINP", "rerank_rank1", "rerank_mAP", "rerank_mINP")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU-sized: synthetic_small at 64x32")
    p.add_argument("--run", default=None, help="a trained run folder to evaluate (default: a fresh model)")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--dataset", default="", help="default: market1501 when prepared, else synthetic")
    p.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1), help="the loader path's workers")
    p.add_argument("--out", default=str(RESULTS_ROOT / "benchmarks"))
    return p.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, fn, *args, **kwargs):
    sync(device)
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    sync(device)
    return out, time.perf_counter() - started


def main(argv=None) -> None:
    args = parse_args(argv)
    from reidlab.datasets import load_dataset
    from reidlab.evaluate import evaluate_model
    from reidlab.gpu_eval import evaluate_on_device, free_test_set, load_test_set
    from reidlab.loaders import build_test_loader
    from reidlab.model import build_model

    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    if args.run:
        from reidlab.inference import load_run
        model, cfg = load_run(args.run, device=str(device))
    else:
        if args.quick:
            cfg = PRESETS["bot"].replace(**{**SMOKE_PROFILE, "pretrained": None})
        else:
            dataset = args.dataset or ("market1501" if (DATA_ROOT / "market1501").exists() else "synthetic")
            cfg = PRESETS["bot"].replace(dataset=dataset, backbone=args.backbone, pretrained=None)
    cfg = cfg.replace(rerank=True, progress=False, num_workers=0 if args.quick else args.workers,
                      **({"dataset": args.dataset} if args.dataset else {}))
    dataset = load_dataset(cfg.dataset, resolve(cfg.data_root) / cfg.dataset, verbose=False)
    if not args.run:
        torch.manual_seed(0)
        model = build_model(cfg, dataset.num_train_pids).to(device).eval()

    free_test_set()
    _, decode_s = timed(device, load_test_set, dataset, cfg.image_size, device, None, False)
    rows = []
    for amp in ("none", "bf16"):
        c = cfg.replace(amp=amp)
        query, gallery = (build_test_loader(r, c) for r in (dataset.query, dataset.gallery))
        (loader, _), loader_s = timed(device, evaluate_model, model, query, gallery, c, device)
        rows.append({"amp": amp, "path": f"loader ({c.num_workers} workers, batch 128)", "seconds": loader_s,
                     **{k: loader[k] for k in KEYS}})
        for batch in (128, 512):
            (got, _), s = timed(device, evaluate_on_device, model, c.replace(data_path="resident"), dataset, device,
                                batch)
            diff = max(abs(got[k] - loader[k]) for k in KEYS)
            rows.append({"amp": amp, "path": f"device memory, batch {batch}", "seconds": s,
                         "max_diff_vs_loader": diff, **{k: got[k] for k in KEYS}})
            print(f"{amp:5s} batch {batch}: {s:.2f} s (loader {loader_s:.2f} s), largest metric difference {diff:.4f}",
                  flush=True)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    slug = "cpu" if device.type == "cpu" else re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    res = {"device": name, "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
           "torch": torch.__version__, "python": platform.python_version(),
           "model": args.run or f"{cfg.backbone}, random init (seed 0)", "dataset": cfg.dataset,
           "images": len(dataset.query) + len(dataset.gallery), "image_size": list(cfg.image_size),
           "load_test_set_s": round(decode_s, 2), "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"eval_paths_{slug}" + ("_quick" if args.quick else "")
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    lines = [f"# Evaluation from device memory vs the loader path: {name}", "", f"`{res['command']}`", "",
             f"torch {res['torch']}; {res['model']}; {cfg.dataset}, {res['images']} query + gallery images at "
             f"{cfg.image_size[0]}x{cfg.image_size[1]}; re-ranking 20 / 6 / 0.3. Loading the test set onto the "
             f"device (decoded cache, decoding it first if absent): {decode_s:.2f} s.", "",
             "| amp | path | seconds | rank-1 | mAP | mINP | re-ranked mAP | largest metric difference vs loader |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        diff = f"{r['max_diff_vs_loader']:.4f}" if "max_diff_vs_loader" in r else ""
        lines.append(f"| {r['amp']} | {r['path']} | {r['seconds']:.2f} | {r['rank1']:.2f} | {r['mAP']:.2f} | "
                     f"{r['mINP']:.2f} | {r['rerank_mAP']:.2f} | {diff} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / stem}.json and .md")


if __name__ == "__main__":
    main()
