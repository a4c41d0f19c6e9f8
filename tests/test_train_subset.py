"""A fixed subset of the training identities (Config.train_ids): the same on every call, relabelled, the test
splits untouched, and what fit trains on."""
import pytest
import torch

from reidlab.config import PRESETS
from reidlab.datasets import load_dataset
from reidlab.records import keep_train_identities
from reidlab.train import fit


def test_keep_train_identities_is_fixed_relabelled_and_leaves_the_test_splits(tiny_market):
    full = load_dataset("market1501", tiny_market, verbose=False)
    sub = keep_train_identities(full, 3)
    assert sub.num_train_pids == 3 and sorted({r.pid for r in sub.train}) == [0, 1, 2]
    assert sub.query == full.query and sub.gallery == full.gallery
    assert keep_train_identities(full, 3).train == sub.train  # the same subset every time
    # every kept image keeps its path and camera, and all images of a kept identity come along
    by_path = {r.path: r for r in full.train}
    kept_ids = {by_path[r.path].pid for r in sub.train}
    assert len(kept_ids) == 3 and len(sub.train) == sum(r.pid in kept_ids for r in full.train)
    assert all(by_path[r.path].camid == r.camid for r in sub.train)
    # labels follow the original order: a kept identity below another keeps the smaller label
    pairs = sorted({(by_path[r.path].pid, r.pid) for r in sub.train})
    assert [new for _, new in pairs] == [0, 1, 2]
    assert keep_train_identities(full, 0) is full and keep_train_identities(full, 99) is full
    with pytest.raises(ValueError, match="train_ids"):
        PRESETS["bot"].replace(train_ids=-1)


def test_fit_trains_on_the_subset(tiny_market, tmp_path):
    cfg = PRESETS["baseline_s"].replace(backbone="resnet18", pretrained=None, image_size=(32, 16), P=2, K=2,
                                        epochs=1, train_ids=3, num_workers=0, progress=False, device="cpu")
    metrics = fit(cfg, tmp_path / "run", dataset=load_dataset("market1501", tiny_market, verbose=False))
    assert metrics["num_train_pids"] == 3
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["num_classes"] == 3
