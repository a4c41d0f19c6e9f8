"""Backbones (last stride, stem ReLU) and the necks of TMM Table III, BNNeck among them.

    image -> backbone -> feature map (B, D, h, w) -> global average pooling -> f_t (B, D)
          -> [BN1d, shift frozen at 0] -> f_i (B, D) -> classifier -> logits (B, num_classes)

Without a BN in the neck (neck1/2/3), f_i is f_t (the paper's f).
"""
from __future__ import annotations

import copy
import numbers
from collections import OrderedDict

import torch
from torch import nn
from torchvision import models

from reidlab.config import BACKBONES, NECKS
from reidlab.ibn import resnet50_ibn_a
from reidlab.pretrained import load_pretrained

FEATURE_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048,
                "resnet50_ibn_a": 2048, "mobilenet_v2": 1280}
TEST_FEATURES = ("f_t", "f_i")


def build_backbone(name: str, last_stride: int = 1, stem_relu: bool = True) -> tuple[nn.Module, int]:
    """A backbone that maps (B, 3, H, W) to a feature map (B, D, H/s, W/s), and its D.

    Its state_dict keys are those of torchvision's network without the head (`conv1.weight`,
    `layer1.0.bn1.weight`, ... for ResNets; `features.0.0.weight`, ... for MobileNetV2), so ImageNet
    checkpoints load by name. stem_relu=False drops the stem's activation (ResNet: the ReLU after bn1, the
    authors' quirk; MobileNetV2: the stem's ReLU6, for symmetry only).
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone={name!r} is not valid; allowed values: {', '.join(map(repr, BACKBONES))}")
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride={last_stride!r} is not valid; allowed values: 1, 2")
    if name == "mobilenet_v2":
        # keep torchvision's `features.*` names; the classifier head is dropped
        backbone = nn.Sequential(OrderedDict(features=models.mobilenet_v2().features))
        stem = backbone.features[0]  # Conv2dNormActivation: conv, bn, ReLU6
        if not stem_relu:
            stem[2] = nn.Identity()
        _set_mobilenet_last_stride(backbone.features, last_stride)
    else:
        net = resnet50_ibn_a() if name == "resnet50_ibn_a" else getattr(models, name)()
        # torchvision's ResNet without avgpool / fc: the neck pools itself
        parts = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        backbone = nn.Sequential(OrderedDict((part, getattr(net, part)) for part in parts))
        if not stem_relu:
            # the authors' quirk: their ResNet has no ReLU between the stem's bn1 and maxpool
            backbone.relu = nn.Identity()
        _set_resnet_last_stride(backbone.layer4[0], last_stride)
    return backbone, FEATURE_DIMS[name]


def _set_resnet_last_stride(block: nn.Module, last_stride: int) -> None:
    """layer4's first block: its strided 3x3 conv (BasicBlock conv1, Bottleneck conv2) and 1x1 downsample.
    Stride 1 doubles the final map's height and width, without dilation (CVPRW Sec. 3.4)."""
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    if len(convs) != 2:
        raise RuntimeError(f"expected a strided conv and a strided downsample in layer4[0], found {len(convs)}")
    for conv in convs:
        conv.stride = (last_stride, last_stride)
    block.stride = last_stride


def _set_mobilenet_last_stride(features: nn.Sequential, last_stride: int) -> None:
    """The last stride-2 inverted residual block (features[14]): its depthwise 3x3 conv."""
    block = [b for b in features if getattr(b, "stride", 1) == 2][-1]
    (conv,) = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    conv.stride = (last_stride, last_stride)
    block.stride = last_stride  # InvertedResidual only reads it at init; kept in sync for readers


