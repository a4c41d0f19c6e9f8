"""ONNX export of a finished run: its test-time feature as the config defines it, checked with onnxruntime.

    reidlab export RUN --onnx model.onnx

The graph maps preprocessed images (B, 3, H, W) float32 to features (B, D): the model's test feature (f_i or
f_t), plus the flipped image's with flip_test, L2-normalised with normalize_features: `inference.embed_batch`,
traced. The batch axis is dynamic. The preprocessing (resize to H x W, RGB / 255, (x - mean) / std) and the
distance to rank with are written into the file's metadata (`reidlab.*` keys), so another language can use
it without reidlab. The export checks itself on a batch with onnxruntime (cosine >= 0.99999 per row against
PyTorch, fp32) and is written atomically: a file at the target path is always a checked, complete export.

Needs the `export` extra: pip install -e ".[export]" (onnx, onnxruntime, onnxscript).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from reidlab.config import Config
from reidlab.inference import embed_batch, load_run
from reidlab.paths import resolve
from reidlab.runs import CHECKPOINT, RunFolder

INPUT, OUTPUT = "images", "features"
FORMAT = "reidlab-feature-1"
CHECK_COSINE = 0.99999  # the least cosine between onnxruntime's and PyTorch's feature of one image
# "dynamo" (torch.export, torch's default since 2.9 and the maintained path) or "torchscript" (the older tracer:
# no onnxscript needed and about 4x faster to export, but deprecated by PyTorch). Both give the same graph here:
# a plain CNN without data-dependent control flow. tests/test_export.py checks both against PyTorch.
EXPORTERS = ("dynamo", "torchscript")
EXPORT_EXTRA = 'pip install -e ".[export]"  (onnx, onnxruntime, onnxscript)'


class MissingExportPackages(ImportError):
    """onnx / onnxruntime / onnxscript are not installed."""


class RunNotFinishedError(FileNotFoundError):
    """A folder that is not a finished training run."""


class ExportCheckFailed(RuntimeError):
    """onnxruntime's features differ from PyTorch's."""


class ForeignOnnxError(ValueError):
    """An ONNX file that is not a reidlab export, or is the export of another run."""


def input_errors() -> tuple[type[Exception], ...]:
    """The errors a bad input raises (each names the problem and the fix): the command line prints them
    without a traceback."""
    from reidlab.datasets import DatasetError
    from reidlab.inference import CheckpointMismatch

    return (DatasetError, CheckpointMismatch, RunNotFinishedError, ExportCheckFailed, ForeignOnnxError,
            MissingExportPackages, FileNotFoundError, ValueError)


def require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExportPackages(f"{', '.join(missing)} not installed; the ONNX export and ranking with an ONNX "
                                    f"file need the `export` extra: {EXPORT_EXTRA}")


def check_finished_run(run_dir: str | Path) -> Path:
    """The folder holding a finished run's checkpoint (following a notebook's reused_from.txt), else
    RunNotFinishedError naming what is missing and how to finish it."""
    from reidlab.notebook import trained_dir

    given = resolve(run_dir)
    if not given.is_dir():
        raise RunNotFinishedError(f"{given} is not a folder; pass a run folder written by `reidlab train --out RUN` "
                                  f"(or a notebook's runs folder)")
    folder = RunFolder(trained_dir(given))
    run_dir = folder.path
    missing = [name for name, there in ((RunFolder.CONFIG, folder.has_config()), (CHECKPOINT, folder.has_checkpoint()),
                                        (RunFolder.METRICS, folder.finished())) if not there]
    if not missing:
        return run_dir
    if missing == [RunFolder.METRICS]:
        raise RunNotFinishedError(f"{run_dir} is not a finished run: it has a checkpoint but no metrics.json, so "
                                  f"training stopped before the end. Run the same `reidlab train ... --out "
                                  f"{run_dir}` again: it resumes from the checkpoint and finishes")
    raise RunNotFinishedError(f"{run_dir} is not a finished run: it lacks {', '.join(missing)}. A run folder is "
                              f"what `reidlab train --out RUN` (reidlab.train.fit) writes: config.json, "
                              f"{CHECKPOINT}, metrics.json")


class ExportedFeature(nn.Module):
    """The test-time feature of a trained model as one module: what the ONNX graph computes."""

    def __init__(self, model: nn.Module, cfg: Config):
        super().__init__()
        self.model, self.cfg = model.eval(), cfg

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return embed_batch(self.model, self.cfg, images)  # (B, 3, H, W) -> (B, D)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(run_dir: Path) -> str:
    """The sha256 of the checkpoint a run's model is loaded from: the latest, or the previous one when the latest
    cannot be read (the file load_run falls back to, not the unreadable one)."""
    _, path = RunFolder(run_dir).load_checkpoint(map_location="cpu")
    return file_sha256(path)


def build_metadata(cfg: Config, run: dict, dim: int) -> dict[str, str]:
    """The `reidlab.*` metadata: how to preprocess, what the feature is, which run it came from."""
    from reidlab.transforms import MEAN, STD

    height, width = cfg.image_size
    return {
        "reidlab.format": FORMAT,
        "reidlab.preprocessing": json.dumps({
            "image_size": [height, width], "layout": "NCHW float32, RGB",
            "resize": "bilinear to (height, width), aspect ratio not kept (PIL / torchvision Resize)",
            "scale": "pixel / 255", "mean": list(MEAN), "std": list(STD), "normalize": "(x - mean) / std"}),
        "reidlab.feature": json.dumps({
            "test_feature": cfg.test_feature, "flip_test": cfg.flip_test,
            "normalize_features": cfg.normalize_features, "dim": dim, "distance": cfg.distance,
            "distance_meaning": "euclidean: squared Euclidean; cosine: 1 - cos"}),
        "reidlab.run": json.dumps(run),  # {"run_dir", "checkpoint_sha256"}, {} for a model in memory
        "reidlab.config": json.dumps(cfg.to_dict()),
    }


def trace_to_onnx(module: nn.Module, example: torch.Tensor, path: Path, exporter: str = "dynamo",
                  opset: int | None = None) -> None:
    """torch.onnx.export of `module` with a dynamic batch axis, as one self-contained file."""
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter={exporter!r} is not valid; allowed values: {', '.join(map(repr, EXPORTERS))}")
    if exporter == "dynamo":
        require("onnx", "onnxscript")
        torch.onnx.export(module, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT], dynamo=True,
                          dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, opset_version=opset,
                          verbose=False)
        return
    require("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # chosen deliberately: see EXPORTERS
        torch.onnx.export(module, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT], dynamo=False,
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=opset or 17)


def check_batch(cfg: Config, size: int = 8, images=None, seed: int = 0) -> torch.Tensor:
    """The batch the export is checked on (B, 3, H, W): preprocessed `images` (paths) when given, else
    seeded standard-normal images (what normalised pixels look like to the network)."""
    if images:
        from reidlab.loaders import read_image
        from reidlab.transforms import build_test_transform

        transform = build_test_transform(cfg)
        return torch.stack([transform(read_image(p)) for p in list(images)[:size]])
    return torch.randn(size, 3, *cfg.image_size, generator=torch.Generator().manual_seed(seed))


def compare_features(onnx_path: Path, module: nn.Module, batch: torch.Tensor) -> dict:
    """onnxruntime's features of `batch` against the module's: the least cosine per row and the largest
    difference. Raises ExportCheckFailed when a row's cosine is below CHECK_COSINE."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run([OUTPUT], {INPUT: batch.numpy()})[0]).double()  # (B, D)
    with torch.no_grad():
        want = module(batch).double()  # (B, D)
    if got.shape != want.shape:
        raise ExportCheckFailed(f"onnxruntime gives features of shape {tuple(got.shape)}, PyTorch {tuple(want.shape)}")
    cosine = torch.nn.functional.cosine_similarity(got, want, dim=1, eps=1e-12)  # (B,)
    diff = (got - want).abs()
    row, dim = divmod(int(diff.argmax()), diff.shape[1])
    report = {"batch": int(batch.shape[0]), "min_cosine": float(cosine.min()), "worst_row": int(cosine.argmin()),
              "max_abs_difference": float(diff.max()), "largest_difference_at": [row, dim],
              "max_abs_feature": float(want.abs().max()), "threshold": CHECK_COSINE,
              "passed": bool(cosine.min() >= CHECK_COSINE)}
    if not report["passed"]:
        raise ExportCheckFailed(
            f"onnxruntime's features differ from PyTorch's on a batch of {report['batch']}: row "
            f"{report['worst_row']} has cosine {report['min_cosine']:.7f} (needs >= {CHECK_COSINE}); the largest "
            f"difference is {report['max_abs_difference']:.3g} at row {row}, dim {dim} (PyTorch "
            f"{float(want[row, dim]):.6g}, onnxruntime {float(got[row, dim]):.6g}). The file was not written; try "
            f"the other exporter (exporter='torchscript' / 'dynamo') or another opset")
    return report


