"""Small helpers for the notebooks: show package code, pick the dataset, find paths from the repo root."""
from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from reidlab.config import neutral_fields
from reidlab.paths import resolve
from reidlab.profiles import (PROFILES, default_dataset, ensure_warm_epochs, for_profile,  # noqa: F401 (notebooks')
                              resolve_profile, warm_epochs)
from reidlab.runs import RunFolder, changed_data


def enable_figure_display() -> None:
    """In a Jupyter kernel, show matplotlib Figure objects (what reidlab.viz returns) as PNG images.

    Without pyplot or `%matplotlib inline` a bare Figure left as a cell's last expression prints as text;
    importing this module registers the PNG formatter once, so the notebooks need no magic.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    from matplotlib.figure import Figure

    formatter = shell.display_formatter.formatters["image/png"]
    formatter.for_type(Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))


enable_figure_display()


def show(obj) -> None:
    """Display the source of a package function or class (the package is the single source of truth)."""
    source = inspect.getsource(obj)
    try:
        from IPython.display import Markdown, display
        display(Markdown(f"```python\n{source}```"))
    except ImportError:
        print(source)


# --- choosing a profile and training runs for the notebooks: reidlab.profiles builds every run's Config ------



def pick_profile(profile: str = "auto", smoke: bool = False, real_data: bool | None = None) -> str:
    """"smoke" when smoke, else `profile`; "auto" is "full" with a CUDA GPU and real data (by default: Market-1501
    prepared), else "cpu" (profiles.resolve_profile)."""
    return resolve_profile(profile, smoke=smoke, real_data=real_data)


def run_config(preset, profile: str = "auto", dataset: str = "", device: str = "auto", smoke: bool = False,
               **overrides):
    """The Config a notebook trains: a preset (name or Config) under a profile, on a dataset, then `overrides`.

    Profiles: "full" the recipe as the preset says (ResNet-50, 256x128, 120 epochs, ImageNet weights);
    "cpu" with config.CPU_PROFILE; "smoke" with config.SMOKE_PROFILE; "auto" see pick_profile.
    dataset "" means the profile's: "synthetic_small" for smoke, else default_dataset().
    The one builder, profiles.for_profile, which `reidlab train` and reidlab.ablate call too.
    """
    return for_profile(preset, profile, dataset=dataset, device=device, smoke=smoke, **overrides)


def describe_changes(cfg, reference) -> pd.DataFrame:
    """The fields where `cfg` differs from `reference` (e.g. what a profile changed in the paper's recipe)."""
    a, b = cfg.to_dict(), reference.to_dict()
    rows = [{"field": k, "this run": a[k], "reference": b[k]} for k in a if a[k] != b[k]]
    return pd.DataFrame(rows, columns=["field", "this run", "reference"]).set_index("field")


def config_key(cfg) -> str:
    """A short hash of what a run computes (every field but the result-neutral ones): names its run folder."""
    neutral = neutral_fields()
    values = {k: v for k, v in cfg.to_dict().items() if k not in neutral}
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]


def find_finished_run(cfg, near: Path) -> Path | None:
    """A finished run of `cfg` in `near` or in a sibling notebook's folder (`near/../*/`), else None."""
    key = config_key(cfg)
    for folder in [near, *sorted(p for p in near.parent.glob("*") if p.is_dir() and p != near)]:
        for run_dir in sorted(folder.glob(f"*-{key}")):
            run = RunFolder(run_dir)
            if (run.finished() and run.has_config() and config_key(run.config()) == key
                    and not changed_data(run.metrics(), cfg.to_dict())):  # and the dataset on disk is its own
                return run_dir
    return None


