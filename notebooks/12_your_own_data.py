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
# # 12 · Your own data: from a folder of crops to a ranked gallery and an ONNX model
#
# Everything so far served the paper's datasets. This notebook takes **your** folder of person crops and
# runs the whole strong baseline on it: it checks the folder (images per identity and camera, identities with
# one image, files that do not decode), splits it into train / query / gallery when it is not split already
# (the rule is printed below), trains BoT (the full recipe on a GPU, the CPU profile on a CPU), evaluates,
# opens the query browser on the result and exports the model to ONNX, checked against PyTorch.
#
# **Your folder**, in any layout `reidlab` reads (`docs/datasets.md`):
#
# - one pool of images, split here: `ROOT/0001/cam3_x.jpg` with
#   `regex=r"^(?P<pid>\d+)/cam(?P<cam>\d+)_"`, or Market-style names `0001_c3_x.jpg` (no regex needed), or
#   `ROOT/labels.csv` with the header `path,pid,camid` (paths relative to ROOT; `path,pid` without cameras);
# - or already split: `ROOT/train/`, `ROOT/query/`, `ROOT/gallery/`, labelled the same ways.
#
# With `folder=""` it writes an example: the synthetic people of `reidlab.synthetic` (no real person) in a
# layout of their own, `person_<pid>/cam<camera>_<frame>.jpg`, not split.

# %% tags=["parameters"]
smoke: bool = False  # True: seconds on a CPU (the smoke profile on a small example folder), for the tests
dataset: str = "custom"  # the name your data gets in config.json
device: str = "auto"
out_dir: str = "results/notebooks/12_your_own_data"  # split, run, figures, model.onnx; relative to the repository root
folder: str = ""  # your folder of crops; "": an example pool of synthetic people written into out_dir
regex: str = ""  # groups (?P<pid>...) and (?P<cam>...) (optional) searched in each image's path below the folder
csv: str = ""  # a `path,pid,camid` file; "": ROOT/labels.csv when it exists, else regex or Market-style names
test_fraction: float = 0.5  # share of the identities seen by two or more cameras that are tested
split_seed: int = 0
drop_unreadable: bool = False  # False: a file that does not decode stops the notebook, naming it
preset: str = "bot"  # a row of the paper's tables (reidlab.PRESETS)
profile: str = "auto"  # "auto": the full recipe with a CUDA GPU, else "cpu"; or "full", "cpu"; smoke wins
exporter: str = "dynamo"  # torch.onnx's exporter: "dynamo" (the default) or "torchscript" (faster, deprecated)
top_k: int = 10  # gallery images per ranked list

# %%
import json

import pandas as pd
import torch

from reidlab import PRESETS
from reidlab.browser import QueryBrowser, RunView
from reidlab.evaluate import compute_distance, evaluate_ranking, extract_features
from reidlab.export import OnnxEmbedder, export_onnx
from reidlab.inference import embed_batch, load_run
from reidlab.loaders import build_test_loader
from reidlab.notebook import describe_changes, show
from reidlab.own_data import (SPLIT_RULE, check_folder, describe_split, own_config, pick_own_profile,
                              plot_folder_check, split_pool, to_dataset, train_own, write_example_folder,
                              write_split)
from reidlab.paths import resolve
from reidlab.viz import plot_history, plot_ranked_lists, savefig

out = resolve(out_dir)
out.mkdir(parents=True, exist_ok=True)
if folder:
    root, labels = resolve(folder), regex or None
else:  # the example: 24 synthetic people under smoke, 300 otherwise (reusing data/synthetic*'s drawings)
    root, labels = write_example_folder(out / "example_folder", num_ids=24 if smoke else 300)
    labels = regex or labels
print(f"folder {root}\nlabels: {'csv ' + csv if csv else 'regex ' + repr(labels) if labels else 'Market names'}; "
      f"profile {pick_own_profile(profile, smoke)!r}")

# %% [markdown]
# ## 1 · Check the folder
#
# Every image gets a person id (pid) and a camera from its name, the regex or the CSV; an image whose labels
# cannot be read stops here with the list of such files and the fix. Each file is also decoded once, so a
# truncated or corrupt file is found now rather than in the middle of training.

# %%
check = check_folder(root, regex=labels, csv=csv or None)
print(check.summary())
plot_folder_check(check)

# %% [markdown]
# Identities with one image can train (the ID loss sees them) but give no positive pair for the triplet loss
# and cannot be queried. The cameras matter for evaluation: as in the benchmarks, a gallery image of the
# query's person **taken by the query's own camera** is left out of its ranking (the same shot seen twice is no
# retrieval), so give each physical camera its own label.

# %%
per_identity = check.per_identity()
print(f"identities with one image: {check.single_image_ids()[:20]}"
      f"{' ...' if len(check.single_image_ids()) > 20 else ''}")
print(f"unreadable files: {len(check.unreadable)}")
for path, why in list(check.unreadable.items())[:10]:
    print(f"  {path}: {why}")
per_identity.describe().T.round(1)

# %%
check.per_camera()

# %% [markdown]
# ## 2 · Train / query / gallery
#
# A folder already split into `train/`, `query/`, `gallery/` is used as it is. A pool is split by this rule
# (the function below is the code that does it):

# %%
print(SPLIT_RULE)
show(split_pool)

