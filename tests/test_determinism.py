"""The same grid run twice gives the same numbers (issue 13): a reduced `make demo` with a loader worker as the
demo has, compared iteration by iteration; once through papermill as the demo runs it, once directly."""
import json

import pytest

from reidlab.ablate import run_grid

# the demo's execution (CPU profile: 1 training thread, 1 persistent loader worker) at smoke size; its last row
# draws every random augmentation and trains every loss (ID, triplet, center); every iteration logged
GRID = """name: twice
runs:
  - name: center_loss
    preset: center_loss
"""
SETS = {"num_workers": 1, "cpu_threads": 1, "log_iterations": 1000}
TIMINGS = {"seconds", "images_per_s", "cpu_load", "train_seconds", "device"}


def read(folder, name):
    text = (folder / name).read_text()
    if name.endswith(".jsonl"):
        return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in text.splitlines() if line]
    return {k: v for k, v in json.loads(text).items() if k not in TIMINGS}


@pytest.mark.slow
def test_grid_twice_gives_identical_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernels inherit it, as in the demo's profile
    grid = tmp_path / "twice.yaml"
    grid.write_text(GRID)
    for out, executor in (("a", "papermill"), ("b", "direct")):
        report = run_grid(str(grid), profile="smoke", sets=SETS, out=tmp_path / out, progress=False,
                          executor=executor)
        assert report.ok and report.done == ["center_loss"], report.summary()
    for row in ("center_loss",):
        a, b = tmp_path / "a" / "twice" / row, tmp_path / "b" / "twice" / row
        assert read(a, "config.json")["num_workers"] == 1 and read(a, "config.json")["epochs"] >= 2
        steps_a, steps_b = read(a, "iterations.jsonl"), read(b, "iterations.jsonl")
        assert len(steps_a) > 20 and {s["epoch"] for s in steps_a} == {1, 2}  # past an epoch boundary
        for x, y in zip(steps_a, steps_b, strict=True):
            assert x == y, f"{row}: the runs part at iteration {x['iteration']}: {x} vs {y}"
        assert read(a, "history.jsonl") == read(b, "history.jsonl")
        assert read(a, "metrics.json") == read(b, "metrics.json")
