"""How far the seed alone moves a CPU-profile run, for a few learning rates (the demo's noise).

    python benchmarks/cpu_profile_noise.py --lrs 2e-3 1e-3 5e-4 --seeds 3

Trains Baseline-S in reidlab.config.CPU_PROFILE on the synthetic set with seeds 0..N-1 for each base_lr, and
writes results/benchmarks/cpu_profile_noise.{json,md}: rank-1 / mAP per seed, their mean and std, and the
last epoch's ID and triplet losses. Runs are kept under --runs and reused when finished.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from reidlab.config import CPU_PROFILE, PRESETS
from reidlab.paths import REPO_ROOT
from reidlab.runs import load_history
from reidlab.train import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lrs", type=float, nargs="+", default=[CPU_PROFILE["base_lr"]])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--preset", default="baseline_s")
    parser.add_argument("--runs", default="/tmp/cpu_profile_noise", help="run folders (reused when finished)")
    parser.add_argument("--out", default="cpu_profile_noise", help="results/benchmarks/<out>.{json,md}")
    args = parser.parse_args()

    started, rows = time.perf_counter(), []
    for lr in args.lrs:
        for seed in range(args.seeds):
            cfg = PRESETS[args.preset].replace(**CPU_PROFILE).replace(base_lr=lr, seed=seed, progress=False)
            run = f"{args.runs}/{args.preset}_lr{lr:g}_seed{seed}"
            metrics = fit(cfg, run)
            last = load_history(run)[-1]
            rows.append({"base_lr": lr, "seed": seed, "rank1": metrics["rank1"], "mAP": metrics["mAP"],
                         "loss_id": last.get("loss_id"), "loss_triplet": last.get("loss_triplet")})
            print(f"base_lr {lr:g} seed {seed}: rank-1 {metrics['rank1']:.1f} mAP {metrics['mAP']:.1f}", flush=True)

    lines = [f"# {args.preset} in the CPU profile: seed-to-seed spread per base_lr", "",
             f"`python benchmarks/cpu_profile_noise.py --lrs {' '.join(f'{lr:g}' for lr in args.lrs)} "
             f"--seeds {args.seeds}`; {os.cpu_count()} cores, load at end {os.getloadavg()[0]:.1f}, "
             f"{time.perf_counter() - started:.0f} s", "",
             "| base_lr | rank-1 per seed | mAP per seed | rank-1 mean ± std | mAP mean ± std | last epoch loss_id |",
             "|---|---|---|---|---|---|"]
    for lr in args.lrs:
        group = [r for r in rows if r["base_lr"] == lr]
        r1, ap = [r["rank1"] for r in group], [r["mAP"] for r in group]
        spread = (lambda v: f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}")
        losses = " / ".join(f"{r['loss_id']:.2f}" for r in group)
        lines.append(f"| {lr:g} | {' / '.join(f'{v:.1f}' for v in r1)} | {' / '.join(f'{v:.1f}' for v in ap)} | "
                     f"{spread(r1)} | {spread(ap)} | {losses} |")
    out = REPO_ROOT / "results" / "benchmarks"
    (out / f"{args.out}.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
