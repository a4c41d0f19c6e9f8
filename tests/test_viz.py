"""Each plot on generated data writes a PNG and a PDF, and draws what it was given (checked on the artists)."""
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
from conftest import load_fakes
from matplotlib.colors import to_hex

matplotlib.use("Agg")
from reidlab import viz  # noqa: E402


fakes = load_fakes()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fakes.make_fake_run(tmp_path_factory.mktemp("images"))


def saved(fig, tmp_path, name):
    paths = viz.savefig(fig, name, tmp_path)
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    return paths


def test_savefig_rejects_extension_and_writes_default_folder_name(tmp_path):
    fig = viz.plot_lr_schedule([1, 2], [1e-3, 1e-4]).figure
    with pytest.raises(ValueError, match="without folder or extension"):
        viz.savefig(fig, "cmc.png", tmp_path)
    with pytest.raises(TypeError, match="Figure or Axes"):
        viz.savefig("not a figure", "x", tmp_path)


def test_match_kinds_and_rank1_against_loops(run):
    query, gallery, result, distmat, *_ = run
    ranked = result.ranked
    gp, gc = np.array([g.pid for g in gallery]), np.array([g.camid for g in gallery])
    qp, qc = np.array([q.pid for q in query]), np.array([q.camid for q in query])
    kinds = viz.match_kinds(qp[:, None], qc[:, None], gp[ranked], gc[ranked])
    for q in range(len(query)):
        for i, g in enumerate(ranked[q]):
            same_pid, same_cam = gallery[g].pid == query[q].pid, gallery[g].camid == query[q].camid
            assert kinds[q, i] == ("junk" if same_pid and same_cam else "match" if same_pid else "mismatch")
    rank1 = viz.rank1_correct(kinds)
    assert rank1[result.valid].mean() == pytest.approx(result.cmc[0])
    assert not rank1[~result.valid].any()


def test_gather_topk_distances_from_full_matrix_and_topk(run):
    query, gallery, result, distmat, *_ = run
    full = viz.gather_topk_distances(distmat, result.ranked, len(gallery))
    np.testing.assert_allclose(full, np.sort(distmat, axis=1))  # ranked is the argsort of distmat
    topk = np.sort(distmat, axis=1)[:, :5]
    np.testing.assert_array_equal(viz.gather_topk_distances(topk, result.ranked[:, :5], len(gallery)), topk)
    with pytest.raises(ValueError, match="columns"):
        viz.gather_topk_distances(distmat[:, :7], result.ranked[:, :5], len(gallery))


def test_angle_vs_distance(run, tmp_path):
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(6), 5)
    f_t = rng.normal(size=(30, 8)) + 3 * np.eye(8)[pids]
    f_i = 10 * f_t / np.linalg.norm(f_t, axis=1, keepdims=True)
    i, j, same = viz.sample_pairs(pids, max_pairs=10_000)
    expected_pos = {(a, b) for a in range(30) for b in range(a + 1, 30) if pids[a] == pids[b]}
    assert {(a, b) for a, b, s in zip(i, j, same) if s} == expected_pos
    assert all(pids[a] != pids[b] for a, b, s in zip(i, j, same) if not s)
    fig = viz.plot_angle_vs_distance(f_t, f_i, pids, max_pairs=10_000)
    axes = fig.axes
    assert [a.get_title() for a in axes] == ["f_t", "f_i"]
    neg, pos = axes[1].collections
    assert len(pos.get_offsets()) == len(expected_pos)
    # f_i has constant norm 10: distance = 2 * 10 * sin(angle / 2) for every pair
    d, angle = np.asarray(pos.get_offsets()).T
    np.testing.assert_allclose(d, 20 * np.sin(np.radians(angle) / 2), rtol=1e-4)
    saved(fig, tmp_path, "angle")
    with pytest.raises(ValueError, match="same length"):
        viz.plot_angle_vs_distance(f_t, f_i[:5], pids)


def test_feature_norms_marks_paper_means(tmp_path):
    rng = np.random.default_rng(0)
    ax = viz.plot_feature_norms(rng.normal(size=(50, 16)), 4 * rng.normal(size=(50, 16)))
    vlines = sorted(line.get_xdata()[0] for line in ax.lines)
    assert vlines == [5.214, 18.620]
    saved(ax, tmp_path, "norms")


