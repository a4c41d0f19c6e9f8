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
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Experiment: one parameterised run
#
# The single run behind every ablation table: a preset named after a row of the paper, a profile (how big a
# run: `full` = the paper's recipe, `cpu` = minutes on a laptop, `smoke` = seconds), and the config fields the
# row changes. `python -m reidlab.ablate GRID` executes this notebook once per row with papermill and keeps
# the executed copy in the run folder beside `config.json`, `history.jsonl` and `metrics.json`.
#
# Run it by hand too: change the parameters below and run all cells. Running it again resumes from the
# run folder's checkpoint.

# %% tags=["parameters"]
preset: str = "bot"  # a key of reidlab.PRESETS: baseline_s, warmup, center_loss or bot, tmm_neck1, ...
profile: str = "auto"  # "full", "cpu", "smoke", or "auto": full with CUDA and a prepared real dataset, else cpu
overrides: dict = {}  # Config fields to change, e.g. {"label_smoothing": False}
smoke: bool = False  # True: the smoke profile whatever `profile` says (seconds, for the tests)
dataset: str = ""  # "": Market-1501 when prepared, else the synthetic set (smoke: its tiny set)
test_dataset: str = ""  # cross-domain (CVPRW Table 3): also test on this dataset's query / gallery
intra_inter: bool = False  # also compute R, mean intra-class over mean inter-class distance, TMM Table V
device: str = "auto"
out_dir: str = "runs/experiment"  # relative paths start at the repository root

# %%
import pandas as pd

from reidlab.evaluations import evaluate_cross_domain, extract_test_features
from reidlab.profiles import build_config
from reidlab.runs import RunFolder, read_finished
from reidlab.paths import resolve
from reidlab.results import intra_inter_ratio
from reidlab.train import fit
from reidlab.viz import plot_history

cfg = build_config(preset, profile, overrides, smoke=smoke, dataset=dataset, device=device)
run_dir = resolve(out_dir)
print(f"preset {preset}, {'smoke' if smoke else profile} profile, dataset {cfg.dataset}, run folder {run_dir}")
print("changed from the preset:", {k: v for k, v in cfg.to_dict().items()
                                   if v != build_config(preset, "full", {}, dataset=cfg.dataset).to_dict()[k]})

# %% [markdown]
# ## Train and evaluate
#
# `fit` writes `config.json`, `history.jsonl` (one line per epoch), `checkpoint.pt` and `metrics.json`;
# if the folder already holds a checkpoint it resumes from it. A finished run of this config is only read: so
# runs trained without Jupyter (`python -m reidlab.ablate GRID --executor direct`) get this notebook, executed,
# when it is run over their folders later.

# %%
metrics = read_finished(cfg, run_dir)
if metrics is None:
    metrics = fit(cfg, run_dir)

# %% [markdown]
# ## Cross-domain and R
#
# With `test_dataset`, the trained model is scored on the other dataset (the source domain's metrics move
# under `source`). With `intra_inter`, R = mean distance between features of one identity / mean distance
# between features of different identities, on the test images (smaller: tighter clusters).

# %%
if test_dataset:
    metrics = evaluate_cross_domain(run_dir, test_dataset)
if intra_inter and "R" not in metrics:
    features, pids = extract_test_features(run_dir, test_dataset or None)
    metrics = RunFolder(run_dir).add_metrics(R=intra_inter_ratio(features, pids))

# %%
shown = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
pd.DataFrame([shown], index=[preset]).T.rename(columns={preset: "value"})

# %% [markdown]
# ## Training curves

# %%
plot_history(run_dir)
