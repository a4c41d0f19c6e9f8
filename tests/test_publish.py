"""Published tables say how they were made; the demo prints the committed Market table; `make market` sums its calls."""
import json
import re

import pytest

from reidlab import demo, publish
from reidlab.ablate import Report


def write_run(folder, row, seed, mAP, rank1):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"row": row, "seed": seed}))
    cfg = {"dataset": "market1501", "seed": seed}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "metrics.json").write_text(json.dumps({"rank1": rank1, "mAP": mAP, "mINP": 1.0}))


@pytest.fixture
def two_rows(tmp_path):
    root = tmp_path / "runs"
    for seed, (a, b) in enumerate([(30.0, 36.0), (32.0, 37.0), (31.0, 38.0)]):
        suffix = f"_seed{seed}" if seed else ""
        write_run(root / "tricks" / f"baseline_s{suffix}", "baseline_s", seed, a, a + 20)
        write_run(root / "tricks" / f"warmup{suffix}", "warmup", seed, b, b + 20)
    return root


def test_published_table_names_command_commit_machine_and_wall_time(two_rows, tmp_path):
    paths = publish.publish("tricks", "market1501", two_rows, "tricks_market1501_cpu", "make market", 6840.0,
                            tables=tmp_path / "tables", figures=tmp_path / "figures")
    assert {p.name for p in paths} >= {"tricks_market1501_cpu.md", "tricks_market1501_cpu.csv"}
    md = (tmp_path / "tables" / "tricks_market1501_cpu.md").read_text()
    assert "- command: `make market`" in md
    assert re.search(r"- commit: ([0-9a-f]{7,}|unknown)", md)
    assert "cores" in md and "torch" in md
    assert "- wall time: 114 min (6840 s)" in md
    # mAP deltas 6, 5, 7: mean 6, std 1, t(2) = 4.303 -> [+3.5, +8.5]; the verdict is written under the table
    assert "+6.0 [+3.5, +8.5]" in md
    assert re.search(r"\+ warmup\s+helped\s+mAP \+6\.0 \[\+3\.5, \+8\.5\]", md)
    assert publish.committed_table("tricks_market1501_cpu", tmp_path / "tables") == md
    assert publish.committed_table("nothing_here", tmp_path / "tables") is None


def test_demo_prints_the_committed_table_labelled(monkeypatch, capsys):
    monkeypatch.setattr(demo, "committed_table", lambda name: f"# tricks on market1501\n\n- command: `make market`\n"
                                                              f"| row | n |\n({name})")
    demo.print_committed("tricks_market1501_cpu")
    out = capsys.readouterr().out
    assert "The committed reference, not run now: results/tables/tricks_market1501_cpu.md" in out
    assert "make market" in out and "(tricks_market1501_cpu)" in out
    assert "# tricks on market1501" not in out  # the title is replaced by the label
    monkeypatch.setattr(demo, "committed_table", lambda name: None)
    demo.print_committed("tricks_market1501_cpu")
    assert "no committed results/tables/tricks_market1501_cpu.md yet" in capsys.readouterr().out


def test_demo_runs_the_synthetic_chain_whatever_is_prepared(monkeypatch):
    asked = {}

    def fake_grid(grid, dataset, **kwargs):
        asked.update(grid=grid, dataset=dataset, profile=kwargs["profile"])
        return Report(runs=[], done=[], skipped=[], failed={})

    monkeypatch.setattr(demo, "run_grid", fake_grid)
    monkeypatch.setattr(demo, "build_table", lambda *a, **k: (_ for _ in ()).throw(ValueError("no runs")))
    monkeypatch.setattr(demo, "print_committed", lambda name: None)
    demo.run_demo(out="unused")
    assert asked == {"grid": "tricks", "dataset": "synthetic", "profile": "cpu"}


def test_market_without_the_data_says_how_to_prepare_it(monkeypatch, tmp_path):
    monkeypatch.setattr("reidlab.paths.DATA_ROOT", tmp_path)
    with pytest.raises(SystemExit, match="prepare_market1501.py"):
        demo.run_market(out=str(tmp_path / "runs"))


