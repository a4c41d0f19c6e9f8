"""What every part of the GPU check shares: the device, the recipe's config (tiny with --quick), the data the
`data` part loads, and the training state and timed steps the other parts build from them, as `fit` builds them."""
from __future__ import annotations

import functools
import gc
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from reidlab.config import BOT, Config
from reidlab.datasets import ReidDataset
from reidlab.graph_step import GraphedStep, set_capturable
from reidlab.train import TrainState, seed_epoch, train_step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    """Memory back between runs, and the peak reset: each run's peak is its own."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0


class Bench:
    """The device, the base config and the data of one check; `left()` is what remains of its total budget."""

    def __init__(self, args):
        self.quick, self.market_arg, self.budget_s = args.quick, args.market, args.budget
        self.started = time.perf_counter()
        self.device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
        self.cuda = self.device.type == "cuda"
        self.device_name = torch.cuda.get_device_name(self.device) if self.cuda else "cpu"
        self.scratch = Path(tempfile.mkdtemp(prefix="gpucheck_"))  # random JPEGs, fit's runs, widened weights
        if self.quick:
            if not self.cuda:
                torch.set_num_threads(1)  # tiny tensors: one thread beats two fighting over a loaded machine
            self.base = BOT.replace(image_size=(32, 16), P=2, K=2, pretrained=None, progress=False, num_workers=0,
                                    padding=2)
            self.backbones = ("mobilenet_v2",)  # the fastest step on a CPU (2.2M parameters for Adam)
            self.steps, self.warmup, self.check_steps, self.graph_warmup = 1, 1, 2, 1
        else:  # the recipe's shape
            self.base = BOT.replace(image_size=(256, 128), P=16, K=4, pretrained=None, progress=False,
                                    num_workers=min(12, max(1, (os.cpu_count() or 2) - 2)))
            self.backbones = ("mobilenet_v2", "resnet50")
            self.steps, self.warmup, self.check_steps, self.graph_warmup = args.steps, 15, 50, 3
        # filled in by the `data` part
        self.dataset: ReidDataset | None = None
        self.train_images: torch.Tensor | None = None
        self.weights: Path | None = None

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def release(self) -> None:
        free(self.device)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def cfg(self, backbone: str, **changes) -> Config:
        pretrained = str(self.weights) if backbone == "mobilenet_v2" and self.weights else None
        if not self.cuda:  # bf16 on a CPU without bf16 units is 100x slower: a CPU run is fp32 and NCHW throughout
            changes.update(amp="none", channels_last=False)
        return self.base.replace(backbone=backbone, pretrained=pretrained, **changes)

    def build(self, cfg: Config, graph: bool, adam: str = "foreach", compile_model: bool = False) -> dict:
        """Model, centers, optimisers and the step, as fit builds them (seeded: the same initial weights)."""
        seed_epoch(cfg.seed, 0)
        options = {"fused": True} if adam == "fused" else {"foreach": True} if self.cuda else {}
        state = TrainState.build(cfg.replace(center_loss=True), self.dataset.num_train_pids, self.device, **options)
        model, center, optimizer, center_opt = state.model, state.center, state.optimizer, state.center_optimizer
        state.model_fn = torch.compile(model) if compile_model else model
        step = functools.partial(train_step, cfg, state)
        if graph:
            if self.cuda:
                set_capturable([optimizer], True, self.device)
            step = GraphedStep(step, [model, center], [optimizer, center_opt], capture=self.cuda,
                               warmup_steps=self.graph_warmup)
        return dict(model=model, center=center, optimizer=optimizer, center_opt=center_opt, step=step)

    def batches(self, cfg: Config):
        """Endless batches (images, pids) of cfg from the resident training set, epoch after epoch."""
        from reidlab.gpu_data import GpuTrainBatches
        data = GpuTrainBatches(self.dataset.train, cfg, self.device, images=self.train_images)
        epoch = 1
        while True:
            data.set_epoch(epoch)
            for images, pids, _ in data:
                yield images, pids
            epoch += 1

    def loader_batches(self, cfg: Config):
        """Endless batches (images, pids) through the conventional DataLoader (PIL decode in workers)."""
        from reidlab.loaders import build_train_loader
        loader = build_train_loader(self.dataset.train, cfg, seed=cfg.seed)
        epoch = 1
        while True:
            loader.sampler.set_epoch(epoch)
            for images, pids, _ in loader:
                yield images, pids
            epoch += 1

    def time_steps(self, batches, step, steps: int, warmup: int) -> dict:
        """`warmup` untimed steps, then `steps` timed ones with fit's bookkeeping on the device (a non-finite
        flag, the loss sums) and no sync but at the end."""
        first_bad, sums = None, {}
        started = time.perf_counter()
        for i in range(warmup + steps):
            if i == warmup:
                sync(self.device)
                setup_s = time.perf_counter() - started
                started = time.perf_counter()
            images, pids = next(batches)
            images, pids = images.to(self.device, non_blocking=True), pids.to(self.device, non_blocking=True)
            loss, terms = step(images, pids)
            bad = ~torch.isfinite(loss)
            first_bad = bad if first_bad is None else first_bad | bad
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach()
        sync(self.device)
        seconds = time.perf_counter() - started
        if bool(first_bad):
            raise FloatingPointError("a loss was not finite")
        batch = images.shape[0]
        return dict(ms_per_step=1000 * seconds / steps, images_per_s=steps * batch / seconds, setup_s=setup_s,
                    steps=steps, loss_last=float(loss.detach()))
