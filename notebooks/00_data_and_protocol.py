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
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · The data and the evaluation protocol
#
# **The task.** Person re-identification (re-ID): given a *query* image of a person seen by one camera, rank
# every image of a *gallery* taken by the other cameras so that the same person comes first. A network maps
# each image to a feature vector; the ranking is by distance between features. Training identities and test
# identities are disjoint, so the network must learn what makes *people* look alike, not memorise these people.
#
# Bag of Tricks (Luo et al., CVPRW 2019) reports two numbers on Market-1501 (1,501 people, 6 cameras:
# 751 training identities with 12,936 images; 3,368 queries against 15,913 gallery images of the other 750):
# **rank-1** (how often the first result is right) and **mAP** (how well *all* correct images are ranked).
# Their standard baseline gets 87.7 / 74.0; with all six tricks 94.5 / 85.9.
#
# This notebook shows the data in use, what query, gallery, junk and distractors are, works CMC and mAP out
# by hand on a toy example, and shows what one P x K training batch looks like.

# %% tags=["parameters"]
smoke: bool = False  # seconds-long run on the tiny synthetic set (the tests use it)
dataset: str = ""  # "" -> reidlab.notebook.default_dataset(): Market-1501 if prepared, else synthetic
device: str = "auto"
out_dir: str = "results/notebooks/00_data_and_protocol"
profile: str = "auto"  # "auto", "full", "cpu" or "smoke"

# %%
import json
from collections import Counter

import numpy as np
import pandas as pd
import torch

from reidlab.datasets import load_dataset
from reidlab.evaluate import evaluate_ranking
from reidlab.loaders import build_train_loader
from reidlab.notebook import pick_profile, plot_image_grid, run_config, show
from reidlab.paths import resolve
from reidlab.sampler import RandomIdentitySampler

cfg = run_config("bot", profile, dataset, device, smoke=smoke)
out = resolve(out_dir)
out.mkdir(parents=True, exist_ok=True)
data = load_dataset(cfg.dataset, resolve(cfg.data_root) / cfg.dataset)
print(f"profile {pick_profile(profile, smoke)!r}, dataset {cfg.dataset!r}, image size {cfg.image_size}")

# %% [markdown]
# ## The dataset in use
#
# Without Market-1501 on disk, reidlab draws its own *synthetic* pedestrians in Market-1501's layout: same
# folders, same file names (`PPPP_cC...jpg`: identity, camera), six cameras with their own light, background
# and blur. No real person appears in it. Once `data_scripts/prepare_market1501.py` has been run, the same
# cells show Market-1501.

# %%
splits = {"train": data.train, "query": data.query, "gallery": data.gallery}
pd.DataFrame({
    name: {"identities": len({r.pid for r in recs}), "images": len(recs),
           "cameras": len({r.camid for r in recs}), "distractors (pid 0)": sum(r.pid == 0 for r in recs)}
    for name, recs in splits.items()
}).T

# %% [markdown]
# Each row below is one camera (0-based here: Market's `c1` is camera 0), with training images of several
# people. The same person looks different from camera to camera: that gap is what the network must bridge.

# %%
rng = np.random.default_rng(0)
cameras = sorted({r.camid for r in data.train})
per_camera = 8
paths, titles = [], []
for cam in cameras:
    recs = [r for r in data.train if r.camid == cam]
    for i in rng.choice(len(recs), size=min(per_camera, len(recs)), replace=False):
        paths.append(recs[i].path)
        titles.append(f"cam {cam} id {recs[i].pid}")
plot_image_grid(paths, titles, ncols=per_camera)

# %% [markdown]
# ## Query, gallery, junk and distractors
#
# - **query**: the images we search with (Market: one per test identity and camera, at most).
# - **gallery**: the images we search in; every test identity's other images, from all cameras.
# - **junk**: files with pid -1 in Market-1501 (badly cropped boxes). They are dropped when the data is loaded.
#   Per query, the gallery images of the *same identity from the same camera* are also ignored: finding the
#   same shot twice is no retrieval. They stay in the ranked list but neither help nor hurt.
# - **distractors**: gallery images with pid 0 (people or false detections that belong to nobody). They
#   stay in the gallery as wrong answers.
#
# One query, its correct matches (same identity, other camera) and the gallery images that are ignored for it:

# %%
shots = Counter((g.pid, g.camid) for g in data.gallery)
q = next((r for r in data.query if shots[r.pid, r.camid]), data.query[0])  # one with same-camera shots if any
matches = [g for g in data.gallery if g.pid == q.pid and g.camid != q.camid]
ignored = [g for g in data.gallery if g.pid == q.pid and g.camid == q.camid]
distractors = [g for g in data.gallery if g.pid == 0][:2]
shown = [q] + matches[:5] + ignored[:2] + distractors
kinds = ["query"] + ["match"] * len(matches[:5]) + ["ignored (same cam)"] * len(ignored[:2]) \
    + ["distractor"] * len(distractors)
print(f"query pid {q.pid} camera {q.camid}: {len(matches)} correct matches, {len(ignored)} ignored")
plot_image_grid([r.path for r in shown], [f"{k}\nid {r.pid} cam {r.camid}" for k, r in zip(kinds, shown)],
                ncols=len(shown))

# %% [markdown]
# ## CMC and mAP, by hand
#
# For one query, sort the gallery by distance, then drop the ignored items (same identity, same camera).
# Let $r_1 < r_2 < \dots < r_m$ be the ranks (1-based) of its $m$ correct matches in what is left.
#
# - **CMC** at rank $k$: the fraction of queries whose first correct match is within the top $k$,
#   $\mathrm{CMC}(k) = \frac{1}{Q}\sum_q [\,r^{(q)}_1 \le k\,]$. Rank-1 is $\mathrm{CMC}(1)$.
# - **AP** of a query: the mean precision at each correct match, $\mathrm{AP} = \frac{1}{m}\sum_{j=1}^m \frac{j}{r_j}$;
#   **mAP** is the mean AP over queries. A query with no correct match left is skipped.
# - **mINP** (a later addition): $\frac{m}{r_m}$, how deep one must read to find the *hardest* match.
#
# A toy example: 3 queries and 7 gallery images, identities and cameras chosen by hand.

