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
# # 11 Ablation summary: our tables beside the paper's
#
# The batch ablations (`python -m reidlab.ablate GRID`, or `make demo` for the trick chain) train one run per
# row of a paper's table into `results/runs/<grid>/<row>/`. This notebook trains nothing of its own (but in
# smoke mode, see below): it reads those folders back with `reidlab.results`, puts each grid beside the
# paper's table, and asks of every row what the paper asks: did the trick help, and by about as much?
#
# The paper's anchors (Market-1501, rank-1 / mAP): Baseline-S 87.7 / 74.0 -> full BoT 94.5 / 85.9, +6.8 /
# +11.9 in six tricks; the largest steps are random erasing (+2.6 / +4.1) and BNNeck (+2.1 / +4.0), the
# smallest label smoothing (+0.1 / +1.0) and center loss (+0.4 / +0.2); re-ranking adds +0.9 / +8.3. How far
# a row moves with the seed is measured, not assumed: the committed Market chain below gives each row's std over
# three seeds and each step's 95 % interval; `--seeds 3` does the same for any grid.

# %% tags=["parameters"]
smoke: bool = False  # True: seconds on a CPU: runs a 2-row grid in the smoke profile to have a table to show
dataset: str = ""  # "": the dataset of the runs found (Market-1501 first, then synthetic)
device: str = "auto"
profile: str = "auto"  # the profile of the smoke grid ("smoke" in smoke mode); the tables show any runs
out_dir: str = "results/notebooks/11_ablation_summary"  # tables and figures; relative to the repository root
runs_root: str = "results/runs"  # where the batch runs live: <runs_root>/<grid>/<row>/

# %%
import tempfile
from pathlib import Path

from IPython.display import Image, Markdown, display
from matplotlib.figure import Figure

from reidlab.ablate import run_grid
from reidlab.grids import GRIDS, PAPER_TABLES
from reidlab.paths import resolve
from reidlab.publish import committed_table
from reidlab.results import build_table, format_table, load_runs, paper_table, trick_verdicts
from reidlab.viz import plot_trick_bars, savefig

out = resolve(out_dir)
out.mkdir(parents=True, exist_ok=True)
# smoke mode never touches the real runs: its grid goes under out_dir
root = out / "runs" if smoke else resolve(runs_root)


def finished_grids(root: Path) -> dict[str, list[str]]:
    """{grid: datasets with finished runs} for every grid folder under root (named grids first)."""
    found = {}
    folders = sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
    for folder in sorted(folders, key=lambda p: (p.name not in GRIDS, p.name)):
        runs = load_runs(folder.name, root)
        if not runs.empty and "dataset" in runs:
            found[folder.name] = sorted(runs["dataset"].unique(), key=lambda d: (d != "market1501", d))
    return found


grids = finished_grids(root)
print(f"runs under {root}: " + (", ".join(f"{g} ({', '.join(d)})" for g, d in grids.items()) or "none yet"))

# %% [markdown]
# ## The committed chain on real Market-1501
#
# `make market` trains every row of Table 1 on Market-1501 in its CPU profile (ImageNet MobileNetV2 at 96 x 48,
# 6 epochs at base_lr 1e-3, seeds 0-2; about two hours on 2 cores) and commits the table, its verdicts and its
# figure; the header names the command, the commit, the machine and the wall time. It is the reference the
# runs below (yours, or the demo's synthetic ones) compare with.

# %%
committed = committed_table("tricks_market1501_cpu")
if committed is None:
    print("no committed results/tables/tricks_market1501_cpu.md yet: `make market` makes it")
else:
    display(Markdown(committed.split("\n", 1)[1]))
    chart = resolve("results/figures/tricks_market1501_cpu.png")
    if chart.exists():
        display(Image(filename=str(chart)))

# %% [markdown]
# ## No runs yet? Make them
#
# A fresh clone has no runs. The main job trains the whole trick chain (CVPRW Table 1) on the synthetic set in
# the CPU profile, or on Market-1501 when it is prepared (the `full` profile on a GPU):
#
# ```bash
# make demo                                                   # the tricks grid, then its table
# .venv/bin/python -m reidlab.ablate tricks --profile cpu     # the same, by hand
# .venv/bin/python -m reidlab.ablate necks --seeds 3          # TMM Table III, 3 seeds per row
# ```
#
# Named grids: `tricks` (Table 1), `features` (Table 2), `necks` (TMM Table III), `center_beta` (TMM Table V),
# `cross_domain` (Table 3), `batch` (Table 5), `image_size` (Table 6), `backbones` (TMM Table IX); or a YAML
# file of your own rows. In smoke mode, when no runs are found, the next cell runs a tiny grid itself: two
# adjacent rows of the trick chain, `last_stride` and `bnneck`, through the same experiment notebook as the
# batch runs, in the smoke profile (seconds per row), so that the rest of this notebook has something to show.

# %%
if smoke and not grids:
    grid_file = Path(tempfile.mkdtemp()) / "tricks.yaml"
    # a subset of the tricks grid, under the grid's own name so that its table joins CVPRW Table 1
    grid_file.write_text("name: tricks\nruns:\n  - {name: last_stride, preset: last_stride}\n"
                         "  - {name: bnneck, preset: bnneck}\n")
    report = run_grid(str(grid_file), dataset=dataset, out=root, profile="smoke",
                      sets={"epochs": 1} if device == "auto" else {"epochs": 1, "device": device})
    print(report.summary())
    grids = finished_grids(root)
