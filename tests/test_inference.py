"""Inference on a saved run: same features as evaluation, ranking a folder, clear checkpoint errors."""
import shutil

import pytest
import torch
from PIL import Image

from reidlab.datasets import load_dataset
from reidlab.evaluate import extract_features
from reidlab.images import NoImagesError
from reidlab.inference import CheckpointMismatch, embed, load_run
from reidlab.loaders import build_test_loader
from reidlab.ranking import rank_folders


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run


def test_embed_matches_evaluation_features(run, tiny_market):
    model, cfg = load_run(run, device="cpu")
    dataset = load_dataset("market1501", tiny_market, verbose=False)
    feats, _, _ = extract_features(model, build_test_loader(dataset.query, cfg), device="cpu", progress=False)
    ours = embed(model, cfg, [r.path for r in dataset.query])
    torch.testing.assert_close(ours, torch.nn.functional.normalize(feats, dim=1), rtol=1e-5, atol=1e-5)
    one = embed(model, cfg, Image.open(dataset.query[0].path))
    torch.testing.assert_close(one[0], ours[0], rtol=1e-5, atol=1e-5)


def test_rank_folders_puts_the_image_itself_first(run, tiny_market, tmp_path):
    gallery = tiny_market / "bounding_box_test"
    image = sorted(gallery.iterdir())[5]
    (tmp_path / "query").mkdir()
    shutil.copy(image, tmp_path / "query" / image.name)
    ranked = rank_folders(run, tmp_path / "query", gallery, top_k=3, device="cpu").top(0)
    assert ranked[0][0] == image and ranked[0][1] == pytest.approx(0, abs=1e-5)
    assert [d for _, d in ranked] == sorted(d for _, d in ranked)


def test_embed_of_a_folder_without_images_names_it(run, tmp_path):
    model, cfg = load_run(run, device="cpu")
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(NoImagesError, match=r"holds no images \(\.jpg, .*\.webp; sub-folders are not searched\)"):
        embed(model, cfg, tmp_path)
    with pytest.raises(NoImagesError, match="is not a folder"):
        embed(model, cfg, tmp_path / "missing")


def test_mismatched_checkpoint_names_keys_and_shapes(run, tmp_path):
    import json, shutil
    shutil.copytree(run, tmp_path / "other")
    cfg = json.loads((tmp_path / "other" / "config.json").read_text())
    cfg["backbone"] = "resnet34"
    (tmp_path / "other" / "config.json").write_text(json.dumps(cfg))
    mismatch = r"(missing|unexpected) keys \(backbone\.|shape mismatches \(backbone\."
    with pytest.raises(CheckpointMismatch, match=mismatch):
        load_run(tmp_path / "other", device="cpu")
    cfg["backbone"], cfg["bnneck"] = "resnet18", False
    (tmp_path / "other" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointMismatch, match="bottleneck|classifier"):
        load_run(tmp_path / "other", device="cpu")


def test_missing_run_folder_says_what_it_needs(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_run(tmp_path)
