"""The GPU check's `check` part: the CUDA-graph step against the eager step at the recipe's shape.

Same initial weights, same 50 batches, lr x0.1 half-way (a new lr, no recapture); losses, parameters, BN
statistics and centers compared in bf16 and fp32, beside a second eager run of the same thing (the floor the
GPU's atomics set). When the step cannot be captured, growing pieces of it are, to name the first that fails.
On a CPU the graph's body runs uncaptured and eager is deterministic: one row, equal bit for bit
(tests/test_graph_step.py checks the same at a tiny shape, and the capture itself on a GPU)."""
from __future__ import annotations

import torch

from reidlab.graph_step import set_capturable
from reidlab.schedule import set_lr

NAME = "check"
CAP_S = 45
COMPARED = ("loss", "first_loss", "param", "buffer", "center")


def run_steps(bench, cfg, data: list, graph: bool) -> tuple[torch.Tensor, dict]:
    """The losses of `data`'s batches from fresh seeded weights, and the trained state."""
    state = bench.build(cfg, graph)
    losses = []
    for i, (images, pids) in enumerate(data):
        if i == len(data) // 2:
            set_lr(state["optimizer"], cfg.base_lr * 0.1)  # a new lr, no recapture
        loss, _ = state["step"](images, pids)
        losses.append(loss.detach().clone())
    return torch.stack(losses).double().cpu(), state


def differences(reference: tuple, other: tuple) -> dict[str, float]:
    """Relative loss differences (all steps, the first) and the largest parameter / BN buffer / center ones."""
    (ref_losses, ref), (losses, state) = reference, other
    rel = (losses - ref_losses).abs() / ref_losses.abs().clamp_min(1e-6)

    def largest(tensors) -> float:
        return max([0.0] + [float((a.detach().double() - b.detach().double()).abs().max())
                            for a, b in zip(*tensors) if a.is_floating_point()])

    return dict(loss=float(rel.max()), first_loss=float(rel[0]),
                param=largest((ref["model"].parameters(), state["model"].parameters())),
                buffer=largest((ref["model"].buffers(), state["model"].buffers())),
                center=largest(([ref["center"].centers], [state["center"].centers])))


def passes(row: dict, amp: str, steps: int, base_lr: float, cuda: bool) -> bool:
    # the first step: same weights, same batch, same kernels (Adam only acts after the loss);
    # bf16: a step moves a weight by about lr at most, so 50 steps bound the drift by 50 * lr (x2 margin);
    # fp32: only the rounding of Adam's bias correction differs. A graph replaying stale inputs fails the
    # fp32 row by far (another batch's loss differs by percents), one missing the lr change by ~8e-3
    first_tol, loss_tol, param_tol = (1e-3, 5e-2, 2 * steps * base_lr) if amp == "bf16" else (1e-5, 1e-3, 2e-3)
    return bool(row["first_loss_rel_graph"] <= first_tol
                and row["loss_rel_graph"] <= max(loss_tol, 2 * row["loss_rel_eager"])
                and row["param_graph"] <= max(param_tol, 2 * row["param_eager"])
                and (cuda or (row["loss_rel_graph"] == 0 and row["param_graph"] == 0)))


