"""`python -m reidlab.ablate GRID ...` and `python -m reidlab ablate GRID ...`: the batch runner's command line
(reidlab.ablate plans and runs; this parses, reports and builds the table)."""
from __future__ import annotations

import argparse
import sys

from reidlab import ablate
from reidlab.ablate import GridError, run_grid
from reidlab.config import parse_sets
from reidlab.profiles import PROFILES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reidlab.grids import GRIDS

    parser.add_argument("grid", help=f"one of: {', '.join(GRIDS)}; or a YAML (or JSON) file of runs")
    parser.add_argument("--dataset", default="", help="train dataset (default: Market-1501 when prepared, "
                                                      "else synthetic; the smoke profile: synthetic_small)")
    parser.add_argument("--test-dataset", default="", help="cross_domain: the dataset to test on")
    parser.add_argument("--seeds", type=int, default=1, help="run each row with seed 0..N-1 (tables: mean +- std)")
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="change a Config field in every run")
    parser.add_argument("--out", default="results/runs", help="runs go to OUT/<grid>/<run>/")
    parser.add_argument("--profile", choices=PROFILES, default="auto",
                        help="cpu: the dataset's CPU profile (the synthetic set's; Market-1501 has its own); full: the "
                             "paper's recipe; smoke: seconds; auto: full with CUDA and Market-1501, else cpu")
    parser.add_argument("--force", action="store_true", help="rerun finished runs (their folders are deleted)")
    parser.add_argument("--table", action="store_true", help="then build the table beside the paper's")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="run N rows at once, in N worker processes. Default 1: on a 2-core CPU two smoke rows "
                             "side by side gave 0.6x the aggregate images/s of one (each worker's start and torch "
                             "import outweigh short runs; results/benchmarks/ablate_jobs_cpu.md); on a GPU, N = 2 or 4 "
                             "may fill what one run leaves idle, not yet measured: benchmarks/ablate_jobs.py there")
    parser.add_argument("--executor", choices=("auto", "papermill", "direct"), default="auto",
                        help="papermill: execute notebooks/experiment.ipynb per run; direct: train through "
                             "reidlab.train.fit without Jupyter (run papermill over the finished folder later for "
                             "the executed notebooks: it only reads them); auto: papermill when installed")


def run_from_args(args) -> int:
    try:
        report = run_grid(args.grid, dataset=args.dataset, seeds=args.seeds, sets=parse_sets(args.set),
                          out=args.out, profile=args.profile, force=args.force, test_dataset=args.test_dataset,
                          jobs=args.jobs, executor=args.executor)
    except (GridError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    if args.table:
        from reidlab.results import build_table, format_table, write_table
        name, dataset = report.runs[0].grid, report.runs[0].config.dataset
        table = build_table(name, dataset, root=args.out)
        print(format_table(table))
        for path in write_table(table, name, dataset):
            print(f"wrote {path}")
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reidlab.ablate", description=ablate.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
