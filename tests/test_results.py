"""The results store: tables built from fixture run folders with known numbers, against plain references."""
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from reidlab.config import PRESETS
from reidlab.grids import GRIDS, PAPER_TABLES
from reidlab import results
from reidlab.paths import REPO_ROOT
from reidlab.results import (build_table, format_table, intra_inter_ratio, load_runs, paper_table, trick_verdicts,
                             write_table)

TRICK_ROWS = ["baseline_s", "warmup", "random_erasing", "label_smoothing", "last_stride", "bnneck", "center_loss"]


def write_run(root, grid, name, row, seed, cfg, metrics):
    folder = root / grid / name
    folder.mkdir(parents=True)
    cfg.replace(seed=seed).save(folder / "config.json")
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "run.json").write_text(json.dumps({"grid": grid, "row": row, "seed": seed}))
    return folder


@pytest.fixture
def trick_runs(tmp_path):
    """Two seeds per row of the tricks grid, the untrained row, rerank metrics on center_loss, plus one run of
    another dataset and one unfinished run, both to be ignored. Returns (root, {row: [(rank1, mAP), ...]})."""
    rng = np.random.default_rng(0)
    known = {}
    for row in ["untrained"] + TRICK_ROWS:
        known[row] = []
        for seed in (0, 1):
            rank1, mAP = rng.uniform(5, 95, 2).round(3)
            metrics = {"rank1": rank1, "mAP": mAP, "mINP": mAP / 2, "epochs": 12}
            if row == "center_loss":
                metrics.update(rerank_rank1=rank1 + 1, rerank_mAP=mAP + 5, rerank_mINP=mAP)
            name = row if seed == 0 else f"{row}_seed{seed}"
            write_run(tmp_path, "tricks", name, row, seed, PRESETS[row if row != "untrained" else "bot"], metrics)
            known[row].append((rank1, mAP))
    other = PRESETS["bot"].replace(dataset="market1501")
    write_run(tmp_path, "tricks", "other_dataset", "bnneck", 0, other, {"rank1": 1.0, "mAP": 1.0, "mINP": 1.0})
    (tmp_path / "tricks" / "unfinished").mkdir()
    PRESETS["bot"].save(tmp_path / "tricks" / "unfinished" / "config.json")
    return tmp_path, known


def test_load_runs_one_row_per_finished_run(trick_runs):
    root, known = trick_runs
    df = load_runs("tricks", root)
    assert len(df) == 2 * len(known) + 1  # the unfinished folder is left out
    assert set(df["row"]) == set(known)
    assert sorted(df.loc[df["row"] == "warmup", "seed"]) == [0, 1]
    # only fields that vary between runs (and the dataset) come along; constant ones would bury the table
    assert {"warmup", "bnneck", "dataset", "rank1", "mAP"} <= set(df.columns)
    assert "backbone" not in df.columns and "triplet_margin" not in df.columns
    row = df[df["run"] == "bnneck_seed1"].iloc[0]
    assert (row["rank1"], row["mAP"]) == known["bnneck"][1]


def test_build_table_means_stds_deltas_and_paper(trick_runs):
    root, known = trick_runs
    table = build_table("tricks", "synthetic", root).set_index("row")
    # grid order, the untrained reference first and the derived re-ranking row last
    assert list(table.index) == ["untrained"] + TRICK_ROWS + ["rerank"]
    for row, values in known.items():
        r1 = [v[0] for v in values]
        assert table.loc[row, "n"] == 2
        assert table.loc[row, "ours_rank1"] == pytest.approx(sum(r1) / 2)
        # sample std (ddof=1) of two numbers: |a - b| / sqrt(2)
        assert table.loc[row, "ours_rank1_std"] == pytest.approx(abs(r1[0] - r1[1]) / math.sqrt(2))
    rerank_map = [v[1] + 5 for v in known["center_loss"]]
    assert table.loc["rerank", "ours_mAP"] == pytest.approx(np.mean(rerank_map))

    # deltas: each trick row vs the row above, untrained taking no part
    chain = TRICK_ROWS + ["rerank"]
    means = {row: np.mean([v[1] for v in known[row]]) for row in TRICK_ROWS}
    means["rerank"] = np.mean(rerank_map)
    assert math.isnan(table.loc["untrained", "ours_d_mAP"]) and math.isnan(table.loc["baseline_s", "ours_d_mAP"])
    for prev, row in zip(chain, chain[1:]):
        assert table.loc[row, "ours_d_mAP"] == pytest.approx(means[row] - means[prev])

    # the paper's Market columns, for synthetic data as for Market itself
    assert table.loc["baseline_s", "paper_rank1"] == 87.7 and table.loc["rerank", "paper_mAP"] == 94.2
    assert table.loc["bnneck", "paper_d_mAP"] == pytest.approx(85.7 - 81.7)
    assert math.isnan(table.loc["untrained", "paper_rank1"])
    assert table["paper_ref"].iloc[0] == "Market-1501"


