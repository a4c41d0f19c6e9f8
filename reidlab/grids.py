"""The paper's ablation tables as named grids of runs, plus grids read from YAML files.

A grid is a list of runs; a run is a dict of the experiment notebook's parameters with a `name` (its folder
and its row in the table): `{"name": "bnneck", "preset": "bnneck", "overrides": {...}}`. The `overrides` are
the fields the row changes on top of its preset (and the profile); everything else stays the preset's.

Rows that need no training of their own:
- "untrained" (tricks): the full model with random weights, evaluated as built, so learned >> untrained shows.
- "rerank" (tricks): the center-loss row re-ranked; that row is trained with rerank=True, which changes only
  its evaluation (fit then reports rerank_rank1 / rerank_mAP beside the plain metrics).
The features grid (CVPRW Table 2) scores one training config five ways; it trains once per row (same seed,
same config but the evaluation fields), which costs more but keeps one run folder per row.
"""
from __future__ import annotations

import json
from pathlib import Path

from reidlab.config import FIELD_NAMES, PRESETS, TABLE1, suggest

# each named grid, the paper's table it reproduces (results/paper/<table>.csv)
PAPER_TABLES = {
    "tricks": "table1",
    "features": "table2",
    "necks": "tmm_table3",
    "center_beta": "tmm_table5",
    "cross_domain": "table3",
    "batch": "table5",
    "image_size": "table6",
    "backbones": "tmm_table9",
}
# rows read from another run's metrics: {grid: {row: (source row, metric prefix)}}
DERIVED_ROWS = {"tricks": {"rerank": ("center_loss", "rerank_")}}
UNTRAINED = "untrained"
# the default target domain of each source domain (CVPRW Table 3)
CROSS_DOMAIN = {"market1501": "dukemtmc", "dukemtmc": "market1501"}
RUN_KEYS = ("name", "preset", "overrides", "test_dataset", "intra_inter", "kind")
# the rows of CVPRW Tables 5 and 6 (no center loss; f_i scored by plain Euclidean distance)
BATCHES = ((8, 3), (8, 4), (8, 6), (8, 8), (16, 3), (16, 4), (16, 6), (16, 8), (32, 3), (32, 4))
IMAGE_SIZES = ((256, 128), (224, 224), (384, 128), (384, 192))
BACKBONE_ROWS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet50_ibn_a")
CENTER_BETAS = (0, 0.0005, 0.005, 0.05, 0.5)
EUCLIDEAN = dict(distance="euclidean", normalize_features=False)  # the paper's "Euclidean": raw features


def run(name: str, preset: str, **overrides) -> dict:
    return {"name": name, "preset": preset, "overrides": overrides}


def tricks_grid(**_) -> list[dict]:
    """CVPRW Table 1: each row adds one trick to the row above; the untrained reference first."""
    rows = [{"name": UNTRAINED, "preset": "center_loss", "overrides": {}, "kind": "untrained"}]
    rows += [run(name, name) for name in TABLE1]
    rows[-1]["overrides"]["rerank"] = True  # the "+ re-ranking" row, from the same training
    return rows


def features_grid(**_) -> list[dict]:
    """CVPRW Table 2: f (no BNNeck) vs f_t / f_i, Euclidean vs cosine; trained without center loss."""
    rows = [run("f_euclidean", "last_stride", **EUCLIDEAN)]
    for feature in ("f_t", "f_i"):
        rows.append(run(f"{feature}_euclidean", "bnneck", test_feature=feature, **EUCLIDEAN))
        rows.append(run(f"{feature}_cosine", "bnneck", test_feature=feature, distance="cosine"))
    return rows


def necks_grid(**_) -> list[dict]:
    """TMM Table III: the six necks, then BNNeck tested on f_t and on f_i."""
    rows = [run(neck, f"tmm_{neck}") for neck in ("neck1", "neck2", "neck3", "bnneck1", "bnneck2", "bnneck3")]
    rows += [run(f"bnneck_{f}", "tmm_bnneck", test_feature=f) for f in ("f_t", "f_i")]
    return rows


def center_beta_grid(**_) -> list[dict]:
    """TMM Table V: center-loss weight beta for f_t and f_i, with R = mean intra / mean inter distance.
    beta = 0 is the model without center loss (its centers' gradient rescale would divide by 0)."""
    rows = []
    for feature in ("f_t", "f_i"):
        for beta in CENTER_BETAS:
            changes = dict(center_loss=False) if beta == 0 else dict(center_beta=beta)
            row = run(f"{feature}_beta{beta:g}", "bot", test_feature=feature, **changes)
            rows.append({**row, "intra_inter": True})
    return rows


def batch_grid(**_) -> list[dict]:
    """CVPRW Table 5: P x K (identities x images per identity)."""
    return [run(f"{p}x{k}", "bnneck", P=p, K=k, test_feature="f_i", **EUCLIDEAN) for p, k in BATCHES]


def image_size_grid(profile_values: dict | None = None, **_) -> list[dict]:
    """CVPRW Table 6: input height x width. A profile with a smaller image_size (cpu, smoke) scales every row by
    its height / 256, so the rows keep their shapes and relative sizes; the row names stay the paper's."""
    height = (profile_values or {}).get("image_size", (256, 128))[0]
    scale = height / 256
    return [run(f"{h}x{w}", "bnneck", image_size=[round(h * scale), round(w * scale)], test_feature="f_i",
                **EUCLIDEAN) for h, w in IMAGE_SIZES]


