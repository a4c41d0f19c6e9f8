"""Executors of a grid: direct (no Jupyter) against papermill, N rows at once against one at a time, and the
direct executor where papermill cannot be imported. Real runs, tiny: one epoch at 32 x 16 on 6 identities."""
import json
import os
import shutil
import subprocess
import sys

import papermill
import pytest

from conftest import write_market_layout
from reidlab.ablate import EXPERIMENT, GridError, run_grid
from reidlab.executors import read_notebook_parameters, resolve_executor
from reidlab.paths import REPO_ROOT

TINY = "overrides: {epochs: 1, image_size: [32, 16], milestones: [1], checkpoint_every: 1}\n"
METRICS = ("rank1", "rank5", "mAP", "mINP")
RUN_FILES = {"run.json", "config.json", "history.jsonl", "metrics.json", "checkpoint.pt"}


def write_grid(path, rows: str) -> str:
    path.write_text("name: par\npreset: bot\n" + TINY + "runs:\n" + rows)
    return str(path)


def write_json_grid(path, rows: list) -> str:
    """The same grid as JSON: read without PyYAML (which a GPU machine may lack)."""
    path.write_text(json.dumps({"name": "par", "preset": "bot", "overrides": {
        "epochs": 1, "image_size": [32, 16], "milestones": [1], "checkpoint_every": 1}, "runs": rows}))
    return str(path)


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    root = tmp_path_factory.mktemp("executors")
    data = root / "data"
    write_market_layout(data / "market1501")
    # c fails when it builds its model: a row that breaks at run time, not at planning
    three = write_json_grid(root / "three.json", [{"name": "c", "pretrained": "/nonexistent/weights.pth"},
                                                  {"name": "a"}, {"name": "b", "label_smoothing": False}])
    one = write_grid(root / "one.yaml", "  - name: a\n")
    args = ["--profile", "smoke", "--dataset", "market1501", "--set", f"data_root={data}"]
    return root, three, one, args


@pytest.fixture(scope="module")
def direct_serial(grids):
    """The grid run one row at a time with --executor auto in a process that, like the GPU machine, cannot
    import papermill, Jupyter or PyYAML."""
    root, three, _, args = grids
    out = root / "serial"
    code = ("import sys\n"
            "for name in ('papermill', 'nbclient', 'ipykernel', 'jupyter_client', 'IPython', 'yaml'):\n"
            "    sys.modules[name] = None\n"
            "from reidlab.ablate_cli import main\n"
            f"sys.exit(main({[three, *args, '--out', str(out), '--executor', 'auto']!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out, proc


def read_metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


def losses(folder):
    return [json.loads(line)["loss"] for line in (folder / "history.jsonl").read_text().splitlines()]


def test_direct_without_papermill_and_parallel_jobs_give_the_same_runs(grids, direct_serial):
    root, three, _, args = grids
    serial, proc = direct_serial
    assert proc.returncode == 1, proc.stderr[-3000:]  # row c failed, the others finished
    assert "2 run(s) done, 0 skipped" in proc.stdout and "FAILED c:" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    for name in ("a", "b"):
        assert RUN_FILES <= {p.name for p in (serial / "par" / name).iterdir()}
        assert not (serial / "par" / name / "experiment.ipynb").exists()  # direct: no notebook

    parallel = root / "parallel"
    report = run_grid(three, profile="smoke", dataset="market1501", sets={"data_root": str(root / "data")},
                      out=parallel, jobs=2, executor="direct", progress=False)
    assert report.done == ["a", "b"] and list(report.failed) == ["c"], report.summary()
    assert "nonexistent" in report.failed["c"] and (parallel / "par" / "c" / "error.txt").exists()
    for name in ("a", "b"):
        one, two = serial / "par" / name, parallel / "par" / name
        assert {k: read_metrics(one)[k] for k in METRICS} == {k: read_metrics(two)[k] for k in METRICS}
        assert losses(one) == losses(two)
        assert (one / "config.json").read_text() == (two / "config.json").read_text()
    assert losses(serial / "par" / "a") != losses(serial / "par" / "b")  # two different rows, really trained

    # a second pass skips what finished, side by side too (without starting a process for it)
    again = run_grid(grids[2], profile="smoke", dataset="market1501", sets={"data_root": str(root / "data")},
                     out=parallel, jobs=2, executor="direct", progress=False)
    assert again.skipped == ["a"] and again.ok


def test_direct_equals_papermill_and_the_notebook_then_only_reads(grids, direct_serial):
    root, _, one, args = grids
    serial, _ = direct_serial
    sets = {"data_root": str(root / "data")}
    # the notebook over a finished direct run: executed, nothing retrained or rescored
    filled = root / "filled"
    shutil.copytree(serial / "par" / "a", filled / "par" / "a")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (filled / "par" / "a").iterdir()}
    report = run_grid(one, profile="smoke", dataset="market1501", sets=sets, out=filled, executor="papermill",
                      progress=False)
    assert report.filled == ["a"] and report.ok and not report.done, report.summary()
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (filled / "par" / "a").iterdir()}
    assert set(after) - set(before) == {"experiment.ipynb"}
    assert {k: after[k] for k in before} == before  # every file as it was, byte for byte, not even rewritten
    nb = json.loads((filled / "par" / "a" / "experiment.ipynb").read_text())
    outputs = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    assert "rank1" in outputs and '"error"' not in outputs

    # papermill from scratch: the same files (and the notebook) and the same metrics as direct
    fresh = root / "papermill"
    report = run_grid(one, profile="smoke", dataset="market1501", sets=sets, out=fresh, executor="papermill",
                      progress=False)
    assert report.done == ["a"], report.summary()
    direct, notebook = serial / "par" / "a", fresh / "par" / "a"
    assert {p.name for p in notebook.iterdir()} == {p.name for p in direct.iterdir()} | {"experiment.ipynb"}
    for file in ("config.json", "run.json"):
        assert (notebook / file).read_text() == (direct / file).read_text(), file
    assert {k: read_metrics(notebook)[k] for k in METRICS} == {k: read_metrics(direct)[k] for k in METRICS}
    assert losses(notebook) == losses(direct)


