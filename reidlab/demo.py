"""`make demo`: the trick-by-trick ablation (CVPRW Table 1) in the CPU profile, beside the paper's numbers.

On the built-in synthetic data (Market-1501 when prepared under data/market1501), every row of the `tricks`
grid is trained with reidlab.config.CPU_PROFILE, with seeds 0..N-1 (3 by default), two rows at a time (one per
core), plus the untrained reference row; then the table (ours as mean ± std, the paper's, the change each trick
made with its 95 % interval over paired seeds, how many runs collapsed), the figure, and a verdict per trick read
off its interval: helped, hurt, cannot tell at this scale, or collapsed. Two calls print the same table (the runs
are deterministic on one machine); a second call in the same folder reuses the finished runs and only rebuilds
the table.
"""
from __future__ import annotations

import os
import time

from reidlab.ablate import Report, run_grid
from reidlab.notebook import default_dataset
from reidlab.results import build_table, format_table, trick_verdicts, write_table

SEEDS = 3  # seed i of every row, so each trick's change is paired seed by seed


def default_jobs() -> int:
    """Rows trained at once: one per core (each run trains on one thread), at most 2 (beyond that, on a small
    machine, the runs' memory traffic and their evaluations compete more than they gain)."""
    return max(1, min(2, os.cpu_count() or 1))


def run_demo(out: str = "results/runs", force: bool = False, seeds: int = SEEDS, profile: str = "cpu",
             dataset: str = "", jobs: int | None = None, executor: str = "direct") -> Report:
    """The tricks grid with `seeds` seeds per row, `jobs` rows at once (default: one per core, at most 2).

    The direct executor trains through reidlab.train.fit without a notebook kernel per run (the batch runner's
    `--executor papermill` adds each run's executed notebook to the same folders later, without retraining)."""
    dataset = dataset or default_dataset()
    jobs = jobs or default_jobs()
    started = time.perf_counter()
    print(f"The trick-by-trick ablation on {dataset}, {profile} profile: every row of CVPRW Table 1 with seeds "
          f"0..{seeds - 1}, {jobs} at a time.")
    report = run_grid("tricks", dataset=dataset, seeds=seeds, out=out, profile=profile, force=force, jobs=jobs,
                      executor=executor)
    print(report.summary())
    try:
        table = build_table("tricks", dataset, root=out)
    except (ValueError, FileNotFoundError) as e:
        print(f"no table: {e}")
        return report
    print()
    print(format_table(table))
    print()
    print("What each trick did here (its change vs the row above, 95 % interval over paired seeds):")
    for line in trick_verdicts(table):
        print("  " + line)
    print()
    for path in write_table(table, "tricks", dataset):
        print(f"wrote {path}")
    print(f"demo took {time.perf_counter() - started:.0f} s")
    return report
