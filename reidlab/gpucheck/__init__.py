"""`python -m reidlab gpucheck`: the one command to run whenever a GPU is at hand (at most 6 minutes).

The parts, in order of importance, one module each (its rows and its Markdown section together):
  data     the data the others need: Market-1501 or random JPEGs, MobileNetV2's weights, the decoded training set;
  check    the CUDA-graph step against the eager step, beside two eager runs (the floor of the GPU's atomics);
  train    ms per step and images/s of each training pipeline and the variants inside the graph;
  eval     evaluation from device memory and k-reciprocal re-ranking;
  fit      `fit` itself for 3 epochs: with the graph, stopped and resumed, and eager;
  profile  the eager step's kernels under torch.profiler, and their GPU time per step.

Each part runs under its own cap (its CAP_S; it is stopped there), and only when that fits what is left of
--budget; one that fails is recorded and the next runs. The record, results/benchmarks/gpucheck_<device>.json
and .md (record.py), is rewritten after every row, so a timeout still leaves what was measured. Runs from a
source tree (PYTHONPATH=.) with the machine's own PyTorch, no papermill, no network. `--quick` is a CPU-sized
smoke run (a tiny model and images, a step or two, random JPEGs) that tests/test_gpucheck.py runs.
"""
from __future__ import annotations

import contextlib
import os
import platform
import signal
import threading
import time
import traceback
from pathlib import Path

import torch

from reidlab.gpucheck import check, data, evaluation, fit, profile, train
from reidlab.gpucheck.bench import Bench
from reidlab.gpucheck.record import Record, slug
from reidlab.paths import resolve
from reidlab.train import load_average

PARTS = (data, check, train, evaluation, fit, profile)  # data first: every other part needs it
CHOICES = tuple(part.NAME for part in PARTS[1:])  # what --parts chooses from (data always runs)


class PartTimeout(BaseException):
    """Raised inside a part at its cap. Not an Exception, so a part's own `except Exception` (one pipeline or
    run failing leaves the others to run) lets it through to the runner."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise PartTimeout in this (main) thread after `seconds`."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise PartTimeout(f"stopped at its budget of {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_parts(parts, bench, record: Record) -> None:
    """Each part under min(its cap, what is left), in order, its status and seconds recorded. A part that fails
    or times out is recorded and the next one runs; when the first (data) does not succeed, nothing else can."""
    for i, part in enumerate(parts):
        if i and bench.left() < min(part.CAP_S, 20):  # caps, not estimates: a loaded machine runs --quick slowly
            record.part(part.NAME, status="skipped", error=f"{bench.left():.0f} s left of the total budget")
            continue
        limit = min(part.CAP_S, max(bench.left(), 1))
        started = time.perf_counter()
        record.part(part.NAME, status="running", budget_s=round(limit), loadavg=load_average())
        print(f"[gpucheck] {part.NAME} (budget {limit:.0f} s, {bench.left():.0f} s left)", flush=True)
        try:
            with time_limit(limit):
                part.measure(bench, record)
            status, error = "ok", None
        except PartTimeout as e:
            status, error = "timeout", str(e)
        except Exception as e:
            status, error = "failed", f"{type(e).__name__}: {e}"
            traceback.print_exc()
            record.part(part.NAME, traceback=traceback.format_exc()[-3000:])
        record.part(part.NAME, status=status, error=error, seconds=round(time.perf_counter() - started, 1))
        with contextlib.suppress(Exception):
            bench.release()
        if i == 0 and status != "ok":
            break


def describe(bench: Bench, args) -> dict:
    """The record's top level: the machine, the versions, the command."""
    meta = {"device": bench.device_name,
            "command": getattr(args, "command_line", None) or "python -m reidlab gpucheck",
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if bench.cuda else None,
            "python": platform.python_version(), "cpus": os.cpu_count(), "budget_s": args.budget}
    if not bench.cuda:
        meta["note"] = "on a CPU every pipeline runs in fp32, NCHW, and the graph is the step uncaptured"
    return meta


def main(args) -> dict:
    """Run the check with the command line's `args` (reidlab/__main__.py); returns the record, also written."""
    chosen = set(args.parts.split(",")) if args.parts else set(CHOICES)
    unknown = chosen - set(CHOICES) - {data.NAME}
    if unknown:
        raise SystemExit(f"--parts: unknown {', '.join(sorted(unknown))}; choose from {', '.join(CHOICES)}")
    if not torch.cuda.is_available() and not args.quick:
        print("[gpucheck] no CUDA GPU visible: running on the CPU (use --quick for a short smoke run)", flush=True)
    bench = Bench(args)
    base = f"gpucheck_{slug(bench.device_name)}{'_quick' if args.quick else ''}"
    paths = [resolve(args.out) / base] + ([Path(args.also_to) / base] if args.also_to else [])
    record = Record(paths, describe(bench, args), PARTS)
    try:
        run_parts([data] + [part for part in PARTS[1:] if part.NAME in chosen], bench, record)
    finally:
        bench.close()  # fit's run folders, the random JPEGs, the widened weights
    record.data["total_s"] = round(time.perf_counter() - bench.started, 1)
    record.write()
    print(f"[gpucheck] wrote {', '.join(str(p.with_suffix('.md')) for p in paths)} in {record.data['total_s']} s",
          flush=True)
    return record.data
