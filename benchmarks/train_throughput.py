"""Training throughput of the BoT recipe: the authors' pipeline against the GPU-resident fast path.

Same run, same machine, same model and step (ResNet-50, 256x128, P x K = 16 x 4, every trick unless --set
changes one; the step is reidlab.train.train_step, the one fit trains with):
  (a) conventional: PIL decode + augmentation in DataLoader workers (reidlab.loaders), fp32;
  (b) fast: the training set decoded once and kept on the device (reidlab.gpu_data), batched augmentation,
      bf16 autocast, channels_last; (c) the same with torch.compile (--compile).
Then one evaluation (features, distances, CMC / mAP) and k-reciprocal re-ranking, timed.

Data: Market-1501 when --market is given or (without --quick) found in data/, .device/ or ../shared (the same
search as `reidlab gpucheck`: reidlab.gpucheck.data); otherwise random photo-like JPEGs in Market's layout, about
its size (751 ids x 17 = 12,767 train images, 750 test ids; 128x64) in a temporary folder.

    python benchmarks/train_throughput.py --quick              # CPU: resnet18, 64x32, P x K = 8 x 4, 3 steps
    python benchmarks/train_throughput.py --compile            # GPU, the full recipe
    python benchmarks/train_throughput.py --set label_smoothing=false center_loss=false   # another row

Writes results/benchmarks/train_throughput_<device>[_quick].json and .md.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from reidlab.config import Config, parse_sets
from reidlab.datasets import ReidDataset, load_dataset
from reidlab.gpucheck.data import find_market, unpack_market, write_random_market
from reidlab.paths import DATA_ROOT, RESULTS_ROOT
from reidlab.train import TrainState, train_step

AUTHORS = {  # bot_paper.md section 10
    "train": "about 80 s per epoch on one GTX 1080 Ti (141 images/s on two); Baseline-S 30.9 s, 379 images/s "
             "on one RTX 2080 Ti",
    "evaluation": "about 141-161 s per evaluation on Market (feature extraction + numpy ranking)",
    "rerank": "about 89 s on the CPU (published); a GPU method reports 9.4 ms",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny CPU-sized run: resnet18, 64x32, few steps")
    p.add_argument("--market", type=str, default=None,
                   help="Market-1501 folder or archive (default: data/market1501 or ../shared's archive if present, "
                        "else synthetic)")
    p.add_argument("--synthetic", action="store_true", help="use synthetic data even when Market-1501 is present")
    p.add_argument("--device", default="auto")
    p.add_argument("--backbone", default=None, help="default resnet50 (resnet18 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps per pipeline")
    p.add_argument("--warmup-steps", type=int, default=None, help="untimed steps first (worker start, cudnn, compile)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="DataLoader workers for (a)")
    p.add_argument("--amp", default="auto", choices=("auto", "none", "bf16", "fp16"),
                   help="autocast of the fast path (auto: bf16 on a GPU; none on a CPU, where bf16 is slower)")
    p.add_argument("--compile", action="store_true", help="also time the fast path under torch.compile")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation and re-ranking timings")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="change config fields of every pipeline (default: the full BoT row), e.g. "
                        "--set label_smoothing=false center_loss=false (amp and channels_last: the pipelines')")
    p.add_argument("--out", default=str(RESULTS_ROOT / "benchmarks"))
    return p.parse_args(argv)


# --- data ---------------------------------------------------------------------------------------------

def load_market(path: Path) -> ReidDataset:
    """Market-1501 from a folder, or from its archive (unpacked once under data/: reidlab.gpucheck.data)."""
    return load_dataset("market1501", unpack_market(path, DATA_ROOT / "market1501"), verbose=False)


def random_market(root: Path, quick: bool) -> ReidDataset:
    """Random photo-like JPEGs in Market's layout (reidlab.gpucheck.data.write_random_market), 128x64: about
    Market's size (751 train ids x 17 = 12,767 images, 750 test ids) or, with --quick, 32 ids x 8."""
    ids, per_id, test_ids = (32, 8, 32) if quick else (751, 17, 750)
    return load_dataset("market1501", write_random_market(root, ids, per_id, test_ids, (128, 64)), verbose=False)


# --- timing -------------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def endless(batches):
    """Batches across epochs (a tiny dataset has fewer batches than the steps timed)."""
    epoch = 1
    while True:
        batches.sampler.set_epoch(epoch)
        yield from batches
        epoch += 1


