"""Every notebook: paired with its jupytext twin, committed clean, parametrised for papermill; every numbered
notebook runs end to end in smoke mode and writes what it should."""
import json
import re

import nbformat
import pytest

from reidlab.paths import REPO_ROOT

jupytext = pytest.importorskip("jupytext")
papermill = pytest.importorskip("papermill")

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
NUMBERED = [p for p in NOTEBOOKS if re.match(r"^\d\d_", p.name)]
REQUIRED_PARAMETERS = ("smoke", "dataset", "device", "out_dir")
# experiment.ipynb runs a whole ablation grid and has its own parameters
OWN_PARAMETERS = {"experiment.ipynb": ("smoke", "out_dir")}
METRIC_KEYS = ("rank1", "mAP", "mINP")
# what a reader would take for a crash or a problem: no notebook may print one (issue 13)
NOISE = re.compile(r"Traceback|Exception ignored|warn", re.IGNORECASE)


def ids(paths):
    return [p.stem for p in paths]


def noisy_outputs(nb) -> list[str]:
    """'cell i (kind): text' for each output that shows a traceback, an ignored exception or a warning."""
    found = []
    for i, cell in enumerate(nb.cells):
        texts = {}  # kind -> text: a stream comes in pieces, one output per write
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                kind, text = f"stream {o.name}", o.text
            elif o.output_type == "error":
                kind, text = "error", "\n".join([f"{o.ename}: {o.evalue}", *o.get("traceback", [])])
            else:
                kind, text = o.output_type, str(o.get("data", {}).get("text/plain", "")) + "\n"
            texts[kind] = texts.get(kind, "") + text
        for kind, text in texts.items():
            match = NOISE.search(text)
            if match:
                start = max(0, match.start() - 200)
                found.append(f"cell {i} ({kind}): ...{text[start:match.end() + 800]}")
    return found


def test_noise_scan_names_the_cell():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("a"), nbformat.v4.new_code_cell("b")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="rank-1 90.1, warmup helped\n")]
    assert noisy_outputs(nb) == []
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stderr", text=(
        "Exception ignored in: <function _MultiProcessingDataLoaderIter.__del__ at 0x7f>\nTraceback (most recent "
        "call last):\nAssertionError: can only test a child process\n"))]
    (line,) = noisy_outputs(nb)
    assert line.startswith("cell 1 (stream stderr)") and "can only test a child process" in line
    nb.cells[0].outputs.append(nbformat.v4.new_output("stream", name="stderr", text="UserWarning: x is deprecated"))
    assert [line.split(":")[0] for line in noisy_outputs(nb)] == ["cell 0 (stream stderr)", "cell 1 (stream stderr)"]


def test_notebooks_exist():
    assert NUMBERED, f"no numbered notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_paired_with_py_twin(path):
    twin = path.with_suffix(".py")
    assert twin.exists(), f"{path.name} has no jupytext twin {twin.name}: run `jupytext --sync {path}`"
    ipynb, py = jupytext.read(path), jupytext.read(twin)
    got = [(c.cell_type, c.source.strip()) for c in ipynb.cells]
    want = [(c.cell_type, c.source.strip()) for c in py.cells]
    assert len(got) == len(want), f"{path.name}: {len(got)} cells but {twin.name} has {len(want)}; run jupytext --sync"
    for i, (a, b) in enumerate(zip(got, want)):
        assert a == b, f"{path.name} cell {i} differs from {twin.name}; run `jupytext --sync {twin}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernel must be python3"
    assert "widgets" not in nb.metadata, f"{path.name} carries widget state; strip it (nbstripout)"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs; strip them (nbstripout)"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count; strip it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_parameters_cell(path):
    params = papermill.inspect_notebook(str(path))
    required = OWN_PARAMETERS.get(path.name, REQUIRED_PARAMETERS)
    missing = [name for name in required if name not in params]
    assert not missing, f"{path.name}: the `parameters`-tagged cell lacks {missing}"
    for name in required:
        assert params[name]["inferred_type_name"] != "None", f"{path.name}: annotate the type of {name!r}"
    assert params["smoke"]["default"] == "False", f"{path.name}: smoke must default to False"


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory):
    """One folder for every notebook's out_dir, so a later notebook reuses an earlier one's finished runs."""
    return tmp_path_factory.mktemp("notebook_runs")


def check_run_folder(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in METRIC_KEYS:
        assert 0 <= metrics[key] <= 100, f"{run_dir.name}: {key}={metrics[key]} outside 0..100"
    assert metrics["rank1"] <= metrics["rank5"] <= metrics["rank10"], f"{run_dir.name}: CMC must not decrease"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == "synthetic_small", f"{run_dir.name}: smoke runs must use synthetic_small"
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines() if line]
    assert [r["epoch"] for r in history] == list(range(1, config["epochs"] + 1))


@pytest.mark.slow
@pytest.mark.parametrize("path", NUMBERED, ids=ids(NUMBERED))
def test_executes_in_smoke_mode(path, runs_root, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it: on 2 shared cores 1 thread is faster
    out_dir = runs_root / path.stem
    executed = tmp_path / path.name
    papermill.execute_notebook(str(path), str(executed), parameters={"smoke": True, "out_dir": str(out_dir)},
                               kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    nb = nbformat.read(executed, as_version=4)
    noisy = noisy_outputs(nb)
    assert not noisy, f"{path.name} printed what reads as a problem:\n" + "\n".join(noisy)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} displayed no figure"
    assert out_dir.is_dir() and any(out_dir.iterdir()), f"{path.name} wrote nothing into out_dir"
    for run_dir in (p for p in out_dir.iterdir() if (p / "config.json").exists()):
        check_run_folder(run_dir)
    if path.name.startswith("00_"):
        summary = json.loads((out_dir / "protocol.json").read_text())
        for key in METRIC_KEYS:  # the toy example by hand against evaluate_ranking
            assert summary["toy_by_hand"][key] == pytest.approx(summary["toy_evaluate_ranking"][key])
        assert summary["toy_by_hand"]["mAP"] == pytest.approx(100 * (1 / 3 + 2 / 4 + 1 / 2 + 2 / 6) / 4)
    if re.match(r"^0[1-4]_", path.name):  # the trick notebooks: every run a Table 1 row, with the paper's numbers
        import pandas as pd

        from reidlab.paper import TABLE1

        table = pd.read_csv(out_dir / "comparison.csv", index_col="run")
        assert set(table.index) <= set(TABLE1) and len(table) >= 1
        for run in table.index:
            assert tuple(table.loc[run, ["paper_rank1", "paper_mAP"]]) == TABLE1[run]
            assert len([p for p in out_dir.glob(f"{run}-*") if (p / "metrics.json").exists()]) == 1
    if path.name.startswith("12_"):  # your own data: the example pool split, trained, evaluated twice, exported
        import pandas as pd

        assert set(pd.read_csv(out_dir / "split.csv")["split"]) == {"train", "query", "gallery"}
        (run_dir,) = (out_dir / "runs").iterdir()  # the run on the example folder (not synthetic_small's layout)
        ours, by_fit = (json.loads(p.read_text()) for p in (out_dir / "metrics.json", run_dir / "metrics.json"))
        assert (ours["rank1"], ours["mAP"]) == pytest.approx((by_fit["rank1"], by_fit["mAP"]))
        export = json.loads((out_dir / "export_check.json").read_text())
        assert export["passed"] and export["min_cosine"] >= 0.99999 and (out_dir / "model.onnx").is_file()
