"""Reliability, not speed: how often `fit` under torchrun on a CPU (gloo, two ranks) fails, at exit included.

`tests/test_distributed.py`'s spawned gloo ranks used to die now and then at interpreter shutdown, after their
work, with SIGABRT ("terminate called without an active exception"; about 1 spawn in 12-15 with torch 2.14): the DDP
model's reference cycles were freed by the shutdown, under gloo's threads (the test now collects them first). This
script asks whether the product path does the same: it spawns `torchrun --nproc_per_node=2` on a short `fit` (the
smoke profile's Baseline-S, one epoch) again and again and counts the spawns that exit non-zero, with the line that
names why, and those that wrote `metrics.json`.

    .venv/bin/python benchmarks/ddp_cpu_exit.py                 # 60 spawns, about 8 min on 2 cores
    .venv/bin/python benchmarks/ddp_cpu_exit.py --spawns 5      # a quick look

Writes results/benchmarks/ddp_cpu_exit.json ({"spawns", "failed", "metrics_written", "reasons", "command", ...})
and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reidlab.paths import RESULTS_ROOT

ROOT = Path(__file__).resolve().parents[1]
SIGNS = ("terminate called", "SIGABRT", "Signal 6", "Aborted", "Traceback")


def run_rank(out: str) -> None:
    """One rank's work under torchrun: the smoke profile's Baseline-S for one epoch, two ranks sharing P."""
    from reidlab.profiles import build_config
    from reidlab.train import fit
    cfg = build_config("baseline_s", "smoke", {"epochs": 1, "milestones": [1], "progress": False},
                       dataset="synthetic_small")
    fit(cfg, out, resume=False)


def spawn(out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(Path(__file__).resolve()), "--run-out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    why = next((line.strip() for line in (done.stderr + done.stdout).splitlines()
                if any(sign in line for sign in SIGNS)), "") if done.returncode else ""
    finished = (out / "metrics.json").exists()
    return {"rc": done.returncode, "why": why[:200], "metrics_written": finished,
            "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spawns", type=int, default=60)
    p.add_argument("--out", default=str(RESULTS_ROOT / "benchmarks"))
    p.add_argument("--run-out", help=argparse.SUPPRESS)  # set inside torchrun: this process is a rank
    args = p.parse_args(argv)
    if args.run_out:
        run_rank(args.run_out)
        return None

    from tqdm.auto import tqdm
    runs: list[dict] = []
    scratch = Path(tempfile.mkdtemp(prefix="ddp_cpu_exit_"))
    try:
        with tqdm(total=args.spawns, unit="spawn") as bar:
            for i in range(args.spawns):
                runs.append(spawn(scratch / f"run{i}"))
                bar.set_postfix(failed=sum(r["rc"] != 0 for r in runs))
                bar.update()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    failed = [r for r in runs if r["rc"] != 0]
    from reidlab.publish import machine
    command = shlex.join(["python", "benchmarks/ddp_cpu_exit.py", *(sys.argv[1:] if argv is None else argv)])
    record = {"command": command, "machine": machine(),
              "spawns": len(runs), "metrics_written": sum(r["metrics_written"] for r in runs), "failed": len(failed),
              "failed_after_metrics": sum(r["metrics_written"] for r in failed),
              "reasons": sorted({r["why"] for r in failed}),
              "median_seconds": statistics.median(r["seconds"] for r in runs)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ddp_cpu_exit.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# fit under torchrun on a CPU: failures, at exit included", "",
             f"`{record['command']}`; {record['machine']}", "",
             "| spawns | metrics.json written | failed | failed after writing metrics.json | why | median s a spawn |",
             "|---|---|---|---|---|---|",
             f"| {record['spawns']} | {record['metrics_written']} | {record['failed']} | "
             f"{record['failed_after_metrics']} | {'; '.join(record['reasons']) or '-'} | {record['median_seconds']} |",
             "",
             "Each spawn: `torchrun --standalone --nproc_per_node=2` on `reidlab.train.fit`, the smoke profile's "
             "Baseline-S for one epoch on `synthetic_small`, gloo, one thread a rank."]
    (out / "ddp_cpu_exit.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return record


if __name__ == "__main__":
    main()
