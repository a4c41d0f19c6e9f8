"""The GPU check's `fit` part: `reidlab.train.fit` itself for 3 epochs (warmup, base lr, lr x0.1), each run with
its evaluation: with the CUDA graph, with it stopped after epoch 2 and resumed (a new capture), and eager; each
run's weights against the first run's."""
from __future__ import annotations

import contextlib
import time
import traceback

from reidlab.runs import RunFolder, load_history

NAME = "fit"
CAP_S = 90


class Stop(Exception):
    pass


def largest_weight_difference(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


def fit_once(bench, run: str, graph: bool, epochs: int, out) -> dict:
    """One fit run into `out`; the resumed run is stopped before its last epoch, then fit again."""
    from reidlab.train import fit
    resumed = "resumed" in run
    cfg = bench.cfg(bench.backbones[0], amp="bf16", channels_last=True, data_path="resident", cuda_graph=graph,
                    epochs=epochs, warmup_epochs=2, milestones=(epochs,), device=str(bench.device),
                    checkpoint_every=epochs - 1 if resumed else epochs)

    def stop_before_last(history_line):
        if history_line["epoch"] == epochs - 1:
            raise Stop

    started = time.perf_counter()
    if resumed:
        with contextlib.suppress(Stop):
            fit(cfg, out, dataset=bench.dataset, on_epoch_end=stop_before_last)
    metrics = fit(cfg, out, dataset=bench.dataset)
    history = load_history(out)
    return dict(run=run, images_per_s=[h["images_per_s"] for h in history], loss=[h["loss"] for h in history],
                lr=[h["lr"] for h in history], train_seconds=metrics["train_seconds"],
                total_s=time.perf_counter() - started, rank1=metrics["rank1"], mAP=metrics["mAP"])


def measure(bench, record) -> None:
    runs = []
    record.part(NAME, runs=runs)
    epochs = 2 if bench.quick else 3
    first = RunFolder(bench.scratch / "fit_0")
    for run, graph in (("graph", True), (f"graph, resumed after epoch {epochs - 1}", True), ("eager", False)):
        out = bench.scratch / f"fit_{len(runs)}"
        try:
            row = fit_once(bench, run, graph, epochs, out)
        except Exception as e:  # one run failing (a capture, say) leaves the others to run
            traceback.print_exc()
            row = dict(run=run, error=f"{type(e).__name__}: {e}"[:300])
        else:
            if runs and first.has_checkpoint():  # against the straight graph run
                weights = RunFolder(out).load_checkpoint(map_location="cpu")[0]["model"]
                reference = first.load_checkpoint(map_location="cpu")[0]["model"]
                row["max_weight_diff_vs_graph"] = largest_weight_difference(reference, weights)
        runs.append(row)
        record.part(NAME, runs=runs)
        bench.release()


def render(fields: dict) -> list[str]:
    if not fields.get("runs"):
        return []
    lines = ["", "## fit: warmup, base lr, x0.1, evaluation included", "",
             "| run | images / s per epoch | loss per epoch | train s | total s | rank-1 | mAP | "
             "largest weight difference to the first run |", "|---|---|---|---|---|---|---|---|"]
    for r in fields["runs"]:
        if "error" in r:
            lines.append(f"| {r['run']} | failed: {r['error']} | | | | | | |")
        else:
            lines.append(f"| {r['run']} | {', '.join(f'{x:,.0f}' for x in r['images_per_s'])} | "
                         f"{', '.join(f'{x:.4f}' for x in r['loss'])} | {r['train_seconds']} | {r['total_s']:.1f} | "
                         f"{r['rank1']:.1f} | {r['mAP']:.1f} | {r.get('max_weight_diff_vs_graph', '')} |")
    return lines
