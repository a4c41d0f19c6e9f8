"""The training step as one CUDA graph: forward, the losses, backward and both optimiser steps, replayed.

An eager step launches a few hundred small kernels from Python: about 20 ms on an H200 for MobileNetV2
and ResNet-50 alike, bound by the launches, not by the GPU. Captured once with `torch.cuda.graph`, a step
is one replay (9.4 ms and 14.2 ms measured). What capture needs, and where it is done:
- static inputs: every batch is copied into the tensors the graph was captured on (`GraphedStep.__call__`);
- nothing that syncs with the host or allocates state inside the step: Adam with `capturable=True` keeps
  its step counters on the device, and its learning rate is a device tensor that `schedule.set_lr` fills in
  place, so the lr changes per epoch without recapturing (`set_capturable`);
- autocast with `cache_enabled=False` (`train.autocast`);
- a few warm-up steps on a side stream before capture (cuBLAS / cuDNN handles, the optimiser's state);
  every state tensor is then put back as it was, so warm-up leaves no trace: parameters, BN statistics,
  centers and the optimisers' state evolve exactly as in the eager loop.

The step itself is the eager loop's own function (`train.train_step`), passed in as a callable: this module
knows nothing of models or losses. With `capture=False` (a CPU, the tests) `GraphedStep` does all of the
above but capture, and runs the step on the static tensors directly.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

WARMUP_STEPS = 3  # PyTorch's docs warm up 3 iterations (11 under DDP) before capturing
CHECK_EVERY = 50  # steps between checks that the captured tensors are still the model's


def graph_unavailable(cfg, device: torch.device, world: int = 1) -> str | None:
    """Why a CUDA graph cannot train `cfg` here (a short reason), or None when it can."""
    if device.type != "cuda":
        return f"device is {device.type}, not CUDA"
    if cfg.amp == "fp16":
        return "amp='fp16' needs the GradScaler's host-side skip of inf steps; use amp='bf16'"
    if world > 1:
        return "DDP (torchrun) steps are not captured"
    if cfg.compile:
        return "compile=true inside the graph is measured by gpucheck only"
    return None


def set_capturable(optimizers: Sequence[torch.optim.Optimizer | None], on: bool,
                   device: torch.device | None = None) -> None:
    """Switch Adam(-like) optimisers to `capturable` (step counters and lr as device tensors) or back.

    Loading a checkpoint replaces an optimiser's param_groups with the saved ones, so this is applied after
    loading: a run trained with the graph resumes eagerly (on a CPU too), and the other way round.
    """
    for opt in optimizers:
        if opt is None:
            continue
        for group in opt.param_groups:
            if "capturable" not in group:
                continue  # plain SGD: nothing on the host to move
            group["capturable"] = on
            lr = group["lr"]
            if on and not isinstance(lr, torch.Tensor):
                group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=device)
            elif on:
                group["lr"] = lr.to(device=device, dtype=torch.float32)
            elif isinstance(lr, torch.Tensor):
                group["lr"] = lr.item()
            for p in group["params"]:
                state = opt.state.get(p, {})
                if isinstance(state.get("step"), torch.Tensor):
                    # capturable: the counter beside its parameter; eager (not fused): a CPU scalar, as Adam keeps it
                    target = p.device if on or group.get("fused") else torch.device("cpu")
                    state["step"] = state["step"].to(target, dtype=torch.float32)


def state_tensors(modules: Sequence[nn.Module | None]) -> list[torch.Tensor]:
    """Every parameter and buffer of `modules`: what a step changes besides the optimisers' state."""
    out = []
    for m in modules:
        if m is not None:
            out += list(m.parameters()) + list(m.buffers())
    return out