def backbones_grid(**_) -> list[dict]:
    """TMM Table IX: the full BoT on each backbone we can build."""
    return [run(name, "bot", backbone=name) for name in BACKBONE_ROWS]


def cross_domain_grid(dataset: str = "", test_dataset: str = "", **_) -> list[dict]:
    """CVPRW Table 3: train on `dataset`, test on `test_dataset`; Table 1's rows plus the full model without REA."""
    target = test_dataset or CROSS_DOMAIN.get(dataset, "")
    if not target:
        raise ValueError(f"the cross_domain grid needs a test dataset for {dataset or 'this dataset'!r}: "
                         f"pass --test-dataset NAME (defaults exist only for {', '.join(CROSS_DOMAIN)})")
    rows = [run(name, name) for name in TABLE1] + [run("no_rea", "center_loss", random_erasing=False)]
    return [{**row, "test_dataset": target} for row in rows]


GRIDS = {
    "tricks": tricks_grid,
    "features": features_grid,
    "necks": necks_grid,
    "center_beta": center_beta_grid,
    "cross_domain": cross_domain_grid,
    "batch": batch_grid,
    "image_size": image_size_grid,
    "backbones": backbones_grid,
}


def read_grid_file(path: str | Path) -> tuple[str, list[dict]]:
    """(grid name, runs) of a YAML file:

        name: my_grid              # optional: the file's stem
        preset: bot                # optional defaults for every run
        overrides: {epochs: 4}
        runs:
          - name: no_ls
            label_smoothing: false # a Config field at the top of a run goes to its overrides
          - {name: ls_0.2, overrides: {smoothing_eps: 0.2}}
    """
    path = Path(path)
    if path.suffix == ".json":  # JSON is YAML too, and needs no PyYAML (a GPU machine may lack it)
        try:
            spec = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
    else:
        import yaml

        try:
            spec = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML: {e}") from None
    if isinstance(spec, list):
        spec = {"runs": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("runs"), list) or not spec["runs"]:
        raise ValueError(f"{path} must hold a mapping with a non-empty list `runs:` (one mapping per run); "
                         f"see reidlab.grids.read_grid_file")
    name = str(spec.pop("name", path.stem))
    runs_spec = spec.pop("runs")
    defaults = spec  # preset, overrides and any notebook parameter, for every run
    runs = []
    for i, entry in enumerate(runs_spec):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{path}: run {i + 1} must be a mapping with a `name` (its folder), got {entry!r}")
        entry = dict(entry)
        overrides = {**(defaults.get("overrides") or {}), **(entry.pop("overrides", None) or {})}
        row = {**{k: v for k, v in defaults.items() if k != "overrides"}, **entry, "overrides": overrides}
        row.setdefault("preset", "bot")
        runs.append(row)
    return name, runs


class GridError(ValueError):
    """A grid that cannot run as given (unknown key, bad value); raised before any run starts."""


def split_parameters(grid: str, spec: dict, declared: tuple[str, ...]) -> dict:
    """A run spec as notebook parameters: Config fields given at the top go into `overrides`; anything that is
    neither a declared parameter nor a Config field raises GridError naming the nearest valid name."""
    params, overrides = {}, dict(spec.get("overrides") or {})
    for key, value in spec.items():
        if key in ("name", "kind", "overrides"):
            continue
        if key in declared:
            params[key] = value
        elif key in FIELD_NAMES:
            overrides[key] = value
        else:
            raise GridError(f"grid {grid}, run {spec['name']}: unknown parameter {key!r}"
                            f"{suggest(key, declared + FIELD_NAMES)}")
    for key in overrides:
        if key not in FIELD_NAMES:
            raise GridError(f"grid {grid}, run {spec['name']}: unknown config key {key!r} in overrides"
                            f"{suggest(key, FIELD_NAMES)}")
    params["overrides"] = overrides
    return params


def build_grid(grid: str, dataset: str = "", test_dataset: str = "", profile_values: dict | None = None
               ) -> tuple[str, list[dict]]:
    """(name, runs) of a named grid or of a YAML file path. Run names must be unique folder names."""
    if grid in GRIDS:
        name, runs = grid, GRIDS[grid](dataset=dataset, test_dataset=test_dataset, profile_values=profile_values)
    elif grid.endswith((".yml", ".yaml")) or Path(grid).is_file():
        if not Path(grid).is_file():
            raise FileNotFoundError(f"grid file {grid} not found")
        name, runs = read_grid_file(grid)
    else:
        raise ValueError(f"unknown grid {grid!r}{suggest(grid, GRIDS)} Named grids: {', '.join(GRIDS)}; "
                         "or pass a YAML file")
    names = [r["name"] for r in runs]
    for n in names:
        if not n or "/" in n or "\\" in n or n.startswith("."):
            raise ValueError(f"grid {name}: run name {n!r} must be a plain folder name")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"grid {name}: run names must be unique, {', '.join(dupes)} repeat")
    for r in runs:
        if r.get("preset", "bot") not in PRESETS:
            raise ValueError(f"grid {name}, run {r['name']}: unknown preset {r.get('preset')!r}"
                             f"{suggest(r.get('preset'), PRESETS)} "
                             f"Presets: {', '.join(PRESETS)}")
    return name, runs
