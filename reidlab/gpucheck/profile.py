"""The GPU check's `profile` part: the eager step under torch.profiler, per backbone: which kernels take the
GPU's time (the CPU's on a CPU), and their sum per step, what a replayed graph cannot go below."""
from __future__ import annotations

NAME = "profile"
CAP_S = 30
TOP = 12  # kernels listed per backbone


def measure(bench, record) -> None:
    from torch.profiler import ProfilerActivity, profile
    runs = []
    record.part(NAME, runs=runs)
    key = "self_device_time_total" if bench.cuda else "self_cpu_time_total"
    steps = 1 if bench.quick else 5
    for backbone in bench.backbones:
        cfg = bench.cfg(backbone, amp="bf16", channels_last=True, data_path="resident")
        state = bench.build(cfg, graph=False)
        batches = bench.batches(cfg)
        bench.time_steps(batches, state["step"], 2, 1)  # warm
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if bench.cuda else [])
        with profile(activities=activities) as prof:
            bench.time_steps(batches, state["step"], steps, 0)
        events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
        top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:TOP]
        runs.append(dict(backbone=backbone, measure=key,
                         busy_ms_per_step=sum(getattr(e, key) for e in events) / 1000 / steps,
                         top=[dict(name=e.key[:90], ms_per_step=getattr(e, key) / 1000 / steps,
                                   calls_per_step=e.count / steps) for e in top]))
        record.part(NAME, runs=runs)
        del state, batches
        bench.release()


def render(fields: dict) -> list[str]:
    lines = []
    for r in fields.get("runs", []):
        lines += ["", f"## Profile of the eager step, {r['backbone']}: {r['busy_ms_per_step']:.2f} ms of "
                      f"{r['measure']} per step", "", "| op / kernel | ms / step | calls / step |", "|---|---|---|"]
        lines += [f"| `{t['name']}` | {t['ms_per_step']:.3f} | {t['calls_per_step']:.0f} |" for t in r["top"]]
    return lines
