"""Rows of a grid side by side: the aggregate training images/s of `python -m reidlab.ablate GRID --jobs N`.

For each N, N runs of the BoT row (seeds 0..N-1, so none is skipped) go through `reidlab.ablate.run_grid` with
the direct executor (what a GPU machine without Jupyter runs), N at once, into a fresh folder:
  - aggregate images/s = every run's training images / wall-clock time of the whole batch (processes starting,
    model building and each run's final evaluation included: what a grid costs);
  - train-only = the sum of the runs' own images/s in their last epoch (history.jsonl: past the first epoch's
    warm-up), what the device sustained while the runs overlapped.
The training set's and the test set's decoded caches are filled before anything is timed.

    python benchmarks/ablate_jobs.py       # CPU: the smoke profile (synthetic_small, 64x32, P x K = 4 x 2), N = 1, 2
    python benchmarks/ablate_jobs.py       # GPU: MobileNetV2 from scratch, 256x128, P x K = 16 x 4, bf16, GPU data,
                                           #      channels_last, Market-1501 when prepared, 3 epochs, N = 1, 2, 4
    python benchmarks/ablate_jobs.py --set cuda_graph=true --tag cuda_graph     # GPU: each run's step as one graph

Writes results/benchmarks/ablate_jobs_<device>[_<tag>].json and .md (<device>: cpu, or the GPU's name).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from reidlab.ablate import run_grid
from reidlab.config import parse_sets
from reidlab.paths import DATA_ROOT, RESULTS_ROOT


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", default=None, help="comma-separated N (default: 1,2,4 on a GPU, 1,2 on a CPU)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default: 3 on a GPU, 2 on a CPU)")
    p.add_argument("--backbone", default=None, help="GPU default mobilenet_v2 (the smoke profile's on a CPU)")
    p.add_argument("--dataset", default="", help="default: market1501 when prepared on a GPU, else synthetic; "
                                                  "synthetic_small on a CPU")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change a Config field in every run")
    p.add_argument("--out", default=str(RESULTS_ROOT / "benchmarks"))
    p.add_argument("--tag", default="", help="added to the file names, e.g. cuda_graph for --set cuda_graph=true")
    return p.parse_args(argv)


def load_average() -> str:
    out = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    match = re.search(r"load average[s]?: (.*)", out)
    return match.group(1) if match else out


def device_name() -> str:
    if torch.cuda.is_available():
        return re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name(0).lower()).strip("_")
    return "cpu"


def write_grid(folder: Path, n: int, overrides: dict) -> str:
    """N rows of the BoT recipe, seeds 0..N-1, as a JSON grid file (no PyYAML needed)."""
    path = folder / f"jobs{n}.json"
    path.write_text(json.dumps({"name": f"jobs{n}", "preset": "bot", "overrides": overrides,
                                "runs": [{"name": f"r{k}", "seed": k} for k in range(n)]}))
    return str(path)


def fill_caches(cfg) -> float:
    """Decode the training and test images once (on-disk caches), so that no N pays it."""
    from reidlab.gpu_eval import decode_ahead

    started = time.perf_counter()
    decode_ahead([cfg.replace(data_path="resident")], progress=False)
    return time.perf_counter() - started


def measure(n: int, grid: str, profile: str, dataset: str, sets: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"ablate_jobs{n}_") as out:
        started = time.perf_counter()
        report = run_grid(grid, profile=profile, dataset=dataset, sets=sets, out=out, jobs=n, executor="direct",
                          progress=False)
        wall = time.perf_counter() - started
        if not report.ok or len(report.done) != n:
            raise RuntimeError(f"N={n}: {report.summary()}")
        runs = []
        for name in report.done:
            folder = Path(out) / f"jobs{n}" / name
            history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]
            metrics = json.loads((folder / "metrics.json").read_text())
            images = sum(r["images_per_s"] * r["seconds"] for r in history)
            runs.append({"run": name, "train_images": round(images), "train_seconds": metrics["train_seconds"],
                         "images_per_s": metrics["images_per_s"],
                         "epoch_images_per_s": [r["images_per_s"] for r in history],
                         "rank1": metrics["rank1"], "mAP": metrics["mAP"]})
    total = sum(r["train_images"] for r in runs)
    return {"jobs": n, "wall_s": round(wall, 2), "train_images": total,
            "aggregate_images_per_s": round(total / wall, 1),
            "train_only_images_per_s": round(sum(r["epoch_images_per_s"][-1] for r in runs), 1), "runs": runs}


def write_markdown(res: dict, path: Path) -> None:
    base = res["results"][0]["aggregate_images_per_s"]
    lines = [f"# Grid rows side by side (`reidlab.ablate --jobs N`): {res['device']}", "",
             f"`{res['command']}`", "",
             f"{res['machine']}; torch {res['torch']}, python {res['python']}. {res['shape']}. "
             f"Load average before: {res['load_before']}; after: {res['load_after']}.", "",
             "| N at once | runs | wall s | training images | aggregate images/s | vs N=1 | train-only images/s "
             "(sum over runs, last epoch) | per run images/s (whole run) |",
             "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["results"]:
        per_run = ", ".join(f"{x['images_per_s']:.0f}" for x in r["runs"])
        lines.append(f"| {r['jobs']} | {len(r['runs'])} | {r['wall_s']:.1f} | {r['train_images']} | "
                     f"{r['aggregate_images_per_s']:.1f} | {r['aggregate_images_per_s'] / base:.2f}x | "
                     f"{r['train_only_images_per_s']:.1f} | {per_run} |")
    lines += ["", "Aggregate = all runs' training images / wall time of the batch (process start, model build and "
                  "each run's final evaluation included). Train-only = the sum of the runs' own images/s from "
                  "history.jsonl, last epoch. Decoded caches were filled before timing "
                  f"({res['cache_fill_s']:.1f} s).", ""]
    if res.get("mps"):
        lines += [res["mps"], ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> None:
    args = parse_args(argv)
    gpu = torch.cuda.is_available()
    jobs = [int(n) for n in (args.jobs or ("1,2,4" if gpu else "1,2")).split(",")]
    sets = parse_sets(args.set)
    overrides = {"epochs": args.epochs or (3 if gpu else 2), "eval_every": 0, "rerank": False}
    if gpu:
        # the recipe's shape on the fast path; from scratch: the GPU machine has no ImageNet ResNet weights
        profile = "full"
        dataset = args.dataset or ("market1501" if (DATA_ROOT / "market1501").exists() else "synthetic")
        overrides.update(backbone=args.backbone or "mobilenet_v2", pretrained=None, data_path="resident", amp="bf16",
                         channels_last=True, num_workers=4)
    else:
        profile, dataset = "smoke", args.dataset or "synthetic_small"
        if args.backbone:
            overrides["backbone"] = args.backbone
    overrides.update(sets)

    from reidlab.profiles import build_config
    cfg = build_config("bot", profile, overrides, dataset=dataset)
    print(f"{cfg.dataset}, {cfg.backbone}, {cfg.image_size[0]}x{cfg.image_size[1]}, P x K = {cfg.P} x {cfg.K}, "
          f"{cfg.epochs} epochs, data_path {cfg.data_path}, amp {cfg.amp}; N = {jobs}", flush=True)
    machine = (torch.cuda.get_device_name(0) if gpu else
               f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads")
    cache_fill = fill_caches(cfg)
    load_before = load_average()
    results = []
    with tempfile.TemporaryDirectory(prefix="ablate_jobs_grids_") as grids:
        for n in jobs:
            r = measure(n, write_grid(Path(grids), n, overrides), profile, dataset, {})
            print(f"N={n}: {r['aggregate_images_per_s']:.1f} images/s aggregate over {r['wall_s']:.1f} s, "
                  f"train-only {r['train_only_images_per_s']:.1f}", flush=True)
            results.append(r)
    mps = None
    if gpu:
        from reidlab.executors import mps_status
        mps = mps_status()
    res = {
        "device": device_name(), "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": machine,
        "torch": torch.__version__, "python": platform.python_version(),
        "shape": (f"{cfg.dataset}, {cfg.backbone} (pretrained {cfg.pretrained}), "
                  f"{cfg.image_size[0]}x{cfg.image_size[1]}, P x K = {cfg.P} x {cfg.K}, {cfg.epochs} epochs per run, "
                  f"data_path {cfg.data_path}, amp {cfg.amp}, "
                  f"cpu_threads {cfg.cpu_threads}, num_workers {cfg.num_workers}, executor direct"),
        "config": cfg.to_dict(), "cache_fill_s": round(cache_fill, 2), "load_before": load_before,
        "load_after": load_average(), "mps": mps, "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"ablate_jobs_{res['device']}" + (f"_{args.tag}" if args.tag else "")
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(res, out / f"{stem}.md")
    print(f"wrote {out / stem}.json and .md")


if __name__ == "__main__":
    main()
