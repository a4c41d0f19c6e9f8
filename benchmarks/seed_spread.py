"""Where a row's seed-to-seed spread in mAP comes from: the models themselves, or how each fares on the test set.

Reads the trained runs of `benchmarks/cpu_profile_seeds.py` (one folder per row and seed), scores each model's
every query (average precision, Market protocol, reidlab.gpu_eval), averages it per test identity, and splits the
variance over seeds of the mean (a two-way layout, seeds x test identities, one value per cell):
  - interaction: how a seed's model fares on particular identities, beyond its overall level; it shrinks with
    more test identities (its share of the variance is interaction / number of identities);
  - global: the seeds' models differ in level whatever the test set (it does not shrink with more identities).

    .venv/bin/python benchmarks/seed_spread.py                       # the CPU profile's 5-seed runs
    .venv/bin/python benchmarks/seed_spread.py --runs results/runs/profile_e8/tricks

Writes results/benchmarks/seed_spread.json and .md.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from reidlab.datasets import load_dataset
from reidlab.gpu_eval import evaluate_on_device
from reidlab.inference import load_run
from reidlab.paths import RESULTS_ROOT, resolve

NAMES = {"center_loss": "bot"}  # the tricks grid's last row is the full BoT


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=str(RESULTS_ROOT / "runs" / "profile_cpu" / "tricks"),
                   help="the folder holding ROW, ROW_seed1, ... (cpu_profile_seeds.py's runs)")
    p.add_argument("--rows", nargs="+", default=["baseline_s", "center_loss"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS_ROOT / "benchmarks"))
    return p.parse_args(argv)


def per_identity_ap(run_dir: Path, datasets: dict) -> tuple[np.ndarray, np.ndarray]:
    """(mean AP in percent per test identity, those identities) of one trained run."""
    model, cfg = load_run(run_dir, device="cpu")
    if cfg.dataset not in datasets:
        datasets[cfg.dataset] = load_dataset(cfg.dataset, resolve(cfg.data_root) / cfg.dataset, verbose=False)
    dataset = datasets[cfg.dataset]
    _, result = evaluate_on_device(model, cfg.replace(progress=False, rerank=False), dataset, "cpu")
    q_pids = np.array([r.pid for r in dataset.query])[result.valid]
    ap = result.ap[result.valid] * 100
    ids = np.unique(q_pids)
    return np.array([ap[q_pids == p].mean() for p in ids]), ids


def split_variance(table: np.ndarray) -> dict:
    """Seeds x identities -> the variance over seeds of the row means, split into global + interaction / n."""
    seeds, n = table.shape
    residual = table - table.mean(1, keepdims=True) - table.mean(0, keepdims=True) + table.mean()
    interaction = (residual ** 2).sum() / ((seeds - 1) * (n - 1))  # per identity
    total = table.mean(1).var(ddof=1)
    # both are estimates from a few seeds: the interaction's part can come out above the whole; then it is all of it
    inter = min(interaction / n, total)
    glob = total - inter
    return {"identities": n, "seed_means": table.mean(1).round(2).tolist(), "std": round(float(np.sqrt(total)), 2),
            "var_total": round(float(total), 3), "var_global": round(float(glob), 3),
            "var_interaction": round(float(inter), 3),
            "std_if_2x_identities": round(float(np.sqrt(glob + inter / 2)), 2),
            "std_if_4x_identities": round(float(np.sqrt(glob + inter / 4)), 2)}


def main(argv=None) -> int:
    args = parse_args(argv)
    runs, datasets, rows = Path(args.runs), {}, {}
    torch.set_num_threads(2)
    for row in args.rows:
        folders = [runs / (row if s == 0 else f"{row}_seed{s}") for s in range(args.seeds)]
        missing = [str(f) for f in folders if not (f / "config.json").is_file()]
        if missing:
            raise SystemExit(f"no trained run in {', '.join(missing)}: train them first "
                             f"(python benchmarks/cpu_profile_seeds.py), or point --runs at their folder")
        tables = [per_identity_ap(f, datasets) for f in folders]
        if any(not np.array_equal(ids, tables[0][1]) for _, ids in tables):
            raise SystemExit("the runs were scored on different test identities: one row, one dataset")
        rows[NAMES.get(row, row)] = split_variance(np.stack([t for t, _ in tables]))
        print(NAMES.get(row, row), rows[NAMES.get(row, row)], flush=True)
    command = "python benchmarks/seed_spread.py " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None else argv))
    record = {"command": command.strip(), "runs": args.runs, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "seed_spread.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# Where the seed spread comes from", "", f"`{record['command']}`, on the runs in `{args.runs}`.", "",
             "mAP (%) averaged per test identity, then over identities; the variance over seeds of that mean is "
             "split into global (the models differ in level) and interaction (how each model fares on particular "
             "identities, which shrinks with more of them).", "",
             "| row | mAP per seed | std | variance: global + interaction | std with 2x / 4x the test identities |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {' / '.join(f'{m:.1f}' for m in r['seed_means'])} | {r['std']} | "
              f"{r['var_total']:.2f} = {r['var_global']:.2f} + {r['var_interaction']:.2f} | "
              f"{r['std_if_2x_identities']} / {r['std_if_4x_identities']} |" for name, r in rows.items()]
    (out / "seed_spread.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-len(rows) - 2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
