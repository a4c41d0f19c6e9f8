"""The results store: run folders -> pandas tables beside the paper's numbers, written as CSV, Markdown, figures.

    load_runs("tricks")                  # one row per run folder of results/runs/tricks
    build_table("tricks", "synthetic")   # ours (mean +- std over seeds) | paper | deltas
    write_table(table, "tricks", "synthetic")

The paper's tables live in results/paper/<table>.csv, typed from the papers; their `row` column holds the run
names the grids use (reidlab.grids). A synthetic or other dataset is compared with the Market-1501 columns.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from reidlab.grids import DERIVED_ROWS, GRIDS, PAPER_TABLES, UNTRAINED
from reidlab.paths import RESULTS_ROOT, resolve
from reidlab.runs import RunFolder

PAPER_ROOT = RESULTS_ROOT / "paper"
METRICS = ("rank1", "mAP", "mINP", "R")
BAG = ("baseline_s", "center_loss")  # the tricks grid's first row and its last trained one (the full BoT)
DELTA_GRIDS = ("tricks",)  # cumulative rows: each row's delta vs the row above means "what this trick did"
SEED_SUFFIX = re.compile(r"_seed\d+$")
# which of the paper's columns a dataset is compared with
PAPER_PREFIX = {"market1501": "market", "dukemtmc": "duke"}
CROSS_PREFIX = {"market1501": "market_to_duke", "dukemtmc": "duke_to_market"}
PAPER_NAMES = {"market": "Market-1501", "duke": "DukeMTMC-reID", "market_to_duke": "Market -> Duke",
               "duke_to_market": "Duke -> Market"}


# --- the paper ----------------------------------------------------------------------------------------------

def paper_table(name: str) -> pd.DataFrame:
    """The paper's table `name` (table1, table2, table3, table5, table6, tmm_table3, tmm_table5, tmm_table9)."""
    path = PAPER_ROOT / f"{name}.csv"
    if not path.exists():
        known = sorted(p.stem for p in PAPER_ROOT.glob("*.csv"))
        raise FileNotFoundError(f"no paper table {name!r} ({path}); known tables: {', '.join(known)}")
    return pd.read_csv(path, dtype={"row": str})


def paper_prefix(grid: str, dataset: str) -> str:
    """The paper's column prefix to compare `dataset` with: its own, or Market-1501's for any other data."""
    if grid == "cross_domain":
        return CROSS_PREFIX.get(dataset, "market_to_duke")
    return PAPER_PREFIX.get(dataset, "market")


# --- our runs -----------------------------------------------------------------------------------------------

def read_run(folder: Path) -> dict | None:
    """One run folder as a flat dict (config fields, metrics, row, seed), or None when it has not finished."""
    run = RunFolder(folder)
    metrics = run.metrics()
    if metrics is None:
        return None
    config, info = run.config_dict(), run.run_info()
    record = {"run": folder.name, "row": info.get("row", SEED_SUFFIX.sub("", folder.name)),
              "seed": info.get("seed", config.get("seed", 0))}
    for key, value in config.items():
        record[key] = tuple(value) if isinstance(value, list) else value
    for key, value in metrics.items():
        if isinstance(value, dict):  # e.g. the source domain's metrics of a cross-domain run
            record.update({f"{key}_{k}": v for k, v in value.items() if not isinstance(v, dict)})
        else:
            record[key] = value
    return record


def load_runs(grid: str, root: str | Path = "results/runs", all_columns: bool = False) -> pd.DataFrame:
    """One row per finished run of root/<grid>/: run, row, seed, dataset, the config fields that vary between
    runs (all of them with all_columns), and the metrics. Unfinished runs (no metrics.json) are left out."""
    folder = resolve(root) / grid
    if not folder.is_dir():
        raise FileNotFoundError(f"no runs of grid {grid!r} under {folder}; run `python -m reidlab.ablate {grid}`")
    records = [r for sub in sorted(folder.iterdir()) if sub.is_dir() and (r := read_run(sub)) is not None]
    df = pd.DataFrame(records)
    if df.empty:
        return df
    config_fields = [c for c in df.columns if c not in ("run", "row", "seed")
                     and not any(c == m or c.startswith(m + "_") for m in METRICS)]
    from reidlab.config import FIELD_NAMES
    varying = [c for c in config_fields if c in FIELD_NAMES and
               (all_columns or c == "dataset" or df[c].astype(str).nunique() > 1)]
    metrics = [c for c in df.columns if c not in FIELD_NAMES and c not in ("run", "row", "seed")]
    return df[["run", "row", "seed", *[c for c in varying if c != "seed"], *metrics]]