def export_onnx(run_dir: str | Path, onnx_path: str | Path, exporter: str = "dynamo", opset: int | None = None,
                check_size: int = 8, images=None) -> dict:
    """Export a finished run's test-time feature to `onnx_path`, check it with onnxruntime, and return the
    check's report (min_cosine, max_abs_difference, ...). The file appears only once it passed the check."""
    run_dir = check_finished_run(run_dir)
    model, cfg = load_run(run_dir, device="cpu")
    run = {"run_dir": str(run_dir), "checkpoint_sha256": checkpoint_sha256(run_dir)}
    report = export_model(model, cfg, onnx_path, run, exporter, opset, check_size, images)
    return {"run_dir": str(run_dir), **report}


def export_model(model: nn.Module, cfg: Config, onnx_path: str | Path, run: dict | None = None,
                 exporter: str = "dynamo", opset: int | None = None, check_size: int = 8, images=None) -> dict:
    """export_onnx for a model in memory (`run`: where it came from, for the metadata; None for none):
    trace, add the metadata, check with onnxruntime, then move the file into place."""
    import time

    import onnx

    require("onnx", "onnxruntime")
    onnx_path = resolve(onnx_path)
    if onnx_path.suffix != ".onnx":
        raise ValueError(f"{onnx_path}: name the export FILE.onnx")
    module = ExportedFeature(model.cpu().float(), cfg).eval()
    example = torch.randn(2, 3, *cfg.image_size, generator=torch.Generator().manual_seed(1))  # traced at B=2
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_name(f".{onnx_path.name}.{os.getpid()}.partial")
    try:
        started = time.perf_counter()
        trace_to_onnx(module, example, tmp, exporter, opset)
        seconds = time.perf_counter() - started
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
        del proto.metadata_props[:]
        for key, value in build_metadata(cfg, run or {}, model.feature_dim).items():
            proto.metadata_props.add(key=key, value=value)
        proto.producer_name = "reidlab"
        proto.doc_string = f"reidlab re-ID features of {(run or {}).get('run_dir', 'a model in memory')}"
        onnx.save(proto, str(tmp))
        # checked at B=check_size (traced at B=2): the batch axis is dynamic
        report = compare_features(tmp, module, check_batch(cfg, check_size, images))
        os.replace(tmp, onnx_path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"onnx": str(onnx_path), "exporter": exporter, "export_seconds": round(seconds, 2),
            "bytes": onnx_path.stat().st_size, **report}


