"""`python -m reidlab gpucheck --quick` runs every part end to end on a CPU, so the GPU check cannot rot."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_gpucheck_runs_every_part(tmp_path):
    # from the source tree, as on the GPU machine: PYTHONPATH, another working directory
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-m", "reidlab", "gpucheck", "--quick", "--out", str(tmp_path / "a"),
                          "--also-to", str(tmp_path / "b")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((tmp_path / "a" / "gpucheck_cpu_quick.json").read_text())
    assert (tmp_path / "b" / "gpucheck_cpu_quick.json").read_text() == (tmp_path / "a" / "gpucheck_cpu_quick.json").read_text()
    parts = record["parts"]
    assert {k: v["status"] for k, v in parts.items()} == dict.fromkeys(
        ("data", "check", "train", "eval", "slowdown", "fit", "profile"), "ok")

    # on a CPU the graph's body runs uncaptured: equal to eager bit for bit
    (check,) = parts["check"]["runs"]
    assert check["pass"] and parts["check"]["passed"]
    assert [d["stage"] for d in parts["check"]["diagnosis"] if d["ok"]] == [
        "forward", "losses + backward", "+ center SGD", "+ Adam"]  # uncaptured on a CPU: the pieces' own code
    assert check["loss_rel_graph"] == check["param_graph"] == check["buffer_graph"] == check["center_graph"] == 0

    runs = parts["train"]["runs"]
    assert [r["pipeline"] for r in runs] == [
        "conventional: PIL loader, fp32", "GPU data, eager, bf16, channels_last",
        "GPU data + graph, bf16, channels_last", "graph + fused Adam", "graph + cudnn.benchmark",
        "graph + fused Adam + cudnn.benchmark", "graph, fp32, channels_last", "graph, bf16, NCHW"]  # compile: GPU only
    assert all(r["images_per_s"] > 0 and "error" not in r for r in runs)
    assert all(r["speedup"] > 0 for r in runs[1:])

    what = [r["what"] for r in parts["eval"]["runs"]]
    assert any("device memory" in w for w in what) and any("re-ranking" in w for w in what)
    assert len(parts["slowdown"]["runs"]) == 4
    graph, resumed, eager = parts["fit"]["runs"]
    assert len(graph["loss"]) == 2 and graph["loss"] == resumed["loss"] == eager["loss"]  # a CPU: the eager step
    assert resumed["max_weight_diff_vs_graph"] == eager["max_weight_diff_vs_graph"] == 0
    assert "cuda_graph: training eagerly (device is cpu, not CUDA)" in run.stdout

    (profile,) = parts["profile"]["runs"]
    assert profile["busy_ms_per_step"] > 0 and any("conv" in t["name"] for t in profile["top"])

    md = (tmp_path / "a" / "gpucheck_cpu_quick.md").read_text()
    assert "## Graph against eager" in md and "## Training pipelines" in md and "| fit | ok |" in md
