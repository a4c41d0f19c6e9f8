"""Publish a grid's table with how it was made: the command, the commit, the machine and the wall time.

    python -m reidlab.publish tricks --dataset market1501 --root results/runs/market1501_cpu \
        --name tricks_market1501_cpu --command "make market" --wall-seconds 6840

writes results/tables/<name>.{md,csv} and results/figures/<name>.{png,pdf} (reidlab.results.write_table) with a
header naming all four, so a committed table says what reproduces it and what it costs. The demo prints committed
tables through `committed_table`.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

from reidlab.paths import REPO_ROOT, RESULTS_ROOT

TABLES = RESULTS_ROOT / "tables"


def commit() -> str:
    """The repository's short commit, with "+ changes" when the working tree differs from it; "unknown" without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + changes" if dirty else "")


def cpu_name(default: str = "") -> str:
    """The processor's model name from /proc/cpuinfo, else `default`, else what `platform` says."""
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return default or platform.processor() or platform.machine()


def machine() -> str:
    """The processor, its cores and the PyTorch that ran: "Intel(R) Xeon(R) ..., 2 cores, torch 2.14.1"."""
    import torch

    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu_name()}, {os.cpu_count()} cores{gpu}, torch {torch.__version__}"


def provenance(command: str, wall_seconds: float | None, note: str = "", trained_at: str = "") -> str:
    """The Markdown lines a published table starts with; `trained_at`: the commit(s) that trained the runs, when
    not the one that builds the table."""
    wall = "not measured" if wall_seconds is None else f"{wall_seconds / 60:.0f} min ({wall_seconds:.0f} s)"
    built = commit()
    at = (f"{built}" if not trained_at or trained_at == built
          else f"runs trained at {trained_at}, table built at {built}")
    lines = [f"- command: `{command}`", f"- commit: {at}", f"- machine: {machine()}", f"- wall time: {wall}"]
    return "\n".join(lines + ([f"- {note}"] if note else []))


def publish(grid: str, dataset: str, root: str | Path, name: str, command: str, wall_seconds: float | None,
            note: str = "", tables: str | Path = TABLES, figures: str | Path = RESULTS_ROOT / "figures",
            trained_at: str = "") -> list[Path]:
    """build_table over the runs in `root`, then write_table under `name` with the provenance header."""
    from reidlab.results import build_table, write_table

    table = build_table(grid, dataset, root=root)
    return write_table(table, grid, dataset, tables=tables, figures=figures, name=name,
                       header=provenance(command, wall_seconds, note, trained_at))


def committed_table(name: str, tables: str | Path = TABLES) -> str | None:
    """The committed Markdown of results/tables/<name>.md, or None when there is none."""
    path = Path(tables) / f"{name}.md"
    return path.read_text() if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reidlab.publish", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grid")
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", default="results/runs", help="the runs: ROOT/<grid>/<run>/")
    p.add_argument("--name", default="", help="the table's file name (default: <grid>_<dataset>)")
    p.add_argument("--command", required=True, help="the command that made the runs (it goes in the header)")
    p.add_argument("--wall-seconds", type=float, default=None, help="how long that command ran, measured")
    p.add_argument("--note", default="", help="one more line for the header")
    p.add_argument("--trained-at", default="", help="the commit(s) that trained the runs, when not this one")
    args = p.parse_args(argv)
    try:
        paths = publish(args.grid, args.dataset, args.root, args.name or f"{args.grid}_{args.dataset}",
                        args.command, args.wall_seconds, args.note, trained_at=args.trained_at)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
