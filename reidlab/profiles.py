"""The one builder of a run's Config: a preset under a profile, on a dataset, then overrides.

The command line (`reidlab train`), the batch runner (`reidlab.ablate`) and the notebooks
(`reidlab.notebook.run_config`) all call `for_profile`, so the same (preset, profile, dataset, overrides) gives
the same Config whichever of them asks. Light at import: torch and the schedule are imported when needed.
"""
from __future__ import annotations

from reidlab.config import (CPU_PROFILE, CPU_PROFILES, PRESETS, SMOKE_PROFILE, Config, check_keys, suggest,
                            with_cpu_precision)
from reidlab.paths import DATA_ROOT

# "auto": "full" with CUDA and a real prepared dataset, else "cpu"; "full": the paper's recipe as the preset says;
# "cpu": config.CPU_PROFILE; "smoke": config.SMOKE_PROFILE (seconds, for the tests)
PROFILES = ("auto", "cpu", "full", "smoke")


def default_dataset() -> str:
    """Market-1501 when `data_scripts/prepare_market1501.py` has put it under data/, else the synthetic set."""
    return "market1501" if (DATA_ROOT / "market1501").exists() else "synthetic"


def resolve_profile(profile: str = "auto", dataset: str = "", smoke: bool = False,
                    real_data: bool | None = None) -> str:
    """The profile to run: "smoke" under smoke, else `profile`; "auto" is "full" when CUDA is available and the
    data is real, else "cpu". Real data: `real_data` when given, else the dataset (default: default_dataset())
    is a real one prepared under data/ (the synthetic set on a GPU gets "cpu")."""
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not valid; allowed values: {', '.join(map(repr, PROFILES))}")
    if smoke:
        return "smoke"
    if profile != "auto":
        return profile
    import torch

    if real_data is None:
        name = dataset or default_dataset()
        real_data = not name.startswith("synthetic") and (DATA_ROOT / name).exists()
    return "full" if torch.cuda.is_available() and real_data else "cpu"


def profile_values(profile: str, dataset: str = "") -> dict:
    """The Config fields a profile sets on `dataset` ("auto" resolved first); "full" sets none (the paper's recipe).

    "cpu" is the dataset's own CPU profile where it has one (config.CPU_PROFILES: Market-1501), else CPU_PROFILE;
    `dataset` "" means default_dataset(). The profile's own "dataset" field is the one it was chosen on."""
    chosen = resolve_profile(profile, dataset)
    if chosen == "cpu":
        return CPU_PROFILES.get(dataset or default_dataset(), CPU_PROFILE)
    return {"smoke": SMOKE_PROFILE, "full": {}}[chosen]


def warm_epochs(cfg: Config) -> list[int]:
    """The epochs whose learning rate warmup lowers (epoch k is warm when k < warmup_epochs)."""
    from reidlab.schedule import lr_at

    plain = cfg.replace(warmup=False)
    return [k for k in range(1, cfg.epochs + 1) if lr_at(k, cfg) < lr_at(k, plain)]


def ensure_warm_epochs(cfg: Config) -> Config:
    """A config with warmup whose schedule leaves no warm epoch gets warmup_epochs = max(2, first milestone - 1).

    A short profile scales E_w = 10 of 120 epochs down to 1, and with the authors' rule (warm while k < E_w)
    that turns warmup off; the notebooks need it visible. Configs without warmup are returned unchanged.
    """
    if not cfg.warmup or warm_epochs(cfg):
        return cfg
    first = cfg.milestones[0] if cfg.milestones else cfg.epochs
    return cfg.replace(warmup_epochs=max(2, min(first, cfg.epochs) - 1))


def preset_config(preset: str | Config) -> Config:
    """PRESETS[preset] for a name (ValueError naming the nearest for a typo), a Config as it is."""
    if isinstance(preset, Config):
        return preset
    if not isinstance(preset, str):
        raise TypeError(f"preset must be a preset name or a Config, got {type(preset).__name__}")
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}{suggest(preset, PRESETS)} Presets: {', '.join(PRESETS)}")
    return PRESETS[preset]


def for_profile(preset: str | Config, profile: str = "auto", /, dataset: str = "", device: str = "auto",
                smoke: bool = False, **overrides) -> Config:
    """The Config a run trains: a preset (name or Config), then the profile's fields, dataset and device, then
    `overrides` (Config fields, checked: a typo names the nearest field).

    Profiles: see PROFILES and resolve_profile; smoke=True means the smoke profile whatever `profile` says.
    dataset "" means the profile's: "synthetic_small" for smoke, else default_dataset() (Market-1501 when
    prepared, else synthetic). A profile that leaves warmup on with no
    warm epoch gets one (ensure_warm_epochs; no preset under any profile needs it today), before the overrides,
    which win. The cpu profile trains in the CPU's fastest precision unless `overrides` names amp.
    """
    check_keys(overrides)
    cfg = preset_config(preset)
    chosen = resolve_profile(profile, dataset, smoke)
    values = dict(profile_values(chosen, dataset))
    values["dataset"] = dataset or (values["dataset"] if chosen == "smoke" else default_dataset())
    values["device"] = device
    cfg = ensure_warm_epochs(cfg.replace(**values)).replace(**overrides)
    return with_cpu_precision(cfg, overrides) if chosen == "cpu" else cfg


def build_config(preset: str, profile: str = "auto", overrides: dict | None = None, smoke: bool = False,
                 dataset: str = "", device: str = "auto") -> Config:
    """profiles.for_profile with the overrides as a dict (what the experiment notebook's parameters hold); a
    dataset or device among them wins over the argument, as any override does."""
    overrides = dict(overrides or {})
    check_keys(overrides)  # a key that is no Config field ("smoke") is a ValueError naming the nearest one
    return for_profile(preset, profile, smoke=smoke, **{"dataset": dataset, "device": device, **overrides})