def test_loss_curves_one_line_per_run(tmp_path):
    runs = {}
    for name, has_triplet in (("neck3", True), ("bnneck", True), ("neck1", False)):
        folder = tmp_path / name
        folder.mkdir()
        rows = [{"iteration": it, "loss_id": 6.0 - it / 10, **({"loss_triplet": 1 / (it + 1)} if has_triplet else {})}
                for it in range(20)]
        (folder / "iterations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs[name] = folder
    fig = viz.plot_loss_curves(runs)
    id_ax, tri_ax = fig.axes
    assert [line.get_label() for line in id_ax.lines] == ["neck3", "bnneck", "neck1"]
    assert [line.get_label() for line in tri_ax.lines] == ["neck3", "bnneck"]
    np.testing.assert_allclose(id_ax.lines[0].get_ydata(), 6.0 - np.arange(20) / 10)
    saved(fig, tmp_path, "losses")
    with pytest.raises(FileNotFoundError, match="iterations.jsonl"):
        viz.plot_loss_curves({"x": tmp_path / "missing"})


def test_embeddings_2d_one_panel_per_neck(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    emb = {neck: (rng.normal(size=(40, 2)), labels) for neck in ("neck3", "bnneck3", "bnneck")}
    fig = viz.plot_embeddings_2d(emb)
    assert [a.get_title() for a in fig.axes] == ["neck3", "bnneck3", "bnneck"]
    assert all(len(a.collections) == 4 for a in fig.axes)  # one scatter per class
    saved(fig, tmp_path, "embeddings")
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        viz.plot_embeddings_2d({"x": (rng.normal(size=(5, 3)), np.arange(5))})


def test_cmc_lines_and_given_axes(run, tmp_path):
    result = run[2]
    other = np.linspace(0.5, 1.0, 10)
    fig, _ = viz._axes(None, 1, (4, 3))
    ax = fig.axes[0]
    assert viz.plot_cmc({"fake": result, "other": other}, max_rank=10, ax=ax) is ax
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_ydata(), 100 * result.cmc[:10])
    saved(ax, tmp_path, "cmc")
    with pytest.raises(ValueError, match="divide percentages by 100"):
        viz.plot_cmc({"pct": other * 100})
    with pytest.raises(ValueError, match="draws 2 panel"):
        viz.plot_trick_bars(pd.DataFrame(columns=["row", "ours_rank1", "ours_mAP", "paper_rank1", "paper_mAP"]),
                            ax=ax)


def test_trick_bars_ours_beside_paper(tmp_path):
    paper = {"baseline_s": (87.7, 74.0), "warmup": (88.7, 75.2), "random_erasing": (91.3, 79.3),
             "label_smoothing": (91.4, 80.3), "last_stride": (92.0, 81.7), "bnneck": (94.1, 85.7),
             "center_loss": (94.5, 85.9)}
    df = pd.DataFrame({"row": list(paper), "paper_rank1": [v[0] for v in paper.values()],
                       "paper_mAP": [v[1] for v in paper.values()]})
    df["ours_rank1"], df["ours_mAP"] = df.paper_rank1 - 3, df.paper_mAP - 5
    df.loc[6, ["ours_rank1", "ours_mAP"]] = np.nan  # a row not run yet
    fig = viz.plot_trick_bars(df)
    r1_ax, map_ax = fig.axes
    assert len(r1_ax.patches) == len(map_ax.patches) == 2 * len(df)
    heights = [p.get_height() for p in map_ax.patches]
    np.testing.assert_allclose(heights[len(df):], df.paper_mAP)
    assert [t.get_text() for t in r1_ax.get_xticklabels()] == list(paper)
    saved(fig, tmp_path, "tricks")
    with pytest.raises(ValueError, match="paper_mAP"):
        viz.plot_trick_bars(df.drop(columns="paper_mAP"))


def test_history_losses_and_eval_epochs(tmp_path):
    rows = [{"epoch": e, "lr": 1e-3, "loss": 3 / e, "loss_id": 2 / e, "loss_triplet": 1 / e, "loss_center": None,
             "seconds": 1.0, "images_per_s": 100.0} for e in range(1, 7)]
    for r in rows[2::3]:
        r.update(rank1=50.0 + r["epoch"], mAP=30.0 + r["epoch"], mINP=10.0)
    (tmp_path / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fig = viz.plot_history(tmp_path)
    loss_ax, metric_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["loss", "loss_id", "loss_triplet"]
    assert [line.get_label() for line in metric_ax.lines] == ["rank1", "mAP", "mINP"]
    np.testing.assert_array_equal(metric_ax.lines[0].get_xdata(), [3, 6])
    saved(fig, tmp_path, "history")
    fig = viz.plot_history([{"epoch": 1, "loss": 1.0}])
    assert "no evaluation epochs" in fig.axes[1].texts[0].get_text()


def test_lr_schedule_step_plot(tmp_path):
    # the authors' schedule (reference section 8), written out here
    def lr(k, base=3.5e-4):
        warm = base * (0.01 * (1 - k / 10) + k / 10) if k < 10 else base
        return warm * (0.1 if 40 <= k < 70 else 0.01 if k >= 70 else 1)
    epochs = np.arange(1, 121)
    ax = viz.plot_lr_schedule(epochs, [lr(k) for k in epochs], milestones=(40, 70))
    step = ax.lines[0]
    assert step.get_drawstyle() == "steps-post"
    assert step.get_ydata()[0] == pytest.approx(3.815e-5)
    assert ax.get_yscale() == "log"
    assert len(ax.lines) == 3  # the schedule and two milestones
    saved(ax, tmp_path, "lr")


def test_tsne_colours_by_id(tmp_path):
    pytest.importorskip("sklearn", reason="plot_tsne needs scikit-learn (pip install scikit-learn)")
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(8), 6)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):  # OpenMP threads spinning on a shared 2-core machine cost 10 s here
        ax = viz.plot_tsne(rng.normal(size=(48, 16)) + 5 * np.eye(16)[pids], pids, max_ids=5)
    assert len(ax.collections) == 5
    assert sum(len(c.get_offsets()) for c in ax.collections) == 30
    saved(ax, tmp_path, "tsne")


