# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10 Retrieval: looking at ranked lists
#
# **What the numbers mean.** Re-ID is retrieval: each query image ranks the whole gallery by distance, and
# rank-1 / mAP / mINP summarise those lists (notebook 00). This notebook looks at the lists themselves, for two
# runs of Table 1: `last_stride` (no BNNeck, 92.0 / 81.7 rank-1 / mAP on Market) and `bnneck` (94.1 / 85.7).
# Then k-reciprocal re-ranking (Zhong et al. 2017, k1 = 20, k2 = 6, lambda = 0.3), which the paper adds on
# top of the full model: 94.5 / 85.9 -> **95.4 / 94.2**, +8.3 mAP, because it pulls up the hard positives
# that sit deep in a list, exactly what mAP counts and rank-1 does not.
#
# Colours everywhere: **green** same identity, other camera (a correct match); **red** another identity;
# **grey** same identity *and* same camera, ignored by the protocol (the same shot seen twice is no retrieval)
# but still in the unfiltered list; **blue** the query. The notebook ends with an interactive browser of every
# query, both runs one above the other.

# %% tags=["parameters"]
smoke: bool = False  # True: seconds on a CPU (SMOKE_PROFILE on synthetic_small), for the tests
dataset: str = ""  # "": reidlab.notebook.default_dataset() (Market-1501 when prepared, else synthetic)
device: str = "auto"
profile: str = "auto"  # "full" (the paper's recipe), "cpu" (CPU_PROFILE), "auto": full with CUDA + Market
out_dir: str = "results/notebooks/10_retrieval"  # tables and figures; relative to the repository root
runs_dir: str = ""  # "": <out_dir>/../runs, shared with notebooks 05-09 so a row is trained once
rows: list = ["bnneck", "last_stride"]  # two rows of Table 1 to compare (the first is the main one)
queries: list = [0, 1, 2]  # query indices to show as chosen examples
top_k: int = 10  # gallery items per ranked list

# %%
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from reidlab import paper
from reidlab.browser import QueryBrowser, RunView
from reidlab.datasets import load_dataset
from reidlab.evaluate import compute_distance, evaluate_ranking, extract_features
from reidlab.inference import load_run
from reidlab.loaders import build_test_loader
from reidlab.notebook import pick_profile, run_config, show, train_runs, trained_dir
from reidlab.paths import resolve
from reidlab.rerank import re_rank
from reidlab.viz import plot_cmc, plot_ranked_comparison, plot_ranked_lists, plot_rerank_comparison, savefig

if len(rows) != 2 or rows[0] == rows[1]:
    raise ValueError(f"rows={rows!r}: pass two different rows of Table 1, e.g. ['bnneck', 'last_stride']")
chosen = pick_profile(profile, smoke)
out = resolve(out_dir)
out.mkdir(parents=True, exist_ok=True)
runs = resolve(runs_dir) if runs_dir else out.parent / "runs"
configs = {row: run_config(row, profile, dataset, device, smoke=smoke) for row in rows}
cfg = configs[rows[0]]
print(f"profile {chosen}: {cfg.backbone}, {cfg.image_size[0]}x{cfg.image_size[1]}, {cfg.epochs} epochs, "
      f"dataset {cfg.dataset}; runs in {runs}")
print("paper, Market-1501 (rank-1, mAP):", {row: paper.TABLE1.get(row) for row in rows},
      "full model + re-ranking:", paper.TABLE1["rerank"])


# %% [markdown]
# ## The two runs
#
# Trained (or reused: notebooks 05 and 06 train the same rows into the same shared folder) under the profile
# above. Each is then scored the way `fit` scores it: its test feature (f for `last_stride`, f_i for `bnneck`),
# L2-normalised, squared Euclidean distance to every gallery image.

# %%
run_dirs = train_runs(configs, runs)
test_set = load_dataset(cfg.dataset, resolve(cfg.data_root) / cfg.dataset, verbose=False)
query, gallery = test_set.query, test_set.gallery
evaluated = {}  # row -> (query features, gallery features, distances (Q, G), EvalResult)
for row in rows:
    model, run_cfg = load_run(trained_dir(run_dirs[row]), device=device)
    dev = next(model.parameters()).device
    qf, q_pids, q_camids = extract_features(model, build_test_loader(query, run_cfg), dev)
    gf, g_pids, g_camids = extract_features(model, build_test_loader(gallery, run_cfg), dev)
    dist = compute_distance(qf, gf, metric=run_cfg.distance, normalize=run_cfg.normalize_features)
    evaluated[row] = (qf, gf, dist, evaluate_ranking(dist, q_pids, g_pids, q_camids, g_camids))
metrics = pd.DataFrame({row: evaluated[row][3].metrics() for row in rows}).T
metrics[["paper_rank1", "paper_mAP"]] = [paper.TABLE1.get(row, (float("nan"),) * 2) for row in rows]
print(f"{len(query)} queries, {len(gallery)} gallery images")
metrics.round(2)

