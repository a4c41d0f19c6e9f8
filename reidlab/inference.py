"""Use a trained run: load it, embed new images with the evaluation preprocessing (`reidlab rank`: reidlab.ranking)."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from reidlab.runs import CHECKPOINT, RunFolder
from reidlab.config import Config
from reidlab.images import folder_images
from reidlab.pretrained import describe_problems, state_dict_problems
from reidlab.train import pick_device

# the Config fields that shape the network: a checkpoint fits only a model built with the same values
MODEL_FIELDS = ("backbone", "last_stride", "stem_relu", "neck", "bnneck")


class CheckpointMismatch(ValueError):
    pass


def load_state_checked(model: torch.nn.Module, state_dict: dict, source: str) -> None:
    problems = state_dict_problems(model.state_dict(), state_dict, optional=())
    if any(problems):
        raise CheckpointMismatch(
            f"{source} does not match the model built from its config: {describe_problems(*problems)}. "
            f"Load it with the config it was trained with (its run folder's config.json).")
    model.load_state_dict(state_dict)


def load_run(run_dir: str | Path, device: str = "auto") -> tuple[torch.nn.Module, Config]:
    """The trained model of a run folder (config.json + checkpoint.pt), in eval mode.

    An unreadable checkpoint.pt falls back to checkpoint.prev.pt (and says so), as resuming does.
    """
    from reidlab.model import build_model

    folder = RunFolder(run_dir)
    if not folder.has_config() or not folder.has_checkpoint():
        raise FileNotFoundError(f"{folder.path} is not a finished run folder: it needs config.json and {CHECKPOINT} "
                                f"(written by reidlab.train.fit)")
    cfg = folder.config()
    dev = pick_device(device)
    state, ckpt_path = folder.load_checkpoint(map_location=dev)
    # the weights come from the checkpoint: do not look for ImageNet weights again
    model = build_model(cfg.replace(pretrained=None), state["num_classes"]).to(dev)
    try:
        load_state_checked(model, state["model"], str(ckpt_path))
    except CheckpointMismatch as e:
        trained = state.get("config") or {}
        differ = [f"{k}={trained[k]!r} (config.json: {v!r})" for k, v in cfg.to_dict().items()
                  if k in trained and trained[k] != v and k in MODEL_FIELDS]
        if differ:
            raise CheckpointMismatch(f"{e} The checkpoint was trained with {', '.join(differ)}") from None
        raise
    return model.eval(), cfg


@torch.no_grad()
def embed(model: torch.nn.Module, cfg: Config, images, batch_size: int = 64) -> torch.Tensor:
    """Features (N, D) of a folder, a list of paths, or one PIL image, preprocessed as at evaluation.

    Flip and normalisation follow `cfg` (flip_test, normalize_features), as `evaluate_model` does.
    """
    from reidlab.loaders import read_image
    from reidlab.transforms import build_test_transform

    if isinstance(images, Image.Image):
        pil = [images.convert("RGB")]
    else:
        paths = folder_images(images) if isinstance(images, (str, Path)) else [Path(p) for p in images]
        pil = [read_image(p) for p in paths]
    transform = build_test_transform(cfg)
    device = next(model.parameters()).device
    model.eval()
    feats = []
    for i in range(0, len(pil), batch_size):
        x = torch.stack([transform(im) for im in pil[i:i + batch_size]]).to(device)  # (B, 3, H, W)
        feats.append(embed_batch(model, cfg, x).float().cpu())
    return torch.cat(feats)  # (N, D)


def embed_batch(model: torch.nn.Module, cfg: Config, x: torch.Tensor) -> torch.Tensor:
    """The test-time feature (B, D) of a preprocessed batch (B, 3, H, W), as `cfg` defines it: the model's
    test feature (f_i or f_t, set when it was built), plus its flipped image's with flip_test, L2-normalised
    with normalize_features. `embed` and the ONNX export (reidlab.export) both compute exactly this."""
    f = model(x)  # (B, D), the model in eval mode
    if cfg.flip_test:
        f = f + model(x.flip(3))
    return torch.nn.functional.normalize(f, dim=1) if cfg.normalize_features else f