def time_training(batches, cfg: Config, num_classes: int, device: torch.device, compile_model: bool, steps: int,
                  warmup_steps: int) -> tuple[dict, torch.nn.Module]:
    """Images/s of fit's training step (reidlab.train.train_step: forward, cfg's losses, backward, Adam and the
    centers' SGD) with cfg's amp and channels_last.

    No `.item()` per step: the only syncs are before and after the timed steps."""
    torch.manual_seed(0)
    state = TrainState.build(cfg, num_classes, device)  # as fit builds it: channels_last when cfg says so
    model = state.model.train()
    state.model_fn = torch.compile(model) if compile_model else model
    train_one = functools.partial(train_step, cfg, state)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step(images, pids):
        loss, _ = train_one(images.to(device, non_blocking=True), pids.to(device, non_blocking=True))
        return loss.detach()

    it = endless(batches)
    started = time.perf_counter()
    for _ in range(warmup_steps):
        images, pids, _ = next(it)
        loss = step(images, pids)
    sync(device)
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    n_images = 0
    for _ in range(steps):
        images, pids, _ = next(it)
        loss = step(images, pids)
        n_images += images.shape[0]
    sync(device)
    seconds = time.perf_counter() - started
    out = {"steps": steps, "warmup_steps": warmup_steps, "warmup_s": round(warm_s, 2), "timed_s": round(seconds, 3),
           "images_per_s": round(n_images / seconds, 1), "final_loss": round(float(loss), 4)}
    if device.type == "cuda":
        out["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out, model


def time_evaluation(model, dataset: ReidDataset, cfg: Config, device: torch.device, amp: str, rerank: bool) -> dict:
    """Features (query + gallery, through the test DataLoader), distances, CMC / mAP; then re-ranking."""
    from reidlab.evaluate import compute_distance, evaluate_ranking, extract_features
    from reidlab.loaders import build_test_loader

    out = {}
    sync(device)
    t0 = time.perf_counter()
    qf, q_pids, q_camids = extract_features(model, build_test_loader(dataset.query, cfg), device, amp=amp,
                                            progress=False)
    gf, g_pids, g_camids = extract_features(model, build_test_loader(dataset.gallery, cfg), device, amp=amp,
                                            progress=False)
    qf, gf = qf.to(device), gf.to(device)
    sync(device)
    t1 = time.perf_counter()
    distmat = compute_distance(qf, gf, metric=cfg.distance, normalize=cfg.normalize_features)
    result = evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids)
    sync(device)
    t2 = time.perf_counter()
    out.update(features_s=round(t1 - t0, 2), ranking_s=round(t2 - t1, 3), total_s=round(t2 - t0, 2),
               rank1=round(result.metrics()["rank1"], 2), mAP=round(result.metrics()["mAP"], 2),
               images=len(dataset.query) + len(dataset.gallery))
    if rerank:
        try:
            from reidlab.rerank import re_rank
        except ImportError as e:
            out["rerank"] = f"skipped: {e}"
            return out
        qn, gn = torch.nn.functional.normalize(qf, dim=1), torch.nn.functional.normalize(gf, dim=1)
        sync(device)
        t3 = time.perf_counter()
        re_rank(qn, gn, k1=cfg.rerank_k1, k2=cfg.rerank_k2, lambda_=cfg.rerank_lambda)
        sync(device)
        out["rerank_s"] = round(time.perf_counter() - t3, 3)
    return out


# --- report -------------------------------------------------------------------------------------------