def measure(bench, record) -> None:
    runs = []
    record.part(NAME, runs=runs)
    for amp in ("bf16", "none") if bench.cuda else ("none",):
        cfg = bench.cfg(bench.backbones[0], amp=amp, channels_last=amp == "bf16", data_path="resident")
        stream = bench.batches(cfg)
        data = [next(stream) for _ in range(bench.check_steps)]
        eager = run_steps(bench, cfg, data, graph=False)
        # a second eager run: the floor of the GPU's atomics; on a CPU eager is deterministic and the floor 0
        floor = differences(eager, run_steps(bench, cfg, data, graph=False)) if bench.cuda else dict.fromkeys(
            COMPARED, 0.0)
        try:
            graphed = run_steps(bench, cfg, data, graph=True)
        except Exception:  # which piece of the step cannot be captured? (the part stops here)
            record.part(NAME, diagnosis=diagnose_capture(bench, cfg, *data[0]))
            raise
        found = differences(eager, graphed)
        row = dict(backbone=bench.backbones[0], amp=amp, steps=len(data),
                   first_loss_rel_graph=found["first_loss"], loss_rel_graph=found["loss"],
                   loss_rel_eager=floor["loss"], param_graph=found["param"], param_eager=floor["param"],
                   buffer_graph=found["buffer"], buffer_eager=floor["buffer"], center_graph=found["center"],
                   center_eager=floor["center"], graph_captured=getattr(graphed[1]["step"], "graph", None) is not None)
        row["pass"] = passes(row, amp, len(data), cfg.base_lr, bench.cuda)
        runs.append(row)
        record.part(NAME, runs=runs, passed=all(r["pass"] for r in runs))
        if bench.quick:  # the diagnosis runs on a GPU only when a capture fails: --quick keeps it from rotting
            record.part(NAME, diagnosis=diagnose_capture(bench, cfg, *data[0]))
        del eager, graphed, data, stream
        bench.release()


def diagnose_capture(bench, cfg, images: torch.Tensor, pids: torch.Tensor) -> list[dict]:
    """Capture growing pieces of the step (forward; + losses and backward; + center SGD; + Adam) and say
    which is the first that fails: what to fix when the whole step cannot be captured."""
    from reidlab.losses import rescale_center_grads
    from reidlab.train import autocast, compute_losses
    out = []
    for stage in ("forward", "losses + backward", "+ center SGD", "+ Adam"):
        state = bench.build(cfg, graph=False)
        model, center, opt, center_opt = (state[k] for k in ("model", "center", "optimizer", "center_opt"))
        if bench.cuda:
            set_capturable([opt], True, bench.device)

        def piece():
            with autocast(cfg, images.device):
                logits, feats = model(images)
            if stage == "forward":
                return logits
            loss = sum(compute_losses(cfg, logits.float(), feats.float(), pids, center).values())
            opt.zero_grad(set_to_none=True)
            center_opt.zero_grad(set_to_none=True)
            loss.backward()
            if stage != "losses + backward":
                rescale_center_grads(center, cfg.center_beta)
                center_opt.step()
            if stage == "+ Adam":
                opt.step()
            return loss

        try:
            if bench.cuda:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):
                        piece()
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    piece()
                graph.replay()
                torch.cuda.synchronize(bench.device)
            else:
                piece()
            out.append(dict(stage=stage, ok=True))
        except Exception as e:
            out.append(dict(stage=stage, ok=False, error=f"{type(e).__name__}: {e}"[:500]))
            break
        finally:
            del state
            bench.release()
    return out


def render(fields: dict) -> list[str]:
    lines = []
    if fields.get("runs"):
        lines += ["", "## Graph against eager (same weights, same batches, lr x0.1 half-way)", "",
                  "| backbone | amp | steps | first loss rel. diff | loss rel. diff graph / eager-eager | "
                  "param max abs diff graph / eager-eager | BN buffers graph / eager-eager | "
                  "centers graph / eager-eager | pass |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['backbone']} | {r['amp']} | {r['steps']} | {r['first_loss_rel_graph']:.2e} | "
                  f"{r['loss_rel_graph']:.2e} / {r['loss_rel_eager']:.2e} | {r['param_graph']:.2e} / "
                  f"{r['param_eager']:.2e} | {r['buffer_graph']:.2e} / {r['buffer_eager']:.2e} | "
                  f"{r['center_graph']:.2e} / {r['center_eager']:.2e} | {'yes' if r['pass'] else 'NO'} |"
                  for r in fields["runs"]]
    if fields.get("diagnosis"):
        lines += ["", "Capturing growing pieces of the step: " + "; ".join(
            f"{d['stage']}: {'ok' if d['ok'] else 'FAILED, ' + d['error']}" for d in fields["diagnosis"]) + "."]
    return lines
