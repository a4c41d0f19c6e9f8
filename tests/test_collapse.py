"""A collapsed run is named: the signs one by one, then a real run provoked into collapse by a high lr."""
import json
import math

import numpy as np
import pytest
import torch

from reidlab.profiles import build_config
from reidlab.collapse import SPREAD_MIN, diagnose, feature_spread, loss_signs
from reidlab.results import build_table, trick_verdicts
from reidlab.runs import load_history
from reidlab.train import fit


def test_loss_signs_need_the_id_loss_at_chance_and_the_triplet_at_its_margin():
    chance = math.log(150)
    stuck = {"loss_id": 0.99 * chance, "loss_triplet": 0.32}
    assert len(loss_signs(stuck, 150, margin=0.3)) == 2
    # a BoT run whose triplet loss sits near the margin while its ID loss falls is learning (issue 18's 64x32 run)
    assert loss_signs({"loss_id": 2.25, "loss_triplet": 0.31}, 150, margin=0.3) == []
    assert loss_signs({"loss_id": 0.99 * chance, "loss_triplet": 0.6}, 150, margin=0.3) == []
    assert loss_signs({"loss_id": 0.99 * chance}, 150, margin=0.3)  # the softmax-only neck
    assert loss_signs({"loss_triplet": 0.3}, 150, margin=0.3) == []  # triplet alone: only the spread can tell
    soft = {"loss_id": chance, "loss_triplet": math.log(2)}
    assert loss_signs(soft, 150, margin=0.3, soft_margin=True) and not loss_signs(soft, 150, margin=0.3)


def test_feature_spread_against_a_plain_reference():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(40, 8))
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    expected = np.mean([np.linalg.norm(u - unit.mean(axis=0)) for u in unit])
    half = torch.tensor(feats[:15]), torch.tensor(feats[15:])
    assert feature_spread(*half) == pytest.approx(expected, rel=1e-5)
    same = torch.ones(10, 8) * torch.arange(1, 11)[:, None]  # one direction, any norm: every feature the same
    assert feature_spread(same) == pytest.approx(0, abs=1e-6)
    said = diagnose({"loss_id": 1.0}, feature_spread(same), 150, 0.3)
    assert said["collapsed"] and f"< {SPREAD_MIN}" in said["collapse_reason"]
    assert diagnose({"loss_id": 1.0}, 0.7, 150, 0.3) == {"collapsed": False, "collapse_reason": ""}


@pytest.mark.slow
def test_a_high_lr_collapses_and_the_run_and_table_say_so(tmp_path):
    """Baseline-S at base_lr 0.1 (300x the recipe's) on the smoke set: every feature ends up alike, the ID loss at
    ln(12) and the triplet loss at its margin. fit records it; the tricks table calls the row "collapsed"."""
    runs = tmp_path / "tricks"
    for row, lr in (("baseline_s", 0.1), ("warmup", 3.5e-4)):
        cfg = build_config(row, "smoke", {"base_lr": lr, "progress": False}, smoke=True)
        folder = runs / row
        metrics = fit(cfg, folder, resume=False)
        (folder / "run.json").write_text(json.dumps({"grid": "tricks", "row": row, "seed": 0}))
        if row == "baseline_s":
            assert metrics["collapsed"] is True
            assert "ID loss" in metrics["collapse_reason"] and "margin 0.30" in metrics["collapse_reason"]
            assert json.loads((folder / "metrics.json").read_text())["collapsed"] is True
            assert load_history(folder)[-1]["collapsed"] is True
        else:
            assert metrics["collapsed"] is False and metrics["collapse_reason"] == ""
    table = build_table("tricks", "synthetic_small", root=tmp_path)
    assert list(table["collapsed"]) == [1, 0]
    assert "collapsed" in trick_verdicts(table)[0] and "hurt" not in trick_verdicts(table)[0]


def test_a_notebooks_pair_names_a_collapsed_run(tmp_path):
    import pandas as pd

    from reidlab.notebook import trick_delta

    df = pd.DataFrame({"rank1": [20.0, 2.0], "mAP": [15.0, 1.5], "collapsed": [False, True], "run_dir": ["a", "b"]},
                      index=pd.Index(["baseline_s", "warmup"], name="run"))
    table = trick_delta(df, "warmup", "baseline_s", tmp_path)
    assert list(table.columns)[0] == "this run (collapsed: warmup)"
    assert table.iloc[1, 0] == -13.5
    assert list(trick_delta(df.assign(collapsed=False), "warmup", "baseline_s", tmp_path).columns)[0] == "this run"