if not grids:
    display(Markdown(f"**No finished runs under `{root}`.** Run `make demo` (or a command above) and re-run "
                     "this notebook. Meanwhile, the paper's Table 1 alone:"))
    display(paper_table("table1"))

# %% [markdown]
# ## Each grid beside the paper
#
# One table per grid and dataset: ours (mean ± std over seeds when a row has several), the paper's (Market-1501
# columns for any dataset but DukeMTMC-reID, whose own columns exist), and for the trick chain the change each
# row makes over the row above (Δ), ours and the paper's. Tables and bar charts are also written to `out_dir`.

# %%
tables = {}
for grid, datasets in grids.items():
    for ds in datasets if not dataset else [d for d in datasets if d == dataset]:
        table = build_table(grid, ds, root=root)
        tables[grid, ds] = table
        table.to_csv(out / f"{grid}_{ds}.csv", index=False, float_format="%.4g")
        ref = f"paper: {PAPER_TABLES[grid]} ({table['paper_ref'].iloc[0]})" if grid in PAPER_TABLES else "no paper table"
        display(Markdown(f"### {grid} on {ds}, {len(table)} rows; {ref}\n\n{format_table(table)}"))
if not tables and grids:
    print(f"no runs on dataset {dataset!r}; datasets with runs: {sorted({d for ds in grids.values() for d in ds})}")

# %% [markdown]
# ## Did each trick help here?
#
# For the cumulative grid (tricks), one verdict per row, read off the 95 % interval of its mAP change vs the row
# above, over paired seeds (seed i against seed i, so the seed's own luck cancels): "helped" when the interval
# lies above 0, "hurt" below 0, "cannot tell at this scale" when it holds 0 (or one seed gives no interval), and
# "collapsed" when a run of either row collapsed (its features all alike: `reidlab.collapse`), whatever the means
# did. The paper's change is beside it.

# %%
for (grid, ds), table in tables.items():
    lines = trick_verdicts(table)
    if lines:
        print(f"{grid} on {ds}:\n  " + "\n  ".join(lines))

# %% [markdown]
# ## Rank-1 and mAP, ours beside the paper's
#
# The paper's bars are Market-1501 (or Duke) with a pretrained ResNet-50 for 120 epochs; ours are whatever the
# profile trained. On the synthetic set in the CPU profile the *levels* are not comparable: read the *order* of
# the rows and the sign of each step.

# %%
figures = []
for (grid, ds), table in tables.items():
    bars = table.assign(**{c: table.get(c, float("nan")) for c in ("paper_rank1", "paper_mAP")})
    fig = plot_trick_bars(bars)
    fig.suptitle(f"{grid} on {ds}" + (f" (paper: {bars['paper_ref'].iloc[0]})" if grid in PAPER_TABLES else ""))
    savefig(fig, f"{grid}_{ds}", out)
    figures.append(fig)
    display(fig)
if not figures:
    table1 = paper_table("table1")
    bars = table1.assign(ours_rank1=float("nan"), ours_mAP=float("nan"), paper_rank1=table1["market_rank1"],
                         paper_mAP=table1["market_mAP"])
    fig = plot_trick_bars(bars)
    fig.suptitle("CVPRW Table 1 (Market-1501): the paper's bars; ours appear once runs exist")
    display(fig)

# %% [markdown]
# ## Deltas side by side
#
# The trick chain's steps as one picture: for each trick, the change in mAP it made here and in the paper.
# Bars of the same sign agree on the direction; the paper's steps are 1 to 4 points on Market.

# %%
for (grid, ds), table in tables.items():
    if "ours_d_mAP" not in table:
        continue
    steps = table.dropna(subset=["ours_d_mAP"]).set_index("label")[["ours_d_mAP", "paper_d_mAP"]]
    fig = Figure(figsize=(7, 1.6 + 0.5 * len(steps)), layout="constrained")
    axis = fig.subplots()
    steps.rename(columns={"ours_d_mAP": f"ours ({ds})", "paper_d_mAP": "paper"}).plot.barh(ax=axis)
    axis.axvline(0, color="k", lw=0.8)
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
    axis.set(xlabel="mAP change vs the row above (points)", ylabel="", title=f"{grid}: what each step did")
    savefig(fig, f"{grid}_{ds}_deltas", out)
    display(fig)

# %% [markdown]
# ## Questions / try it
#
# 1. Which of our steps disagrees in sign with the paper's? Rerun that grid with `--seeds 3`: is the
#    disagreement larger than the std?
# 2. Random erasing helps on Market but hurts cross-domain (CVPRW Table 3). Run
#    `python -m reidlab.ablate cross_domain --dataset market1501` once Market and Duke are prepared, and add it.
# 3. The synthetic set has six cameras and identity "families" that differ in one detail. Which tricks would
#    you expect to matter less there than on Market, and why?
# 4. Write a YAML grid of three label-smoothing values (`smoothing_eps` 0.05, 0.1, 0.2) and show it here.
