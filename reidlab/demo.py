"""`make demo`: the trick-by-trick ablation (CVPRW Table 1) in the CPU profile, beside the paper's numbers.

On the built-in synthetic data (Market-1501 when prepared under data/market1501), every row of the `tricks`
grid is trained with reidlab.config.CPU_PROFILE through the experiment notebook, plus the untrained reference
row; then the table (ours, the paper's, the change each trick made), the figure, and which tricks helped here.
A second call reuses the finished runs and only rebuilds the table.
"""
from __future__ import annotations

import time

from reidlab.ablate import Report, run_grid
from reidlab.notebook import default_dataset
from reidlab.results import build_table, format_table, trick_verdicts, write_table


def run_demo(out: str = "results/runs", force: bool = False, seeds: int = 1, profile: str = "cpu",
             dataset: str = "") -> Report:
    dataset = dataset or default_dataset()
    started = time.perf_counter()
    print(f"The trick-by-trick ablation on {dataset}, {profile} profile: one training per row of CVPRW Table 1.")
    report = run_grid("tricks", dataset=dataset, seeds=seeds, out=out, profile=profile, force=force)
    print(report.summary())
    try:
        table = build_table("tricks", dataset, root=out)
    except (ValueError, FileNotFoundError) as e:
        print(f"no table: {e}")
        return report
    print()
    print(format_table(table))
    print()
    print("What each trick did here (mAP change vs the row above):")
    for line in trick_verdicts(table):
        print("  " + line)
    print()
    for path in write_table(table, "tricks", dataset):
        print(f"wrote {path}")
    print(f"demo took {time.perf_counter() - started:.0f} s")
    return report
