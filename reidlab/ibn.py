"""ResNet-50-IBN-a (Pan et al., "Two at Once: Enhancing Learning and Generalization Capacities via IBN-Net",
ECCV 2018): instance normalisation on half the channels of the first norm of every bottleneck in layer1-3.

The module names follow the published checkpoint `resnet50_ibn_a-d9d0bb7b.pth` (IBN-Net v1.0 release), so it
loads without renaming: the network is torchvision's ResNet-50 layout (stride on the 3x3 conv2) in which
`layerL.B.bn1` (L = 1..3) becomes an `IBN` holding `bn1.IN` (InstanceNorm2d, affine, the first planes // 2
channels, no running statistics) and `bn1.BN` (BatchNorm2d, the other channels); layer4 is plain.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet50


class IBN(nn.Module):
    """Instance norm on the first `planes // 2` channels, batch norm on the rest, concatenated back."""

    def __init__(self, planes: int, ratio: float = 0.5):
        super().__init__()
        self.half = int(planes * ratio)
        # IN removes per-image style (contrast, colour cast); BN keeps the content statistics
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)  # (B, half, H, W), (B, C - half, H, W)
        return torch.cat((self.IN(a.contiguous()), self.BN(b.contiguous())), dim=1)


def resnet50_ibn_a(num_classes: int = 1000) -> nn.Module:
    """A torchvision ResNet-50 whose layer1-3 bottlenecks normalise with `IBN` in bn1; keys match the release."""
    net = resnet50(num_classes=num_classes)
    for layer in (net.layer1, net.layer2, net.layer3):
        for block in layer:
            block.bn1 = IBN(block.bn1.num_features)
    return net
