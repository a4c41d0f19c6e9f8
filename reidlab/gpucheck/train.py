"""The GPU check's `train` part: ms per step and images/s of each training pipeline at the recipe's shape
(256 x 128, P x K = 16 x 4, full BoT) for MobileNetV2 and ResNet-50: conventional (PIL loader, fp32), GPU data
eager bf16, GPU data + graph, and the variants inside the graph (fused Adam, cudnn.benchmark, fp32, NCHW,
torch.compile of the model). One step: forward, the three losses, backward, Adam, center SGD (train.train_step)."""
from __future__ import annotations

import traceback

import torch

from reidlab.gpucheck.bench import peak_gib

NAME = "train"
CAP_S = 150
CONVENTIONAL = "conventional: PIL loader, fp32"
RESIDENT_BF16 = dict(data_path="resident", amp="bf16", channels_last=True)
# (name, config changes, how the step is built); the variants inside the graph after the three pipelines
PIPELINES = [
    (CONVENTIONAL, dict(data_path="loader", amp="none"), dict(graph=False)),
    ("GPU data, eager, bf16, channels_last", RESIDENT_BF16, dict(graph=False)),
    ("GPU data + graph, bf16, channels_last", RESIDENT_BF16, dict(graph=True)),
    ("graph + fused Adam", RESIDENT_BF16, dict(graph=True, adam="fused")),
    ("graph + cudnn.benchmark", RESIDENT_BF16, dict(graph=True, cudnn_benchmark=True)),
    ("graph + fused Adam + cudnn.benchmark", RESIDENT_BF16, dict(graph=True, adam="fused", cudnn_benchmark=True)),
    ("graph, fp32, channels_last", dict(data_path="resident", amp="none", channels_last=True), dict(graph=True)),
    ("graph, bf16, NCHW", dict(data_path="resident", amp="bf16", channels_last=False), dict(graph=True)),
    ("graph + torch.compile(model) + fused Adam + cudnn.benchmark", RESIDENT_BF16,
     dict(graph=True, compile_model=True, adam="fused", cudnn_benchmark=True)),
]
FIRST_BACKBONE_ONLY = ("graph, fp32, channels_last", "graph, bf16, NCHW")  # the depthwise convolutions' question


def planned(bench) -> list[tuple[str, str, dict, dict]]:
    """(backbone, pipeline, config changes, build options) in the order they run: the compile variants last
    (30-40 s each to compile) and only on a GPU (a CPU compiles for minutes)."""
    out = []
    for compiled in (False, True):
        for backbone in bench.backbones:
            for name, changes, build in PIPELINES:
                if build.get("compile_model", False) != compiled or (compiled and not bench.cuda):
                    continue
                if backbone != bench.backbones[0] and name in FIRST_BACKBONE_ONLY:
                    continue
                out.append((backbone, name, changes, build))
    return out


def time_pipeline(bench, backbone: str, name: str, changes: dict, build: dict) -> dict:
    cfg = bench.cfg(backbone, **changes)
    build = dict(build)
    # cuDNN times its algorithms once per shape (in the warm-up) and keeps the fastest
    torch.backends.cudnn.benchmark = build.pop("cudnn_benchmark", False)
    try:
        state = bench.build(cfg, **build)
        batches = bench.batches(cfg) if cfg.data_path == "resident" else bench.loader_batches(cfg)
        steps = bench.steps if name != CONVENTIONAL else max(bench.steps // 2, 2)
        row = bench.time_steps(batches, state["step"], steps, bench.warmup)
        return dict(backbone=backbone, pipeline=name, peak_gib=peak_gib(bench.device), **row)
    finally:
        torch.backends.cudnn.benchmark = False


def measure(bench, record) -> None:
    runs = []
    record.part(NAME, runs=runs)
    for backbone, name, changes, build in planned(bench):
        if bench.left() < (45 if build.get("compile_model") else 8) * (0 if bench.quick else 1):
            runs.append(dict(backbone=backbone, pipeline=name, error="skipped: out of time"))
            continue
        try:
            row = time_pipeline(bench, backbone, name, changes, build)
        except Exception as e:  # one pipeline failing leaves the others to run
            row = dict(backbone=backbone, pipeline=name, error=f"{type(e).__name__}: {e}"[:300])
            traceback.print_exc()
        conventional = [r for r in runs if r["backbone"] == backbone and r["pipeline"] == CONVENTIONAL
                        and "error" not in r]
        if conventional and "error" not in row:
            row["speedup"] = row["images_per_s"] / conventional[0]["images_per_s"]
        runs.append(row)
        record.part(NAME, runs=runs)
        print(f"  {backbone:13s} {name:40s} " + (f"{row['images_per_s']:8.0f} images/s" if "error" not in row
                                                 else row["error"]), flush=True)
        bench.release()


def render(fields: dict) -> list[str]:
    if not fields.get("runs"):
        return []
    lines = ["", "## Training pipelines (one step: forward, 3 losses, backward, Adam, center SGD)", "",
             "| backbone | pipeline | ms / step | images / s | x conventional | setup s | peak GiB |",
             "|---|---|---|---|---|---|---|"]
    for r in fields["runs"]:
        if "error" in r:
            lines.append(f"| {r['backbone']} | {r['pipeline']} | failed: {r['error']} | | | | |")
        else:
            lines.append(f"| {r['backbone']} | {r['pipeline']} | {r['ms_per_step']:.2f} | {r['images_per_s']:,.0f} | "
                         f"{r.get('speedup', float('nan')):.2f} | {r['setup_s']:.1f} | {r['peak_gib']:.2f} |")
    return lines
