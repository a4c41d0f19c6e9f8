"""The paper's numbers, the single source the notebooks quote (rank-1, mAP in percent; bot_paper.md).

Keys are the preset names of reidlab.config, so `TABLE1[name]` sits beside the run of `PRESETS[name]`.
"""
from __future__ import annotations

# CVPRW Table 1 = TMM Table I, Market-1501: each row adds one trick to the row above
TABLE1 = {
    "baseline_s": (87.7, 74.0),
    "warmup": (88.7, 75.2),
    "random_erasing": (91.3, 79.3),
    "label_smoothing": (91.4, 80.3),
    "last_stride": (92.0, 81.7),
    "bnneck": (94.1, 85.7),
    "center_loss": (94.5, 85.9),
    "rerank": (95.4, 94.2),
}
# the same rows on DukeMTMC-reID
TABLE1_DUKE = {
    "baseline_s": (79.7, 63.7),
    "warmup": (80.6, 65.1),
    "random_erasing": (81.5, 68.3),
    "label_smoothing": (82.4, 69.3),
    "last_stride": (82.6, 70.6),
    "bnneck": (86.2, 75.9),
    "center_loss": (86.4, 76.4),
    "rerank": (90.3, 89.1),
}
# CVPRW Table 2, Market-1501 (no center loss): (test feature, metric) -> (rank-1, mAP)
TABLE2 = {
    ("f", "euclidean"): (92.0, 81.7),
    ("f_t", "euclidean"): (94.2, 85.5),
    ("f_t", "cosine"): (94.2, 85.7),
    ("f_i", "euclidean"): (93.8, 83.7),
    ("f_i", "cosine"): (94.1, 85.7),
}
# TMM Table III, Market-1501: neck (config.NECKS) -> (rank-1, mAP); "bnneck" tested on f_i
NECKS = {
    "neck1": (89.4, 77.5),
    "neck2": (91.0, 80.9),
    "neck3": (92.0, 81.7),
    "bnneck1": (93.1, 83.9),
    "bnneck2": (90.3, 79.1),
    "bnneck3": (92.5, 81.8),
    "bnneck": (94.1, 85.7),
}
# TMM Table V, Market-1501, f_i: center-loss weight beta -> (rank-1, mAP)
CENTER_BETA = {0.0: (94.1, 85.7), 0.0005: (94.5, 85.9), 0.005: (94.3, 85.9), 0.05: (94.3, 85.7), 0.5: (94.1, 84.7)}

RUN_TO_RUN_NOISE = 1.0  # points: the spread the authors and reruns report between identical runs


def delta(row: str, previous: str, table: dict = TABLE1) -> tuple[float, float]:
    """(rank-1, mAP) gained by `row` over `previous`, in points: `delta("warmup", "baseline_s")` -> (1.0, 1.2)."""
    for name in (row, previous):
        if name not in table:
            raise KeyError(f"no row {name!r} in the table; rows: {', '.join(map(str, table))}")
    return tuple(round(a - b, 1) for a, b in zip(table[row], table[previous]))
