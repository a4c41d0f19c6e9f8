"""The GPU check's `eval` part: Market-1501's evaluation from device memory (reidlab.gpu_eval: query and gallery
decoded once, cold, then the whole evaluation warm), the ranking alone, and k-reciprocal re-ranking cold and warm."""
from __future__ import annotations

import time

import torch

from reidlab.gpucheck.bench import sync

NAME = "eval"
CAP_S = 45


def time_ranking(bench, feats: torch.Tensor, pids, camids, q: int) -> list[dict]:
    """Distances + CMC / mAP / mINP, then re-ranking twice (the first call pays for its warm-up)."""
    from reidlab.evaluate import compute_distance, evaluate_ranking
    from reidlab.rerank import re_rank
    feats = torch.nn.functional.normalize(feats.to(bench.device).float(), dim=1)
    qf, gf = feats[:q], feats[q:]
    started = time.perf_counter()
    evaluate_ranking(compute_distance(qf, gf), pids[:q], pids[q:], camids[:q], camids[q:])
    sync(bench.device)
    rows = [dict(what="distances + CMC / mAP / mINP", seconds=time.perf_counter() - started,
                 notes=f"{q} x {len(feats) - q}")]
    for label in ("cold", "warm"):
        started = time.perf_counter()
        re_rank(qf, gf, k1=20, k2=6, lambda_=0.3)
        sync(bench.device)
        rows.append(dict(what=f"k-reciprocal re-ranking (20 / 6 / 0.3), {label}",
                         seconds=time.perf_counter() - started, notes=str(bench.device)))
    return rows


def measure(bench, record) -> None:
    from reidlab.gpu_eval import evaluate_on_device, extract_device_features
    from reidlab.model import build_model
    runs = []
    record.part(NAME, runs=runs)
    for backbone in bench.backbones:
        cfg = bench.cfg(backbone, amp="bf16", channels_last=True, data_path="resident")
        model = build_model(cfg, bench.dataset.num_train_pids).to(bench.device).eval()
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        started = time.perf_counter()
        feats, pids, camids, q = extract_device_features(model, cfg, bench.dataset, bench.device)
        runs.append(dict(what=f"{backbone}: decode query + gallery once, features (cold)",
                         seconds=time.perf_counter() - started, notes=f"{len(feats)} images"))
        sync(bench.device)
        started = time.perf_counter()
        metrics, _ = evaluate_on_device(model, cfg, bench.dataset, bench.device)
        sync(bench.device)
        runs.append(dict(what=f"{backbone}: evaluation from device memory (features + distances + CMC / mAP / "
                              f"mINP)", seconds=time.perf_counter() - started,
                         notes=f"rank-1 {metrics['rank1']:.1f}, mAP {metrics['mAP']:.1f} (untrained neck)"))
        record.part(NAME, runs=runs)
        if backbone == bench.backbones[0]:
            runs += time_ranking(bench, feats, pids, camids, q)
            record.part(NAME, runs=runs)
        del model, feats
        bench.release()


def render(fields: dict) -> list[str]:
    if not fields.get("runs"):
        return []
    return (["", "## Evaluation", "", "| what | seconds | notes |", "|---|---|---|"]
            + [f"| {r['what']} | {r['seconds']:.3f} | {r.get('notes', '')} |" for r in fields["runs"]])
