"""CPU images/s of the exported ONNX model in onnxruntime against the same model in PyTorch, side by side.

    .venv/bin/python benchmarks/onnx_speed.py            # the CPU profile's and the full recipe's model
    .venv/bin/python benchmarks/onnx_speed.py --quick    # the CPU profile's model only, a few repeats
    .venv/bin/python benchmarks/onnx_speed.py --threads 2 --out onnx_speed_2threads

For each model: export with reidlab.export (the default dynamo exporter; timed), the export's own check
(cosine per row against PyTorch on a batch, fp32), then the same batch of preprocessed images through
PyTorch (eval, no_grad, fp32) and onnxruntime (CPUExecutionProvider), alternating, both with the same number
of threads (1 by default). Weights are random (the speed does not depend on them).
Writes results/benchmarks/onnx_speed.{json,md} (or --out NAME).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout too

from eval_speed import machine_info, write_report  # noqa: E402

from reidlab.config import CPU_PROFILE, PRESETS  # noqa: E402
from reidlab.export import INPUT, OUTPUT, ExportedFeature, export_model  # noqa: E402
from reidlab.model import build_model  # noqa: E402

MODELS = {  # name -> the config whose test-time feature is exported (BoT: f_i after the BNNeck, normalised)
    "cpu_profile": PRESETS["bot"].replace(**{**CPU_PROFILE, "pretrained": None}),  # MobileNetV2, 64 x 32
    "full_recipe": PRESETS["bot"].replace(pretrained=None),  # ResNet-50, last stride 1, 256 x 128
}


def time_batches(run_torch, run_ort, min_repeats: int, min_seconds: float) -> tuple[list[float], list[float]]:
    """Seconds per batch of each, alternating torch / onnxruntime so that load changes hit both alike."""
    for _ in range(2):  # warm-up: allocations, onnxruntime's first-run graph work
        run_torch(), run_ort()
    torch_s, ort_s = [], []
    while len(torch_s) < min_repeats or sum(torch_s) + sum(ort_s) < min_seconds:
        for fn, times in ((run_torch, torch_s), (run_ort, ort_s)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return torch_s, ort_s


def bench(name: str, batch: int, threads: int, min_repeats: int, min_seconds: float, folder: Path) -> dict:
    import onnxruntime as ort

    cfg = MODELS[name]
    model = build_model(cfg, num_classes=751).eval()
    report = export_model(model, cfg, folder / f"{name}.onnx", run=None, exporter="dynamo")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # no busy-waiting after a run: spinning threads would steal the cores from PyTorch's turn in the alternation
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(report["onnx"], options, providers=["CPUExecutionProvider"])
    module = ExportedFeature(model, cfg).eval()
    x = torch.randn(batch, 3, *cfg.image_size, generator=torch.Generator().manual_seed(0))  # (B, 3, H, W)
    x_np = x.numpy()

    def run_torch():
        with torch.no_grad():
            return module(x)

    def run_ort():
        return session.run([OUTPUT], {INPUT: x_np})[0]

    same = torch.nn.functional.cosine_similarity(torch.from_numpy(run_ort()).double(), run_torch().double(), dim=1)
    torch_s, ort_s = time_batches(run_torch, run_ort, min_repeats, min_seconds)
    t, o = statistics.median(torch_s), statistics.median(ort_s)
    return {"model": name, "backbone": cfg.backbone, "image_size": list(cfg.image_size), "batch": batch,
            "export_seconds": report["export_seconds"], "onnx_mib": round(report["bytes"] / 2**20, 1),
            "check": {k: report[k] for k in ("batch", "min_cosine", "max_abs_difference", "threshold", "passed")},
            "timed_batch_min_cosine": float(same.min()),
            "repeats": len(torch_s), "torch_s_per_batch": round(t, 4), "onnxruntime_s_per_batch": round(o, 4),
            "torch_images_per_s": round(batch / t, 1), "onnxruntime_images_per_s": round(batch / o, 1),
            "speedup": round(t / o, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CPU profile's model only, a few repeats")
    parser.add_argument("--batch", type=int, default=16, help="images per batch, the same for both (default 16)")
    # one thread each by default: on a shared 2-core machine two-thread PyTorch stalls whenever the cores are
    # oversubscribed (measured here: MobileNetV2 29 images/s at 2 threads under load vs 519 at 1)
    parser.add_argument("--threads", type=int, default=1, help="threads for both (default 1; 0: torch's default)")
    parser.add_argument("--out", default="onnx_speed", help="name of the results/benchmarks/ files")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    info = machine_info()
    names = ["cpu_profile"] if args.quick else list(MODELS)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench(n, args.batch, threads, 3 if args.quick else 5, 2 if args.quick else 20, Path(tmp))
                for n in names]
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    command = "python benchmarks/onnx_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    record = {"benchmark": "onnx_speed", "command": command.strip(), "machine": info, "threads": threads,
              "results": rows}
    table = [("threads (torch and onnxruntime alike)", str(threads)), ("onnxruntime", onnxruntime.__version__)]
    for r in rows:
        label = f"{r['model']} ({r['backbone']}, {r['image_size'][0]} x {r['image_size'][1]}, batch {r['batch']})"
        table += [(f"{label}: PyTorch images/s", f"{r['torch_images_per_s']}"),
                  (f"{label}: onnxruntime images/s", f"{r['onnxruntime_images_per_s']}"),
                  (f"{label}: onnxruntime / PyTorch", f"{r['speedup']}x (median of {r['repeats']} batches each)"),
                  (f"{label}: export check, least cosine on a batch of {r['check']['batch']} (>= "
                   f"{r['check']['threshold']})", f"{r['check']['min_cosine']:.9f}, largest difference "
                   f"{r['check']['max_abs_difference']:.2e}"),
                  (f"{label}: export (dynamo) s / file MiB", f"{r['export_seconds']} / {r['onnx_mib']}")]
    notes = ["Both run the same exported feature (`reidlab.export.ExportedFeature`: BoT's f_i after the BNNeck, "
             "L2-normalised) on the same random batch, fp32, alternating batch by batch; times are medians.",
             "Random weights: the speed does not depend on them. Preprocessing (decode, resize) is not timed: it "
             "is the same code for both in `reidlab rank`.",
             "onnxruntime: CPUExecutionProvider with intra_op_num_threads = torch's thread count, default graph "
             "optimisations, thread spinning off (a spinning pool would slow PyTorch's alternate turns)."]
    write_report("onnx_speed" if args.out == "onnx_speed" else args.out, record, table, notes)


if __name__ == "__main__":
    main()