def spine_kind(axis):
    colour = to_hex(axis.spines["top"].get_edgecolor())
    return {v: k for k, v in viz.KIND_COLOURS.items()}[colour]


def test_ranked_lists_borders_captions_worst_first(run, tmp_path):
    query, gallery, result, distmat, *_ = run
    k, n = 6, 3
    fig = viz.plot_ranked_lists(query, gallery, result, distmat, worst_first=True, n=n, k=k)
    assert len(fig.axes) == n * (k + 1)
    valid = np.flatnonzero(result.valid)
    worst = valid[np.argsort(result.ap[valid], kind="stable")][:n]
    for row, q in enumerate(worst):
        cells = fig.axes[row * (k + 1):(row + 1) * (k + 1)]
        assert cells[0].get_title() == f"query {q}"
        assert spine_kind(cells[0]) == "query"
        for i, axis in enumerate(cells[1:]):
            g = result.ranked[q, i]
            same_pid, same_cam = gallery[g].pid == query[q].pid, gallery[g].camid == query[q].camid
            assert spine_kind(axis) == ("junk" if same_pid and same_cam else "match" if same_pid else "mismatch")
            assert axis.get_xlabel() == f"pid {gallery[g].pid} cam {gallery[g].camid}\nd {distmat[q, g]:.3f}"
    saved(fig, tmp_path, "ranked")


def test_rerank_and_run_comparison(run, tmp_path):
    query, gallery, result, distmat, qf, gf = run
    qn, gn = qf / np.linalg.norm(qf, axis=1, keepdims=True), gf / np.linalg.norm(gf, axis=1, keepdims=True)
    cos = 1 - qn @ gn.T
    qp, qc = np.array([r.pid for r in query]), np.array([r.camid for r in query])
    gp, gc = np.array([r.pid for r in gallery]), np.array([r.camid for r in gallery])
    after = fakes.evaluate_plain(cos, qp, qc, gp, gc)
    fig = viz.plot_rerank_comparison(query, gallery, result, after, distances=(distmat, cos), n=2, k=4)
    assert len(fig.axes) == 2 * 2 * 5
    titles = [a.get_title() for a in fig.axes[::5]]
    assert titles[0].startswith("before re-ranking") and titles[1].startswith("after re-ranking")
    changed = viz.select_queries([result, after], order="changed", n=2)
    delta = np.abs(after.ap - result.ap)
    assert delta[changed[0]] == np.nanmax(delta[result.valid])
    saved(fig, tmp_path, "rerank")
    fig = viz.plot_ranked_comparison(query, gallery, [result, after], ["A", "B"], queries=[3], k=3)
    assert len(fig.axes) == 2 * 4
    with pytest.raises(ValueError, match="one label per result"):
        viz.plot_ranked_comparison(query, gallery, [result, after], ["A"])
    with pytest.raises(ValueError, match="evaluated on this query"):
        viz.plot_ranked_lists(query[:3], gallery, result)
