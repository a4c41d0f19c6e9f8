"""`python -m reidlab gpucheck --quick` runs every part end to end on a CPU, so the GPU check cannot rot; the runner
records a part that fails or overruns and goes on with the next."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from reidlab.gpucheck import CHOICES, PARTS, run_parts
from reidlab.gpucheck.record import Record

REPO = Path(__file__).resolve().parents[1]
HEADINGS = {"data": "## Data", "check": "## Graph against eager", "train": "## Training pipelines",
            "eval": "## Evaluation", "fit": "## fit:", "profile": "## Profile of the eager step"}


def test_quick_gpucheck_runs_every_part(tmp_path):
    # from the source tree, as on the GPU machine: PYTHONPATH, another working directory
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-m", "reidlab", "gpucheck", "--quick", "--out", str(tmp_path / "a"),
                          "--also-to", str(tmp_path / "b")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    written = (tmp_path / "a" / "gpucheck_cpu_quick.json").read_text()
    assert (tmp_path / "b" / "gpucheck_cpu_quick.json").read_text() == written
    record = json.loads(written)
    parts = record["parts"]
    assert {k: v["status"] for k, v in parts.items()} == dict.fromkeys(HEADINGS, "ok")
    assert record["data"].startswith("random JPEGs") and record["weights"] == "random init"
    assert parts["data"]["train_images"] == 4 * 2  # 4 identities x 2 images
    assert all(parts[name]["runs"] for name in HEADINGS if name != "data")  # every part has its rows

    # the graph's body runs uncaptured on a CPU, from the same seeded weights on the same batches: equal
    (check,) = parts["check"]["runs"]
    assert check["pass"] and parts["check"]["passed"] and not check["graph_captured"]
    assert [d["stage"] for d in parts["check"]["diagnosis"] if d["ok"]] == [
        "forward", "losses + backward", "+ center SGD", "+ Adam"]  # uncaptured on a CPU: the pieces' own code

    runs = parts["train"]["runs"]
    assert [r["pipeline"] for r in runs] == [
        "conventional: PIL loader, fp32", "GPU data, eager, bf16, channels_last",
        "GPU data + graph, bf16, channels_last", "graph + fused Adam", "graph + cudnn.benchmark",
        "graph + fused Adam + cudnn.benchmark", "graph, fp32, channels_last", "graph, bf16, NCHW"]  # compile: GPU only
    assert not [r for r in runs if "error" in r]
    for r in runs:  # a step of P x K = 2 x 2 images: ms / step x images / s = 1000 x 4
        assert r["ms_per_step"] * r["images_per_s"] == pytest.approx(4000)
    assert all(r["speedup"] == pytest.approx(r["images_per_s"] / runs[0]["images_per_s"]) for r in runs[1:])

    what = [r["what"] for r in parts["eval"]["runs"]]
    assert any("device memory" in w for w in what) and sum("re-ranking" in w for w in what) == 2

    graph, resumed, eager = parts["fit"]["runs"]
    assert [r["run"] for r in parts["fit"]["runs"]] == ["graph", "graph, resumed after epoch 1", "eager"]
    assert len(graph["loss"]) == 2 and resumed["loss"] == graph["loss"]  # stopped and resumed: the same epochs
    assert resumed["max_weight_diff_vs_graph"] == 0
    assert "cuda_graph: training eagerly (device is cpu, not CUDA)" in run.stdout

    (profile,) = parts["profile"]["runs"]
    assert profile["busy_ms_per_step"] > 0 and any("conv" in t["name"] for t in profile["top"])

    md = (tmp_path / "a" / "gpucheck_cpu_quick.md").read_text()
    for name, heading in HEADINGS.items():
        assert f"| {name} | ok |" in md and heading in md, name
    assert "| conventional: PIL loader, fp32 |" in md and "| graph, resumed after epoch 1 |" in md


def test_unknown_part_stops_naming_the_valid_ones(tmp_path):
    from reidlab.__main__ import main
    with pytest.raises(SystemExit) as stopped:
        main(["gpucheck", "--quick", "--parts", "check,slowdown", "--out", str(tmp_path)])
    message = str(stopped.value.code)
    assert message.startswith("--parts: unknown slowdown; choose from ")
    assert all(name in message for name in ("check", "train", "eval", "fit", "profile"))
    assert CHOICES == ("check", "train", "eval", "fit", "profile") and not list(tmp_path.iterdir())


def fake_part(name: str, cap_s: float = 10, fails: bool = False, sleeps: float = 0):
    def measure(bench, record):
        record.part(name, runs=["first row"])
        time.sleep(sleeps)
        if fails:
            raise RuntimeError(f"{name} broke")
        record.part(name, runs=["first row", "second row"])

    return SimpleNamespace(NAME=name, CAP_S=cap_s, measure=measure, render=lambda fields: [f"## {name}"])


class FakeBench:
    def __init__(self, left_s: float = 100):
        self.left_s = left_s

    def left(self) -> float:
        return self.left_s

    def release(self) -> None:
        pass


def run_fakes(tmp_path, parts, bench=None) -> tuple[dict, str]:
    record = Record([tmp_path / "check"], dict(device="cpu", command="test", started="now", torch="2", cuda=None,
                                               cpus=2), parts)
    run_parts(parts, bench or FakeBench(), record)
    return record.data["parts"], (tmp_path / "check.md").read_text()


def test_a_failing_or_overrunning_part_is_recorded_and_the_next_runs(tmp_path):
    parts, md = run_fakes(tmp_path, [fake_part("data"), fake_part("broken", fails=True),
                                     fake_part("slow", cap_s=0.2, sleeps=5), fake_part("last")])
    assert {k: v["status"] for k, v in parts.items()} == dict(data="ok", broken="failed", slow="timeout", last="ok")
    assert parts["broken"]["error"] == "RuntimeError: broken broke" and "broken broke" in parts["broken"]["traceback"]
    assert parts["broken"]["runs"] == ["first row"]  # what it measured before failing is kept
    assert parts["slow"]["runs"] == ["first row"] and parts["slow"]["seconds"] < 2
    assert parts["last"]["runs"] == ["first row", "second row"]
    assert "| broken | failed: RuntimeError: broken broke |" in md and "| slow | timeout: stopped" in md
    assert all(f"## {name}" in md for name in ("data", "broken", "slow", "last"))


def test_without_data_nothing_else_runs_and_a_spent_budget_skips(tmp_path):
    parts, _ = run_fakes(tmp_path, [fake_part("data", fails=True), fake_part("check")])
    assert list(parts) == ["data"] and parts["data"]["status"] == "failed"
    parts, _ = run_fakes(tmp_path, [fake_part("data"), fake_part("check", cap_s=30)], FakeBench(left_s=5))
    assert parts["check"] == dict(status="skipped", error="5 s left of the total budget")


def test_every_part_renders_nothing_before_its_first_row():
    assert [part.NAME for part in PARTS] == list(HEADINGS)
    assert all(part.render({"status": "running"}) == [] for part in PARTS)