def test_build_table_filters_dataset_and_picks_its_paper_columns(trick_runs):
    root, _ = trick_runs
    table = build_table("tricks", "market1501", root)
    assert list(table["row"]) == ["bnneck"]
    assert table["ours_mAP"].iloc[0] == 1.0 and table["paper_mAP"].iloc[0] == 85.7
    assert math.isnan(table["ours_rank1_std"].iloc[0])  # one seed: no std
    with pytest.raises(ValueError, match="dukemtmc"):
        build_table("tricks", "dukemtmc", root)


def test_paired_intervals_match_scipys_paired_t_test(trick_runs):
    from scipy import stats

    root, known = trick_runs
    table = build_table("tricks", "synthetic", root).set_index("row")
    # two seeds per row: the paired interval is scipy's for the mean of row - row above
    for prev, row in zip(TRICK_ROWS, TRICK_ROWS[1:]):
        for k, m in enumerate(("rank1", "mAP")):
            after, before = [v[k] for v in known[row]], [v[k] for v in known[prev]]
            lo, hi = stats.ttest_rel(after, before).confidence_interval(0.95)
            assert table.loc[row, f"ours_d_{m}_lo"] == pytest.approx(lo)
            assert table.loc[row, f"ours_d_{m}_hi"] == pytest.approx(hi)
    assert table["collapsed"].eq(0).all()
    for dof in (1, 2, 4, 9, 30, 120):
        assert results.t_975(dof) == pytest.approx(stats.t.ppf(0.975, dof), abs=1e-3)
    assert results.t_975(11) >= stats.t.ppf(0.975, 11)  # between tabulated dofs: the wider one
    # five seeds, paired: the seed's shared luck cancels, so a small steady gain is told apart from 0
    before = pd.Series([10.0, 30.0, 20.0, 40.0, 25.0])
    after = before + [1.0, 1.2, 0.9, 1.1, 1.0]
    lo, hi, n = results.paired_interval(before, after)
    assert n == 5 and 0 < lo < 1.04 < hi
    assert (stats.ttest_rel(after, before).confidence_interval(0.95).low == pytest.approx(lo))
    assert all(math.isnan(x) for x in results.paired_interval(before[:1], after[:1])[:2])


def test_verdicts_come_from_the_intervals():
    table = pd.DataFrame({
        "row": ["untrained", "a", "b", "c", "d", "e", "f"],
        "label": ["untrained", "a", "+ b", "+ c", "+ d", "+ e", "+ f"],
        "n": [1, 3, 3, 3, 3, 3, 3], "collapsed": [0, 0, 0, 0, 0, 2, 0],
        "ours_mAP": [2.0, 10.0, 15.0, 14.0, 10.0, 1.0, 12.0], "ours_rank1": [1.0, 20.0, 25.0, 24.0, 20.0, 2.0, 22.0],
        "ours_d_mAP_lo": [np.nan, np.nan, 4.0, -3.0, -4.5, -12.0, 8.0],
        "ours_d_mAP_hi": [np.nan, np.nan, 6.0, 1.0, -3.5, -6.0, 14.0],
        "paper_mAP": [np.nan, 74.0, 75.2, 79.3, 80.3, 81.7, 85.7]})
    chain = table["row"] != "untrained"
    for col in ("ours_rank1", "ours_mAP", "paper_mAP"):
        table.loc[chain, col.replace("_", "_d_", 1)] = table.loc[chain, col].diff()
    lines = trick_verdicts(table)
    assert re.search(r"\+ b\s+helped\s+mAP \+5\.0 \[\+4\.0, \+6\.0\], rank-1 \+5\.0", lines[0])
    assert "paper +1.2 mAP (helped)" in lines[0]
    assert re.search(r"\+ c\s+cannot tell at this scale\s+mAP -1\.0 \[-3\.0, \+1\.0\]", lines[1])  # holds 0
    assert re.search(r"\+ d\s+hurt\s+mAP -4\.0", lines[2])  # below 0
    # a collapsed run names its row and the next (whose change is measured from it), never "hurt"
    assert re.search(r"\+ e\s+collapsed\s+mAP -9\.0.*\(2 of 3 runs of \+ e collapsed\)", lines[3])
    assert re.search(r"\+ f\s+collapsed\s+mAP \+11\.0.*\(2 of 3 runs of \+ e collapsed\)", lines[4])
    assert "2.0 untrained -> 10.0 (a) -> 12.0 (+ f)" in lines[-1]
    one_seed = trick_verdicts(table.assign(n=1, collapsed=0, ours_d_mAP_lo=np.nan, ours_d_mAP_hi=np.nan))
    assert all("cannot tell at this scale" in line for line in one_seed[:5])
    assert any("one seed per row: no interval" in line for line in one_seed)
    assert "| 2/3 |" in format_table(table.assign(ours_mAP_std=1.0, ours_rank1_std=1.0, paper_ref="Market-1501"))