def test_market_sums_the_wall_time_of_every_call(monkeypatch, tmp_path):
    (tmp_path / "data" / "market1501").mkdir(parents=True)
    monkeypatch.setattr("reidlab.paths.DATA_ROOT", tmp_path / "data")
    monkeypatch.setattr(demo, "run_grid", lambda *a, **k: Report(runs=[], done=["a"], skipped=[], failed={}))
    published = []
    monkeypatch.setattr("reidlab.publish.publish", lambda *a, **k: published.append((*a, k)) or [])
    monkeypatch.setattr(demo, "print_committed", lambda name: None)
    out = tmp_path / "runs"
    (out).mkdir()
    (out / "invocations.jsonl").write_text(json.dumps({"command": "earlier", "seconds": 3600.0, "trained": 10,
                                                       "commit": "abc1234"}) + "\n")
    demo.run_market(out=str(out), jobs=2)
    calls = [json.loads(x) for x in (out / "invocations.jsonl").read_text().splitlines()]
    assert len(calls) == 2 and calls[1]["trained"] == 1
    grid, dataset, root, name, command, total, note, extra = published[0]
    assert extra["trained_at"].startswith("abc1234, ")  # the earlier call's commit, then this one's
    assert (grid, dataset, name) == ("tricks", "market1501", "tricks_market1501_cpu")
    assert 3600.0 <= total < 3660.0 and "summed over 2 call(s)" in note
    assert "--dataset market1501 --profile cpu --seeds 3 --jobs 2" in command


def test_notebooks_read_the_committed_pair_with_its_interval_and_noise(two_rows, tmp_path, capsys):
    from reidlab.notebook import committed_pair

    publish.publish("tricks", "market1501", two_rows, "chain", "make market", None,
                    tables=tmp_path / "tables", figures=tmp_path / "figures")
    pair = committed_pair("warmup", "baseline_s", "chain", tables=tmp_path / "tables")
    assert list(pair.index) == ["Baseline-S (standard baseline)", "+ warmup", "change [95 % interval]"]
    assert pair.loc["+ warmup", "mAP"] == "37.0 ± 1.0"
    assert pair.loc["change [95 % interval]", "mAP"] == "+6.0 [+3.5, +8.5] (helped)"
    assert pair.loc["change [95 % interval]", "paper rank-1 / mAP"] == "+1.0 / +1.2"
    said = capsys.readouterr().out
    assert "mAP moves by 1.0 and 1.0 points (std over 3 seeds)" in said and "±2.5 points wide" in said
    assert committed_pair("warmup", "baseline_s", "missing", tables=tmp_path / "tables") is None
    assert "`make market` makes it" in capsys.readouterr().out


@pytest.mark.parametrize("b, expect, said", [
    ({0: 1.0, 1: 1.1, 2: 0.9}, "lower", "the claim holds here"),
    ({0: 1.0, 1: 1.1, 2: 0.9}, "higher", "the opposite holds here"),
    ({0: 2.5, 1: 1.0, 2: 3.2}, "lower", "cannot tell at this scale"),
])
def test_a_notebook_claim_is_read_off_paired_seeds(b, expect, said, capsys):
    from scipy import stats

    from reidlab.notebook import paired_claim

    a = {0: 2.0, 1: 2.3, 2: 1.8}
    table = paired_claim("Neck3", a, "BNNeck", b, "ID loss", expect)
    diffs = [b[s] - a[s] for s in a]
    ci = stats.ttest_rel(list(b.values()), list(a.values())).confidence_interval(0.95)
    out = capsys.readouterr().out
    assert said in out and f"[{ci.low:+.4g}, {ci.high:+.4g}]" in out
    assert table["BNNeck - Neck3"].tolist() == pytest.approx(diffs)
    paired_claim("Neck3", {0: 1.0}, "BNNeck", {0: 0.5}, "ID loss")
    assert "cannot tell from 1 seed(s)" in capsys.readouterr().out


def test_the_whole_bag_is_read_off_paired_seeds(tmp_path):
    from scipy import stats

    from reidlab.results import build_table, trick_verdicts

    root = tmp_path / "runs"
    base, bot = [30.0, 34.0, 29.0], [38.0, 40.0, 39.5]
    for seed in range(3):
        suffix = f"_seed{seed}" if seed else ""
        write_run(root / "tricks" / f"baseline_s{suffix}", "baseline_s", seed, base[seed], base[seed] + 20)
        write_run(root / "tricks" / f"center_loss{suffix}", "center_loss", seed, bot[seed], bot[seed] + 20)
    lines = trick_verdicts(build_table("tricks", "market1501", root=root))
    ci = stats.ttest_rel(bot, base).confidence_interval(0.95)
    bag = next(line for line in lines if line.startswith("the whole bag"))
    assert "helped" in bag and f"mAP +8.2 [{ci.low:+.1f}, {ci.high:+.1f}]" in bag and "paper +11.9 mAP" in bag


def test_the_header_names_the_commit_that_trained_the_runs_when_another_builds_the_table():
    header = publish.provenance("make market", 60.0, trained_at="0000000")
    assert f"- commit: runs trained at 0000000, table built at {publish.commit()}" in header
    assert f"- commit: {publish.commit()}\n" in publish.provenance("make market", 60.0, trained_at=publish.commit())
