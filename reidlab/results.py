"""The results store: run folders -> pandas tables beside the paper's numbers, written as CSV, Markdown, figures.

    load_runs("tricks")                  # one row per run folder of results/runs/tricks
    build_table("tricks", "synthetic")   # ours (mean +- std over seeds) | paper | deltas
    write_table(table, "tricks", "synthetic")

The paper's tables live in results/paper/<table>.csv, typed from the papers; their `row` column holds the run
names the grids use (reidlab.grids). A synthetic or other dataset is compared with the Market-1501 columns.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from reidlab.grids import DERIVED_ROWS, GRIDS, PAPER_TABLES, UNTRAINED
from reidlab.paths import RESULTS_ROOT, resolve

PAPER_ROOT = RESULTS_ROOT / "paper"
METRICS = ("rank1", "mAP", "mINP", "R")
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
    if not (folder / "metrics.json").exists():
        return None
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    info = json.loads((folder / "run.json").read_text()) if (folder / "run.json").exists() else {}
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
        extra.append(src[["seed", *cols]].rename(columns=cols).assign(row=row, run=src["run"] + f"->{row}"))
    return pd.concat([df, *extra], ignore_index=True) if extra else df


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (over seeds, ddof=1; NaN for one seed) of each metric, and n, per row."""
    metrics = [m for m in METRICS if m in df and df[m].notna().any()]
    grouped = df.groupby("row", sort=False)
    out = pd.DataFrame({"n": grouped.size()})
    for m in metrics:
        out[f"ours_{m}"] = grouped[m].mean()
        out[f"ours_{m}_std"] = grouped[m].std(ddof=1)
    return out


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
    table = summarise(add_derived_rows(runs, grid))
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
    return table


def format_value(mean: float, std: float = math.nan, digits: int = 1) -> str:
    if mean is None or pd.isna(mean):
        return "-"
    if std is None or pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_delta(d: float, digits: int = 1) -> str:
    return "" if pd.isna(d) else f"{d:+.{digits}f}"


def format_table(table: pd.DataFrame) -> str:
    """A Markdown table: ours (mean ± std), the paper's, and the deltas when the table has them."""
    ref = next((r for r in table.get("paper_ref", []) if r), "")
    metrics = [m for m in METRICS if f"ours_{m}" in table]
    digits = {"R": 3}
    header = ["row", "n"] + [f"ours {m}" for m in metrics]
    header += [f"paper {m}" for m in metrics if f"paper_{m}" in table and table[f"paper_{m}"].notna().any()]
    deltas = [c for c in ("ours_d_rank1", "ours_d_mAP", "paper_d_rank1", "paper_d_mAP") if c in table]
    header += [c.replace("_d_", " Δ") for c in deltas]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in table.iterrows():
        cells = [str(r["label"]), str(int(r["n"]))]
        cells += [format_value(r[f"ours_{m}"], r.get(f"ours_{m}_std"), digits.get(m, 1)) for m in metrics]
        cells += [format_value(r[f"paper_{m}"], digits=digits.get(m, 1)) for m in metrics
                  if f"paper_{m}" in table and table[f"paper_{m}"].notna().any()]
        cells += [format_delta(r[c]) for c in deltas]
        lines.append("| " + " | ".join(cells) + " |")
    if ref:
        lines.append(f"\npaper: {ref} columns; ours: mean ± std over seeds (n) when n > 1")
    return "\n".join(lines)


def trick_verdicts(table: pd.DataFrame) -> list[str]:
    """One line per row with a delta: did the trick help here (mAP change vs the row above), and in the paper?

    With several seeds, a change smaller than the combined std of the two rows is called "within noise". A row
    run with one seed borrows the seed-to-seed std measured on the rows that have several (`make demo` runs its
    first row over a few seeds): one run varies about as much as another. With no row seeded twice nothing can
    be called noise, so the lines say so."""
    if "ours_d_mAP" not in table:
        return []
    lines = []
    rows = table[table["row"] != UNTRAINED].reset_index(drop=True)
    measured = rows[rows["n"] > 1]
    stds = measured.get("ours_mAP_std", pd.Series(dtype=float)).dropna()
    stand_in = math.sqrt((stds ** 2).mean()) if len(stds) else np.nan  # pooled over the measured rows

    def std(row) -> float:
        own = row.get("ours_mAP_std", np.nan)
        return stand_in if pd.isna(own) else own

    for i in range(1, len(rows)):
        r, prev = rows.iloc[i], rows.iloc[i - 1]
        d, d1 = r["ours_d_mAP"], r.get("ours_d_rank1", np.nan)
        if pd.isna(d):
            continue
        noise = math.hypot(std(prev), std(r))
        if not pd.isna(noise) and abs(d) <= noise:
            verdict = "within noise"
        else:
            verdict = "helped" if d > 0 else "hurt" if d < 0 else "no change"
        paper = r.get("paper_d_mAP", np.nan)
        paper_text = "" if pd.isna(paper) else f"; paper {paper:+.1f} mAP ({'helped' if paper > 0 else 'hurt'})"
        noise_text = f", noise ±{noise:.1f}" if not pd.isna(noise) else ""
        lines.append(f"{r['label']:<32} {verdict:<13} mAP {d:+.1f}, rank-1 {d1:+.1f}{noise_text}{paper_text}")
    if len(rows) and rows["n"].max() < 2:
        lines.append("(one seed per row: differences of a few points may be noise; rerun with --seeds 3)")
    elif len(stds) and rows["n"].min() < 2:
        lines.append(f"(rows run once borrow the seed-to-seed mAP std of {', '.join(measured['label'])}: "
                     f"{stand_in:.1f}; rerun with --seeds 3 for each row's own)")
    if UNTRAINED in set(table["row"]) and len(rows):
        u = table[table["row"] == UNTRAINED].iloc[0]
        first, last = rows.iloc[0], rows.iloc[-1]
        lines.append(f"learned vs untrained: mAP {u['ours_mAP']:.1f} untrained -> {first['ours_mAP']:.1f} "
                     f"({first['label']}) -> {last['ours_mAP']:.1f} ({last['label']})")
    return lines


def write_table(table: pd.DataFrame, grid: str, dataset: str, tables: str | Path = "results/tables",
                figures: str | Path = "results/figures") -> list[Path]:
    """Write <grid>_<dataset>.csv and .md to `tables` and the bar chart <grid>_<dataset>.png/.pdf to `figures`."""
    from reidlab.viz import plot_trick_bars, savefig

    tables = resolve(tables)
    tables.mkdir(parents=True, exist_ok=True)
    stem = f"{grid}_{dataset}"
    paths = [tables / f"{stem}.csv", tables / f"{stem}.md"]
    table.to_csv(paths[0], index=False, float_format="%.4g")
    paths[1].write_text(f"# {grid} on {dataset}\n\n{format_table(table)}\n")
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