class GraphedStep:
    """`step(images, pids) -> (loss, terms)` captured once as a CUDA graph, then replayed for every batch.

    `modules` and `optimizers` are everything the step changes; they are put back after warm-up. The
    outputs (loss and loss terms) are the graph's static tensors, overwritten by the next replay: read them
    (or queue work on them) before the next call. A batch of another shape runs `step` eagerly.
    """

    def __init__(self, step: Callable, modules: Sequence[nn.Module | None],
                 optimizers: Sequence[torch.optim.Optimizer | None], capture: bool = True,
                 warmup_steps: int = WARMUP_STEPS):
        self.step = step
        self.modules = [m for m in modules if m is not None]
        self.optimizers = [o for o in optimizers if o is not None]
        self.capture = capture
        self.warmup_steps = warmup_steps
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.outputs = None
        self.calls = 0
        self.eager_calls = 0  # batches of another shape, run eagerly

    def __call__(self, images: torch.Tensor, pids: torch.Tensor):
        if self.static is None:
            return self._setup(images, pids)
        static_images, static_pids = self.static
        if images.shape != static_images.shape or pids.shape != static_pids.shape:
            self.eager_calls += 1
            return self.step(images, pids)
        self.calls += 1
        if self.capture and self.calls % CHECK_EVERY == 0:
            self._check_tensors()
        static_images.copy_(images)
        static_pids.copy_(pids)
        if not self.capture:
            return self.step(static_images, static_pids)
        self.graph.replay()
        return self.outputs

    def _setup(self, images: torch.Tensor, pids: torch.Tensor):
        """Warm up on the first batch, restore the state, capture, and run the first step."""
        self.static = (images.clone(), pids.clone())  # clone keeps channels_last
        self._warm_up()
        self.calls = 1
        if not self.capture:
            return self.step(*self.static)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: a DataLoader's pin-memory thread may call CUDA while we capture
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.outputs = self.step(*self.static)
        self._pointers = self._data_pointers()
        self.graph.replay()  # capturing records the step; this runs it
        return self.outputs

    def _warm_up(self) -> None:
        tensors = state_tensors(self.modules)
        saved = [t.detach().clone() for t in tensors]
        had_state = [{id(p) for p in opt.state} for opt in self.optimizers]
        saved_opt = [{id(p): {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                      for p, s in opt.state.items()} for opt in self.optimizers]
        side = torch.cuda.Stream() if self.capture else None
        if side is not None:
            side.wait_stream(torch.cuda.current_stream())
        device = self.static[0].device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), (torch.cuda.stream(side) if side else contextlib.nullcontext()):
            for _ in range(self.warmup_steps):
                self.step(*self.static)
        if side is not None:
            torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for t, s in zip(tensors, saved):
                t.copy_(s)
            for opt, had, before in zip(self.optimizers, had_state, saved_opt):
                for p, state in opt.state.items():
                    for k, v in state.items():
                        if not isinstance(v, torch.Tensor):
                            continue
                        if id(p) in had:
                            v.copy_(before[id(p)][k])
                        else:
                            v.zero_()  # state made by warm-up: a fresh Adam state is all zeros
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def _data_pointers(self) -> list[int]:
        ptrs = [t.data_ptr() for t in state_tensors(self.modules)]
        for opt in self.optimizers:
            for group in opt.param_groups:
                if isinstance(group["lr"], torch.Tensor):
                    ptrs.append(group["lr"].data_ptr())
            for state in opt.state.values():
                ptrs += [v.data_ptr() for v in state.values() if isinstance(v, torch.Tensor)]
        return ptrs

    def _check_tensors(self) -> None:
        if self._data_pointers() != self._pointers:
            raise RuntimeError("a parameter, buffer, optimiser state or lr tensor was replaced since the training "
                               "step was captured (module.to(), load_state_dict, or set_lr assigning a float?); "
                               "the graph would keep updating the old tensors. Change them in place (copy_, fill_), "
                               "or build a new GraphedStep")


def graph_step(cfg, step: Callable, device: torch.device, world: int, modules: Sequence[nn.Module | None],
               optimizers: Sequence[torch.optim.Optimizer | None], log: Callable[[str], None] = print) -> Callable:
    """The training step `fit` runs: `step` itself, or a GraphedStep when `cfg.cuda_graph` and the device allow.

    Call it after a checkpoint is loaded: it sets the optimisers to capturable (lr on the device) or back.
    Where a graph was asked for but cannot serve, says why in one line and returns the eager step.
    """
    reason = graph_unavailable(cfg, device, world) if cfg.cuda_graph else "off"
    if reason is not None:
        set_capturable(optimizers, False)
        if cfg.cuda_graph:
            log(f"cuda_graph: training eagerly ({reason})")
        return step
    set_capturable(optimizers, True, device)
    return GraphedStep(step, modules, optimizers)
