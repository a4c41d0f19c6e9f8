"""Optimiser and learning-rate schedule: warmup then step decay, as a pure function of the epoch."""
import bisect

import torch

from reidlab.config import Config


def lr_at(epoch: int, cfg: Config) -> float:
    """Learning rate of the `epoch`-th epoch (1-based), exactly as the authors' scheduler sets it.

    Their scheduler steps once per epoch before the epoch runs, so epoch k uses last_epoch = k.
    """
    factor = 1.0
    if cfg.warmup and epoch < cfg.warmup_epochs:
        # linear warmup: factor = w * (1 - k / E_w) + k / E_w  (w = 0.01, E_w = 10: 3.815e-5 at k = 1)
        alpha = epoch / cfg.warmup_epochs
        factor = cfg.warmup_factor * (1 - alpha) + alpha
    # x gamma at each milestone reached: x0.1 from epoch 40, x0.01 from epoch 70
    return cfg.base_lr * factor * cfg.gamma ** bisect.bisect_right(cfg.milestones, epoch)


def build_optimizer(params, cfg: Config, **options) -> torch.optim.Adam:
    """Adam with coupled L2 (weight_decay inside the gradient, not AdamW) on every trainable parameter, run the way
    cfg.adam says (adam_implementation). `options` go to torch.optim.Adam and win (foreach=, fused=: the
    implementations the GPU check compares)."""
    trainable = [p for p in params if p.requires_grad]
    options = {**adam_implementation(cfg.adam, trainable), **options}
    return torch.optim.Adam(trainable, lr=lr_at(1, cfg), weight_decay=cfg.weight_decay, **options)


def adam_implementation(adam: str, params: list[torch.Tensor]) -> dict:
    """torch.optim.Adam's options for Config.adam: "auto" fuses on a CPU, else leaves PyTorch's default."""
    on_cpu = bool(params) and all(p.device.type == "cpu" for p in params)
    if adam == "auto":
        adam = "fused" if on_cpu else "default"
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False},
            "default": {}}[adam]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)  # on the device, in place: a captured CUDA graph reads this very tensor
        else:
            group["lr"] = lr