def intra_inter_ratio(features, pids, chunk: int = 1024) -> float:
    """R = mean distance over pairs of one identity / mean distance over pairs of two identities (TMM Table V).

    Euclidean distances between the given features (normalise them first to score as the run does); pid <= 0
    (distractors, junk) is left out. Chunks of `chunk` rows keep memory at chunk x N.
    """
    import torch

    feats = torch.as_tensor(np.asarray(features), dtype=torch.float64) if not hasattr(features, "detach") \
        else features.detach().double().cpu()
    pids = torch.as_tensor(np.asarray(pids)).reshape(-1)
    if feats.ndim != 2 or len(feats) != len(pids):
        raise ValueError(f"features must be (N, D) with one pid each; got {tuple(feats.shape)} and {len(pids)} pids")
    keep = pids > 0
    feats, pids = feats[keep], pids[keep]
    if len(torch.unique(pids)) < 2:
        raise ValueError("R needs at least two identities with pid > 0")
    intra_sum = inter_sum = 0.0
    intra_n = inter_n = 0
    for start in range(0, len(feats), chunk):
        d = torch.cdist(feats[start:start + chunk], feats)  # (c, N)
        same = pids[start:start + chunk, None] == pids[None, :]  # (c, N)
        self_pair = torch.zeros_like(same)
        rows = torch.arange(len(d))
        self_pair[rows, rows + start] = True
        intra = same & ~self_pair
        intra_sum += d[intra].sum().item()
        intra_n += int(intra.sum())
        inter_sum += d[~same].sum().item()
        inter_n += int((~same).sum())
    if intra_n == 0:
        raise ValueError("R needs an identity with at least two images")
    return (intra_sum / intra_n) / (inter_sum / inter_n)


# --- tables -------------------------------------------------------------------------------------------------

def grid_rows(grid: str) -> list[str] | None:
    """The rows of a named grid in the paper's order, derived rows after their source; None for a YAML grid."""
    if grid not in GRIDS:
        return None
    names = [r["name"] for r in GRIDS[grid](dataset="", test_dataset="-", profile_values=None)]
    for row, (source, _) in DERIVED_ROWS.get(grid, {}).items():
        names.insert(names.index(source) + 1, row)
    return names


def add_derived_rows(df: pd.DataFrame, grid: str) -> pd.DataFrame:
    """Rows read from another run's metrics ("rerank": the center-loss run's rerank_* metrics)."""
    extra = []
    for row, (source, prefix) in DERIVED_ROWS.get(grid, {}).items():
        src = df[df["row"] == source]
        cols = {f"{prefix}{m}": m for m in METRICS if f"{prefix}{m}" in src}
        if src.empty or not cols or src[list(cols)].isna().all().all():
            continue
        keep = ["seed", *cols] + (["collapsed"] if "collapsed" in src else [])
        extra.append(src[keep].rename(columns=cols).assign(row=row, run=src["run"] + f"->{row}"))
    return pd.concat([df, *extra], ignore_index=True) if extra else df


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (over seeds, ddof=1; NaN for one seed) of each metric, and n, per row."""
    metrics = [m for m in METRICS if m in df and df[m].notna().any()]
    grouped = df.groupby("row", sort=False)
    out = pd.DataFrame({"n": grouped.size()})
    # how many of a row's runs collapsed (reidlab.collapse); runs from before the check count as not collapsed
    collapsed = df["collapsed"].fillna(False).astype(bool) if "collapsed" in df else pd.Series(False, df.index)
    out["collapsed"] = collapsed.groupby(df["row"], sort=False).sum().astype(int)
    for m in metrics:
        out[f"ours_{m}"] = grouped[m].mean()
        out[f"ours_{m}_std"] = grouped[m].std(ddof=1)
    return out


# two-sided 95 % quantiles of Student's t by degrees of freedom (n - 1 paired seeds)
T_975 = {1: 12.7062047, 2: 4.30265273, 3: 3.18244631, 4: 2.77644511, 5: 2.57058184, 6: 2.44691185,
         7: 2.36462425, 8: 2.30600414, 9: 2.26215716, 10: 2.22813885, 12: 2.17881283, 15: 2.13144955,
         20: 2.08596345, 30: 2.04227246, 60: 2.00029782, 120: 1.97993040}


def t_975(dof: int) -> float:
    """The 0.975 quantile of Student's t with `dof` >= 1 degrees of freedom; between tabulated dofs, the next
    smaller one's (a slightly wider interval, never a narrower one)."""
    return T_975[max(k for k in T_975 if k <= dof)]


