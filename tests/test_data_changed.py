"""A finished run is read only while the dataset on disk is the one it was trained and scored on (metrics.json's
"train_set" and "test_set"): a test set that changed is scored again from the run's checkpoint, a training set that
changed is refused (or, in a notebook, trained again)."""
import shutil

import pytest

from conftest import write_market_layout
from reidlab.config import PRESETS
from reidlab.datasets import load_dataset
from reidlab.runs import RunFolder, read_finished, remove_checkpoints
from reidlab.train import fit


def tiny_config(data_root):
    return PRESETS["bot"].replace(dataset="market1501", data_root=str(data_root), backbone="resnet18", pretrained=None,
                                  image_size=(32, 16), P=3, K=2, epochs=1, num_workers=0, progress=False, device="cpu")


def add_distractor(data_root, k=7):
    """One more gallery image: the test set changes, the training set does not."""
    gallery = data_root / "market1501" / "bounding_box_test"
    shutil.copy(next(gallery.glob("0000_*.jpg")), gallery / f"0000_c1s1_{900 + k:06d}_01.jpg")


@pytest.fixture
def finished(tmp_path):
    data_root = tmp_path / "data"
    write_market_layout(data_root / "market1501")
    cfg = tiny_config(data_root)
    metrics = fit(cfg, tmp_path / "run")
    return cfg, RunFolder(tmp_path / "run"), metrics


def test_split_keys_name_the_images_not_where_they_lie(tmp_path):
    here = write_market_layout(tmp_path / "a")
    there = shutil.copytree(here, tmp_path / "elsewhere" / "b")
    keys = load_dataset("market1501", here, verbose=False).split_keys()
    assert load_dataset("market1501", there, verbose=False).split_keys() == keys
    assert keys["test_set"].startswith("4 query images, 23 gallery images (")

    (there / "query" / "0013_c1s1_000000_01.jpg").rename(there / "query" / "0013_c2s1_000000_01.jpg")  # a camera
    moved = load_dataset("market1501", there, verbose=False).split_keys()
    assert moved["train_set"] == keys["train_set"] and moved["test_set"] != keys["test_set"]
    assert moved["test_set"].startswith("4 query images, 23 gallery images (")  # same counts, another hash

    next((there / "bounding_box_train").glob("*.jpg")).unlink()
    assert load_dataset("market1501", there, verbose=False).split_keys()["train_set"] != keys["train_set"]


def test_fit_records_what_it_trained_and_scored_on_and_the_run_is_read_while_that_holds(finished):
    cfg, folder, metrics = finished
    dataset = load_dataset("market1501", cfg.data_root + "/market1501", verbose=False)
    assert {k: metrics[k] for k in ("train_set", "test_set")} == dataset.split_keys()
    assert read_finished(cfg, folder.path) == metrics


def test_a_changed_test_set_is_scored_again_from_the_checkpoint_without_training(finished, capsys):
    cfg, folder, before = finished
    history, checkpoint = folder.history(), folder.checkpoint_file().read_bytes()
    add_distractor(folder.path.parent / "data")

    assert read_finished(cfg, folder.path) is None
    assert "scored on another test set (was 4 query images, 23 gallery images" in capsys.readouterr().out
    after = fit(cfg, folder.path)  # what every executor does with None: fit resumes from the last epoch's checkpoint
    assert folder.history() == history and folder.checkpoint_file().read_bytes() == checkpoint  # no step trained
    assert after["test_set"].startswith("4 query images, 24 gallery images (")
    assert after["train_set"] == before["train_set"]
    assert read_finished(cfg, folder.path) == after


def test_without_a_checkpoint_a_changed_test_set_is_an_error_that_keeps_the_run(finished):
    cfg, folder, before = finished
    remove_checkpoints(folder.path)
    add_distractor(folder.path.parent / "data")
    with pytest.raises(ValueError, match=r"scored on another test set \(was .*, now .*\) and no checkpoint .*--force"):
        read_finished(cfg, folder.path, fix="rerun it with --force")
    assert folder.metrics() == before


def test_a_changed_training_set_is_an_error(finished):
    cfg, folder, _ = finished
    next((folder.path.parent / "data" / "market1501" / "bounding_box_train").glob("*.jpg")).unlink()
    with pytest.raises(ValueError, match="trained on another training set"):
        read_finished(cfg, folder.path)


def test_an_untrained_row_is_scored_again_and_an_older_run_without_the_keys_is_read(finished, tmp_path):
    cfg, folder, _ = finished
    untrained = RunFolder(tmp_path / "untrained")
    untrained.save_config(cfg)
    untrained.write_metrics({"mAP": 1.0, "epochs": 0, "test_set": "another"})  # reidlab.evaluations: no checkpoint
    assert read_finished(cfg, untrained.path) is None
    older = RunFolder(tmp_path / "older")
    older.save_config(cfg)
    older.write_metrics({"mAP": 9.0, "epochs": 1})  # before the keys: cannot be told, read as it is
    assert read_finished(cfg, older.path) == {"mAP": 9.0, "epochs": 1}


def test_a_notebook_scores_its_run_again_and_does_not_copy_a_stale_one(finished, tmp_path):
    from reidlab.notebook import config_key, find_finished_run, train_runs
    cfg, folder, _ = finished
    out = tmp_path / "notebooks" / "01"
    shutil.copytree(folder.path, out / f"a-{config_key(cfg)}")
    sibling = tmp_path / "notebooks" / "02"
    RunFolder(sibling / f"b-{config_key(cfg)}").copy_results_from(folder)  # a finished copy beside it, no checkpoint
    assert find_finished_run(cfg, tmp_path / "notebooks" / "03") is not None
    add_distractor(folder.path.parent / "data")
    assert find_finished_run(cfg, tmp_path / "notebooks" / "03") is None  # neither stale run is copied

    run_dir = train_runs({"a": cfg}, out)["a"]
    metrics = RunFolder(run_dir).metrics()
    assert metrics["test_set"].startswith("4 query images, 24 gallery images (")
    assert run_dir == out / f"a-{config_key(cfg)}" and len(RunFolder(run_dir).history()) == 1  # not trained again
    assert find_finished_run(cfg, tmp_path / "notebooks" / "03") == run_dir  # scored again: reusable


def test_a_notebook_trains_again_a_stale_copy_that_has_no_checkpoint(finished, tmp_path, capsys):
    from reidlab.notebook import config_key, train_runs
    cfg, folder, _ = finished
    out = tmp_path / "notebooks" / "01"
    RunFolder(out / f"a-{config_key(cfg)}").copy_results_from(folder)  # a copy: results only, no checkpoint
    add_distractor(folder.path.parent / "data")
    run_dir = train_runs({"a": cfg}, out)["a"]
    assert "training it again" in capsys.readouterr().out
    assert RunFolder(run_dir).has_checkpoint()  # trained here, and scored on today's test set
    assert RunFolder(run_dir).metrics()["test_set"].startswith("4 query images, 24 gallery images (")