# %%
data = to_dataset(check, test_fraction=test_fraction, seed=split_seed, drop_unreadable=drop_unreadable,
                  name=dataset)
write_split(data, out / "split.csv")  # every image with its split, pid and camid: what was trained and tested
describe_split(data)

# %% [markdown]
# ## 3 · Train
#
# The preset's recipe under the chosen profile: on a CUDA GPU the paper's full recipe (ResNet-50, 256 x 128,
# 120 epochs), on a CPU the small CPU profile (MobileNetV2 at 64 x 32, 8 epochs), under `smoke` a few seconds.
# P (identities per batch) is capped at the number of training identities. The run folder is named after the
# config and the split, so running the notebook again reuses a finished run and resumes an interrupted one.
# The fields where this run differs from the paper's recipe:

# %%
cfg = own_config(data, preset=preset, profile=profile, device=device, smoke=smoke)
describe_changes(cfg, PRESETS[preset])

# %%
run_dir = train_own(cfg, data, out / "runs", name=preset)
print(f"run folder: {run_dir}")
plot_history(run_dir)

# %% [markdown]
# ## 4 · Evaluate
#
# Each query ranks the whole gallery by the run's test feature (BoT: f_i after the BNNeck, L2-normalised,
# squared Euclidean distance). Rank-k is the share of queries with a correct match in the first k; mAP
# averages the precision at every correct match, so it counts the hard positives deep in a list too.

# %%
model, run_cfg = load_run(run_dir, device=device)
dev = next(model.parameters()).device
qf, q_pids, q_camids = extract_features(model, build_test_loader(data.query, run_cfg), dev, flip=run_cfg.flip_test)
gf, g_pids, g_camids = extract_features(model, build_test_loader(data.gallery, run_cfg), dev, flip=run_cfg.flip_test)
dist = compute_distance(qf, gf, metric=run_cfg.distance, normalize=run_cfg.normalize_features)
result = evaluate_ranking(dist, q_pids, g_pids, q_camids, g_camids)
metrics = {**result.metrics(), "queries": len(data.query), "gallery": len(data.gallery),
           "train_ids": data.num_train_pids}
(out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
pd.Series(metrics).round(2).to_frame("this run")

# %% [markdown]
# The queries with the lowest AP: green a correct match (same person, another camera), red another person,
# grey the same person seen by the same camera (left out by the protocol).

# %%
fig = plot_ranked_lists(data.query, data.gallery, result, distances=dist, worst_first=True, n=4, k=top_k)
savefig(fig, "ranked_worst", out)
fig

# %% [markdown]
# ## 5 · Browse every query
#
# Move the query slider, jump to a person id, filter (rank-1 failures, worst AP first, by camera).

# %%
browser = QueryBrowser([RunView(f"{preset} on {dataset}", data.query, data.gallery, result, dist)], k=top_k)
browser

# %% [markdown]
# ## 6 · Export to ONNX
#
# `export_onnx` writes the test-time feature exactly as evaluation computes it (this function, traced, with a
# dynamic batch axis), with the preprocessing (size, mean, std) and the distance in the file's metadata. It
# runs the file with onnxruntime on a batch and compares with PyTorch (cosine >= 0.99999 per row), and only
# then moves it into place. The same from a shell: `reidlab export RUN --onnx model.onnx`.

# %%
show(embed_batch)

# %%
report = export_onnx(run_dir, out / "model.onnx", exporter=exporter,
                     images=[r.path for r in data.query[:8]])  # checked on 8 of your query images
(out / "export_check.json").write_text(json.dumps(report, indent=2) + "\n")
pd.Series(report).to_frame("export")

# %% [markdown]
# The exported file on every query image, against the PyTorch features evaluation used above:

# %%
onnx_feats = OnnxEmbedder(out / "model.onnx").embed([r.path for r in data.query])
reference = torch.nn.functional.normalize(qf, dim=1) if run_cfg.normalize_features else qf
cosine = torch.nn.functional.cosine_similarity(onnx_feats.double(), reference.double(), dim=1)
print(f"{len(cosine)} query images: least cosine {cosine.min():.8f}, "
      f"largest difference {(onnx_feats - reference).abs().max():.2e}")

# %% [markdown]
# To rank new images with it, outside this notebook (a run folder works in place of the ONNX file):
#
#     reidlab rank results/notebooks/12_your_own_data/model.onnx --query QUERY_DIR --gallery GALLERY_DIR \
#         --top 10 --html ranked.html
#
# ## Questions / try it
#
# 1. Set `test_fraction=0.3`: fewer test identities. How do rank-1 and mAP move, and why is a small test set
#    a noisy yardstick (compare two `split_seed`s)?
# 2. Remove the cameras from the regex (`^person_(?P<pid>\d+)/`): each image is then its own camera. Which
#    gallery images enter the rankings now, and what happens to rank-1? Why?
# 3. Corrupt one file in your folder (`head -c 100 a.jpg > b.jpg`) and rerun: what does the check say, and what
#    does `drop_unreadable=True` change?
# 4. Export with `exporter="torchscript"` and compare the two files' check figures and export times.
# 5. Your cameras differ from Market's (angle, light, resolution). Which tricks of the paper would you expect
#    to matter most on your data, and how would you test it (notebooks 02-07 take `dataset=`)?
