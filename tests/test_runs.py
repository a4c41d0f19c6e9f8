"""One run folder module: one list of result-neutral fields that every reader applies the same way."""
import hashlib
import json

import pytest
import torch

from reidlab.runs import read_finished
from reidlab.config import Config, neutral_fields
from reidlab.runs import CHECKPOINT, PREVIOUS, RunFolder
from reidlab.train import check_resume_config


def test_the_neutral_fields_are_marked_on_the_config():
    assert set(neutral_fields()) == {"progress", "num_workers", "device", "checkpoint_every", "eval_every",
                                     "cuda_graph", "adam"}


def finished_folder(tmp_path, cfg):
    folder = RunFolder(tmp_path / "run")
    folder.save_config(cfg)
    folder.write_metrics({"mAP": 12.5})
    return folder


@pytest.mark.parametrize("change", [{"cuda_graph": True}, {"eval_every": 2}, {"checkpoint_every": 3},
                                    {"device": "cpu", "num_workers": 7, "progress": False}])
def test_a_neutral_change_is_the_same_run_for_the_runner_and_for_resuming(tmp_path, change):
    cfg = Config(epochs=4)
    folder = finished_folder(tmp_path, cfg)
    other = cfg.replace(**change)
    assert folder.matches(other) and folder.changed(other) == []
    assert read_finished(other, folder.path) == {"mAP": 12.5}  # the runner reads it
    check_resume_config(other, folder)  # and fit resumes it: no ValueError


def test_a_change_that_alters_the_result_is_refused_by_both(tmp_path):
    cfg = Config(epochs=4)
    folder = finished_folder(tmp_path, cfg)
    other = cfg.replace(label_smoothing=False)
    assert folder.changed(other) == ["label_smoothing"] and not folder.matches(other)
    with pytest.raises(ValueError, match="label_smoothing"):
        read_finished(other, folder.path)
    with pytest.raises(ValueError, match="label_smoothing"):
        check_resume_config(other, folder)
    # more epochs: the runner hands the run to fit, which trains it further
    assert read_finished(cfg.replace(epochs=6), folder.path) is None
    check_resume_config(cfg.replace(epochs=6), folder)
    # fewer: the saved run trained past them, so it is another run for both
    with pytest.raises(ValueError, match="epochs"):
        read_finished(cfg.replace(epochs=3), folder.path)
    with pytest.raises(ValueError, match="epochs"):
        check_resume_config(cfg.replace(epochs=3), folder)


def state(epoch):
    return {"epoch": epoch, "model": {"w": torch.full((2,), float(epoch))}, "num_classes": 3}


def test_the_export_hash_is_of_the_checkpoint_the_model_comes_from(tmp_path, capsys):
    from reidlab.export import checkpoint_sha256

    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.save_checkpoint(state(1))
    folder.save_checkpoint(state(2))
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert checkpoint_sha256(folder.path) == sha(folder.file(CHECKPOINT))
    folder.file(CHECKPOINT).write_bytes(b"truncated")  # the latest cannot be read: the model loads the previous
    assert checkpoint_sha256(folder.path) == sha(folder.file(PREVIOUS)) != sha(folder.file(CHECKPOINT))
    assert "using the previous checkpoint" in capsys.readouterr().err


def test_a_copy_leads_to_the_folder_with_the_checkpoints(tmp_path):
    source = finished_folder(tmp_path, Config())
    source.save_checkpoint(state(1))
    source.append_history({"epoch": 1, "loss": 2.0})
    copy = RunFolder(tmp_path / "copy")
    copy.copy_results_from(source)
    again = RunFolder(tmp_path / "copy_of_copy")
    again.copy_results_from(copy)
    assert again.metrics() == {"mAP": 12.5} and again.history() == [{"epoch": 1, "loss": 2.0}]
    assert not again.has_checkpoint() and again.trained().path == source.path


def test_fit_writes_no_unused_checkpoint_fields(tmp_path):
    from reidlab.profiles import for_profile
    from reidlab.train import fit

    cfg = for_profile("bot", "smoke", epochs=1, milestones=(1,), warmup_epochs=1, warmup=False)
    fit(cfg, tmp_path)
    saved, _ = RunFolder(tmp_path).load_checkpoint()
    assert not {"sampler", "rng"} & set(saved)
    assert json.loads((tmp_path / "metrics.json").read_text()) == RunFolder(tmp_path).metrics()