def paired_interval(before: pd.Series, after: pd.Series) -> tuple[float, float, int]:
    """95 % interval (lo, hi) of the mean of after - before over the seeds both have (series indexed by seed),
    and how many seeds were paired; (nan, nan, n) with fewer than two pairs."""
    diffs = (after - before).dropna()
    n = len(diffs)
    if n < 2:
        return math.nan, math.nan, n
    half = t_975(n - 1) * diffs.std(ddof=1) / math.sqrt(n)
    return diffs.mean() - half, diffs.mean() + half, n


def add_paired_intervals(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """ours_d_<metric>_lo / _hi: each chain row's change vs the row above, as a 95 % interval over paired seeds
    (seed i of one row against seed i of the other: the seed's own luck cancels)."""
    rows = list(table["row"])
    for m in ("rank1", "mAP"):
        if m not in runs:
            continue
        by_seed = {row: runs[runs["row"] == row].set_index("seed")[m] for row in rows}
        for bound in ("lo", "hi"):
            table[f"ours_d_{m}_{bound}"] = np.nan
        chain = [r for r in rows if r != UNTRAINED]
        for prev, row in zip(chain, chain[1:]):
            lo, hi, _ = paired_interval(by_seed[prev], by_seed[row])
            table.loc[table["row"] == row, [f"ours_d_{m}_lo", f"ours_d_{m}_hi"]] = lo, hi
        first, last = BAG
        if first in by_seed and last in by_seed:  # the whole bag: the full BoT against Baseline-S, seed by seed
            change = (by_seed[last] - by_seed[first]).dropna().mean()
            lo, hi, _ = paired_interval(by_seed[first], by_seed[last])
            table.loc[table["row"] == last, [f"ours_bag_{m}", f"ours_bag_{m}_lo", f"ours_bag_{m}_hi"]] = change, lo, hi
    return table


def build_table(grid: str, dataset: str, root: str | Path = "results/runs") -> pd.DataFrame:
    """Ours (mean +- std over seeds) beside the paper's numbers, one line per row in the grid's order.

    Columns: row, label, n, ours_<metric>[_std] (rank1, mAP, mINP, R when measured), paper_<metric>, paper_ref
    (which of the paper's columns), and for the cumulative tricks grid the change vs the row above:
    ours_d_<metric>, paper_d_<metric> (the untrained reference row takes no part in the deltas).
    Only runs trained on `dataset` count.
    """
    runs = load_runs(grid, root)
    if runs.empty or "dataset" not in runs:
        raise ValueError(f"grid {grid!r} has no finished runs under {resolve(root) / grid}")
    runs = runs[runs["dataset"] == dataset]
    if runs.empty:
        raise ValueError(f"grid {grid!r} has no finished runs trained on {dataset!r}; datasets with runs: "
                         f"{', '.join(sorted(load_runs(grid, root)['dataset'].unique()))}")
    runs = add_derived_rows(runs, grid)
    table = summarise(runs)
    order = grid_rows(grid) or sorted(table.index)
    table = table.reindex([r for r in order if r in table.index] + [r for r in table.index if r not in order])
    table.index.name = "row"
    table = table.reset_index()

    if grid in PAPER_TABLES:
        paper = paper_table(PAPER_TABLES[grid]).set_index("row")
        prefix = paper_prefix(grid, dataset)
        table.insert(1, "label", [paper["label"].get(r, r) for r in table["row"]])
        for m in METRICS:
            col = f"{prefix}_{m}"
            if col in paper:
                table[f"paper_{m}"] = [paper[col].get(r, np.nan) for r in table["row"]]
        table["paper_ref"] = PAPER_NAMES[prefix]
    else:
        table.insert(1, "label", table["row"])
        table["paper_rank1"] = table["paper_mAP"] = np.nan
        table["paper_ref"] = ""
    if grid in DELTA_GRIDS:
        chain = table["row"] != UNTRAINED
        for who in ("ours", "paper"):
            for m in ("rank1", "mAP"):
                col = f"{who}_{m}"
                if col in table:
                    table.loc[chain, f"{who}_d_{m}"] = table.loc[chain, col].diff()
        table = add_paired_intervals(table, runs)
    return table


def format_value(mean: float, std: float = math.nan, digits: int = 1) -> str:
    if mean is None or pd.isna(mean):
        return "-"
    if std is None or pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_delta(d: float, digits: int = 1, lo: float = math.nan, hi: float = math.nan) -> str:
    """"+2.1", or with a 95 % interval "+2.1 [+0.4, +3.8]"."""
    if pd.isna(d):
        return ""
    interval = "" if pd.isna(lo) or pd.isna(hi) else f" [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    return f"{d:+.{digits}f}{interval}"


def format_table(table: pd.DataFrame) -> str:
    """A Markdown table: ours (mean ± std), the paper's, the deltas (with their 95 % interval over paired seeds
    when there are two seeds or more) and how many runs of a row collapsed, when the table has them."""
    ref = next((r for r in table.get("paper_ref", []) if r), "")
    metrics = [m for m in METRICS if f"ours_{m}" in table]
    digits = {"R": 3}
    header = ["row", "n"] + [f"ours {m}" for m in metrics]
    header += [f"paper {m}" for m in metrics if f"paper_{m}" in table and table[f"paper_{m}"].notna().any()]
    deltas = [c for c in ("ours_d_rank1", "ours_d_mAP", "paper_d_rank1", "paper_d_mAP") if c in table]
    header += [c.replace("_d_", " Δ") + (" [95% CI]" if f"{c}_lo" in table else "") for c in deltas]
    show_collapsed = "collapsed" in table and "ours_d_mAP" in table
    header += ["collapsed"] if show_collapsed else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in table.iterrows():
        cells = [str(r["label"]), str(int(r["n"]))]
        cells += [format_value(r[f"ours_{m}"], r.get(f"ours_{m}_std"), digits.get(m, 1)) for m in metrics]
        cells += [format_value(r[f"paper_{m}"], digits=digits.get(m, 1)) for m in metrics
                  if f"paper_{m}" in table and table[f"paper_{m}"].notna().any()]
        cells += [format_delta(r[c], lo=r.get(f"{c}_lo", math.nan), hi=r.get(f"{c}_hi", math.nan)) for c in deltas]
        if show_collapsed:
            cells.append(f"{int(r['collapsed'])}/{int(r['n'])}" if r["row"] != UNTRAINED else "")
        lines.append("| " + " | ".join(cells) + " |")
    if ref:
        lines.append(f"\npaper: {ref} columns; ours: mean ± std over seeds (n) when n > 1" +
                     ("; Δ: change vs the row above, with its 95 % interval over paired seeds (seed i vs seed i)"
                      if "ours_d_mAP_lo" in table else ""))
    return "\n".join(lines)


VERDICTS = ("helped", "hurt", "cannot tell at this scale", "collapsed")


def verdict(row: pd.Series, prev: pd.Series) -> str:
    """What a trick did, from the 95 % interval of its mAP change: "helped" (above 0), "hurt" (below 0),
    "cannot tell at this scale" (it holds 0, or one seed gives no interval), "collapsed" (a run of the row or
    of the row it is compared with collapsed: its numbers say nothing about the trick)."""
    if row.get("collapsed", 0) > 0 or prev.get("collapsed", 0) > 0:
        return "collapsed"
    lo, hi = row.get("ours_d_mAP_lo", math.nan), row.get("ours_d_mAP_hi", math.nan)
    if pd.isna(lo) or pd.isna(hi):
        return "cannot tell at this scale"
    return "helped" if lo > 0 else "hurt" if hi < 0 else "cannot tell at this scale"


def trick_verdicts(table: pd.DataFrame) -> list[str]:
    """One line per row with a delta: what the trick did here (the 95 % interval of its mAP change vs the row
    above, over paired seeds: `verdict`), and in the paper; then learned vs untrained."""
    if "ours_d_mAP" not in table:
        return []
    lines = []
    rows = table[table["row"] != UNTRAINED].reset_index(drop=True)
    for i in range(1, len(rows)):
        r, prev = rows.iloc[i], rows.iloc[i - 1]
        d, d1 = r["ours_d_mAP"], r.get("ours_d_rank1", np.nan)
        if pd.isna(d):
            continue
        said = verdict(r, prev)
        d_map = format_delta(d, lo=r.get("ours_d_mAP_lo", np.nan), hi=r.get("ours_d_mAP_hi", np.nan))
        d_rank1 = format_delta(d1, lo=r.get("ours_d_rank1_lo", np.nan), hi=r.get("ours_d_rank1_hi", np.nan))
        change = f"mAP {d_map}, rank-1 {d_rank1}"
        if said == "collapsed":
            who = [f"{int(x['collapsed'])} of {int(x['n'])} runs of {x['label']}" for x in (prev, r)
                   if x.get("collapsed", 0) > 0]
            change += f" ({', '.join(who)} collapsed)"
        paper = r.get("paper_d_mAP", np.nan)
        paper_text = "" if pd.isna(paper) else f"; paper {paper:+.1f} mAP ({'helped' if paper > 0 else 'hurt'})"
        lines.append(f"{r['label']:<32} {said:<26} {change}{paper_text}")
    bag = rows[rows["row"] == BAG[1]]
    if len(bag) and "ours_bag_mAP" in bag and not pd.isna(bag["ours_bag_mAP"].iloc[0]):
        last, first = bag.iloc[0], rows[rows["row"] == BAG[0]].iloc[0]
        said = verdict(pd.Series({"collapsed": last.get("collapsed", 0), "ours_d_mAP_lo": last["ours_bag_mAP_lo"],
                                  "ours_d_mAP_hi": last["ours_bag_mAP_hi"]}), first)
        paper = last.get("paper_mAP", np.nan) - first.get("paper_mAP", np.nan)
        bag_map = format_delta(last["ours_bag_mAP"], lo=last["ours_bag_mAP_lo"], hi=last["ours_bag_mAP_hi"])
        bag_rank1 = format_delta(last["ours_bag_rank1"], lo=last["ours_bag_rank1_lo"], hi=last["ours_bag_rank1_hi"])
        lines.append(f"{'the whole bag (vs Baseline-S)':<32} {said:<26} mAP {bag_map}, rank-1 {bag_rank1}"
                     + ("" if pd.isna(paper) else f"; paper {paper:+.1f} mAP"))
    if len(rows) and rows["n"].max() < 2:
        lines.append("(one seed per row: no interval, so no verdict; rerun with --seeds 3)")
    if UNTRAINED in set(table["row"]) and len(rows):
        u = table[table["row"] == UNTRAINED].iloc[0]
        first, last = rows.iloc[0], rows.iloc[-1]
        lines.append(f"learned vs untrained: mAP {u['ours_mAP']:.1f} untrained -> {first['ours_mAP']:.1f} "
                     f"({first['label']}) -> {last['ours_mAP']:.1f} ({last['label']})")
    return lines


def write_table(table: pd.DataFrame, grid: str, dataset: str, tables: str | Path = "results/tables",
                figures: str | Path = "results/figures", name: str = "", header: str = "") -> list[Path]:
    """Write <name>.csv and .md to `tables` and the bar chart <name>.png/.pdf to `figures`; `name` defaults to
    <grid>_<dataset>. `header` (Markdown: how the table was made) goes between the title and the table, and the
    Markdown ends with the verdict per trick for a cumulative grid."""
    from reidlab.viz import plot_trick_bars, savefig

    tables = resolve(tables)
    tables.mkdir(parents=True, exist_ok=True)
    stem = name or f"{grid}_{dataset}"
    paths = [tables / f"{stem}.csv", tables / f"{stem}.md"]
    table.to_csv(paths[0], index=False, float_format="%.4g")
    verdicts = trick_verdicts(table)
    said = ("\n\nWhat each trick did here (mAP change vs the row above, 95 % interval over paired seeds):\n\n```\n"
            + "\n".join(verdicts) + "\n```") if verdicts else ""
    paths[1].write_text(f"# {grid} on {dataset}\n\n{header + chr(10) * 2 if header else ''}{format_table(table)}"
                        f"{said}\n")
    if {"ours_rank1", "ours_mAP"} <= set(table.columns):
        bars = table.copy()
        for col in ("paper_rank1", "paper_mAP"):
            if col not in bars:
                bars[col] = np.nan
        fig = plot_trick_bars(bars.assign(row=bars["row"]))
        fig.suptitle(f"{grid} on {dataset}" + (f" (paper: {table['paper_ref'].iloc[0]})"
                                               if table.get("paper_ref", pd.Series([""])).iloc[0] else ""))
        paths += savefig(fig, stem, resolve(figures))
    return paths