def test_intra_inter_ratio_matches_double_loop():
    rng = np.random.default_rng(1)
    pids = rng.integers(0, 6, 40)  # pid 0: distractors, left out
    feats = rng.normal(size=(40, 5)) + pids[:, None]
    intra, inter = [], []
    for i in range(40):
        for j in range(40):
            if i == j or pids[i] == 0 or pids[j] == 0:
                continue
            d = np.linalg.norm(feats[i] - feats[j])
            (intra if pids[i] == pids[j] else inter).append(d)
    expected = np.mean(intra) / np.mean(inter)
    assert intra_inter_ratio(feats, pids, chunk=7) == pytest.approx(expected, rel=1e-9)
    assert intra_inter_ratio(torch.tensor(feats, dtype=torch.float32), pids) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="two identities"):
        intra_inter_ratio(feats[:3], [1, 1, 1])


def test_write_table_files(trick_runs, tmp_path):
    root, _ = trick_runs
    table = build_table("tricks", "synthetic", root)
    paths = write_table(table, "tricks", "synthetic", tables=tmp_path / "tables", figures=tmp_path / "figures")
    assert {p.name for p in paths} == {"tricks_synthetic.csv", "tricks_synthetic.md", "tricks_synthetic.png",
                                       "tricks_synthetic.pdf"}
    back = pd.read_csv(tmp_path / "tables" / "tricks_synthetic.csv")
    assert np.allclose(back["ours_mAP"], table["ours_mAP"], rtol=1e-3)
    md = (tmp_path / "tables" / "tricks_synthetic.md").read_text()
    assert "±" in md and "+ BNNeck" in md and "paper mAP" in md
    assert sum(line.startswith("| ") for line in format_table(table).splitlines()) == len(table) + 1  # header + rows


def test_paper_tables_cover_the_grids():
    for grid, name in PAPER_TABLES.items():
        paper = paper_table(name)
        assert paper["row"].is_unique
        rows = [r["name"] for r in GRIDS[grid](dataset="market1501", test_dataset="dukemtmc")]
        missing = [r for r in rows if r not in set(paper["row"]) and r != "untrained"]
        assert not missing, f"{name}.csv lacks rows {missing} of grid {grid}"
    with pytest.raises(FileNotFoundError, match="table1"):
        paper_table("table99")


SHARED_PAPER = REPO_ROOT.parent / "shared" / "reference" / "bot_paper.md"


@pytest.mark.skipif(not SHARED_PAPER.exists(), reason="../shared/reference/bot_paper.md not beside the clone")
def test_paper_csvs_match_the_reference_text():
    """Every number typed into results/paper/*.csv appears, in order, in a line of the reference's tables."""
    lines = [line for line in SHARED_PAPER.read_text().splitlines() if line.startswith("|")]
    numbers = [re.findall(r"(?<![\w.])\d+\.\d+|(?<=\| )\d+(?= \|)", line) for line in lines]
    for name in PAPER_TABLES.values():
        paper = paper_table(name)
        metric_cols = [c for c in paper.columns if c.endswith(("_rank1", "_mAP", "_R"))]
        for _, r in paper.iterrows():
            # the row's metrics in the reference's column order: Market R1, mAP, (R,) Duke R1, mAP, (R)
            values = [float(r[c]) for c in metric_cols]
            found = any(len(nums) >= len(values) and
                        [float(x) for x in nums[-len(values):]] == values for nums in numbers)
            assert found, f"{name}.csv row {r['row']}: {values} not found in {SHARED_PAPER}"
