"""make demo's own logic (every row over seeds, the paired intervals and the verdicts it prints), with papermill
replaced by an in-process stand-in that writes what a run writes; test_determinism runs real ones."""
import inspect
import json
import os
import re

import papermill
import pytest

from reidlab import ablate, demo
from reidlab.profiles import build_config

# mAP = 40 + 8 x seed (the seed's luck, shared by every row) + what each trick adds here
EFFECT = {"warmup": (5.0, 5.2, 4.9), "random_erasing": (-1.0, 1.5, -0.2)}  # helps; cannot tell


def fake_notebook(input_path, output_path, parameters, **kwargs):
    folder = os.path.dirname(output_path)
    with open(output_path, "w") as f:
        json.dump({"parameters": parameters}, f)
    cfg = build_config(parameters["preset"], parameters["profile"], parameters["overrides"],
                       dataset=parameters["dataset"])
    cfg.save(os.path.join(folder, "config.json"))
    with open(os.path.join(folder, "history.jsonl"), "w") as f:
        f.write('{"epoch": 1}\n')
    mAP = 40.0 + 8 * cfg.seed + sum(effect[cfg.seed] for trick, effect in EFFECT.items() if getattr(cfg, trick))
    # label smoothing's second seed collapses: that row and the next are "collapsed", never "hurt"
    collapsed = cfg.label_smoothing and cfg.seed == 1 and not cfg.bnneck
    metrics = {"rank1": 2.0 if collapsed else mAP + 10, "mAP": 1.0 if collapsed else mAP, "mINP": 10.0,
               "rerank_rank1": 60.0, "rerank_mAP": 55.0, "collapsed": collapsed}
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(metrics, f)


def fake_untrained(cfg, out_dir):
    cfg.replace(pretrained=None).save(os.path.join(out_dir, "config.json"))
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump({"rank1": 2.0, "mAP": 1.0, "mINP": 0.5, "epochs": 0}, f)


@pytest.fixture
def quiet_demo(monkeypatch):
    monkeypatch.setattr(papermill, "execute_notebook", fake_notebook)
    monkeypatch.setattr(ablate, "evaluate_untrained", fake_untrained)
    monkeypatch.setattr(demo, "write_table", lambda table, grid, dataset: [])  # results/ stays as committed


def test_demo_trains_every_row_over_seeds_and_reads_verdicts_off_intervals(tmp_path, quiet_demo, capsys):
    report = demo.run_demo(out=str(tmp_path), profile="smoke", jobs=1, executor="papermill")
    assert report.ok, report.summary()
    folders = sorted(p.name for p in (tmp_path / "tricks").iterdir())
    for row in ("baseline_s", "warmup", "center_loss"):
        assert {row, f"{row}_seed1", f"{row}_seed2"} <= set(folders)
    text = capsys.readouterr().out
    # mean ± std over the three seeds: 40, 48, 56
    assert "| Baseline-S (standard baseline) | 3 | 58.0 ± 8.0 | 48.0 ± 8.0 |" in text
    # warmup: +5.0, +5.2, +4.9 over paired seeds; mean +5.03, std 0.153, t(2) = 4.303: [+4.7, +5.4]
    assert re.search(r"\+ warmup\s+helped\s+mAP \+5\.0 \[\+4\.7, \+5\.4\]", text)
    assert re.search(r"\+ random erasing \(REA\)\s+cannot tell at this scale\s+mAP \+0\.1 \[-3\.\d, \+3\.\d\]", text)
    # one collapsed seed makes its row and the row after it "collapsed", whatever their means did
    assert re.search(r"\+ label smoothing \(LS\)\s+collapsed\s+.*\(1 of 3 runs of \+ label smoothing \(LS\) "
                     r"collapsed\)", text)
    assert re.search(r"\+ last stride = 1\s+collapsed", text)
    assert "| + label smoothing (LS) | 3 |" in text and "| 1/3 |" in text
    again = demo.run_demo(out=str(tmp_path), profile="smoke", jobs=1, executor="papermill")  # only the table
    assert again.done == [] and len(again.skipped) == len(report.done)


def test_demo_defaults_pair_three_seeds_on_both_cores():
    defaults = {k: v.default for k, v in inspect.signature(demo.run_demo).parameters.items()}
    assert defaults["seeds"] == demo.SEEDS >= 3 and defaults["executor"] == "direct"
    assert demo.default_jobs() == min(2, os.cpu_count() or 1)


def test_demo_over_runs_of_another_config_says_how_and_writes_no_table(tmp_path, quiet_demo, capsys, monkeypatch):
    written = []
    monkeypatch.setattr(demo, "write_table", lambda table, grid, dataset: written.append(grid) or [])
    assert demo.run_demo(out=str(tmp_path), profile="smoke", jobs=1, executor="papermill").ok and written
    folder = tmp_path / "tricks" / "warmup_seed1"  # as an older profile left it: another number of identities
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "P": cfg["P"] + 1}))
    written.clear()
    report = demo.run_demo(out=str(tmp_path), profile="smoke", jobs=1, executor="papermill")
    text = capsys.readouterr().out
    assert list(report.failed) == ["warmup_seed1"] and "another config" in report.failed["warmup_seed1"]
    assert written == [] and "no table: 1 run(s) failed" in text
    assert "reidlab demo --force" in text and "move that folder away" in text
    assert json.loads((folder / "config.json").read_text())["P"] == cfg["P"] + 1  # the old run is kept as it was