def describe(device: torch.device) -> tuple[str, str]:
    """(human name, file-name slug) of the device."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
               f"{torch.get_num_threads()} threads)"
    slug = "cpu" if device.type == "cpu" else re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return name, slug


def write_markdown(res: dict, path: Path) -> None:
    lines = [f"# Training throughput: {res['device']}", "",
             f"`{res['command']}`", "",
             f"torch {res['versions']['torch']}, torchvision {res['versions']['torchvision']}, "
             f"CUDA {res['versions']['cuda']}, python {res['versions']['python']}; {res['data']['source']} "
             f"({res['data']['train']} train images, {res['data']['train_ids']} ids); {res['recipe']}", "",
             "| pipeline | images/s | s / epoch | speed-up | warm-up s | peak GPU GB |",
             "|---|---:|---:|---:|---:|---:|"]
    base = res["train"]["conventional"]["images_per_s"]
    for name, row in res["train"].items():
        lines.append(f"| {name} | {row['images_per_s']:.1f} | {row['seconds_per_epoch']:.1f} | "
                     f"{row['images_per_s'] / base:.2f}x | {row['warmup_s']} | {row.get('peak_gpu_memory_gb', '')} |")
    dec = res.get("decode")
    if dec:
        lines += ["", f"Fast path setup: decoding {dec['images']} images took {dec['first_s']} s "
                      f"({dec['images_per_s']} images/s, {dec['megabytes']} MB uint8); "
                      f"from the cache: {dec['cached_s']} s."]
    if res.get("evaluation"):
        lines += ["", "| evaluation | features s | ranking s | total s | re-ranking s | rank-1 | mAP |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, e in res["evaluation"].items():
            lines.append(f"| {name} | {e['features_s']} | {e['ranking_s']} | {e['total_s']} | "
                         f"{e.get('rerank_s', e.get('rerank', ''))} | {e['rank1']} | {e['mAP']} |")
    lines += ["", "The authors (bot_paper.md section 10): " + "; ".join(f"{k}: {v}" for k, v in AUTHORS.items()) + ".",
              "", "Epoch time = batches per epoch x P x K / images/s; steps are timed without a per-step `.item()`."]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> dict:
    args = parse_args(argv)
    from reidlab.train import pick_device
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the authors
    quick = args.quick
    backbone = args.backbone or ("resnet18" if quick else "resnet50")
    size = (64, 32) if quick else (256, 128)
    P, K = (8, 4) if quick else (16, 4)
    steps = args.steps or (3 if quick else 100)
    warmup_steps = args.warmup_steps if args.warmup_steps is not None else (1 if quick else 20)
    amp = args.amp if args.amp != "auto" else ("bf16" if device.type == "cuda" else "none")
    try:  # every trick on (the full BoT row) unless --set turns one off
        cfg = Config(backbone=backbone, pretrained=None, image_size=size, P=P, K=K, num_workers=args.workers,
                     progress=False).replace(**parse_sets(args.set))
    except ValueError as e:
        raise SystemExit(str(e)) from None
    cfg = cfg.replace(amp="none", channels_last=False)  # the conventional pipeline's; the fast one's from --amp
    device_name, slug = describe(device)
    res = {"device": device_name, "command": shlex.join([Path(sys.executable).name, *sys.argv]),
           "quick": quick, "recipe": f"{backbone}, {size[0]}x{size[1]}, P x K = {P} x {K}, "
                                     f"{'the BoT row with ' + ' '.join(args.set) if args.set else 'all tricks'}, "
                                     f"{steps} timed steps after {warmup_steps} warm-up steps",
           "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                        "python": platform.python_version(), "cpu_count": os.cpu_count()}}

    with tempfile.TemporaryDirectory(prefix="reidlab_bench_") as tmp:
        tmp = Path(tmp)
        market = None if args.synthetic or (quick and not args.market) else find_market(args.market)
        t0 = time.perf_counter()
        if market is not None:
            dataset, source = load_market(market), f"Market-1501 ({market})"
        else:
            dataset = random_market(tmp / "data", quick)
            source = "random JPEGs, 128x64" + ("" if quick else " (about Market-1501's size)")
        num_classes = len({r.pid for r in dataset.train})
        res["data"] = {"source": source, "train": len(dataset.train), "train_ids": num_classes,
                       "query": len(dataset.query), "gallery": len(dataset.gallery),
                       "prepare_s": round(time.perf_counter() - t0, 1)}
        print(f"{device_name}: {source}, {len(dataset.train)} train images", flush=True)

        from reidlab.gpu_data import GpuTrainBatches, decode_images
        from reidlab.loaders import build_train_loader
        from reidlab.sampler import RandomIdentitySampler

        per_epoch = RandomIdentitySampler([r.pid for r in dataset.train], cfg.P, cfg.K, cfg.seed).num_batches
        res["data"]["batches_per_epoch"] = per_epoch
        train = res["train"] = {}

        def record(name, row):
            row["seconds_per_epoch"] = round(per_epoch * cfg.batch_size / row["images_per_s"], 2)
            train[name] = row
            print(f"{name}: {row['images_per_s']} images/s, {row['seconds_per_epoch']} s/epoch", flush=True)

        loader = build_train_loader(dataset.train, cfg, seed=cfg.seed)
        row, model = time_training(loader, cfg, num_classes, device, False, steps, warmup_steps)
        record("conventional", {**row, "amp": "none", "workers": args.workers})
        del loader

        # the fast path: a cold decode (a fresh cache folder), then the cached load a second run gets
        t0 = time.perf_counter()
        images = decode_images(dataset.train, cfg.image_size, cache_dir=tmp / "cache", progress=False)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        images = decode_images(dataset.train, cfg.image_size, cache_dir=tmp / "cache", progress=False)
        res["decode"] = {"images": len(images), "first_s": round(first, 2), "images_per_s": round(len(images) / first),
                         "cached_s": round(time.perf_counter() - t0, 2), "megabytes": round(images.numel() / 1e6)}
        fast_cfg = cfg.replace(channels_last=True, amp=amp)
        variants = [("fast", False)] + ([("fast + compile", True)] if args.compile else [])
        for name, compiled in variants:
            batches = GpuTrainBatches(dataset.train, fast_cfg, device, seed=cfg.seed, images=images)
            row, fast_model = time_training(batches, fast_cfg, num_classes, device, compiled, steps, warmup_steps)
            record(name, {**row, "amp": amp, "channels_last": True, "compile": compiled})
            del batches

        if not args.no_eval:
            res["evaluation"] = {
                "fp32 (conventional)": time_evaluation(model, dataset, cfg, device, "none", rerank=True),
                f"{amp if amp != 'none' else 'fp32'} + channels_last": time_evaluation(
                    fast_model, dataset, fast_cfg, device, amp, rerank=False),
            }

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"train_throughput_{slug}{'_quick' if quick else ''}"
    (out_dir / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(res, out_dir / f"{stem}.md")
    print(f"wrote {out_dir / stem}.json and .md", flush=True)
    return res


if __name__ == "__main__":
    main()
