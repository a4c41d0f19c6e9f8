"""The CPU profile's training speed: the profile as it was (before issue 17) and as it is, side by side.

Both train the BoT row of the tricks grid on the synthetic data through `reidlab.ablate.run_grid` (direct
executor), `--runs` runs each (seeds 0..runs-1), `--epochs` epochs per run, into fresh folders:
  - before: `BEFORE` below: the DataLoader path (one worker decoding and augmenting image by image), NCHW, fp32,
    one training thread, PyTorch's default Adam on a CPU (a loop over the parameters), rows one after another
    (`make demo` ran them so);
  - now: `reidlab.config.CPU_PROFILE` (the training set decoded once and resident in memory, channels_last, the
    CPU's fastest precision for the backbone: reidlab.cpu, fused Adam: Config.adam), `--jobs` rows at once, one
    thread each;
  - now_same_batch, only when the profile's P x K differs from the old one's (16 x 4): the new path with the old
    batch, so the path's own gain shows apart from the batch's.
Figures, per side and round:
  - train images/s: the sum over the runs that overlap (all of them with --jobs N, one at a time before) of each
    run's own images/s in its last epoch (history.jsonl: past the first epoch's warm-up);
  - batch images/s: every training image of the batch / the wall-clock time of the whole batch (process start,
    model building and each run's evaluation included).
The sides alternate for `--rounds` rounds; medians are compared (speedup = now / before, train images/s).

    .venv/bin/python benchmarks/cpu_train_speed.py               # about 6 min on 2 cores
    .venv/bin/python benchmarks/cpu_train_speed.py --quick       # a smoke run: one round, one epoch

Writes results/benchmarks/cpu_train_speed.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from reidlab.ablate import run_grid
from reidlab.config import CPU_PROFILE
from reidlab.paths import RESULTS_ROOT

# the CPU profile before issue 17 (what make demo trained, one row at a time), but for its lr and epochs: speed
# only here. Its batch was 16 x 4, as the profile's is again (an 8 x 4 batch trained about 10 % fewer images/s).
# Its Adam was PyTorch's default on a CPU, a loop over the parameters (for_loop); now Config.adam="auto" fuses it
BEFORE = dict(data_path="loader", num_workers=1, channels_last=False, amp="none", cpu_threads=1, P=16, K=4,
              adam="for_loop")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=2, help="runs per side and round (seeds 0..runs-1)")
    p.add_argument("--jobs", type=int, default=2, help="runs at once on the new side")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run; the last one is timed")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--row", default="center_loss", help="the tricks grid's row to train (default: full BoT)")
    p.add_argument("--quick", action="store_true", help="one round of one-epoch runs")
    p.add_argument("--out", default=str(RESULTS_ROOT / "benchmarks"))
    return p.parse_args(argv)


def side(name: str, sets: dict, args, root: Path) -> dict:
    """One batch of runs; returns its figures."""
    jobs = 1 if name == "before" else args.jobs
    out = root / f"{name}_{time.perf_counter_ns()}"
    sets = {**sets, "epochs": args.epochs, "warmup_epochs": 1, "milestones": [args.epochs + 1]}
    started = time.perf_counter()
    report = run_grid("tricks", dataset="synthetic", seeds=args.runs, sets=sets, out=out, profile="cpu",
                      rows=[args.row], jobs=jobs, executor="direct", progress=False)
    wall = time.perf_counter() - started
    if not report.ok:
        raise RuntimeError(report.summary())
    lasts, images = [], 0
    for folder in sorted((out / "tricks").iterdir()):
        history = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines() if line]
        lasts.append(history[-1]["images_per_s"])
        images += sum(round(r["images_per_s"] * r["seconds"]) for r in history)
    # runs side by side add up; runs one after another are each the machine's rate
    train = sum(lasts) if jobs > 1 else statistics.mean(lasts)
    return {"side": name, "jobs": jobs, "train_images_per_s": round(train, 1), "per_run_last_epoch": lasts,
            "batch_images_per_s": round(images / wall, 1), "wall_s": round(wall, 1), "load": os.getloadavg()[0]}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.rounds, args.epochs = 1, 1
    now_sets = {k: v for k, v in CPU_PROFILE.items() if k in ("data_path", "channels_last", "amp", "cpu_threads",
                                                                "num_workers", "P", "K")}
    now_sets["adam"] = "auto"  # the default: fused on a CPU
    same_batch = {**now_sets, "P": BEFORE["P"], "K": BEFORE["K"]}  # the path alone: the old profile's batch
    sides = {"before": BEFORE, "now": now_sets, **({"now_same_batch": same_batch} if same_batch != now_sets else {})}
    print(f"before: {BEFORE}, one run at a time\nnow:    {now_sets}, {args.jobs} runs at once", flush=True)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="cpu_train_speed_") as tmp:
        for r in range(args.rounds):
            for name, sets in sides.items():
                figures = side(name, sets, args, Path(tmp))
                rounds.append({"round": r, **figures})
                print(f"round {r} {name:>6}: train {figures['train_images_per_s']:7.1f} images/s "
                      f"(last epochs {figures['per_run_last_epoch']}), "
                      f"whole batch {figures['batch_images_per_s']:6.1f} images/s, {figures['wall_s']:.0f} s, "
                      f"load {figures['load']:.1f}", flush=True)
    median = {name: {k: statistics.median(r[k] for r in rounds if r["side"] == name)
                     for k in ("train_images_per_s", "batch_images_per_s")}
              for name in sides}
    speedup = median["now"]["train_images_per_s"] / median["before"]["train_images_per_s"]
    same_batch_speedup = median[("now_same_batch" if "now_same_batch" in sides else "now")]["train_images_per_s"] / \
        median["before"]["train_images_per_s"]
    batch_speedup = median["now"]["batch_images_per_s"] / median["before"]["batch_images_per_s"]
    command = "python benchmarks/cpu_train_speed.py " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None
                                                                        else argv))
    record = {"command": command.strip(), "speedup": round(speedup, 2), "batch_speedup": round(batch_speedup, 2),
              "same_batch_speedup": round(same_batch_speedup, 2),
              "median": median, "rounds": rounds, "before": BEFORE, "now": now_sets, "row": args.row,
              "epochs": args.epochs, "runs": args.runs, "jobs": args.jobs,
              "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability()}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "cpu_train_speed" + ("_quick" if args.quick else "")
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# CPU profile training speed: before issue 17 and now", "",
             f"`{record['command']}`; {os.cpu_count()} cores, torch {torch.__version__} "
             f"({record['machine']['capability']}); row {args.row}, {args.runs} runs per side, {args.epochs} "
             f"epoch(s) each, the last one timed", "",
             "| round | side | runs at once | train images/s | per run, last epoch | whole batch images/s | wall s "
             "| load |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['round']} | {r['side']} | {r['jobs']} | {r['train_images_per_s']} | "
              f"{' / '.join(map(str, r['per_run_last_epoch']))} | {r['batch_images_per_s']} | {r['wall_s']} | "
              f"{r['load']:.1f} |" for r in rounds]
    same = (f"; the new path with the old profile's batch ({BEFORE['P']} x {BEFORE['K']}, now_same_batch): "
            f"{same_batch_speedup:.2f}x" if "now_same_batch" in sides else
            f" (the profile trains the old profile's batch, {BEFORE['P']} x {BEFORE['K']})")
    lines += ["", f"**Speedup (medians, train images/s): {speedup:.2f}x**; whole batch (start-up and evaluation "
                  f"included): {batch_speedup:.2f}x{same}", "",
              f"before: {BEFORE}, rows one at a time; now: {now_sets}, {args.jobs} rows at once"]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-4:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