class ReidModel(nn.Module):
    """Backbone + global average pooling + neck + classifier.

    Training mode: `forward(x) -> (logits, triplet_feature)`; eval mode: the test feature (B, D).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, neck: str = "bnneck",
                 test_feature: str = "f_i"):
        super().__init__()
        if neck not in NECKS:
            raise ValueError(f"neck={neck!r} is not valid; allowed values: {', '.join(map(repr, NECKS))}")
        if test_feature not in TEST_FEATURES:
            raise ValueError(f"test_feature={test_feature!r} is not valid; allowed values: 'f_t', 'f_i'")
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
            raise ValueError(f"num_classes={num_classes!r} must be a positive int: the number of train identities")
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.num_classes = int(num_classes)
        self.neck = neck
        self.test_feature = test_feature
        if neck.startswith("bnneck"):
            # BNNeck: f_i = gamma * (f_t - mu) / sqrt(var + eps) + beta, with beta frozen at 0 so that f_i
            # stays centred and the ID loss's hyperplanes pass near the origin (TMM, BNNeck)
            self.bottleneck = nn.BatchNorm1d(feature_dim)
            nn.init.ones_(self.bottleneck.weight)
            nn.init.zeros_(self.bottleneck.bias)
            self.bottleneck.bias.requires_grad_(False)
            # logits = W f_i, no bias: the classes are separated by angle alone
            self.classifier = nn.Linear(feature_dim, self.num_classes, bias=False)
            nn.init.normal_(self.classifier.weight, std=0.001)
        else:
            # Baseline-S: the classifier (with bias, PyTorch's default init as in the authors' code) sits on f
            self.bottleneck = None
            self.classifier = nn.Linear(feature_dim, self.num_classes)

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"f_t": pooled feature before the BN, "f_i": after it (f_t itself when the neck has no BN)}."""
        fmap = self.backbone(x)  # (B, D, h, w)
        f_t = fmap.mean(dim=(2, 3))  # (B, D) global average pooling
        f_i = f_t if self.bottleneck is None else self.bottleneck(f_t)  # (B, D)
        return {"f_t": f_t, "f_i": f_i}

    def forward(self, x: torch.Tensor):
        feats = self.extract(x)
        if not self.training:
            return feats[self.test_feature]
        logits = self.classifier(feats["f_i"])  # (B, num_classes)
        # BNNeck: triplet on f_t (before BN), ID on f_i; every other neck trains all its losses on one feature
        triplet_feature = feats["f_t"] if self.neck == "bnneck" else feats["f_i"]
        return logits, triplet_feature

    @torch.no_grad()
    def feature_map_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the backbone's final feature map for an input of (height, width), by a dry run."""
        height, width = _check_image_size(image_size)
        param = next(self.backbone.parameters())
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            fmap = self.backbone(torch.zeros(1, 3, height, width, device=param.device, dtype=param.dtype))
        finally:
            self.backbone.train(was_training)
        return tuple(fmap.shape[2:])


def _check_image_size(image_size) -> tuple[int, int]:
    if len(image_size) != 2 or min(image_size) < 16:
        raise ValueError(f"image_size={image_size!r} must be (height, width), each >= 16")
    return int(image_size[0]), int(image_size[1])


@torch.no_grad()
def count_flops(model: nn.Module, image_size: tuple[int, int]) -> int:
    """Multiply-adds of the Conv2d and Linear layers for one image in eval mode (for a ReidModel: backbone
    and neck, not the classifier, which inference does not run). Norms, activations and pooling are not
    counted; they are a few percent at most."""
    height, width = _check_image_size(image_size)
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            # each output value is a dot product over (C_in / groups) * kh * kw inputs
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, height, width, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return total


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """An inference copy of `model`, in eval mode, with each BatchNorm2d that follows a Conv2d in an nn.Sequential
    folded into it: W' = W * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta. The same
    function up to float rounding, with one pass over the activations fewer per convolution (on a CPU, MobileNetV2's
    test features about a third faster). Only inside Sequentials, where the modules' order is the data's."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None:
                seq._modules[a], seq._modules[b] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return folded


def build_model(cfg, num_classes: int) -> ReidModel:
    """The configured backbone (pretrained as cfg.pretrained says), neck and classifier for `num_classes` ids."""
    backbone, feature_dim = build_backbone(cfg.backbone, cfg.last_stride, cfg.stem_relu)
    source = load_pretrained(backbone, cfg.backbone, cfg.pretrained)
    model = ReidModel(backbone, feature_dim, num_classes, cfg.resolved_neck, cfg.test_feature)
    model.pretrained_source = source  # where the backbone's weights came from (None: from scratch), for logs
    if getattr(cfg, "channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    return model
