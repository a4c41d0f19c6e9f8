"""`make demo`: the trick-by-trick ablation (CVPRW Table 1) in the CPU profile, beside the paper's numbers.

Live, on the built-in synthetic data, whatever else is prepared (so the demo ends within 15 minutes on 2 cores):
every row of the `tricks` grid trained with reidlab.config.CPU_PROFILE, with seeds 0..N-1 (3 by default), two rows
at a time (one per core), plus the untrained reference row; then the table (ours as mean ± std, the paper's, the
change each trick made with its 95 % interval over paired seeds, how many runs collapsed), the figure, and a verdict
per trick read off its interval: helped, hurt, cannot tell at this scale, or collapsed. Two calls print the same
table (the runs are deterministic on one machine); a second call in the same folder reuses the finished runs and
only rebuilds the table.

Then the committed reference: the same chain on real Market-1501 in its own CPU profile
(results/tables/tricks_market1501_cpu.md), with the one command that reproduces it (`make market`) and what it
cost; it takes about two hours, so the demo shows it rather than running it.
"""
from __future__ import annotations

import os
import time

from reidlab.ablate import Report, run_grid
from reidlab.publish import committed_table
from reidlab.results import build_table, format_table, trick_verdicts, write_table

SEEDS = 3  # seed i of every row, so each trick's change is paired seed by seed
MARKET_TABLE = "tricks_market1501_cpu"  # the committed reference the demo prints after its live table


def default_jobs() -> int:
    """Rows trained at once: one per core (each run trains on one thread), at most 2 (beyond that, on a small
    machine, the runs' memory traffic and their evaluations compete more than they gain)."""
    return max(1, min(2, os.cpu_count() or 1))


def run_demo(out: str = "results/runs", force: bool = False, seeds: int = SEEDS, profile: str = "cpu",
             dataset: str = "", jobs: int | None = None, executor: str = "direct") -> Report:
    """The tricks grid with `seeds` seeds per row, `jobs` rows at once (default: one per core, at most 2).

    The direct executor trains through reidlab.train.fit without a notebook kernel per run (the batch runner's
    `--executor papermill` adds each run's executed notebook to the same folders later, without retraining)."""
    dataset = dataset or "synthetic"
    jobs = jobs or default_jobs()
    started = time.perf_counter()
    print(f"The trick-by-trick ablation on {dataset}, {profile} profile: every row of CVPRW Table 1 with seeds "
          f"0..{seeds - 1}, {jobs} at a time.")
    report = run_grid("tricks", dataset=dataset, seeds=seeds, out=out, profile=profile, force=force, jobs=jobs,
                      executor=executor)
    print(report.summary())
    if not report.ok:  # the committed table stays as it is rather than mixing these runs with the ones that failed
        print(f"\nno table: {len(report.failed)} run(s) failed (above).")
        if any("another config" in error for error in report.failed.values()):
            print(f"{out}/tricks holds runs of another config: made by an older version of this demo (its profile "
                  "has changed since), or with other settings. To train them anew, move that folder "
                  "away to keep them, or run `.venv/bin/python -m reidlab demo --force` to train over them.")
        return report
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
    print_committed(MARKET_TABLE)
    return report


def print_committed(name: str) -> None:
    """The committed table results/tables/<name>.md, labelled as such (its header names its command and cost)."""
    text = committed_table(name)
    print()
    if text is None:
        print(f"(no committed results/tables/{name}.md yet: `make market` makes it, about two hours on 2 cores)")
        return
    print("=" * 100)
    print(f"The committed reference, not run now: results/tables/{name}.md (the same chain on real Market-1501;")
    print("reproduce it with `make market` where data/market1501 is prepared: its command, commit, machine and")
    print("wall time are in the header below)")
    print("=" * 100)
    print(text.split("\n", 1)[1].strip())


# --- `make market`: the same chain on real Market-1501, published with its cost -----------------------------------

MARKET_OUT = "results/runs/market1501_cpu"


def run_market(out: str = MARKET_OUT, seeds: int = SEEDS, jobs: int | None = None) -> Report:
    """The tricks grid on Market-1501 in its CPU profile (config.MARKET_CPU_PROFILE), `seeds` seeds, `jobs` rows at
    once; then results/tables/tricks_market1501_cpu.{md,csv} and its figure (reidlab.publish), whose header names
    the command, the commit, the machine and the wall time: the sum over every call that trained part of it (runs
    resume, so an interrupted chain goes on where it stopped, and its calls' times add up in <out>/invocations.jsonl).
    """
    import sys

    from reidlab.paths import DATA_ROOT, resolve
    from reidlab.publish import commit, publish
    from reidlab.runs import append_jsonl, read_jsonl

    if not (DATA_ROOT / "market1501").exists():
        raise SystemExit("Market-1501 is not prepared under data/market1501: run `python data_scripts/"
                         "prepare_market1501.py PATH/TO/Market-1501-v15.09.15.zip` (or the .tar.xz in "
                         "../shared/datasets/market1501/) first")
    jobs = jobs or default_jobs()
    started = time.perf_counter()
    print(f"The trick-by-trick ablation on Market-1501, its CPU profile: every row with seeds 0..{seeds - 1}, "
          f"{jobs} at a time (about two hours on 2 cores; it resumes where it stopped).")
    report = run_grid("tricks", dataset="market1501", seeds=seeds, out=out, profile="cpu", jobs=jobs,
                      executor="direct")
    seconds = time.perf_counter() - started
    print(report.summary())
    log = resolve(out) / "invocations.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    append_jsonl({"command": " ".join(sys.argv), "seconds": round(seconds, 1), "trained": len(report.done),
                  "commit": commit(), "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}, log)
    calls = read_jsonl(log)
    total = sum(c["seconds"] for c in calls)
    trained_at = ", ".join(dict.fromkeys(c["commit"] for c in calls if c.get("trained") and c.get("commit")))
    note = f"wall time summed over {len(calls)} call(s) ({out}/invocations.jsonl)" if len(calls) > 1 else ""
    command = (f"make market (python -m reidlab market: python -m reidlab.ablate tricks --dataset market1501 "
               f"--profile cpu --seeds {seeds} --jobs {jobs} --executor direct --out {out})")
    for path in publish("tricks", "market1501", out, MARKET_TABLE, command, total, note, trained_at=trained_at):
        print(f"wrote {path}")
    print_committed(MARKET_TABLE)
    return report
