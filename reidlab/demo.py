"""`make demo`: the trick-by-trick ablation (CVPRW Table 1) in the CPU profile, beside the paper's numbers.

On the built-in synthetic data (Market-1501 when prepared under data/market1501), every row of the `tricks`
grid is trained with reidlab.config.CPU_PROFILE through the experiment notebook, plus the untrained reference
row; then its first row again with other seeds, to show how far the seed alone moves a row; then the table
(ours, the paper's, the change each trick made), the figure, and which tricks helped here beyond that noise.
Two calls print the same table (the runs are deterministic on one machine); a second call in the same folder
reuses the finished runs and only rebuilds the table.
"""
from __future__ import annotations

import shutil
import time

import pandas as pd

from reidlab.ablate import Report, run_grid
from reidlab.notebook import default_dataset
from reidlab.paths import resolve
from reidlab.results import build_table, format_table, load_runs, trick_verdicts, write_table

NOISE_ROW = "baseline_s"  # the first trained row, and among the cheapest (no center loss, last stride 2)
NOISE_SEEDS = 3  # seeds 0, 1, 2 of NOISE_ROW: two runs more, about 45 s each on a 2-core machine (CPU profile)


def run_demo(out: str = "results/runs", force: bool = False, seeds: int = 1, profile: str = "cpu",
             dataset: str = "", noise_seeds: int = NOISE_SEEDS) -> Report:
    """The tricks grid with `seeds` seeds per row, and NOISE_ROW with max(seeds, noise_seeds) seeds."""
    dataset = dataset or default_dataset()
    started = time.perf_counter()
    print(f"The trick-by-trick ablation on {dataset}, {profile} profile: one training per row of CVPRW Table 1.")
    report = run_grid("tricks", dataset=dataset, seeds=seeds, out=out, profile=profile, force=force)
    print(report.summary())
    if noise_seeds > seeds:
        print(f"\n{NOISE_ROW} again with seeds {seeds}..{noise_seeds - 1}: how far the seed alone moves a row.")
        if force:  # rerun the extra seeds too; seed 0 was retrained just now, so run_grid is not forced
            for seed in range(max(seeds, 1), noise_seeds):
                shutil.rmtree(resolve(out) / "tricks" / f"{NOISE_ROW}_seed{seed}", ignore_errors=True)
        noise = run_grid("tricks", dataset=dataset, seeds=noise_seeds, out=out, profile=profile,
                         rows=[NOISE_ROW])
        print(noise.summary())
        report.done += [name for name in noise.done if name not in report.done]
        report.failed.update(noise.failed)
    try:
        table = build_table("tricks", dataset, root=out)
    except (ValueError, FileNotFoundError) as e:
        print(f"no table: {e}")
        return report
    print()
    print(format_table(table))
    spread = describe_spread(out, NOISE_ROW, label=dict(zip(table["row"], table["label"])).get(NOISE_ROW, NOISE_ROW))
    if spread:
        print()
        print(spread)
    print()
    print("What each trick did here (mAP change vs the row above):")
    for line in trick_verdicts(table):
        print("  " + line)
    print()
    for path in write_table(table, "tricks", dataset):
        print(f"wrote {path}")
    print(f"demo took {time.perf_counter() - started:.0f} s")
    return report


def describe_spread(out: str, row: str, label: str = "") -> str:
    """One paragraph: `row`'s metrics seed by seed, and their spread; "" with fewer than two seeds."""
    runs = load_runs("tricks", root=out)
    runs = runs[runs["row"] == row].sort_values("seed")
    if len(runs) < 2:
        return ""
    seeds = ", ".join(str(int(s)) for s in runs["seed"])
    values = {m: ", ".join(f"{v:.1f}" for v in runs[m]) for m in ("rank1", "mAP")}
    spread = {m: runs[m].max() - runs[m].min() for m in ("rank1", "mAP")}
    std = {m: pd.Series(runs[m]).std(ddof=1) for m in ("rank1", "mAP")}
    return (f"Seed-to-seed noise: {label or row} trained with seeds {seeds} (nothing else changed) gave rank-1 "
            f"{values['rank1']} and mAP {values['mAP']}: the seed alone moved it by {spread['rank1']:.1f} rank-1 "
            f"and {spread['mAP']:.1f} mAP (std {std['rank1']:.1f} / {std['mAP']:.1f}). A trick's change smaller "
            f"than that is not evidence either way at this budget.")