def test_notebook_parameters_read_without_papermill_match_papermill():
    assert read_notebook_parameters(EXPERIMENT) == tuple(papermill.inspect_notebook(str(EXPERIMENT)))


def test_executor_and_jobs_are_checked(tmp_path, monkeypatch):
    assert resolve_executor("auto") == "papermill" and resolve_executor("direct") == "direct"
    with pytest.raises(ValueError, match="allowed values"):
        resolve_executor("jupyter")
    monkeypatch.setitem(sys.modules, "papermill", None)
    assert resolve_executor("auto") == "direct"
    with pytest.raises(ValueError, match="--executor direct"):
        resolve_executor("papermill")
    with pytest.raises(GridError, match="jobs"):
        run_grid("tricks", profile="smoke", out=tmp_path, jobs=0, progress=False)


def test_mps_status_follows_the_control_pipe(tmp_path, monkeypatch):
    from reidlab.executors import mps_status
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    assert mps_status().startswith("CUDA MPS is not running")
    (tmp_path / "control").touch()
    assert mps_status().startswith("CUDA MPS is running")


def test_json_grid_plans_as_yaml_without_pyyaml(tmp_path, monkeypatch):
    from reidlab.ablate import plan_grid
    yaml_runs = plan_grid(write_grid(tmp_path / "g.yaml", "  - name: a\n  - {name: b, label_smoothing: false}\n"),
                          profile="smoke")
    monkeypatch.setitem(sys.modules, "yaml", None)
    json_grid = write_json_grid(tmp_path / "g.json", [{"name": "a"}, {"name": "b", "label_smoothing": False}])
    json_runs = plan_grid(json_grid, profile="smoke")
    from_json = [(r.name, r.config, r.parameters) for r in json_runs]
    assert from_json == [(r.name, r.config, r.parameters) for r in yaml_runs]


def test_read_finished_reads_only_a_run_of_the_same_config(tmp_path):
    from reidlab.profiles import build_config
    from reidlab.runs import read_finished
    cfg = build_config("bot", smoke=True, overrides={"progress": False})
    assert read_finished(cfg, tmp_path) is None
    cfg.save(tmp_path / "config.json")
    assert read_finished(cfg, tmp_path) is None  # interrupted: no metrics.json, fit resumes it
    (tmp_path / "metrics.json").write_text('{"mAP": 12.5}')
    assert read_finished(cfg, tmp_path) == {"mAP": 12.5}
    assert read_finished(cfg.replace(progress=True, num_workers=3), tmp_path) == {"mAP": 12.5}  # how, not what
    assert read_finished(cfg.replace(epochs=cfg.epochs + 2), tmp_path) is None  # fit trains it further
    with pytest.raises(ValueError, match="label_smoothing"):
        read_finished(cfg.replace(label_smoothing=False), tmp_path)


def test_direct_adds_cross_domain_and_r_to_a_finished_run_without_retraining(grids, direct_serial):
    root, _, _, _ = grids
    serial, _ = direct_serial
    out = root / "extras"
    shutil.copytree(serial / "par" / "a", out / "par" / "a")
    checkpoint = (out / "par" / "a" / "checkpoint.pt").stat().st_mtime_ns
    grid = write_json_grid(root / "extras.json", [{"name": "a", "intra_inter": True, "test_dataset": "market1501"}])
    report = run_grid(grid, profile="smoke", dataset="market1501", sets={"data_root": str(root / "data")}, out=out,
                      executor="direct", progress=False)
    assert report.done == ["a"], report.summary()
    before, after = read_metrics(serial / "par" / "a"), read_metrics(out / "par" / "a")
    # tested on its own dataset: the target's metrics are its own, and the source's moved under "source"
    assert after["test_dataset"] == "market1501" and after["mAP"] == before["mAP"] == after["source"]["mAP"]
    assert after["R"] > 0
    assert (out / "par" / "a" / "checkpoint.pt").stat().st_mtime_ns == checkpoint  # read, not retrained
    assert losses(out / "par" / "a") == losses(serial / "par" / "a")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="operator.call is new in Python 3.11")
def test_a_dead_worker_fails_its_call_and_the_rest_go_on():
    import math
    import operator

    from reidlab.executors import run_in_processes
    jobs = [(math.sqrt, 4.0), (os._exit, 1), (math.sqrt, 9.0), (math.sqrt, 16.0)]  # the second kills its worker
    started = []
    results = dict(run_in_processes(operator.call, jobs, 1, on_start=started.append))
    assert started == [0, 1, 2, 3]
    assert results[0] == 2.0 and results[2] == 3.0 and results[3] == 4.0
    assert type(results[1]).__name__ == "BrokenProcessPool"
