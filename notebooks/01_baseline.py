# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Baseline-S, the standard baseline
#
# Every trick in the paper is measured against **Baseline-S** (CVPRW section 2): a ResNet-50 pretrained on
# ImageNet with last stride 2; global average pooling gives the 2048-d feature $f$; a fully connected layer
# on $f$ gives identity logits. Two losses train it, both on $f$:
# the ID loss (plain softmax cross-entropy over the 751 training identities) and the batch-hard triplet loss
# (margin 0.3). Batches are P x K = 16 x 4, images 256x128 with flip, 10-pixel padding and random crop;
# Adam with lr 3.5e-4, divided by 10 at epochs 40 and 70, 120 epochs; tested on $f$, Euclidean distance.
#
# **The paper's number (Table 1, Market-1501): rank-1 87.7, mAP 74.0.** Each later notebook adds one trick
# on top of this row.

# %% tags=["parameters"]
smoke: bool = False  # seconds-long run on the tiny synthetic set (the tests use it)
dataset: str = ""  # "" -> reidlab.notebook.default_dataset(): Market-1501 if prepared, else synthetic
device: str = "auto"
out_dir: str = "results/notebooks/01_baseline"
profile: str = "auto"  # "auto", "full", "cpu" or "smoke"

# %%
from reidlab import PRESETS
from reidlab.losses import batch_hard_triplet
from reidlab.notebook import (describe_changes, pick_profile, plot_comparison, run_config, show,
                              train_and_compare)
from reidlab.paper import TABLE1 as PAPER
from reidlab.paths import resolve
from reidlab.train import compute_losses
from reidlab.viz import plot_history

cfg = run_config("baseline_s", profile, dataset, device, smoke=smoke)
print(f"profile {pick_profile(profile, smoke)!r}, dataset {cfg.dataset!r}, device {device!r}")

# %% [markdown]
# ## The recipe, and what this run changes
#
# The preset `baseline_s` is the paper's row: every trick off (`warmup`, `random_erasing`, `label_smoothing`,
# `bnneck`, `center_loss` False, `last_stride` 2). Without a GPU and Market-1501 the notebook trains a small
# version of it (the CPU profile: ImageNet MobileNetV2 at 64 x 32, 8 epochs with the same schedule shape and the
# recipe's learning rate; `reidlab.config.CPU_PROFILE` says what else differs and why).
# The fields where this run differs from the paper's recipe:

# %%
describe_changes(cfg, PRESETS["baseline_s"])

# %% [markdown]
# ## The losses
#
# The training loop sums the terms this config trains: here the ID loss (cross-entropy with `eps = 0`, since
# label smoothing is off) and the triplet loss. Batch-hard mining takes, for every anchor $a$ in the batch, its
# farthest positive and its nearest negative:
# $L_{tri} = \frac{1}{B}\sum_a \left[\max_{p} d(a, p) - \min_{n} d(a, n) + m\right]_+$.

# %%
show(compute_losses)
show(batch_hard_triplet)

# %% [markdown]
# ## Train and evaluate
#
# `train_and_compare` runs `reidlab.train.fit` into `out_dir/baseline_s-<hash>`. A finished run of the same
# config is reused (also one made by another notebook), so running the notebook again is quick.

# %%
df = train_and_compare({"baseline_s": cfg}, out_dir, paper=PAPER)
run_dir = df.loc["baseline_s", "run_dir"]
df.drop(columns="run_dir").round(1)

# %% [markdown]
# ## Training curves
#
# The ID loss starts near $\ln N$ (N training identities: a uniform guess) and falls; the triplet loss starts
# near the margin 0.3 plus whatever the random features' distances give, and falls as positives pull together.

# %%
plot_history(run_dir)

# %% [markdown]
# ## This run beside the paper

# %%
plot_comparison(df)

# %%
ours = df.loc["baseline_s"]
print(f"paper (Market-1501, ResNet-50, 120 epochs): rank-1 {PAPER['baseline_s'][0]}, mAP {PAPER['baseline_s'][1]}")
print(f"this run ({cfg.dataset}, {cfg.backbone}, {cfg.epochs} epochs): rank-1 {ours.rank1:.1f}, mAP {ours.mAP:.1f}")
df.drop(columns="run_dir").to_csv(resolve(out_dir) / "comparison.csv")

# %% [markdown]
# Only the full recipe on Market-1501 (GPU, `profile="full"`) can be held against 87.7 / 74.0. On the
# synthetic set with the CPU profile the absolute numbers measure a different, smaller problem; what the
# next notebooks compare is the *change* each trick makes on top of this row, with the paper's own change
# beside it. Run-to-run noise is about 1 point on Market (the paper and reruns), and larger on a small test set.
#
# ## Questions / try it
#
# 1. The ID loss of the first epoch: compare it with $\ln N$ for this dataset's N (`cfg` and `metrics.json`
#    hold the number of training identities). Why is that the value of a uniform guess?
# 2. Rank by cosine distance (`run_config("baseline_s", ..., distance="cosine")`). With
#    `normalize_features=True` the squared Euclidean distance is $2 - 2\cos$: should rank-1 change? Why?
# 3. Train with only the ID loss (`neck="neck1"`) or only the triplet loss (`neck="neck2"`). TMM Table III
#    gives the paper's answer with the first four tricks on: 89.4 / 77.5 (ID only), 91.0 / 80.9 (triplet
#    only), 92.0 / 81.7 (both).
# 4. Change `seed` and run again: how far does rank-1 move on this test set? That spread is the yardstick for
#    every delta in the next notebooks.
