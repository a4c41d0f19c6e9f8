"""make demo's own logic (the grid, the extra seeds of one row, the spread it prints), with papermill replaced
by an in-process stand-in that writes what a run writes; test_determinism runs real ones."""
import json
import os

import papermill
import pytest

from reidlab import ablate, demo
from reidlab.ablate import build_config


def fake_notebook(input_path, output_path, parameters, **kwargs):
    """A finished run: rank-1 50 + 10 x seed, mAP 40 + 8 x seed."""
    folder = os.path.dirname(output_path)
    with open(output_path, "w") as f:
        json.dump({"parameters": parameters}, f)
    cfg = build_config(parameters["preset"], parameters["profile"], parameters["overrides"],
                       dataset=parameters["dataset"])
    cfg.save(os.path.join(folder, "config.json"))
    with open(os.path.join(folder, "history.jsonl"), "w") as f:
        f.write('{"epoch": 1}\n')
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump({"rank1": 50.0 + 10 * cfg.seed, "mAP": 40.0 + 8 * cfg.seed, "mINP": 10.0,
                   "rerank_rank1": 60.0, "rerank_mAP": 55.0}, f)


def fake_untrained(cfg, out_dir):
    cfg.replace(pretrained=None).save(os.path.join(out_dir, "config.json"))
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump({"rank1": 2.0, "mAP": 1.0, "mINP": 0.5, "epochs": 0}, f)


@pytest.fixture
def quiet_demo(monkeypatch):
    monkeypatch.setattr(papermill, "execute_notebook", fake_notebook)
    monkeypatch.setattr(ablate, "evaluate_untrained", fake_untrained)
    monkeypatch.setattr(demo, "write_table", lambda table, grid, dataset: [])  # results/ stays as committed


def test_demo_trains_one_row_over_seeds_and_prints_its_spread(tmp_path, quiet_demo, capsys):
    report = demo.run_demo(out=str(tmp_path), profile="smoke", noise_seeds=2)
    assert report.ok, report.summary()
    folders = sorted(p.name for p in (tmp_path / "tricks").iterdir())
    assert [f for f in folders if "_seed" in f] == [f"{demo.NOISE_ROW}_seed1"]
    text = capsys.readouterr().out
    assert f"{demo.NOISE_ROW}_seed1" in report.done
    assert "Seed-to-seed noise: Baseline-S (standard baseline) trained with seeds 0, 1 (nothing else changed) " \
           "gave rank-1 50.0, 60.0 and mAP 40.0, 48.0: the seed alone moved it by 10.0 rank-1 and 8.0 mAP" in text
    assert "| Baseline-S (standard baseline) | 2 | 55.0 ± 7.1 | 44.0 ± 5.7 |" in text  # mean ± std in the table
    assert "borrow the seed-to-seed mAP std of Baseline-S (standard baseline): 5.7" in text
    again = demo.run_demo(out=str(tmp_path), profile="smoke", noise_seeds=2)  # only rebuilds the table
    assert again.done == [] and capsys.readouterr().out.count("Seed-to-seed noise") == 1
    forced = demo.run_demo(out=str(tmp_path), profile="smoke", force=True, noise_seeds=2)
    assert f"{demo.NOISE_ROW}_seed1" in forced.done and demo.NOISE_ROW in forced.done
    more = demo.run_demo(out=str(tmp_path), profile="smoke")  # the default: seeds 2.. more, the others reused
    assert more.done == [f"{demo.NOISE_ROW}_seed{k}" for k in range(2, demo.NOISE_SEEDS)] and demo.NOISE_SEEDS >= 3
    assert "trained with seeds 0, 1, 2" in capsys.readouterr().out


def test_demo_without_noise_seeds(tmp_path, quiet_demo, capsys):
    demo.run_demo(out=str(tmp_path), profile="smoke", noise_seeds=1)
    assert not any("_seed" in p.name for p in (tmp_path / "tricks").iterdir())
    assert "Seed-to-seed" not in capsys.readouterr().out