# --- reading an export back ------------------------------------------------------------------------------
def read_metadata(onnx_path: str | Path) -> dict:
    """{"preprocessing", "feature", "run", "config"} of a reidlab export; ForeignOnnxError for any other file."""
    import onnx

    require("onnx")
    path = resolve(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; write it with `reidlab export RUN --onnx {path}`")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises its own DecodeError, onnx others: any failure to parse is the answer
        raise ForeignOnnxError(f"{path} is not an ONNX model ({type(e).__name__}: {e}); export one with "
                               f"`reidlab export RUN --onnx FILE`") from e
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get("reidlab.format") != FORMAT:
        inputs = ", ".join(f"{i.name} {[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]}"
                           for i in proto.graph.input)
        outputs = ", ".join(o.name for o in proto.graph.output)
        found = f"reidlab.format {props['reidlab.format']!r}" if "reidlab.format" in props else "no reidlab.* metadata"
        raise ForeignOnnxError(f"{path} is an ONNX model of another kind ({found}; inputs: {inputs}; outputs: "
                               f"{outputs}), not a re-ID feature model exported by reidlab ({FORMAT}). Export your "
                               f"run with `reidlab export RUN --onnx FILE` and pass that file")
    return {key.split(".", 1)[1]: json.loads(value) for key, value in props.items() if key.startswith("reidlab.")
            and key != "reidlab.format"}


def verify_export(onnx_path: str | Path, run_dir: str | Path, check_size: int = 8) -> dict:
    """Check that `onnx_path` is the export of this run (its checkpoint's sha256) and still gives its features."""
    meta = read_metadata(onnx_path)
    run_dir = check_finished_run(run_dir)
    sha = checkpoint_sha256(run_dir)
    if meta["run"].get("checkpoint_sha256") != sha:
        source = meta["run"].get("run_dir", "a model in memory")
        raise ForeignOnnxError(f"{resolve(onnx_path)} was exported from another model ({source}, checkpoint "
                               f"sha256 {str(meta['run'].get('checkpoint_sha256'))[:12]}...), not from {run_dir} "
                               f"({sha[:12]}...); export this run again: `reidlab export {run_dir} --onnx FILE`")
    model, cfg = load_run(run_dir, device="cpu")
    return compare_features(resolve(onnx_path), ExportedFeature(model, cfg), check_batch(cfg, check_size))


class OnnxEmbedder:
    """Features of images with an exported file and onnxruntime, preprocessed as its metadata says."""

    def __init__(self, onnx_path: str | Path, threads: int = 0):
        require("onnx", "onnxruntime")
        import onnxruntime as ort

        self.path = resolve(onnx_path)
        self.meta = read_metadata(self.path)
        self.cfg = Config.from_dict(self.meta["config"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default (one per core)
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    @property
    def distance(self) -> str:
        return self.meta["feature"]["distance"]

    def transform(self):
        import torchvision.transforms as T

        pre = self.meta["preprocessing"]
        return T.Compose([T.Resize(tuple(pre["image_size"]), interpolation=T.InterpolationMode.BILINEAR),
                          T.ToTensor(), T.Normalize(pre["mean"], pre["std"])])

    def embed(self, paths, batch_size: int = 64) -> torch.Tensor:
        """Features (N, D) of image files."""
        from reidlab.loaders import read_image

        transform, feats, paths = self.transform(), [], list(paths)
        for i in range(0, len(paths), batch_size):
            x = torch.stack([transform(read_image(p)) for p in paths[i:i + batch_size]])  # (B, 3, H, W)
            feats.append(torch.from_numpy(self.session.run([OUTPUT], {INPUT: x.numpy()})[0]))
        return torch.cat(feats)  # (N, D)
