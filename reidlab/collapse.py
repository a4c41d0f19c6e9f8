"""Naming a collapsed run: a network that maps every image to (nearly) the same feature.

A run collapses when its losses stop moving at the values a constant feature gives: the ID loss at ln(#ids)
(a uniform prediction, with or without label smoothing) and the batch-hard triplet loss at its margin (every
distance 0, so max(0, d_ap - d_an + m) = m; ln 2 with the soft margin). Its ranking is then no better than an
untrained network's, and a table must say "collapsed", not "this trick hurt". Two signs are read:

- the last epoch's losses (`loss_signs`): the ID loss at chance and the triplet loss (when trained) at its
  constant-feature value (the center loss says nothing: it is small for a collapsed and a converged run alike);
- the test features' spread (`feature_spread`): after L2 normalisation, the mean distance of a feature from
  their mean; about 0 when every image gets the same feature, 0.5 to 1 for a working model.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ID_STUCK = 0.9  # the ID loss is stuck above this fraction of ln(#ids)
TRIPLET_BAND = 0.05  # the triplet loss is stuck within this of its constant-feature value
SPREAD_MIN = 0.05  # L2-normalised test features closer than this to their mean, on average: collapsed


def loss_signs(record: dict, num_classes: int, margin: float, soft_margin: bool = False) -> list[str]:
    """Why a history line looks collapsed, or [] when it does not.

    The ID loss must be stuck at chance, and the triplet loss (when trained) at its constant-feature value: a
    stuck triplet loss beside a falling ID loss is a run that learns (a BoT run's triplet loss can sit near the
    margin while its ID loss falls). A run without the ID loss is judged by its features' spread alone."""
    if "loss_id" not in record:
        return []
    chance = math.log(max(num_classes, 2))
    if record["loss_id"] < ID_STUCK * chance:
        return []
    stuck = [f"ID loss {record['loss_id']:.2f} at ln({num_classes}) = {chance:.2f}"]
    if "loss_triplet" in record:
        constant = math.log(2) if soft_margin else margin
        if abs(record["loss_triplet"] - constant) > TRIPLET_BAND:
            return []
        stuck.append(f"triplet loss {record['loss_triplet']:.2f} at its {'soft ' if soft_margin else ''}"
                     f"margin {constant:.2f}")
    return stuck


def feature_spread(*features: torch.Tensor) -> float:
    """Mean distance of the L2-normalised features from their mean (0: every feature the same)."""
    f = F.normalize(torch.cat([x.float() for x in features]), dim=1)
    return float((f - f.mean(dim=0)).norm(dim=1).mean())


def diagnose(last_record: dict | None, spread: float | None, num_classes: int, margin: float,
             soft_margin: bool = False) -> dict:
    """{"collapsed": bool, "collapse_reason": str} from the last history line and the test features' spread."""
    reasons = loss_signs(last_record, num_classes, margin, soft_margin) if last_record else []
    if spread is not None and spread < SPREAD_MIN:
        reasons.append(f"test features' spread {spread:.3f} < {SPREAD_MIN}")
    return {"collapsed": bool(reasons), "collapse_reason": "; ".join(reasons)}
