"""CPU evaluation before and after folding the batch norms (reidlab.model.fold_batch_norms), side by side.

The CPU profile's model (ImageNet MobileNetV2 at its image size, BNNeck) scores the built-in synthetic test set
(query + gallery, from the resident data path) on one thread, as each run of the demo does: "before" with the
batch norms as trained and batches of 512, "now" as reidlab evaluates on a CPU (folded, batches of
gpu_eval.CPU_BATCH_SIZE). The sides alternate over rounds; the speedup is the ratio of the medians. Also the
largest feature difference and both sides' metrics.

    python benchmarks/cpu_eval_speed.py [--rounds 3]

Writes results/benchmarks/cpu_eval_speed.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from reidlab.paths import RESULTS_ROOT
from reidlab.publish import machine


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--out", default=str(RESULTS_ROOT / "benchmarks"))
    args = p.parse_args(argv)

    import reidlab.model
    from reidlab import gpu_eval
    from reidlab.datasets import load_dataset
    from reidlab.evaluate import score_features
    from reidlab.model import build_model
    from reidlab.pretrained import ensure_pretrained
    from reidlab.profiles import build_config
    from reidlab.train import seed_epoch

    torch.set_num_threads(1)  # as each of the demo's two runs at a time
    cfg = build_config("bot", "cpu", {"progress": False}, dataset=args.dataset)
    ensure_pretrained(cfg)
    dataset = load_dataset(cfg.dataset, verbose=False)
    seed_epoch(0, 0)
    model = build_model(cfg, dataset.num_train_pids).eval()
    fold = reidlab.model.fold_batch_norms
    sides = {"before": (lambda m: m, 512), "now": (fold, gpu_eval.CPU_BATCH_SIZE)}
    gpu_eval.load_test_set(dataset, cfg.image_size, "cpu")  # decoded once, outside the timings

    seconds, features = {name: [] for name in sides}, {}
    for r in range(args.rounds):
        for name, (folding, batch) in sides.items():
            reidlab.model.fold_batch_norms = folding  # extract_features imports it at each call
            started = time.perf_counter()
            feats, pids, camids, q = gpu_eval.extract_device_features(model, cfg, dataset, "cpu", batch_size=batch)
            seconds[name].append(time.perf_counter() - started)
            features[name] = feats
            print(f"round {r} {name:>6}: {seconds[name][-1]:.1f} s", flush=True)
    reidlab.model.fold_batch_norms = fold

    metrics = {}
    for name, feats in features.items():
        m, _ = score_features(feats[:q], pids[:q], camids[:q], feats[q:], pids[q:], camids[q:], cfg)
        metrics[name] = {k: round(m[k], 4) for k in ("rank1", "mAP", "mINP")}
    median = {name: statistics.median(v) for name, v in seconds.items()}
    record = {
        "command": shlex.join(["python", "benchmarks/cpu_eval_speed.py",
                               *(argv if argv is not None else sys.argv[1:])]),
        "images": len(pids), "image_size": list(cfg.image_size), "backbone": cfg.backbone, "threads": 1,
        "seconds": {k: [round(x, 2) for x in v] for k, v in seconds.items()},
        "median_s": {k: round(v, 2) for k, v in median.items()},
        "speedup": round(median["before"] / median["now"], 2),
        "max_abs_feature_difference": float((features["before"] - features["now"]).abs().max()),
        "max_abs_feature": float(features["before"].abs().max()),
        "metrics": metrics,
        "machine": machine(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu_eval_speed.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# CPU evaluation: batch norms folded (now) against as trained (before)", "",
        f"`{record['command']}`; {record['images']} query + gallery images of {args.dataset} at "
        f"{cfg.image_size[0]}x{cfg.image_size[1]}, {cfg.backbone} (ImageNet weights), one thread; {record['machine']}",
        "", "| side | batch | seconds per round | median s | rank-1 | mAP | mINP |", "|---|---|---|---|---|---|---|"]
    for name, (_, batch) in sides.items():
        lines.append(f"| {name} | {batch} | {' / '.join(f'{x:.1f}' for x in seconds[name])} | {median[name]:.1f} | "
                     f"{metrics[name]['rank1']} | {metrics[name]['mAP']} | {metrics[name]['mINP']} |")
    lines += ["", f"**Speedup (medians): {record['speedup']}x**; largest feature difference "
              f"{record['max_abs_feature_difference']:.2e} (largest feature {record['max_abs_feature']:.2f})"]
    (out / "cpu_eval_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
