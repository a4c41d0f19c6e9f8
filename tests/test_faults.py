"""Fault injection: a run killed, a checkpoint cut short, a full disk, a corrupt image, a diverging run, a grid
that cannot run. Each test breaks something on purpose, then checks that the run comes back equal to one that
was never broken, or stops with a message that names the file and the way out."""
import errno
import io
import json
import os
import shutil
import signal
import traceback
from pathlib import Path

import papermill
import pytest
import torch
from conftest import write_market_layout

from reidlab import ablate
from reidlab.runs import (CHECKPOINT, PREVIOUS, UNREADABLE, CheckpointError, load_checkpoint,
                                 read_checkpoint, save_checkpoint)
from reidlab.config import Config, PRESETS
from reidlab.datasets import load_dataset
from reidlab.gpu_data import decode_images
from reidlab.inference import CheckpointMismatch, load_run
from reidlab.loaders import ImageReadError
from reidlab.sampler import RandomIdentitySampler
from reidlab import train as train_module
from reidlab.runs import load_history
from reidlab.train import TrainingDiverged, fit

TIMING = ("seconds", "images_per_s", "train_seconds", "device", "cpu_load")  # differ between any two runs
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked process (no os.fork here)")


def tiny_cfg(**changes) -> Config:
    # MobileNetV2 from scratch at 32 x 16: a 27 MB checkpoint, about half a second per epoch
    base = dict(backbone="mobilenet_v2", pretrained=None, image_size=(32, 16), P=3, K=2, epochs=4,
                warmup_epochs=2, milestones=(3,), num_workers=0, cpu_threads=1, checkpoint_every=1,
                progress=False, device="cpu", log_iterations=3)
    return PRESETS["bot"].replace(**{**base, **changes})


