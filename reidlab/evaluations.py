"""Evaluations beyond the training loop's own, for the batch runner and the experiment notebook: the untrained
reference row, a trained run on another dataset (CVPRW Table 3), and a run's test features (for TMM's R)."""
from __future__ import annotations

from pathlib import Path

from reidlab.config import Config
from reidlab.paths import resolve
from reidlab.records import keep_train_identities
from reidlab.runs import RunFolder


def evaluate_untrained(cfg: Config, out_dir: str | Path) -> dict:
    """The reference row: the network of `cfg` with random weights (never ImageNet's), evaluated as built.

    Writes a run folder like fit's (config.json, an empty history.jsonl, metrics.json with epochs 0)."""
    from reidlab.datasets import load_dataset
    from reidlab.model import build_model
    from reidlab.train import describe_device, evaluate_split, pick_device, seed_epoch

    folder = RunFolder(out_dir)
    cfg = cfg.replace(pretrained=None)
    folder.save_config(cfg)
    device = pick_device(cfg.device)
    dataset = keep_train_identities(load_dataset(cfg.dataset, resolve(cfg.data_root) / cfg.dataset,
                                                 verbose=cfg.progress), cfg.train_ids)
    seed_epoch(cfg.seed, 0)  # the same initial weights fit would start from
    model = build_model(cfg, dataset.num_train_pids).to(device).eval()
    metrics = evaluate_split(model, cfg, dataset, device)
    metrics.update(epochs=0, device=describe_device(device), train_seconds=0.0,
                   num_train_pids=dataset.num_train_pids, **dataset.split_keys())
    folder.write_empty_history()
    folder.write_metrics(metrics)
    return metrics


def extract_test_features(run_dir: str | Path, dataset_name: str | None = None):
    """(features (N, D), pids (N,)) of a trained run on query + gallery (its own dataset by default), as the
    run scores them (test feature, normalised when cfg.normalize_features)."""
    import torch.nn.functional as F

    from reidlab.datasets import load_dataset
    from reidlab.evaluate import extract_features
    from reidlab.inference import load_run
    from reidlab.loaders import build_test_loader

    model, cfg = load_run(run_dir, device="auto")
    device = next(model.parameters()).device
    name = dataset_name or cfg.dataset
    dataset = load_dataset(name, resolve(cfg.data_root) / name, verbose=False)
    if cfg.data_path == "resident":  # from device memory (reidlab.gpu_eval), in fp32 as below
        from reidlab.gpu_eval import extract_device_features
        feats, pids, _, _ = extract_device_features(model, cfg.replace(amp="none", progress=False), dataset, device)
    else:
        loader = build_test_loader(list(dataset.query) + list(dataset.gallery), cfg)
        feats, pids, _ = extract_features(model, loader, device, flip=cfg.flip_test, progress=False)
    if cfg.normalize_features or cfg.distance == "cosine":
        feats = F.normalize(feats, dim=1)
    return feats, pids


def evaluate_cross_domain(run_dir: str | Path, test_dataset: str) -> dict:
    """Evaluate a trained run on another dataset's query / gallery (CVPRW Table 3) and rewrite its metrics.json:
    rank1 / mAP / mINP become the target domain's, the source domain's move under "source"."""
    from reidlab.datasets import load_dataset
    from reidlab.inference import load_run
    from reidlab.train import evaluate_split

    folder = RunFolder(run_dir)
    metrics = folder.metrics()
    if metrics.get("test_dataset") == test_dataset:
        return metrics
    model, cfg = load_run(folder.path, device="auto")
    device = next(model.parameters()).device
    target = load_dataset(test_dataset, resolve(cfg.data_root) / test_dataset, verbose=cfg.progress)
    cross = {**evaluate_split(model, cfg, target, device), "test_set": target.split_keys()["test_set"]}
    source = {k: metrics.pop(k) for k in list(metrics) if k in cross}
    metrics = {**cross, "test_dataset": test_dataset, "train_dataset": cfg.dataset, "source": source, **metrics}
    folder.write_metrics(metrics)
    return metrics