def train_runs(configs: Mapping, out_dir: str | Path) -> dict[str, Path]:
    """Train each named config into `out_dir/<name>-<config_key>` and return {name: run folder}.

    A finished run of the same config is reused: from that folder, or copied (without its checkpoint) from
    another notebook's folder beside `out_dir`; an interrupted one resumes. So re-running a notebook is quick.
    """
    from tqdm.auto import tqdm

    from reidlab.datasets import load_dataset
    from reidlab.train import fit

    if not configs:
        raise ValueError("configs is empty: pass {run name: Config}")
    out_dir = resolve(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets, run_dirs = {}, {}
    for name, cfg in tqdm(configs.items(), desc="runs", total=len(configs)):
        run_dir = out_dir / f"{name}-{config_key(cfg)}"
        found = find_finished_run(cfg, out_dir)
        if found is not None and found.parent == out_dir:
            run_dir = found
        elif found is not None:
            RunFolder(run_dir).copy_results_from(RunFolder(found))
        else:
            source = (cfg.dataset, cfg.data_root)
            if source not in datasets:  # read each dataset once for all runs
                datasets[source] = load_dataset(cfg.dataset, resolve(cfg.data_root) / cfg.dataset,
                                                verbose=cfg.progress)
            # a finished run here whose dataset has changed since: scored again from its checkpoint, else (a new
            # training set, or a copy of another folder's run, which has none) trained again
            folder = RunFolder(run_dir)
            moved = changed_data(folder.metrics() or {}, cfg.to_dict())
            retrain = "train_set" in moved
            if moved:
                rescore = not retrain and folder.has_checkpoint()
                print(f"{run_dir}: its dataset changed ({'; '.join(f'{k} {v}' for k, v in moved.items())}): "
                      f"{'scoring' if rescore else 'training'} it again")
            fit(cfg, run_dir, dataset=datasets[source], resume=not retrain)
        run_dirs[name] = run_dir
    return run_dirs


def train_and_compare(configs: Mapping, out_dir: str | Path, paper: Mapping | None = None) -> pd.DataFrame:
    """Train (or reuse) each config and return one row per run: rank-1/5/10, mAP, mINP (percent),
    train_seconds and run_dir, plus paper_rank1 / paper_mAP from `paper` ({name: (rank-1, mAP)})."""
    run_dirs = train_runs(configs, out_dir)
    rows = []
    for name, run_dir in run_dirs.items():
        metrics = RunFolder(run_dir).metrics()
        row = {"run": name, **{k: metrics.get(k) for k in ("rank1", "rank5", "rank10", "mAP", "mINP")},
               "collapsed": bool(metrics.get("collapsed", False))}  # reidlab.collapse
        if paper is not None:
            row["paper_rank1"], row["paper_mAP"] = paper.get(name, (float("nan"), float("nan")))
        row.update(train_seconds=metrics.get("train_seconds"), run_dir=str(run_dir))
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def plot_comparison(df: pd.DataFrame):
    """Rank-1 and mAP of each run of train_and_compare beside the paper's (viz.plot_trick_bars)."""
    from reidlab.viz import plot_trick_bars

    table = df.reset_index().rename(columns={"run": "row", "rank1": "ours_rank1", "mAP": "ours_mAP"})
    for col in ("paper_rank1", "paper_mAP"):
        if col not in table:
            table[col] = float("nan")
    return plot_trick_bars(table)


def plot_run_losses(run_dirs: Mapping, keys: Sequence[str] = ("loss_id", "loss_triplet"), ax=None):
    """Per-epoch training losses of several runs, one panel per loss term, one line per run."""
    from reidlab.runs import load_history
    from reidlab.viz import _axes

    fig, axes = _axes(ax, len(keys), (5 * len(keys), 3.5))
    for name, run_dir in run_dirs.items():
        history = pd.DataFrame(load_history(run_dir))
        for axis, key in zip(axes, keys):
            if key in history:
                axis.plot(history["epoch"], history[key], marker=".", label=name)
    for axis, key in zip(axes, keys):
        axis.set(xlabel="epoch", ylabel=key, title=key)
        if axis.lines:
            axis.legend(fontsize="small")
    return fig


def plot_image_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 8,
                    size: tuple[int, int] = (128, 64), ax=None):
    """Images in a grid: file paths, PIL images, (H, W, 3) arrays or normalised (3, H, W) tensors."""
    import numpy as np
    import torch
    from PIL import Image

    from reidlab.transforms import denormalize
    from reidlab.viz import _axes

    if len(images) == 0:
        raise ValueError("images is empty: pass at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(images)} images but {len(titles)} titles; give one title per image or none")
    nrows = -(-len(images) // ncols)
    fig, axes = _axes(ax, len(images), (0.9 * min(ncols, len(images)), 1.9 * nrows), ncols=ncols)
    for i, (axis, image) in enumerate(zip(axes, images)):
        if isinstance(image, torch.Tensor):
            image = denormalize(image).permute(1, 2, 0).numpy()  # (3, H, W) -> (H, W, 3)
        elif isinstance(image, (str, Path)):
            with Image.open(image) as im:
                image = np.asarray(im.convert("RGB").resize((size[1], size[0])))  # PIL wants (width, height)
        axis.imshow(np.asarray(image))
        axis.set_xticks([])
        axis.set_yticks([])
        if titles is not None:
            axis.set_title(titles[i], fontsize=7)
    return fig


def trained_dir(run_dir) -> Path:
    """The folder holding a run's checkpoint: train_runs copies a finished run from another notebook's folder
    without it and writes where it came from into reused_from.txt (followed here, copy after copy)."""
    return RunFolder(run_dir).trained().path


def trick_delta(df: pd.DataFrame, trick: str, previous: str, out_dir: str | Path) -> pd.DataFrame:
    """What adding `trick` to `previous` changed here, beside the paper's change; written to out_dir as
    delta.csv (and the runs' table as comparison.csv). When either run collapsed (reidlab.collapse), the column
    says so: that pair's change says nothing about the trick."""
    from reidlab.paper import delta

    collapsed = [name for name in (previous, trick) if "collapsed" in df and bool(df.loc[name, "collapsed"])]
    column = f"this run (collapsed: {', '.join(collapsed)})" if collapsed else "this run"
    table = pd.DataFrame({
        column: df.loc[trick, ["rank1", "mAP"]].to_numpy() - df.loc[previous, ["rank1", "mAP"]].to_numpy(),
        "paper (Market-1501)": delta(trick, previous),
    }, index=["rank-1 change", "mAP change"]).round(1)
    table.to_csv(resolve(out_dir) / "delta.csv")
    df.drop(columns="run_dir").to_csv(resolve(out_dir) / "comparison.csv")
    return table


COMMITTED_MARKET = "tricks_market1501_cpu"  # `make market`'s table: the chain on real Market-1501, 3 seeds


def committed_pair(trick: str, previous: str, name: str = COMMITTED_MARKET,
                   tables: str | Path = "results/tables") -> pd.DataFrame | None:
    """Two rows of a committed chain table (results/tables/<name>.csv) and the change between them: ours as
    mean ± std over seeds, the change with its 95 % interval over paired seeds and its verdict
    (reidlab.results.verdict), the paper's change beside. Prints the seed-noise yardstick as measured there: how
    much a row moves with the seed (std of its mAP) and how wide the change's interval is. None, saying how to
    make the table, when it is not committed (or lacks one of the rows)."""
    import math

    from reidlab.results import format_delta, format_value, verdict

    path = resolve(tables) / f"{name}.csv"
    if not path.exists():
        print(f"no committed {path.name}: `make market` makes it (about two hours on 2 cores)")
        return None
    table = pd.read_csv(path).set_index("row")
    if trick not in table.index or previous not in table.index:
        print(f"{path.name} has no row {trick if trick not in table.index else previous!r}")
        return None
    a, b = table.loc[previous], table.loc[trick]
    cell = lambda r, m: format_value(r[f"ours_{m}"], r.get(f"ours_{m}_std", math.nan))  # noqa: E731
    change = {m: format_delta(b.get(f"ours_d_{m}", math.nan), lo=b.get(f"ours_d_{m}_lo", math.nan),
                              hi=b.get(f"ours_d_{m}_hi", math.nan)) for m in ("rank1", "mAP")}
    out = pd.DataFrame({
        "n": [int(a["n"]), int(b["n"]), ""],
        "rank-1": [cell(a, "rank1"), cell(b, "rank1"), change["rank1"]],
        "mAP": [cell(a, "mAP"), cell(b, "mAP"), change["mAP"] + f" ({verdict(b, a)})"],
        "paper rank-1 / mAP": [f"{a['paper_rank1']:.1f} / {a['paper_mAP']:.1f}",
                               f"{b['paper_rank1']:.1f} / {b['paper_mAP']:.1f}",
                               f"{b['paper_d_rank1']:+.1f} / {b['paper_d_mAP']:+.1f}"],
    }, index=[a["label"], b["label"], "change [95 % interval]"])
    spread = [r.get("ours_mAP_std", math.nan) for r in (a, b)]
    half = (b.get("ours_d_mAP_hi", math.nan) - b.get("ours_d_mAP_lo", math.nan)) / 2
    print(f"Seed noise as measured in {path.name}: these rows' mAP moves by {spread[0]:.1f} and {spread[1]:.1f} "
          f"points (std over {int(b['n'])} seeds); this change's 95 % interval is ±{half:.1f} points wide.")
    return out


def paired_claim(name_a: str, a: Mapping, name_b: str, b: Mapping, what: str, expect: str = "lower") -> pd.DataFrame:
    """A claim "b's `what` is `expect` ("lower" or "higher") than a's", checked over seeds: {seed: value} for each,
    the change b - a per seed, its 95 % interval over the paired seeds (reidlab.results.paired_interval) and the
    verdict printed: holds / the opposite holds / cannot tell (the interval holds 0, or fewer than two seeds)."""
    from reidlab.results import paired_interval

    if expect not in ("lower", "higher"):
        raise ValueError(f"expect={expect!r} must be 'lower' or 'higher'")
    table = pd.DataFrame({name_a: pd.Series(a, dtype=float), name_b: pd.Series(b, dtype=float)})
    table.index.name = "seed"
    table[f"{name_b} - {name_a}"] = table[name_b] - table[name_a]
    lo, hi, n = paired_interval(table[name_a], table[name_b])
    mean = table[f"{name_b} - {name_a}"].mean()
    below, above = hi < 0, lo > 0
    if pd.isna(lo):
        said = f"cannot tell from {n} seed(s): an interval needs two"
    elif (expect == "lower" and below) or (expect == "higher" and above):
        said = "the claim holds here"
    elif below or above:
        said = "the opposite holds here"
    else:
        said = "cannot tell at this scale (the interval holds 0)"
    print(f"claim: {name_b}'s {what} is {expect} than {name_a}'s. Over {n} paired seeds the change is {mean:+.4g}, "
          f"95 % interval [{lo:+.4g}, {hi:+.4g}]: {said}.")
    return table
