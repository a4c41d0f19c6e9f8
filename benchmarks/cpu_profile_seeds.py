"""Accuracy, not speed: a CPU profile's rows over seeds (how the profile in reidlab/config.py was chosen).

Trains rows of the tricks grid (default: Baseline-S and full BoT) with seeds 0..N-1 in the CPU profile, plus
`--set` changes to it, through `reidlab.ablate.run_grid` (direct executor, `--jobs` rows at once), and records per
row and seed: rank-1, mAP, whether the run collapsed (reidlab.collapse), the last epoch's losses and how much the
loss still moved over the last epoch (a flat curve moves little). Runs live in results/runs/profile_<tag>/ and are
reused by a second call (delete the folder to rerun).

    .venv/bin/python benchmarks/cpu_profile_seeds.py                                  # the profile as it is
    .venv/bin/python benchmarks/cpu_profile_seeds.py --seeds 3 --set base_lr=1e-3 --tag lr1e-3   # a candidate

Writes results/benchmarks/cpu_profile_seeds[_<tag>].json ({"rows": {"baseline_s": {"rank1": [...], "mAP": [...],
"collapsed": [...]}, "bot": {...}}, "command": ...}) and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

from reidlab.ablate import run_grid
from reidlab.profiles import build_config
from reidlab.config import parse_sets
from reidlab.paths import RESULTS_ROOT, resolve

NAMES = {"center_loss": "bot"}  # the tricks grid's last row is the full BoT


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=["baseline_s", "center_loss"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="change the CPU profile")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--tag", default="", help="names the runs' folder and the record (default: the profile's own)")
    p.add_argument("--out", default=str(RESULTS_ROOT / "benchmarks"))
    return p.parse_args(argv)


def read_rows(grid_dir: Path, rows: list[str]) -> dict:
    table = {}
    for row in rows:
        entry = {k: [] for k in ("seed", "rank1", "mAP", "collapsed", "loss_last", "loss_id_last", "loss_triplet_last",
                                 "loss_change_last_epoch", "train_seconds")}
        for folder in sorted(grid_dir.iterdir(), key=lambda f: (len(f.name), f.name)):
            info = json.loads((folder / "run.json").read_text())
            if info["row"] != row or not (folder / "metrics.json").exists():
                continue
            metrics = json.loads((folder / "metrics.json").read_text())
            history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines() if line]
            last, before = history[-1], history[-2] if len(history) > 1 else history[-1]
            entry["seed"].append(info["seed"])
            entry["rank1"].append(round(metrics["rank1"], 2))
            entry["mAP"].append(round(metrics["mAP"], 2))
            entry["collapsed"].append(bool(metrics.get("collapsed", False)))
            entry["loss_last"].append(round(last["loss"], 4))
            entry["loss_id_last"].append(round(last.get("loss_id", float("nan")), 4))
            entry["loss_triplet_last"].append(round(last.get("loss_triplet", float("nan")), 4))
            entry["loss_change_last_epoch"].append(round((last["loss"] - before["loss"]) / before["loss"], 4))
            entry["train_seconds"].append(metrics.get("train_seconds"))
        table[NAMES.get(row, row)] = entry
    return table


def stats(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.1f}" if values else "-"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    sets = parse_sets(args.set)
    tag = args.tag
    out = resolve("results/runs") / f"profile_{tag or 'cpu'}"
    started = time.perf_counter()
    report = run_grid("tricks", dataset=args.dataset, seeds=args.seeds, sets=sets, out=out, profile="cpu",
                      rows=args.rows + ["untrained"], jobs=args.jobs, executor="direct")
    wall = time.perf_counter() - started
    print(report.summary())
    rows = read_rows(out / "tricks", args.rows)
    untrained = json.loads((out / "tricks" / "untrained" / "metrics.json").read_text())
    cfg = build_config("center_loss", "cpu", sets, dataset=args.dataset)
    settings = {k: getattr(cfg, k) for k in ("dataset", "backbone", "image_size", "padding", "P", "K", "epochs",
                                             "warmup_epochs", "milestones", "base_lr", "data_path", "channels_last",
                                             "amp")}
    command = "python benchmarks/cpu_profile_seeds.py " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None
                                                                         else argv))
    record = {"command": command.strip(), "rows": rows, "untrained": {k: untrained[k] for k in ("rank1", "mAP")},
              "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
              "profile_changes": sets, "wall_s": round(wall, 1), "load_at_end": os.getloadavg()[0]}
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    stem = "cpu_profile_seeds" + (f"_{tag}" if tag else "")
    (dest / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# The CPU profile over seeds{f' ({tag})' if tag else ''}", "",
             f"`{record['command']}`; {os.cpu_count()} cores, {args.jobs} runs at once, {wall:.0f} s", "",
             "settings: " + ", ".join(f"{k}={v}" for k, v in record["settings"].items()), "",
             f"untrained: rank-1 {untrained['rank1']:.1f}, mAP {untrained['mAP']:.1f}", "",
             "| row | seeds | rank-1 per seed | mAP per seed | rank-1 mean ± std | mAP mean ± std | collapsed | "
             "last epoch loss (ID / triplet) | loss change over the last epoch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, e in rows.items():
        last_losses = " / ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(e["loss_id_last"], e["loss_triplet_last"]))
        lines.append(f"| {name} | {len(e['seed'])} | {' / '.join(f'{v:.1f}' for v in e['rank1'])} | "
                     f"{' / '.join(f'{v:.1f}' for v in e['mAP'])} | {stats(e['rank1'])} | {stats(e['mAP'])} | "
                     f"{sum(e['collapsed'])} | {last_losses} | "
                     f"{' / '.join(f'{100 * v:+.0f}%' for v in e['loss_change_last_epoch'])} |")
    (dest / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
