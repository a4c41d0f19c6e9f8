"""The training loop: resume is exact, a diverged run stops with its position, the run folder is complete."""
import json

import pytest
import torch

from reidlab.config import PRESETS
from reidlab.datasets import load_dataset
from reidlab import train as train_module
from reidlab.runs import load_history
from reidlab.train import TrainingDiverged, fit


@pytest.fixture(scope="module")
def dataset(tiny_market):
    return load_dataset("market1501", tiny_market, verbose=False)


def tiny_cfg(**changes):
    base = dict(backbone="resnet18", pretrained=None, image_size=(32, 16), P=3, K=2, epochs=4, warmup_epochs=2,
                milestones=(3,), num_workers=0, checkpoint_every=2, progress=False, device="cpu",
                log_iterations=3)
    return PRESETS["bot"].replace(**{**base, **changes})


def test_resume_equals_straight_run_bit_for_bit(tmp_path, dataset):
    cfg = tiny_cfg()
    straight = fit(cfg, tmp_path / "straight", dataset=dataset)

    class Stop(Exception):
        pass

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Stop  # an interrupted run: killed after the epoch-2 checkpoint

    with pytest.raises(Stop):
        fit(cfg, tmp_path / "resumed", dataset=dataset, on_epoch_end=stop_after_two)
    assert [r["epoch"] for r in load_history(tmp_path / "resumed")] == [1, 2]
    resumed = fit(cfg, tmp_path / "resumed", dataset=dataset)

    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert torch.equal(a["center"]["centers"], b["center"]["centers"])
    assert straight["mAP"] == resumed["mAP"] and straight["rank1"] == resumed["rank1"]
    hist_a, hist_b = load_history(tmp_path / "straight"), load_history(tmp_path / "resumed")
    assert [r["loss"] for r in hist_a] == [r["loss"] for r in hist_b]


def test_each_epoch_starts_the_loader_once(tmp_path, dataset, monkeypatch):
    """tqdm.auto calls iter() on what it wraps: given the loader, every epoch started twice, its workers' first
    prefetch decoded for nothing (and, with a per-epoch worker reseed, at a timing-dependent point; issue 13)."""
    started, build = [], train_module.build_train_batches

    class Counting:
        def __init__(self, batches):
            self.batches, self.sampler = batches, batches.sampler

        def __len__(self):
            return len(self.batches)

        def __iter__(self):
            started.append(self.sampler.epoch)
            return iter(self.batches)

    monkeypatch.setattr(train_module, "build_train_batches", lambda *a, **k: Counting(build(*a, **k)))
    fit(tiny_cfg(epochs=2, checkpoint_every=1), tmp_path, dataset=dataset)
    assert started == [1, 2]


def test_run_folder_contents(tmp_path, dataset):
    cfg = tiny_cfg(epochs=2)
    metrics = fit(cfg, tmp_path, dataset=dataset)
    assert json.loads((tmp_path / "config.json").read_text()) == cfg.to_dict()
    history = load_history(tmp_path)
    assert [r["epoch"] for r in history] == [1, 2]
    assert {"lr", "loss", "loss_id", "loss_triplet", "loss_center", "seconds", "images_per_s"} <= set(history[0])
    assert history[0]["lr"] == pytest.approx(3.5e-4 * (0.01 * 0.5 + 0.5))
    iterations = [json.loads(l) for l in (tmp_path / "iterations.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in iterations] == [1, 2, 3]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == metrics
    for key in ("rank1", "rank5", "mAP", "mINP"):
        assert 0 <= metrics[key] <= 100


def test_losses_follow_the_neck(tmp_path, dataset):
    fit(tiny_cfg(epochs=1, center_loss=False, bnneck=False, neck="neck2"), tmp_path, dataset=dataset)
    record = load_history(tmp_path)[0]
    assert "loss_triplet" in record and "loss_id" not in record and "loss_center" not in record


def test_nan_loss_stops_with_epoch_and_step_and_keeps_checkpoint(tmp_path, dataset, monkeypatch):
    cfg = tiny_cfg(epochs=4)
    real = train_module.compute_losses
    calls = {"n": 0}

    def poisoned(cfg_, logits, feats, pids, center):
        terms = real(cfg_, logits, feats, pids, center)
        calls["n"] += 1
        if calls["n"] == 2 * per_epoch + 2:  # epoch 3, step 1 (0-based)
            terms["loss_id"] = terms["loss_id"] * float("nan")
        return terms

    from reidlab.sampler import RandomIdentitySampler
    s = RandomIdentitySampler([r.pid for r in dataset.train], cfg.P, cfg.K, seed=cfg.seed)
    s.set_epoch(1)
    per_epoch = len(s) // cfg.batch_size
    monkeypatch.setattr(train_module, "compute_losses", poisoned)
    from reidlab.schedule import lr_at
    with pytest.raises(TrainingDiverged, match=rf"epoch 3, step 1, lr {lr_at(3, cfg):g}:"):
        fit(cfg, tmp_path, dataset=dataset)
    kept = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert kept["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_resume_with_another_config_is_refused(tmp_path, dataset):
    fit(tiny_cfg(epochs=2), tmp_path, dataset=dataset)
    with pytest.raises(ValueError, match="base_lr"):
        fit(tiny_cfg(epochs=2, base_lr=1e-3), tmp_path, dataset=dataset)


def test_interrupted_fit_leaves_no_loader_workers_behind(tmp_path, dataset):
    """A notebook keeps the last traceback, and with it fit's frame: the loader's persistent worker must stop
    anyway, or the next loader's forked workers copy it (and print "Exception ignored ... child process")."""
    import gc
    import multiprocessing

    class Stop(Exception):
        pass

    def stop(record):
        raise Stop

    def workers():
        return [p for p in multiprocessing.active_children() if p.is_alive()]

    assert workers() == []
    with pytest.raises(Stop) as kept:  # `kept` holds the traceback, as a notebook does
        fit(tiny_cfg(epochs=1, num_workers=1), tmp_path / "run", dataset=dataset, on_epoch_end=stop)
    gc.collect()
    assert kept.value.__traceback__ is not None
    assert workers() == [], "the interrupted run's loader workers are still alive"