# %% [markdown]
# ## Chosen queries
#
# The first queries of the list, for the main run. Under each tile: person id, camera, distance. A query's AP
# is the mean of the precision at each green tile, counted after the grey ones are dropped; a red tile before a
# green one costs AP, a red tile after the last green costs nothing.

# %%
main = evaluated[rows[0]]
fig = plot_ranked_lists(query, gallery, main[3], distances=main[2], queries=queries, k=top_k)
fig.suptitle(f"{rows[0]}: chosen queries, top {top_k}")
savefig(fig, "ranked_chosen", out)
fig

# %% [markdown]
# ## The worst queries
#
# Sorted by AP, lowest first: where the model fails. On Market these are mostly other people dressed alike,
# occlusions, misaligned boxes and very different viewpoints; on the synthetic set, identities of one family
# that differ only in a detail (shoes, a print, a bag).

# %%
fig = plot_ranked_lists(query, gallery, main[3], distances=main[2], worst_first=True, n=4, k=top_k)
fig.suptitle(f"{rows[0]}: the four queries with the lowest AP")
savefig(fig, "ranked_worst", out)
fig

# %% [markdown]
# ## The same queries, both runs
#
# The queries whose AP changed most between the two runs, one row per run.

# %%
fig = plot_ranked_comparison(query, gallery, [evaluated[r][3] for r in rows], rows,
                             distances=[evaluated[r][2] for r in rows], order="changed", n=3, k=top_k)
savefig(fig, "ranked_two_runs", out)
fig

# %% [markdown]
# ## k-reciprocal re-ranking
#
# The idea (Zhong et al., CVPR 2017): gallery image g is a *k-reciprocal* neighbour of query q when each is
# among the other's k1 nearest. Each image is encoded by its (expanded) k-reciprocal set, and the new distance is
# lambda * original + (1 - lambda) * Jaccard distance between the two sets, computed over query + gallery.
# A hard positive that is far from the query but close to the query's other neighbours moves up.

# %%
show(re_rank)

# %%
qf, gf = F.normalize(main[0], dim=1), F.normalize(main[1], dim=1)  # the paper re-ranks normalised features
k1 = min(cfg.rerank_k1, len(gallery) // 4)  # k1 = 20 presumes a Market-size gallery
reranked = re_rank(qf, gf, k1=k1, k2=cfg.rerank_k2, lambda_=cfg.rerank_lambda)
after = evaluate_ranking(reranked, q_pids, g_pids, q_camids, g_camids)
rerank_table = pd.DataFrame({"before": main[3].metrics(), "after re-ranking": after.metrics()}).T
rerank_table.loc["paper before (center_loss row)", ["rank1", "mAP"]] = paper.TABLE1["center_loss"]
rerank_table.loc["paper after", ["rank1", "mAP"]] = paper.TABLE1["rerank"]
rerank_table.to_csv(out / "rerank.csv")
print(f"k1={k1}, k2={cfg.rerank_k2}, lambda={cfg.rerank_lambda}")
rerank_table.round(2)

# %% [markdown]
# The queries whose AP changed most, before (upper row) and after (lower row), and the CMC curves. Look for
# green tiles that move up, and for the price: a red tile can move up too, when the query's neighbours are wrong.

# %%
fig = plot_rerank_comparison(query, gallery, main[3], after, distances=(main[2], reranked), k=top_k)
savefig(fig, "rerank_comparison", out)
fig

# %%
axis = plot_cmc({**{row: evaluated[row][3] for row in rows}, f"{rows[0]} + re-ranking": after})
savefig(axis, "cmc", out)
axis.figure

# %% [markdown]
# ## Questions / try it
#
# 1. Find a query whose rank-1 is red but whose AP is above 0.5. How can both be true?
# 2. In the browser, pick the filter "rank-1 failures". Do the two runs fail on the same queries?
# 3. Re-ranking costs a (Q + G) x (Q + G) neighbourhood computation. Why must the gallery be known in
#    advance, and what does that mean for a deployed system that adds gallery images all day?
# 4. Set `k1` to 5 and to 50: what happens to rank-1 and to mAP, and why does mAP react more?
# 5. Grey tiles are dropped by the protocol. Why would keeping them inflate rank-1 on Market?
#
# ## The query browser
#
# Every query, both runs one above the other: move the query slider, jump to a person id, choose top-k, or
# filter (rank-1 failures, worst AP first, by camera, largest AP change between the runs). Thumbnails are
# cached and the tiles are updated in place, so moving through a Market-size query set stays fast.

# %%
browser = QueryBrowser([RunView(row, query, gallery, evaluated[row][3], evaluated[row][2]) for row in rows],
                       k=top_k)
browser
