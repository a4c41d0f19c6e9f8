"""`make demo`: train and evaluate on the built-in synthetic data (or Market-1501 when prepared)."""
from __future__ import annotations

from reidlab.config import CPU_PROFILE, PRESETS
from reidlab.notebook import default_dataset
from reidlab.paths import resolve


def run_demo(out: str = "results/runs", force: bool = False) -> dict:
    from reidlab.train import fit

    cfg = PRESETS["bot"].replace(**CPU_PROFILE, dataset=default_dataset())
    run_dir = resolve(out) / "demo" / "bot_cpu"
    if force and run_dir.exists():
        import shutil
        shutil.rmtree(run_dir)
    metrics = fit(cfg, run_dir)
    print(f"{cfg.dataset}: rank-1 {metrics['rank1']:.1f}  mAP {metrics['mAP']:.1f}  ({run_dir})")
    return metrics
