"""Evaluation from device memory against the loader path: the same features, the same metrics (the device is
the CPU here; on a GPU the code path is the same)."""
import pytest
import torch

from reidlab import gpu_eval
from reidlab.train import evaluate_split
from reidlab.profiles import build_config
from reidlab.datasets import load_dataset
from reidlab.evaluate import evaluate_model, extract_features
from reidlab.gpu_eval import decode_ahead, evaluate_on_device, extract_device_features, load_test_set
from reidlab.loaders import build_test_loader
from reidlab.model import build_model
from reidlab.train import fit, seed_epoch

METRIC_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")


@pytest.fixture(scope="module")
def setup():
    """The smoke profile's data and its ImageNet MobileNetV2 (features that rank far from chance)."""
    cfg = build_config("bot", smoke=True, overrides={"progress": False})
    dataset = load_dataset(cfg.dataset, verbose=False)
    seed_epoch(0, 0)
    model = build_model(cfg, dataset.num_train_pids).eval()
    return cfg, dataset, model


def loader_metrics(model, cfg, dataset):
    query, gallery = (build_test_loader(records, cfg, workers=0) for records in (dataset.query, dataset.gallery))
    return evaluate_model(model, query, gallery, cfg, "cpu")


@pytest.mark.parametrize("changes", [{}, {"flip_test": True, "rerank": True}],
                         ids=["plain", "flip_rerank"])
def test_device_eval_equals_loader_eval_in_fp32(setup, tmp_path, changes):
    cfg, dataset, model = setup
    cfg = cfg.replace(**changes)
    expected, expected_result = loader_metrics(model, cfg, dataset)
    # batches of 50: several batches, none aligned with the loader's 128
    got, result = evaluate_on_device(model, cfg.replace(data_path="resident"), dataset, "cpu", batch_size=50,
                                     cache_dir=tmp_path)
    assert set(got) == set(expected)
    for key in expected:
        if key == "feature_spread":  # a float statistic of the features: on a CPU both paths fold the batch norms
            # (reidlab.model.fold_batch_norms), whose convolutions round differently in a batch of another size (the
            # loader's query and gallery apart, here both in batches of 50) by about one float32 step
            assert got[key] == pytest.approx(expected[key], rel=1e-5), key
        else:
            assert got[key] == expected[key], key  # exactly: the same pixels, the same ranking
    assert (result.ranked == expected_result.ranked).all()
    assert 5 < expected["mAP"] < 100  # a ranking that means something, not all ties
    if cfg.rerank:
        assert got["rerank_mAP"] != got["mAP"]


def test_device_features_match_loader_features(setup, tmp_path):
    cfg, dataset, model = setup
    cfg = cfg.replace(flip_test=True)
    loader = build_test_loader(list(dataset.query) + list(dataset.gallery), cfg, workers=0)
    expected, pids, camids = extract_features(model, loader, "cpu", flip=True, progress=False)
    got, got_pids, got_camids, q = extract_device_features(model, cfg, dataset, "cpu", batch_size=64,
                                                           cache_dir=tmp_path)
    assert q == len(dataset.query) and (got_pids == pids).all() and (got_camids == camids).all()
    assert torch.equal(got, expected)  # bit for bit (measured on a CPU, batch sizes 50 to 512 alike)
    # the decode went to the on-disk cache beside the training set's; the second load is the resident copy
    assert len(list(tmp_path.glob("decoded_64x32_*.npy"))) == 1
    assert load_test_set(dataset, cfg.image_size, "cpu", tmp_path, False) is load_test_set(
        dataset, cfg.image_size, "cpu", tmp_path, False)


def test_device_eval_bf16_within_a_tenth_of_a_point(setup, tmp_path):
    cfg, dataset, model = setup
    cfg = cfg.replace(amp="bf16", flip_test=True)
    expected, _ = loader_metrics(model, cfg, dataset)
    got, _ = evaluate_on_device(model, cfg.replace(data_path="resident"), dataset, "cpu", cache_dir=tmp_path)
    for key in METRIC_KEYS:
        assert abs(got[key] - expected[key]) <= 0.1, (key, got[key], expected[key])


def test_fit_and_ablate_evaluate_from_device_memory_when_data_path_gpu(tmp_path, monkeypatch):
    """fit's evaluation (and ablate's) take the device path for data_path="resident", and score the trained model as
    the loader path scores it."""
    calls = []
    device_path = gpu_eval.evaluate_on_device

    def counted(*args, **kwargs):
        calls.append(1)
        return device_path(*args, **kwargs)

    monkeypatch.setattr(gpu_eval, "evaluate_on_device", counted)
    cfg = build_config("bot", smoke=True, overrides={"progress": False, "epochs": 1, "milestones": [1],
                                                     "image_size": [32, 16], "data_path": "resident", "device": "cpu"})
    dataset = load_dataset(cfg.dataset, verbose=False)
    metrics = fit(cfg, tmp_path, dataset=dataset)
    assert calls == [1]
    from reidlab.inference import load_run
    model, saved = load_run(tmp_path, device="cpu")
    expected = evaluate_split(model, saved.replace(data_path="loader"), dataset, "cpu")
    assert {k: metrics[k] for k in METRIC_KEYS} == {k: expected[k] for k in METRIC_KEYS}
    on_device = evaluate_split(model, saved, dataset, "cpu")
    # the same features; their spread (reidlab.collapse) is a mean, reduced in another order on the device path
    assert on_device.pop("feature_spread") == pytest.approx(expected.pop("feature_spread"), rel=1e-5)
    assert on_device == expected and calls == [1, 1]


def test_decode_ahead_fills_the_caches_runs_read(setup, tmp_path, monkeypatch):
    cfg, dataset, _ = setup
    gpu = cfg.replace(data_path="resident")
    assert decode_ahead([cfg, gpu, gpu.replace(seed=1)], cache_dir=tmp_path, progress=False) == 1  # loader: none
    assert len(list(tmp_path.glob("decoded_64x32_*.npy"))) == 2  # training set, query + gallery
    import reidlab.gpu_data as gpu_data
    monkeypatch.setattr(gpu_data, "decode_image", lambda *a: (_ for _ in ()).throw(AssertionError("decoded again")))
    gpu_eval.free_test_set()
    assert len(load_test_set(dataset, gpu.image_size, "cpu", tmp_path, False).images) == len(dataset.query) + len(
        dataset.gallery)