# %%
g_pids = np.array([1, 1, 2, 2, 3, 0, 1])  # gallery identity (0 = distractor)
g_cams = np.array([0, 1, 0, 2, 1, 2, 2])
q_pids = np.array([1, 2, 3])
q_cams = np.array([0, 1, 1])  # query 3's only match is in its own camera: it will be skipped
distmat = np.array([
    # g0   g1   g2   g3   g4   g5   g6
    [0.1, 0.5, 0.3, 0.9, 0.8, 0.2, 0.7],  # query 0 (id 1, cam 0)
    [0.6, 0.4, 0.2, 0.8, 0.9, 0.1, 0.3],  # query 1 (id 2, cam 1)
    [0.5, 0.6, 0.7, 0.8, 0.1, 0.2, 0.3],  # query 2 (id 3, cam 1)
])

rows, first_ranks, aps, inps = [], [], [], []
for i in range(len(q_pids)):
    order = np.argsort(distmat[i], kind="stable")  # gallery indices, nearest first
    kept = [g for g in order if not (g_pids[g] == q_pids[i] and g_cams[g] == q_cams[i])]  # drop same id + cam
    hits = [rank for rank, g in enumerate(kept, start=1) if g_pids[g] == q_pids[i]]  # r_1 < r_2 < ...
    if not hits:
        rows.append({"query": i, "ranked (after dropping)": kept, "match ranks": hits, "AP": None})
        continue
    ap = np.mean([j / r for j, r in enumerate(hits, start=1)])  # (1/m) sum_j j / r_j
    first_ranks.append(hits[0])
    aps.append(ap)
    inps.append(len(hits) / hits[-1])
    rows.append({"query": i, "ranked (after dropping)": kept, "match ranks": hits, "AP": round(ap, 4)})
by_hand_cmc = np.array([np.mean(np.array(first_ranks) <= k) for k in range(1, 8)])
by_hand = {"rank1": 100 * float(by_hand_cmc[0]), "mAP": 100 * float(np.mean(aps)),
           "mINP": 100 * float(np.mean(inps))}
display(pd.DataFrame(rows).set_index("query"))
by_hand

# %% [markdown]
# Query 0: its nearest image g0 is ignored (same id and camera); its matches g1 and g6 are then at ranks 3 and 4:
# AP = (1/3 + 2/4) / 2 = 0.417. Query 1: the distractor g5 comes first, its matches g2 and g3 are at ranks 2
# and 6: AP = (1/2 + 2/6) / 2 = 0.417. Query 2 has no match outside its own camera and is skipped.
# So rank-1 = 0 %, CMC(2) = 50 %, CMC(3) = 100 %, mAP = 41.7 %.
#
# The package's `evaluate_ranking` (vectorised, it never sorts whole rows) must agree:

# %%
result = evaluate_ranking(torch.tensor(distmat), q_pids, g_pids, q_cams, g_cams, max_rank=7)
assert np.allclose(result.cmc, by_hand_cmc), (result.cmc, by_hand_cmc)
assert np.isclose(100 * result.mAP, by_hand["mAP"]) and np.isclose(100 * result.mINP, by_hand["mINP"])
assert result.valid.tolist() == [True, True, False]
print("evaluate_ranking agrees with the hand computation:", result.metrics())

# %% [markdown]
# ## A P x K training batch
#
# The triplet loss needs, for every image in a batch, other images of the same person (positives) and of
# other people (negatives). The sampler builds each batch from **P identities x K images** (the paper: 16 x 4):

# %%
show(RandomIdentitySampler._generate)

# %% [markdown]
# One batch of the training loader, one identity per row, after the training transforms (flip, pad and crop,
# and random erasing in half of the images: notebook 03):

# %%
torch.manual_seed(0)
loader = build_train_loader(data.train, cfg.replace(num_workers=0))
loader.sampler.set_epoch(1)
images, pids, camids = next(iter(loader))  # images (P*K, 3, H, W)
assert all((pids == p).sum() == cfg.K for p in pids.unique()) and len(pids.unique()) == cfg.P
print(f"{loader.sampler.num_batches} batches of {cfg.P} x {cfg.K} per epoch; batch shape {tuple(images.shape)}")
plot_image_grid(images, [f"id {p} cam {c}" for p, c in zip(pids.tolist(), camids.tolist())], ncols=cfg.K)

# %%
summary = {
    "dataset": cfg.dataset,
    **{f"{name}_images": len(recs) for name, recs in splits.items()},
    "train_ids": data.num_train_pids,
    "toy_by_hand": by_hand,
    "toy_evaluate_ranking": result.metrics(),
}
(out / "protocol.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"wrote {out / 'protocol.json'}")

# %% [markdown]
# ## Questions / try it
#
# 1. Remove the same-camera filter in the hand computation. How do query 0's AP and the rank-1 change, and
#    why would that flatter a model?
# 2. Market-1501 has 3,368 queries; why does the paper report CMC only up to a small rank while mAP uses
#    every correct match?
# 3. Make query 1's distractor g5 farther than g2. Which numbers change? Check with `evaluate_ranking`.
# 4. With P = 16, K = 4 and 751 identities of about 17 images each, how many batches does an epoch have?
#    Compare with `loader.sampler.num_batches` on Market-1501 (the paper's logs: about 183 to 186).
