"""A user's own folder: labels from a regex, names or a CSV; the split rule; each bad input a named error."""
import numpy as np
import pytest
from PIL import Image

from reidlab.datasets import DatasetError, load_dataset
from reidlab.own_data import (EXAMPLE_REGEX, CorruptImageError, NoImagesError, TooFewIdentitiesError,
                              UnparseableNameError, check_folder, dataset_key, load_own_data, split_pool,
                              to_dataset, write_example_folder)


def draw(path, colour=(120, 40, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 8, 3), colour, np.uint8)).save(path)


def write_pool(root, cams_per_id):
    """root/<pid>/cam<c>_<k>.jpg: identity pid seen by cams_per_id[pid] cameras, two images each."""
    for pid, cams in cams_per_id.items():
        for cam in range(1, cams + 1):
            for k in range(2):
                draw(root / f"{pid:03d}" / f"cam{cam}_{k}.jpg", (pid * 20 % 256, cam * 40, k * 90))
    return root


POOL_REGEX = r"^(?P<pid>\d+)/cam(?P<cam>\d+)_"


def test_pool_split_follows_the_rule(tmp_path):
    root = write_pool(tmp_path / "pool", {1: 3, 2: 2, 3: 1, 4: 2, 5: 4, 6: 2, 7: 1, 8: 2})
    dataset, check = load_own_data(root, regex=POOL_REGEX, test_fraction=0.5, seed=0)
    ids = check.per_identity()
    assert ids.loc[1, "images"] == 6 and ids.loc[1, "cameras"] == 3 and ids.loc[3, "cameras"] == 1
    assert check.per_camera()["images"].to_dict() == {"1": 16, "2": 12, "3": 4, "4": 2}
    # 6 identities seen by two or more cameras: round(0.5 * 6) = 3 test identities, drawn among them
    test_ids = {r.pid for r in dataset.query}
    assert len(test_ids) == 3 and test_ids <= {1, 2, 4, 5, 6, 8}
    assert {r.pid for r in dataset.gallery} == test_ids
    assert dataset.num_train_pids == 8 - 3  # the one-camera identities 3 and 7 train
    for q in dataset.query:  # one query per (identity, camera), each with a match in another camera
        assert any(g.pid == q.pid and g.camid != q.camid for g in dataset.gallery)
    per_id_cam = [(r.pid, r.camid) for r in dataset.query]
    assert len(per_id_cam) == len(set(per_id_cam)) == sum(ids.loc[p, "cameras"] for p in test_ids)
    again, _ = load_own_data(root, regex=POOL_REGEX, test_fraction=0.5, seed=0)
    assert dataset_key(again) == dataset_key(dataset)
    others = {frozenset(r.pid for r in load_own_data(root, regex=POOL_REGEX, seed=s)[0].query) for s in range(6)}
    assert len(others) > 1, "the seed should change which identities are tested"


def test_without_cameras_each_image_is_its_own_camera(tmp_path):
    root = tmp_path / "pool"
    rows = ["path,pid"]
    for pid in range(1, 6):
        for k in range(2 if pid != 5 else 1):
            draw(root / "img" / f"{pid}_{k}.png")
            rows.append(f"img/{pid}_{k}.png,{pid}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    check = check_folder(root)
    assert not check.has_cameras and check.single_image_ids() == [5]
    dataset = to_dataset(check, test_fraction=0.5)
    # 4 identities with two images: 2 tested, each with its first image as query and the other in the gallery
    assert len(dataset.query) == 2 == len(dataset.gallery)
    assert len({r.camid for r in [*dataset.query, *dataset.gallery]}) == 4


def test_split_folder_reads_as_the_custom_reader(tmp_path):
    """Already split into train / query / gallery: the same records as reidlab.datasets' custom reader."""
    root = tmp_path / "mine"
    for split, pids in (("train", (3, 5, 9)), ("query", (2, 4)), ("gallery", (2, 4, 0))):
        for pid in pids:
            for cam in ("north", "south"):
                draw(root / split / f"id{pid}" / f"{cam}_{pid}.jpg")
    regex = r"^id(?P<pid>\d+)/(?P<cam>[a-z]+)_"
    ours, check = load_own_data(root, regex=regex)
    theirs = load_dataset("custom", root, verbose=False, regex=regex)
    assert check.has_split
    assert (ours.train, ours.query, ours.gallery) == (theirs.train, theirs.query, theirs.gallery)


def test_example_folder_is_a_pool_of_synthetic_people(tmp_path):
    root, regex = write_example_folder(tmp_path / "example")
    assert regex == EXAMPLE_REGEX and (root / "person_0001").is_dir()
    check = check_folder(root, regex=regex, decode=False)
    assert not check.has_split and len(check.per_identity()) == 24 and len(check.per_camera()) > 1
    assert write_example_folder(root) == (root, regex)  # kept as it is


def test_no_images(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(NoImagesError, match="holds no images"):
        check_folder(tmp_path / "empty")
    with pytest.raises(NoImagesError, match="not a folder"):
        check_folder(tmp_path / "missing")


def test_one_identity(tmp_path):
    root = write_pool(tmp_path / "pool", {7: 3})
    with pytest.raises(TooFewIdentitiesError, match=r"1 identity .*at least 4 identities.*Fix"):
        load_own_data(root, regex=POOL_REGEX)


def test_unparseable_names_are_all_listed(tmp_path):
    root = write_pool(tmp_path / "pool", {1: 2, 2: 2})
    draw(root / "001" / "holiday.jpg")
    draw(root / "misc" / "cam1_0.jpg")
    listed = r"(?s)2 of 10 images.*holiday\.jpg.*misc/cam1_0\.jpg.*Fix: pass regex="
    with pytest.raises(UnparseableNameError, match=listed):
        check_folder(root, regex=POOL_REGEX)
    with pytest.raises(UnparseableNameError, match="Market-style names"):
        check_folder(root)  # no regex: Market names expected


def test_corrupt_files_are_named_or_dropped(tmp_path):
    root = write_pool(tmp_path / "pool", {1: 2, 2: 2, 3: 2, 4: 2, 5: 2})
    (root / "002" / "cam1_0.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    check = check_folder(root, regex=POOL_REGEX)
    assert list(check.unreadable) == [str(root / "002" / "cam1_0.jpg")]
    with pytest.raises(CorruptImageError, match=r"(?s)1 of 20 files.*002/cam1_0\.jpg.*drop_unreadable=True"):
        to_dataset(check)
    dataset = to_dataset(check, drop_unreadable=True)
    paths = [r.path for r in [*dataset.train, *dataset.query, *dataset.gallery]]
    assert len(paths) == 19 and str(root / "002" / "cam1_0.jpg") not in paths


def test_partial_split_layout_is_refused(tmp_path):
    draw(tmp_path / "mine" / "train" / "0001_c1_a.jpg")
    draw(tmp_path / "mine" / "gallery" / "0001_c2_a.jpg")
    with pytest.raises(DatasetError, match="but no query/"):
        check_folder(tmp_path / "mine")


def test_bad_fraction():
    with pytest.raises(ValueError, match="test_fraction"):
        split_pool([], test_fraction=1.0)
