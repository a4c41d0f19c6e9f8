"""Batch ablations: one real papermill grid end to end (smoke), the batch logic with an in-process executor."""
import json
import os

import papermill
import pytest
import torch
from papermill.exceptions import PapermillExecutionError

from reidlab import ablate_cli, evaluations
from reidlab.ablate import GridError, plan_grid, run_grid
from reidlab.profiles import build_config
from reidlab.config import CPU_PROFILE, PRESETS, SMOKE_PROFILE
from reidlab.grids import GRIDS

# the smallest runs that still train and evaluate: one epoch at 32 x 16
TINY = "overrides: {epochs: 1, image_size: [32, 16], milestones: [1], checkpoint_every: 1}\n"


def write_grid(tmp_path, body: str, name: str = "two") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\npreset: bot\n{body}")
    return str(path)


def two_runs(tmp_path, extra: str = "") -> str:
    return write_grid(tmp_path, TINY + "runs:\n  - name: a\n  - name: b\n    label_smoothing: false\n" + extra)


def test_grid_end_to_end_with_papermill(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it: two cores are shared
    out = tmp_path / "runs"
    report = run_grid(two_runs(tmp_path), profile="smoke", out=out, progress=False)
    assert report.ok and report.done == ["a", "b"], report.summary()
    for name in ("a", "b"):
        folder = out / "two" / name
        for file in ("config.json", "metrics.json", "history.jsonl", "experiment.ipynb", "run.json"):
            assert (folder / file).exists(), f"{folder} lacks {file}"
        config = json.loads((folder / "config.json").read_text())
        assert config["dataset"] == SMOKE_PROFILE["dataset"] and config["epochs"] == 1
        assert config["progress"] is False  # batch runs print no bars
        assert config["label_smoothing"] is (name == "a")
        assert len((folder / "history.jsonl").read_text().splitlines()) == 1
        assert 0 <= json.loads((folder / "metrics.json").read_text())["mAP"] <= 100
        # the executed notebook holds the injected parameters; its kernel imported reidlab, so it runs this
        # interpreter (jupyter_client maps the kernelspec's "python" to sys.executable)
        nb = json.loads((folder / "experiment.ipynb").read_text())
        injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
        assert injected and str(folder) in "".join(injected[0]["source"])
        assert nb["metadata"]["kernelspec"]["name"] == "python3"

    # cross-domain plumbing: testing a run on its own dataset must give its own metrics back
    before = json.loads((out / "two" / "a" / "metrics.json").read_text())
    cross = evaluations.evaluate_cross_domain(out / "two" / "a", SMOKE_PROFILE["dataset"])
    assert cross["test_dataset"] == SMOKE_PROFILE["dataset"]
    for key in ("rank1", "mAP", "mINP"):
        assert cross[key] == pytest.approx(before[key]) == pytest.approx(cross["source"][key])


# --- the batch logic, with papermill replaced by an in-process stand-in -----------------------------------

class FakeNotebook:
    """Stands in for papermill.execute_notebook: builds the run's config as the notebook does, writes the files
    fit writes, and fails like a notebook cell when the run's config is in `self.fail`."""

    def __init__(self):
        self.fail = set()
        self.calls = []

    def __call__(self, input_path, output_path, parameters, **kwargs):
        self.calls.append(parameters["out_dir"])
        folder = os.path.dirname(output_path)
        with open(output_path, "w") as f:
            json.dump({"parameters": parameters}, f)
        cfg = build_config(parameters["preset"], parameters["profile"], parameters["overrides"],
                           dataset=parameters["dataset"])
        cfg.save(os.path.join(folder, "config.json"))
        if os.path.basename(folder) in self.fail:
            raise PapermillExecutionError(4, 4, "fit(cfg, run_dir)", "TrainingDiverged", "loss is nan at epoch 1",
                                          [])
        with open(os.path.join(folder, "history.jsonl"), "w") as f:
            f.write('{"epoch": 1}\n')
        with open(os.path.join(folder, "metrics.json"), "w") as f:
            json.dump({"rank1": 50.0, "mAP": 40.0 + cfg.seed, "mINP": 10.0}, f)


@pytest.fixture
def fake(monkeypatch):
    fake = FakeNotebook()
    monkeypatch.setattr(papermill, "execute_notebook", fake)
    return fake


def mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_typo_stops_the_batch_before_any_run(tmp_path, fake):
    out = tmp_path / "runs"
    grid = write_grid(tmp_path, "runs:\n  - name: a\n  - name: b\n    lable_smoothing: false\n")
    with pytest.raises(GridError, match=r"run b.*'lable_smoothing'.*did you mean 'label_smoothing'"):
        run_grid(grid, profile="smoke", out=out, progress=False)
    grid = write_grid(tmp_path, "runs:\n  - {name: a, overrides: {lable_smoothing: false}}\n")
    with pytest.raises(GridError, match="did you mean 'label_smoothing'"):
        run_grid(grid, profile="smoke", out=out, progress=False)
    grid = write_grid(tmp_path, "runs:\n  - {name: a, test_datset: market1501}\n")
    with pytest.raises(GridError, match="did you mean 'test_dataset'"):  # a notebook parameter's typo
        run_grid(grid, profile="smoke", out=out, progress=False)
    grid = write_grid(tmp_path, "runs:\n  - name: a\n  - {name: b, neck: bnek}\n")
    with pytest.raises(GridError, match="run b: neck='bnek' is not valid"):  # a bad value, also up front
        run_grid(grid, profile="smoke", out=out, progress=False)
    with pytest.raises(GridError, match="did you mean 'label_smoothing'"):
        run_grid(two_runs(tmp_path), profile="smoke", out=out, sets={"lable_smoothing": False}, progress=False)
    with pytest.raises(GridError, match="did you mean 'tricks'"):
        run_grid("trikcs", profile="smoke", out=out, progress=False)
    assert fake.calls == [] and not out.exists()


def test_failed_run_reported_others_go_on_then_resume(tmp_path, fake, capsys):
    grid, out = two_runs(tmp_path, "  - name: c\n"), tmp_path / "runs"
    fake.fail = {"b"}
    code = ablate_cli.main([grid, "--profile", "smoke", "--out", str(out)])
    assert code == 1
    printed = capsys.readouterr().out
    assert "2 run(s) done, 0 skipped" in printed and "1 failed" in printed
    assert "FAILED b: TrainingDiverged: loss is nan at epoch 1" in printed
    assert (out / "two" / "c" / "metrics.json").exists() and not (out / "two" / "b" / "metrics.json").exists()

    before = {name: mtimes(out / "two" / name) for name in ("a", "c")}
    fake.fail, fake.calls = set(), []
    report = run_grid(grid, profile="smoke", out=out, progress=False)
    assert report.ok and report.done == ["b"] and report.skipped == ["a", "c"]
    assert fake.calls == [str(out / "two" / "b")]
    assert {name: mtimes(out / "two" / name) for name in ("a", "c")} == before  # nothing finished rewritten


def test_force_reruns_and_a_changed_config_is_not_skipped(tmp_path, fake):
    grid, out = two_runs(tmp_path), tmp_path / "runs"
    assert run_grid(grid, profile="smoke", out=out, progress=False).done == ["a", "b"]
    (out / "two" / "a" / "stale.txt").write_text("left by an earlier run")
    # the same runs with another config: the finished folders are not taken for them, nor overwritten
    report = run_grid(grid, profile="smoke", out=out, sets={"triplet_margin": 0.5}, progress=False)
    assert sorted(report.failed) == ["a", "b"] and "triplet_margin" in report.failed["a"]
    assert "--force" in report.failed["a"]
    fake.calls = []
    report = run_grid(grid, profile="smoke", out=out, sets={"triplet_margin": 0.5}, force=True, progress=False)
    assert report.done == ["a", "b"] and len(fake.calls) == 2
    assert not (out / "two" / "a" / "stale.txt").exists()
    assert json.loads((out / "two" / "a" / "config.json").read_text())["triplet_margin"] == 0.5


def test_a_finished_run_asked_for_more_epochs_is_trained_further_not_refused(tmp_path, fake):
    """The runner decides as its executors and fit do (runs.read_finished): more epochs resume a finished run."""
    grid, out = two_runs(tmp_path), tmp_path / "runs"
    assert run_grid(grid, profile="smoke", out=out, progress=False).done == ["a", "b"]
    epochs = json.loads((out / "two" / "a" / "config.json").read_text())["epochs"]
    fake.calls = []
    report = run_grid(grid, profile="smoke", out=out, sets={"epochs": epochs + 1}, progress=False)
    assert report.ok and report.done == ["a", "b"] and len(fake.calls) == 2
    assert json.loads((out / "two" / "a" / "config.json").read_text())["epochs"] == epochs + 1
    # and fewer epochs than the finished run is another run, refused as before
    report = run_grid(grid, profile="smoke", out=out, sets={"epochs": epochs}, progress=False)
    assert sorted(report.failed) == ["a", "b"]
    assert "epochs" in report.failed["a"] and "--force" in report.failed["a"]


def test_seeds_make_suffixed_folders(tmp_path, fake):
    out = tmp_path / "runs"
    report = run_grid(two_runs(tmp_path), profile="smoke", out=out, seeds=2, progress=False)
    assert report.done == ["a", "b", "a_seed1", "b_seed1"]  # seed by seed: a chain cut short still pairs rows
    assert json.loads((out / "two" / "b_seed1" / "config.json").read_text())["seed"] == 1
    assert json.loads((out / "two" / "b_seed1" / "run.json").read_text())["row"] == "b"
    from reidlab.results import build_table
    table = build_table("two", SMOKE_PROFILE["dataset"], root=out).set_index("row")
    assert table.loc["a", "n"] == 2 and table.loc["a", "ours_mAP"] == pytest.approx(40.5)
    with pytest.raises(GridError, match="--seeds"):
        plan_grid(two_runs(tmp_path), seeds=2, sets={"seed": 3}, profile="smoke")


def test_rows_runs_one_rows_extra_seeds(tmp_path, fake):
    """What make demo does for its noise estimate: the grid once, then one row's seeds 1..N-1 beside it."""
    out = tmp_path / "runs"
    assert run_grid(two_runs(tmp_path), profile="smoke", out=out, progress=False).done == ["a", "b"]
    report = run_grid(two_runs(tmp_path), profile="smoke", out=out, seeds=3, rows=["a"], progress=False)
    assert report.done == ["a_seed1", "a_seed2"] and report.skipped == ["a"]
    assert sorted(p.name for p in (out / "two").iterdir()) == ["a", "a_seed1", "a_seed2", "b"]
    with pytest.raises(GridError, match="no row 'c'; its rows: a, b"):
        run_grid(two_runs(tmp_path), profile="smoke", out=out, rows=["c"], progress=False)


def test_every_named_grid_plans(tmp_path):
    """Each named grid builds valid configs: its rows change what the paper's table says, nothing else."""
    for grid in GRIDS:
        runs = plan_grid(grid, dataset="synthetic_small", profile="smoke", test_dataset="synthetic")
        assert len({r.name for r in runs}) == len(runs)
        for run in runs:
            base = build_config(run.parameters["preset"], "smoke", {"progress": False}, dataset="synthetic_small")
            changed = {k for k, v in run.config.to_dict().items() if base.to_dict()[k] != v}
            assert changed <= set(run.parameters["overrides"]), (grid, run.name, changed)
    tricks = plan_grid("tricks", dataset="synthetic_small", profile="smoke")
    assert [r.name for r in tricks] == ["untrained", *list(PRESETS)[:7]]
    assert tricks[-1].config == PRESETS["center_loss"].replace(**SMOKE_PROFILE, progress=False, rerank=True)
    sizes = {r.name: r.config.image_size for r in plan_grid("image_size", profile="cpu", dataset="synthetic")}
    scale = CPU_PROFILE["image_size"][0] / 256  # the cpu profile scales the paper's sizes by its height / 256
    assert sizes["256x128"] == tuple(CPU_PROFILE["image_size"])
    assert sizes["224x224"] == (round(224 * scale),) * 2
    assert sizes["384x192"] == (round(384 * scale), round(192 * scale))
    with pytest.raises(GridError, match="--test-dataset"):
        plan_grid("cross_domain", dataset="synthetic", profile="cpu")


def test_untrained_row_is_the_built_model_evaluated(tmp_path):
    torch.set_num_threads(1)
    cfg = build_config("bot", smoke=True, overrides={"progress": False, "image_size": [32, 16]})
    metrics = evaluations.evaluate_untrained(cfg, tmp_path / "untrained")
    assert metrics["epochs"] == 0
    saved = json.loads((tmp_path / "untrained" / "config.json").read_text())
    assert saved["pretrained"] is None and (tmp_path / "untrained" / "history.jsonl").read_text() == ""

    # reference: the same seed, the same model, evaluated by hand
    from reidlab.datasets import load_dataset
    from reidlab.model import build_model
    from reidlab.train import evaluate_split, seed_epoch
    dataset = load_dataset(cfg.dataset, verbose=False)
    seed_epoch(cfg.seed, 0)
    model = build_model(cfg.replace(pretrained=None), dataset.num_train_pids).eval()
    expected = evaluate_split(model, cfg, dataset, "cpu")
    assert metrics["mAP"] == pytest.approx(expected["mAP"]) and metrics["rank1"] == pytest.approx(expected["rank1"])


def test_cli_subcommand(tmp_path, fake, capsys):
    from reidlab.__main__ import main
    with pytest.raises(SystemExit) as stop:
        main(["ablate", str(tmp_path / "missing.yaml"), "--profile", "smoke", "--out", str(tmp_path)])
    assert stop.value.code == 2 and "not found" in capsys.readouterr().err
    main(["ablate", two_runs(tmp_path), "--profile", "smoke", "--out", str(tmp_path / "runs")])
    assert "2 run(s) done" in capsys.readouterr().out
