"""ONNX export and ranking: onnxruntime's features against PyTorch's (`inference.embed`), the metadata, the
command line, and each bad input a named error with nothing written."""
import json
import re
import shutil

import pytest
import torch

pytest.importorskip("onnx", reason="the export extra is not installed: pip install -e '.[export]'")
pytest.importorskip("onnxruntime", reason="the export extra is not installed: pip install -e '.[export]'")

from reidlab.export import (CHECK_COSINE, ExportCheckFailed, ExportedFeature, ForeignOnnxError,  # noqa: E402
                            OnnxEmbedder, RunNotFinishedError, check_batch, compare_features, export_onnx,
                            read_metadata, verify_export)
from reidlab.inference import embed, load_run  # noqa: E402
from reidlab.own_data import CorruptImageError, NoImagesError  # noqa: E402
from reidlab.ranking import format_ranking, rank_folders, ranking_html  # noqa: E402


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    """The run exported once with the default (dynamo) exporter: (path, report)."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return path, export_onnx(run, path)


def cosines(a, b):
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1)


def test_onnx_features_equal_pytorch_on_images(run, exported, tiny_market):
    path, report = exported
    assert report["passed"] and report["min_cosine"] >= CHECK_COSINE and report["batch"] == 8
    paths = sorted((tiny_market / "bounding_box_test").iterdir())[:5]  # a batch of 5: traced at 2, the axis is dynamic
    model, cfg = load_run(run, device="cpu")
    ours, reference = OnnxEmbedder(path).embed(paths), embed(model, cfg, paths)
    assert ours.shape == reference.shape == (5, 512)
    assert cosines(ours, reference).min() >= CHECK_COSINE
    assert torch.allclose(ours.norm(dim=1), torch.ones(5), atol=1e-5)  # bot normalises its features


def test_metadata_holds_preprocessing_and_feature(run, exported):
    meta = read_metadata(exported[0])
    assert meta["preprocessing"]["image_size"] == [32, 16]
    assert meta["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["preprocessing"]["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert meta["feature"] == {**meta["feature"], "test_feature": "f_i", "flip_test": False,
                               "normalize_features": True, "dim": 512, "distance": "euclidean"}
    assert meta["config"]["backbone"] == "resnet18"
    assert verify_export(exported[0], run)["passed"]


def test_flip_and_f_t_without_normalisation_fold_in(run, tmp_path, tiny_market):
    """Another test-time feature from the same weights (evaluation-only fields): the export follows the config."""
    variant = tmp_path / "variant"
    shutil.copytree(run, variant)
    cfg = json.loads((variant / "config.json").read_text())
    cfg.update(test_feature="f_t", normalize_features=False, flip_test=True)
    (variant / "config.json").write_text(json.dumps(cfg))
    report = export_onnx(variant, tmp_path / "variant.onnx", exporter="torchscript")
    assert report["min_cosine"] >= CHECK_COSINE
    paths = sorted((tiny_market / "query").iterdir())
    model, vcfg = load_run(variant, device="cpu")
    ours, reference = OnnxEmbedder(tmp_path / "variant.onnx").embed(paths), embed(model, vcfg, paths)
    assert cosines(ours, reference).min() >= CHECK_COSINE
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(ours.norm(dim=1), torch.ones(len(paths)), atol=1e-2)  # not normalised
    no_flip = embed(model, vcfg.replace(flip_test=False), paths)
    assert not torch.allclose(ours, no_flip, atol=1e-3)  # the flipped image's feature is in the sum


def test_failed_check_names_the_difference_and_writes_nothing(run, exported, tmp_path, monkeypatch):
    model, cfg = load_run(run, device="cpu")
    with torch.no_grad():
        model.backbone.conv1.weight.mul_(1.5)  # another model than the one in the file
    with pytest.raises(ExportCheckFailed, match=r"row \d+ has cosine .*largest difference .* at row \d+, dim \d+"):
        compare_features(exported[0], ExportedFeature(model, cfg), check_batch(cfg))

    def fail(*args, **kwargs):
        raise ExportCheckFailed("planted")
    monkeypatch.setattr("reidlab.export.compare_features", fail)
    with pytest.raises(ExportCheckFailed, match="planted"):
        export_onnx(run, tmp_path / "out" / "model.onnx", exporter="torchscript")
    assert list((tmp_path / "out").iterdir()) == []  # no file, no partial file


def test_unfinished_run_is_named(run, tmp_path):
    with pytest.raises(RunNotFinishedError, match="lacks config.json, checkpoint.pt, metrics.json"):
        export_onnx(tmp_path, tmp_path / "m.onnx")
    interrupted = tmp_path / "interrupted"
    shutil.copytree(run, interrupted)
    (interrupted / "metrics.json").unlink()
    with pytest.raises(RunNotFinishedError, match="no metrics.json.*again: it resumes"):
        export_onnx(interrupted, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_of_another_model_is_refused(run, exported, tmp_path, tiny_market):
    other = tmp_path / "classifier.onnx"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    with pytest.warns(DeprecationWarning):  # the older exporter, for a quick foreign file
        torch.onnx.export(net, (torch.randn(1, 3, 32, 16),), str(other), dynamo=False, input_names=["x"])
    with pytest.raises(ForeignOnnxError, match=r"another kind \(no reidlab\.\* metadata; inputs: x"):
        rank_folders(other, tiny_market / "query", tiny_market / "bounding_box_test")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ForeignOnnxError, match="not an ONNX model"):
        read_metadata(tmp_path / "junk.onnx")
    retrained = tmp_path / "retrained"
    shutil.copytree(run, retrained)
    state = torch.load(retrained / "checkpoint.pt", weights_only=False)
    state["model"]["backbone.conv1.weight"] *= 1.5
    torch.save(state, retrained / "checkpoint.pt")
    with pytest.raises(ForeignOnnxError, match="exported from another model"):
        verify_export(exported[0], retrained)


def test_rank_with_run_and_with_onnx_agree(run, exported, tiny_market):
    query, gallery = tiny_market / "query", tiny_market / "bounding_box_test"
    by_run = rank_folders(run, query, gallery, top_k=4, device="cpu")
    by_onnx = rank_folders(exported[0], query, gallery, top_k=4)
    assert by_run.distances.shape == (4, 23) and by_run.metric == "euclidean"
    assert torch.allclose(by_run.distances, by_onnx.distances, atol=1e-4)
    model, cfg = load_run(run, device="cpu")
    qf, gf = embed(model, cfg, query), embed(model, cfg, gallery)
    reference = ((qf[:, None] - gf[None]) ** 2).sum(-1)  # squared Euclidean by hand
    assert torch.allclose(by_run.distances, reference, atol=1e-5)
    for i in range(4):
        top = by_run.top(i)
        assert [d for _, d in top] == pytest.approx(sorted(reference[i].tolist())[:4], abs=1e-5)
    text = format_ranking(by_run)
    assert text.count("\nquery ") == 4 and f"{top[0][1]:8.4f}  {top[0][0].name}" in text
    html = ranking_html(by_run)
    assert html.count('<figure class="g"') == 16 and "http" not in html and html.count("data:image/jpeg;base64,") == 20


def test_rank_bad_folders(run, tiny_market, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoImagesError, match="--query .* holds no images"):
        rank_folders(run, tmp_path / "empty", tiny_market / "query")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_market / "query", broken)
    (broken / "0000_c1_bad.jpg").write_bytes(b"")
    with pytest.raises(CorruptImageError, match="0000_c1_bad.jpg"):
        rank_folders(run, broken, tiny_market / "query")


def test_command_line(run, exported, tiny_market, tmp_path, capsys):
    from reidlab.__main__ import main

    html = tmp_path / "ranked.html"
    main(["rank", str(exported[0]), "--query", str(tiny_market / "query"), "--gallery",
          str(tiny_market / "bounding_box_test"), "--top", "3", "--html", str(html)])
    out = capsys.readouterr().out
    assert "4 queries x 23 gallery images" in out and f"wrote {html}" in out and html.stat().st_size > 5000
    main(["export", str(run), "--onnx", str(tmp_path / "cli.onnx"), "--exporter", "torchscript"])
    assert re.search(r"wrote .*cli\.onnx .*torchscript exporter\); check on a batch of 8 with onnxruntime: min "
                     r"cosine (0\.99999\d*|1\.0+),", capsys.readouterr().out)
    assert read_metadata(tmp_path / "cli.onnx")["feature"]["dim"] == 512
    with pytest.raises(SystemExit, match=r"^error: RunNotFinishedError: .* is not a finished run"):
        main(["export", str(tmp_path), "--onnx", str(tmp_path / "m.onnx")])
    with pytest.raises(SystemExit, match=r"^error: NoImagesError"):
        main(["rank", str(run), "--query", str(tmp_path), "--gallery", str(tiny_market / "query"),
              "--html", str(tmp_path / "never.html")])
    assert not (tmp_path / "never.html").exists() and not (tmp_path / "m.onnx").exists()
