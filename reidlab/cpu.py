"""What pays on the CPU at hand: the precision that trains a backbone fastest here.

As issue 17 reported them (torch 2.14, a Sapphire Rapids core, one thread, P x K = 16 x 4, training step
images/s; not rerun by a script here: `benchmarks/cpu_train_speed.py` measures the profile's own path):

| model, input | fp32 | fp32 + channels_last | bf16 autocast | bf16 + channels_last |
|---|---|---|---|---|
| MobileNetV2 64x32 | 206 | 280 | 136 | 172 |
| MobileNetV2 128x64 | 50 | 72 | 64 | 73 |
| ResNet-18 128x64 | 39 | 38 | 80 | 97 |
| ResNet-50 128x64 | 14 | 17 | 24 | 29 |

channels_last pays everywhere; bf16 pays for the ResNets, only on a CPU with bf16 units (AVX512-BF16 or AMX),
and costs MobileNetV2 (its depthwise convolutions have no fast bf16 kernels). Without those units bf16 is emulated
and slow, so fp32 it is.
"""
from __future__ import annotations

import torch

BF16_BACKBONES = ("resnet",)  # name prefixes of the backbones that train faster in bf16 on bf16 units


def has_bf16_units() -> bool:
    """True on a CPU with native bf16 arithmetic (AVX512-BF16 or AMX tiles), as PyTorch sees it."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def fastest_amp(backbone: str) -> str:
    """"bf16" where it trains `backbone` faster on this CPU, else "none" (fp32)."""
    return "bf16" if backbone.startswith(BF16_BACKBONES) and has_bf16_units() else "none"
