"""CMC / mAP / mINP at Market-1501 size: `evaluate_ranking` against the authors' kind of loop, in one run.

    .venv/bin/python benchmarks/eval_speed.py            # 3,368 queries x 15,913 gallery, 2048-d
    .venv/bin/python benchmarks/eval_speed.py --quick    # a tiny size, seconds

Identities and cameras come from Market-1501's file names (listed from ../shared's archive with `tar -tJf`,
no image is read) or, without the archive, are drawn with the same counts. Features are synthetic with
identity structure (see `make_features`). Writes results/benchmarks/eval_speed.json and .md.
This module also holds the helpers that benchmarks/rerank_speed.py uses.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a plain checkout too, without `pip install -e .`

from reidlab.evaluate import compute_distance, evaluate_ranking  # noqa: E402
from reidlab.publish import cpu_name  # noqa: E402

MARKET_ARCHIVE = REPO_ROOT.parent / "shared" / "datasets" / "market1501" / "market1501.tar.xz"
MARKET_COUNTS = dict(num_q=3368, num_g=15913, num_ids=750, num_distractors=2798, num_cams=6)
RESULTS = REPO_ROOT / "results" / "benchmarks"


# --- helpers shared with rerank_speed.py ----------------------------------------------------------------

def load_reference(test_file: str, name: str):
    """A plain reference implementation from the tests (tests/ is not a package): one copy, tested and timed."""
    spec = importlib.util.spec_from_file_location(Path(test_file).stem, REPO_ROOT / "tests" / test_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def market_ids(seed: int = 0):
    """(q_pids, q_camids, g_pids, g_camids, source): Market-1501's test split from its file names when the
    shared archive is present, else drawn with the same counts (0-based cameras, pid 0 = distractor)."""
    if MARKET_ARCHIVE.exists():
        names = subprocess.run(["tar", "-tJf", str(MARKET_ARCHIVE)], check=True, capture_output=True,
                               text=True).stdout.split()
        split = {}
        for folder in ("query", "bounding_box_test"):
            found = sorted(re.findall(rf"/{folder}/(-?\d+)_c(\d)", "\n".join(names)))
            ids = np.array([(int(p), int(c) - 1) for p, c in found if int(p) >= 0])  # junk (-1) dropped
            split[folder] = ids[:, 0], ids[:, 1]
        return (*split["query"], *split["bounding_box_test"], f"Market-1501 file names ({MARKET_ARCHIVE.name})")
    c = MARKET_COUNTS
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, c["num_ids"] + 1, c["num_q"])
    q_camids = rng.integers(0, c["num_cams"], c["num_q"])
    num_id_images = c["num_g"] - c["num_distractors"]
    g_pids = np.concatenate([np.zeros(c["num_distractors"], np.int64),
                             rng.integers(1, c["num_ids"] + 1, num_id_images)])
    g_camids = rng.integers(0, c["num_cams"], c["num_g"])
    return q_pids, q_camids, g_pids, g_camids, "generated with Market-1501's counts (archive not found)"


def make_features(pids, camids, dim=2048, latent=64, noise=0.75, seed=0):
    """L2-normalised features (N, dim) float32 with identity structure.

    A 64-d latent = identity centre + camera shift + noise whose scale varies per image (some shots are
    hard), mapped to `dim` by a random linear map plus a little isotropic noise. Distractors (pid 0) get a
    centre each, so they match nobody. The noise level gives a mAP near a real model's, not a trivial one.
    """
    rng = np.random.default_rng(seed)
    pids = np.asarray(pids)
    centres = rng.standard_normal((pids.max() + 1, latent))
    centre = np.where((pids == 0)[:, None], rng.standard_normal((len(pids), latent)), centres[pids])
    cams = 0.3 * rng.standard_normal((np.max(camids) + 1, latent))
    scale = noise * rng.lognormal(0.0, 0.35, (len(pids), 1))
    z = centre + cams[camids] + scale * rng.standard_normal((len(pids), latent))  # (N, latent)
    mixing = rng.standard_normal((latent, dim)) / np.sqrt(latent)
    x = torch.from_numpy((z @ mixing).astype(np.float32))  # (N, dim)
    x += 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(x, dim=1)


def machine_info() -> dict:
    return {"cpu": cpu_name(default=platform.processor() or "unknown"), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "platform": platform.platform()}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def write_report(name: str, record: dict, table: list[tuple[str, str]], notes: list[str]) -> None:
    """results/benchmarks/<name>.json (everything) and .md (a readable table), and print the table."""
    record["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    m = record["machine"]
    lines = [f"# {name}", "", f"Command: `{record['command']}`", "",
             f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), {m['memory_gib']} GiB; "
             f"Python {m['python']}, torch {m['torch']}, numpy {m['numpy']}. Load average at start "
             f"{m['load_average_at_start']}, at end {m['load_average_at_end']} (a machine shared with other jobs: "
             f"times are wall clock under that load; both sides of a comparison ran in the same process, one "
             f"after the other).", "", "| what | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in table]
    lines += [""] + [f"- {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


# --- this benchmark -------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny size (seconds), for a smoke run")
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension (default 2048, ResNet-50's)")
    parser.add_argument("--out", default="eval_speed", help="name of the results/benchmarks/ files")
    args = parser.parse_args(argv)
    evaluate_reference = load_reference("test_evaluate.py", "evaluate_reference")
    info = machine_info()

    q_pids, q_camids, g_pids, g_camids, source = market_ids()
    if args.quick:
        q_pids, q_camids, g_pids, g_camids = q_pids[:200], q_camids[:200], g_pids[::16], g_camids[::16]
        source += ", subsampled for --quick"
    feats = make_features(np.concatenate([q_pids, g_pids]), np.concatenate([q_camids, g_camids]), dim=args.dim)
    qf, gf = feats[:len(q_pids)], feats[len(q_pids):]
    print(f"{len(q_pids)} queries x {len(g_pids)} gallery, {args.dim}-d; ids from {source}")

    distmat, t_dist, _ = timed(compute_distance, qf, gf)
    fast, t_fast, cpu_fast = timed(evaluate_ranking, distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50)
    print(f"evaluate_ranking: {t_fast:.2f} s; now the reference loop ...")
    (cmc, ap, inp, _), t_ref, cpu_ref = timed(evaluate_reference, distmat.numpy(), q_pids, g_pids, q_camids,
                                              g_camids, 50)
    valid = ~np.isnan(ap)
    diff = {"cmc": float(np.abs(fast.cmc - cmc).max()), "mAP": abs(fast.mAP - float(ap[valid].mean())),
            "mINP": abs(fast.mINP - float(inp[valid].mean())),
            "ap": float(np.abs(fast.ap[valid] - ap[valid]).max()),
            "valid_mismatches": int((fast.valid != valid).sum())}
    same = max(diff["cmc"], diff["mAP"], diff["mINP"], diff["ap"]) <= 1e-6 and diff["valid_mismatches"] == 0
    speedup = t_ref / t_fast
    record = {
        "benchmark": "eval_speed", "command": "python benchmarks/eval_speed.py " + " ".join(sys.argv[1:] if argv is None
                                                                                          else argv),
        "machine": info, "data": {"num_query": len(q_pids), "num_gallery": len(g_pids), "dim": args.dim,
                                  "ids_from": source, "valid_queries": int(valid.sum())},
        "seconds": {"compute_distance": round(t_dist, 3), "evaluate_ranking": round(t_fast, 3),
                    "reference_loop": round(t_ref, 3), "evaluate_ranking_cpu": round(cpu_fast, 3),
                    "reference_loop_cpu": round(cpu_ref, 3)},
        "speedup": round(speedup, 1), "speedup_cpu": round(cpu_ref / cpu_fast, 1), "goal_speedup": 30,
        "same_numbers": same, "max_abs_difference": diff,
        "metrics": fast.metrics(),
    }
    m = fast.metrics()
    table = [("queries x gallery, dim", f"{len(q_pids)} x {len(g_pids)}, {args.dim}"),
             ("ids from", source),
             ("compute_distance (squared Euclidean)", f"{t_dist:.2f} s"),
             ("evaluate_ranking (torch, chunked): wall / CPU", f"{t_fast:.2f} s / {cpu_fast:.2f} s"),
             ("reference per-query loop (numpy, authors' kind): wall / CPU", f"{t_ref:.1f} s / {cpu_ref:.1f} s"),
             ("speedup, wall (goal >= 30x)", f"{speedup:.1f}x"),
             ("speedup, CPU time", f"{cpu_ref / cpu_fast:.1f}x"),
             ("same numbers (cmc, AP, mAP, mINP within 1e-6)", f"{same} (max diff {max(diff['cmc'], diff['ap']):.1e})"),
             ("rank-1 / rank-5 / mAP / mINP (%)",
              f"{m['rank1']:.2f} / {m['rank5']:.2f} / {m['mAP']:.2f} / {m['mINP']:.2f}")]
    notes = ["The reference: `evaluate_reference` in tests/test_evaluate.py (np.argsort of the whole matrix, "
             "then a per-query loop building the precision list element by element, as the authors' eval_func "
             "does); tests/test_evaluate.py checks the fast path against it on small cases with ties.",
             "Features are synthetic (no model, no image read): the metric values only show the two agree."]
    write_report(args.out, record, table, notes)
    return record


if __name__ == "__main__":
    main()