def untimed(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


def steps_per_epoch(cfg: Config, dataset, epochs) -> list[int]:
    """The number of P x K batches of each epoch (the sampler's draw changes it a little from epoch to epoch)."""
    sampler = RandomIdentitySampler([r.pid for r in dataset.train], cfg.P, cfg.K, seed=cfg.seed)
    counts = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        counts.append(len(sampler) // cfg.batch_size)
    return counts


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def run_files(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tiny_market):
    return load_dataset("market1501", tiny_market, verbose=False)


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """An uninterrupted 4-epoch run, and a copy of its folder as it stood after epoch 3 (checkpoint.pt of epoch 3,
    checkpoint.prev.pt of epoch 2): the starting point of the tests that break a run in the middle."""
    root = tmp_path_factory.mktemp("reference")

    def snapshot(record):
        if record["epoch"] == 3:
            shutil.copytree(root / "run", root / "after_epoch3")

    metrics = fit(tiny_cfg(), root / "run", dataset=dataset, on_epoch_end=snapshot)
    assert read_checkpoint(root / "after_epoch3" / PREVIOUS)["epoch"] == 2
    return {"dir": root / "run", "metrics": metrics, "after_epoch3": root / "after_epoch3"}


def assert_same_as_reference(run_dir: Path, metrics: dict, reference: dict) -> None:
    assert [untimed(r) for r in load_history(run_dir)] == [untimed(r) for r in load_history(reference["dir"])]
    assert untimed(metrics) == untimed(reference["metrics"])
    ours, theirs = read_checkpoint(run_dir / CHECKPOINT), read_checkpoint(reference["dir"] / CHECKPOINT)
    assert ours["epoch"] == theirs["epoch"] == 4
    for key in theirs["model"]:
        assert torch.equal(ours["model"][key], theirs["model"][key]), key


def broken_copy(reference: dict, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(reference["after_epoch3"], run_dir)
    return run_dir


# --- a training process killed -----------------------------------------------------------------------------

def killed(work, kill_at: int | None = None) -> None:
    """Run `work()` in a forked process that is SIGKILLed at its `kill_at`-th training step (1-based, counted over
    epochs and runs), or wherever `work` kills itself: a real kill, after which nothing runs (no finally, no
    flush); the files it leaves are what the test then finds. Forking skips a new interpreter's imports."""
    pid = os.fork()
    if pid == 0:
        try:
            if kill_at is not None:
                real, calls = train_module.compute_losses, []

                def compute_losses(*args):
                    calls.append(1)
                    if len(calls) == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return real(*args)

                train_module.compute_losses = compute_losses  # in the child only
            work()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(1)  # reached only when the kill did not happen
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"the process ended with {status}"


@needs_fork
def test_sigkill_mid_epoch_then_resume_equals_straight_run(tmp_path, dataset, reference):
    # a checkpoint every 2 epochs, killed in epoch 4: history.jsonl holds epoch 3, which the checkpoint does not
    cfg = tiny_cfg(checkpoint_every=2)
    steps = steps_per_epoch(cfg, dataset, range(1, 4))
    killed(lambda: fit(cfg, tmp_path, dataset=dataset), kill_at=sum(steps) + 3)  # epoch 4, step 2
    assert [r["epoch"] for r in load_history(tmp_path)] == [1, 2, 3]
    assert read_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 2 and not (tmp_path / "metrics.json").exists()

    metrics = fit(cfg, tmp_path, dataset=dataset)
    assert_same_as_reference(tmp_path, metrics, reference)
    iterations = (tmp_path / "iterations.jsonl").read_text()
    assert iterations == (reference["dir"] / "iterations.jsonl").read_text() and iterations.count("\n") == 3


# --- checkpoints cut short, unreadable, or not written -------------------------------------------------------

def test_truncated_latest_falls_back_to_previous_and_resume_equals_straight_run(tmp_path, dataset, reference,
                                                                                capsys):
    run_dir = broken_copy(reference, tmp_path)
    truncate(run_dir / CHECKPOINT)  # epoch 3's, cut in half
    metrics = fit(tiny_cfg(), run_dir, dataset=dataset)
    said = capsys.readouterr().err
    assert f"{run_dir / CHECKPOINT} cannot be read" in said and "truncated or corrupt" in said
    assert f"using the previous checkpoint {run_dir / PREVIOUS} (epoch 2)" in said and said.count("\n") == 1
    # history.jsonl was cut back to epoch 2 (the previous checkpoint's), then epochs 3 and 4 trained again
    assert_same_as_reference(run_dir, metrics, reference)
    assert (run_dir / UNREADABLE).exists()  # set aside, so the next save could not rotate it over a good one
    assert read_checkpoint(run_dir / PREVIOUS)["epoch"] == 3


def test_load_run_falls_back_to_previous_checkpoint(tmp_path, reference, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(reference["dir"], run_dir)
    (run_dir / CHECKPOINT).write_bytes(b"")  # an empty file: a write that never happened
    model, _ = load_run(run_dir, device="cpu")
    assert f"using the previous checkpoint {run_dir / PREVIOUS} (epoch 3)" in capsys.readouterr().err
    previous = read_checkpoint(run_dir / PREVIOUS)["model"]
    assert all(torch.equal(v, previous[k]) for k, v in model.state_dict().items())
    assert (run_dir / CHECKPOINT).exists()  # loading a run for inference changes nothing in its folder


def test_both_checkpoints_truncated_name_files_and_ways_out(tmp_path, dataset, reference):
    run_dir = broken_copy(reference, tmp_path)
    truncate(run_dir / CHECKPOINT)
    truncate(run_dir / PREVIOUS)
    for attempt in (lambda: fit(tiny_cfg(), run_dir, dataset=dataset), lambda: load_run(run_dir, device="cpu")):
        with pytest.raises(CheckpointError) as info:
            attempt()
        message = str(info.value)
        assert str(run_dir / CHECKPOINT) in message and str(run_dir / PREVIOUS) in message
        assert message.count("truncated or corrupt") == 2
        assert f"delete the folder {run_dir}" in message and "--restart" in message and "resume=False" in message
    # the second way out works: start over in the same folder, and no old checkpoint survives to be fallen back on
    fit(tiny_cfg(epochs=1), run_dir, dataset=dataset, resume=False)
    assert read_checkpoint(run_dir / CHECKPOINT)["epoch"] == 1 and not (run_dir / PREVIOUS).exists()
    assert [r["epoch"] for r in load_history(run_dir)] == [1]


def test_full_disk_during_save_keeps_the_last_good_checkpoints(tmp_path, dataset, reference, monkeypatch):
    run_dir = broken_copy(reference, tmp_path)
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):  # half the bytes reach the disk, then it is full
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: buffer.tell() // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError) as info:
        fit(tiny_cfg(), run_dir, dataset=dataset)  # trains epoch 4, then cannot save it
    assert info.value.errno == errno.ENOSPC
    assert str(run_dir / CHECKPOINT) in str(info.value) and "untouched" in str(info.value)
    assert read_checkpoint(run_dir / CHECKPOINT)["epoch"] == 3 and read_checkpoint(run_dir / PREVIOUS)["epoch"] == 2
    assert sorted(p.name for p in run_dir.glob("*.tmp")) == []

    monkeypatch.setattr(torch, "save", real_save)  # space freed: the same command resumes from epoch 3
    metrics = fit(tiny_cfg(), run_dir, dataset=dataset)
    assert_same_as_reference(run_dir, metrics, reference)


class Crash(BaseException):
    """The process dies here: nothing after this point runs."""


@pytest.mark.parametrize("crash_at", ["torch.save", "rename latest to previous", "rename new to latest"])
def test_a_crash_anywhere_in_a_save_leaves_a_whole_checkpoint(tmp_path, monkeypatch, crash_at):
    def state(epoch):
        return {"epoch": epoch, "num_classes": 2, "model": {"w": torch.full((1000,), float(epoch))}}

    save_checkpoint(state(1), tmp_path)
    save_checkpoint(state(2), tmp_path)
    real_save, real_replace = torch.save, os.replace
    renames = []

    def dying_save(obj, f, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[:100])
        raise Crash

    def dying_replace(src, dst):
        renames.append(dst)
        if len(renames) == {"rename latest to previous": 1, "rename new to latest": 2}[crash_at]:
            raise Crash
        real_replace(src, dst)

    if crash_at == "torch.save":
        monkeypatch.setattr(torch, "save", dying_save)
    else:
        monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(Crash):
        save_checkpoint(state(3), tmp_path)
    monkeypatch.undo()

    loaded, _ = load_checkpoint(tmp_path)  # the newest whole one: epoch 2's, under one name or the other
    assert loaded["epoch"] == 2 and torch.equal(loaded["model"]["w"], state(2)["model"]["w"])
    # the next save after the crash leaves the latest and a readable previous one
    save_checkpoint(state(4), tmp_path)
    assert read_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 4 and read_checkpoint(tmp_path / PREVIOUS)["epoch"] == 2


def test_checkpoint_of_another_backbone_names_both(tmp_path, reference):
    run_dir = tmp_path / "run"
    shutil.copytree(reference["dir"], run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["backbone"] = "resnet18"
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatch) as info:
        load_run(run_dir, device="cpu")
    message = str(info.value)
    assert str(run_dir / CHECKPOINT) in message and "backbone." in message  # the keys that do not fit
    assert "backbone='mobilenet_v2' (config.json: 'resnet18')" in message


# --- a corrupt image ---------------------------------------------------------------------------------------

def test_corrupt_image_mid_epoch_names_the_file_and_the_fix(tmp_path, tiny_market):
    shutil.copytree(tiny_market, tmp_path / "market")
    dataset = load_dataset("market1501", tmp_path / "market", verbose=False)
    cfg = tiny_cfg(epochs=1)  # decoded in this process (tests/test_loaders.py: the same error from a worker)
    sampler = RandomIdentitySampler([r.pid for r in dataset.train], cfg.P, cfg.K, seed=cfg.seed)
    sampler.set_epoch(1)
    bad = Path(dataset.train[list(sampler)[3 * cfg.batch_size]].path)  # the first image of the 4th batch
    truncate(bad)
    with pytest.raises(ImageReadError) as info:
        fit(cfg, tmp_path / "run", dataset=dataset)
    assert str(bad) in str(info.value) and "python -m reidlab verify" in str(info.value)
    assert (tmp_path / "run" / "iterations.jsonl").read_text().count("\n") == 3  # met mid-epoch, after 3 steps


def test_corrupt_image_in_gpu_path_decode_names_the_file(tmp_path, tiny_market):
    shutil.copytree(tiny_market, tmp_path / "market")
    records = load_dataset("market1501", tmp_path / "market", verbose=False).train
    bad = Path(records[len(records) // 2].path)
    truncate(bad)
    with pytest.raises(ImageReadError) as info:
        decode_images(records, (32, 16), cache_dir=tmp_path / "cache", progress=False, workers=2)
    assert str(bad) in str(info.value) and "python -m reidlab verify" in str(info.value)
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []  # no half cache


# --- a run that diverges -----------------------------------------------------------------------------------

def test_diverging_run_stops_keeps_last_good_checkpoint_and_says_how_to_continue(tmp_path, dataset):
    # the learning rate jumps from 3.5e-4 to 3.5e36 at epoch 2 (gamma 1e40): the loss is inf / nan within steps
    cfg = tiny_cfg(epochs=3, warmup=False, milestones=(2,), gamma=1e40)
    with pytest.raises(TrainingDiverged) as info:
        fit(cfg, tmp_path, dataset=dataset)
    message = str(info.value)
    assert "epoch 2, step" in message and f"kept in {tmp_path / CHECKPOINT}" in message
    assert "lower base_lr" in message and "--restart" in message and "resume=False" in message
    kept = read_checkpoint(tmp_path / CHECKPOINT)
    assert kept["epoch"] == 1 and [r["epoch"] for r in load_history(tmp_path)] == [1]
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    model, _ = load_run(tmp_path, device="cpu")  # the kept checkpoint is a usable model
    assert torch.isfinite(model(torch.rand(2, 3, 32, 16))).all()


# --- the ablation runner --------------------------------------------------------------------------------------

GRID = ("name: two\npreset: bot\noverrides: {backbone: mobilenet_v2, pretrained: null, image_size: [32, 16], "
        "P: 3, K: 2, epochs: 2, warmup_epochs: 2, milestones: [2], checkpoint_every: 1, device: cpu}\n"
        "runs:\n  - name: a\n  - name: b\n    label_smoothing: false\n")


EPOCHS = []  # (run, epoch) of every epoch trained in this process


@pytest.fixture
def grid_args(tmp_path, tiny_market, monkeypatch):
    """A two-run grid on the tiny dataset, run by the direct executor (reidlab.train.fit in this process, the
    notebook's cells without Jupyter: tests/test_ablate.py runs the papermill path end to end)."""
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "market1501").symlink_to(tiny_market)
    (tmp_path / "two.yaml").write_text(GRID)
    real_fit = train_module.fit

    def recording_fit(cfg, out_dir, *args, **kwargs):
        def log(record):
            EPOCHS.append((Path(out_dir).name, record["epoch"]))

        return real_fit(cfg, out_dir, *args, on_epoch_end=log, **kwargs)

    monkeypatch.setattr(train_module, "fit", recording_fit)
    EPOCHS.clear()
    return dict(grid=str(tmp_path / "two.yaml"), dataset="market1501", profile="smoke",
                sets={"data_root": str(data_root)}, progress=False, executor="direct")


def plan(grid_args) -> list:
    return ablate.plan_grid(grid_args["grid"], grid_args["dataset"], sets=grid_args["sets"],
                            profile=grid_args["profile"])


@needs_fork
def test_grid_killed_between_and_inside_runs_resumes_to_the_same_tables(tmp_path, dataset, grid_args):
    straight = ablate.run_grid(out=tmp_path / "straight", **grid_args)
    assert straight.done == ["a", "b"]
    out = tmp_path / "runs"
    a, b = out / "two" / "a", out / "two" / "b"

    def killed_as_b_starts():
        fit_a = train_module.fit

        def fit_or_die(cfg, out_dir, *args, **kwargs):
            if Path(out_dir).name == "b":
                os.kill(os.getpid(), signal.SIGKILL)
            return fit_a(cfg, out_dir, *args, **kwargs)

        train_module.fit = fit_or_die  # in the child only
        ablate.run_grid(out=out, **grid_args)

    killed(killed_as_b_starts)  # between runs: a finished, b next
    assert (a / "metrics.json").exists() and not (b / "config.json").exists()
    finished = run_files(a)

    first_epoch = steps_per_epoch(plan(grid_args)[1].config, dataset, [1])[0]
    killed(lambda: ablate.run_grid(out=out, **grid_args), kill_at=first_epoch + 2)  # b's epoch 2, step 1
    assert read_checkpoint(b / CHECKPOINT)["epoch"] == 1 and not (b / "metrics.json").exists()
    assert run_files(a) == finished  # a skipped

    EPOCHS.clear()
    report = ablate.run_grid(out=out, **grid_args)
    assert report.skipped == ["a"] and report.done == ["b"] and report.ok
    assert EPOCHS == [("b", 2)]  # b resumed from its epoch-1 checkpoint
    assert run_files(a) == finished  # nothing finished was rewritten
    for name in ("a", "b"):
        ours, theirs = out / "two" / name, tmp_path / "straight" / "two" / name
        assert [untimed(r) for r in load_history(ours)] == [untimed(r) for r in load_history(theirs)]
        assert untimed(json.loads((ours / "metrics.json").read_text())) == \
            untimed(json.loads((theirs / "metrics.json").read_text()))


def test_unreadable_checkpoints_fail_one_run_of_a_grid_and_say_how_to_rerun_it(tmp_path, grid_args):
    folder = tmp_path / "runs" / "two" / "a"
    folder.mkdir(parents=True)
    plan(grid_args)[0].config.save(folder / "config.json")
    (folder / CHECKPOINT).write_bytes(b"PK\x03\x04 cut short")
    report = ablate.run_grid(out=tmp_path / "runs", **grid_args)
    assert report.done == ["b"] and list(report.failed) == ["a"]  # the others go on
    assert "CheckpointError" in report.failed["a"] and f"delete the folder {folder}" in report.failed["a"]


# --- a grid that cannot run on its dataset ---------------------------------------------------------------------

def test_grid_with_more_identities_per_batch_than_the_dataset_stops_before_any_run(tmp_path, monkeypatch):
    write_market_layout(tmp_path / "data" / "market1501", num_train_ids=12, num_test_ids=2, per_cam=1)
    (tmp_path / "grid.yaml").write_text("name: batch\npreset: bot\nruns:\n  - name: a\n  - {name: b, P: 16}\n")
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a run started"))
    out = tmp_path / "runs"
    with pytest.raises(ablate.GridError) as info:
        ablate.run_grid(str(tmp_path / "grid.yaml"), dataset="market1501", profile="smoke",
                        sets={"data_root": str(tmp_path / "data")}, out=out, progress=False)
    assert "run b: P=16 identities per batch, but dataset market1501 has only 12 training identities" in str(info.value)
    assert "lower P to at most 12" in str(info.value)
    assert not out.exists()
