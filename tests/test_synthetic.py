"""The synthetic dataset: Market-1501's layout and naming, the promised counts, atomic and deterministic writes."""
import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidlab import synthetic
from reidlab.synthetic import (FINE_DETAILS, MARKER, SPLITS, draw_person, make_synthetic, plan_synthetic,
                               sample_family, sample_identity, vary_identity)

MARKET_NAME = re.compile(r"^(\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")  # Market-1501 without junk (-1)
NUM_IDS = 12


def read_folder(root: Path) -> dict[str, list[tuple[str, int, int]]]:
    """{split: [(name, pid, camera 1..6)]}, parsed with Market's pattern; fails on any other file."""
    out = {}
    for split in SPLITS:
        rows = []
        for f in sorted((root / split).iterdir()):
            m = MARKET_NAME.match(f.name)
            assert m, f"{split}/{f.name} does not follow Market-1501's naming"
            rows.append((f.name, int(m[1]), int(m[2])))
        out[split] = rows
    return out


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("syn") / "synthetic", num_ids=NUM_IDS, seed=0, progress=False)


def test_layout_and_market_naming(root):
    assert sorted(p.name for p in root.iterdir()) == sorted([*SPLITS, "README.txt", MARKER])
    rows = read_folder(root)
    names = [n for split in SPLITS for n, _, _ in rows[split]]
    assert len(names) == len(set(names)), "file names must be unique across splits"
    for split in SPLITS:
        for name, pid, cam in rows[split]:
            m = MARKET_NAME.match(name)
            assert 1 <= cam <= 6 and m[3] == "1" and int(m[4]) >= 1 and int(m[5]) >= 1
            assert 0 <= pid <= NUM_IDS


def test_counts_match_the_plan_and_the_marker(root):
    rows = read_folder(root)
    meta = json.loads((root / MARKER).read_text())
    plan = plan_synthetic(NUM_IDS, seed=0)
    for split in SPLITS:
        assert len(rows[split]) == meta["counts"][split] == sum(s.folder == split for s in plan)
        assert sorted(n for n, _, _ in rows[split]) == sorted(s.name for s in plan if s.folder == split)
    train = {pid for _, pid, _ in rows["bounding_box_train"]}
    test = {pid for _, pid, _ in rows["query"]}
    assert len(train) == meta["train_ids"] == NUM_IDS // 2  # half train, half test, as in Market
    assert len(test) == meta["test_ids"] == NUM_IDS - NUM_IDS // 2
    assert not train & test and 0 not in train | test
    assert train | test == set(range(1, NUM_IDS + 1))
    gallery_ids = {pid for _, pid, _ in rows["bounding_box_test"]} - {0}
    assert gallery_ids == test
    assert meta["params"] == dict(format_version=synthetic.FORMAT_VERSION, num_ids=NUM_IDS, seed=0,
                                  num_distractors=NUM_IDS)
    assert f"num_ids={NUM_IDS}, seed=0" in (root / "README.txt").read_text()


def test_one_query_per_test_identity_and_camera(root):
    rows = read_folder(root)
    queries = Counter((pid, cam) for _, pid, cam in rows["query"])
    assert max(queries.values()) == 1
    seen = {(pid, cam) for _, pid, cam in rows["query"] + rows["bounding_box_test"] if pid != 0}
    assert set(queries) == seen


def test_every_query_has_a_gallery_match_in_another_camera(root):
    rows = read_folder(root)
    for name, pid, cam in rows["query"]:
        matches = [g for g in rows["bounding_box_test"] if g[1] == pid and g[2] != cam]
        assert matches, f"query {name} has no cross-camera match"
    cams_per_test_id = Counter(pid for pid, _ in {(p, c) for _, p, c in rows["query"]})
    assert min(cams_per_test_id.values()) >= 2


def test_distractors_only_in_the_gallery(root):
    rows = read_folder(root)
    distractors = [r for r in rows["bounding_box_test"] if r[1] == 0]
    assert len(distractors) == NUM_IDS  # the default: as many as identities
    assert all(pid != 0 for _, pid, _ in rows["bounding_box_train"] + rows["query"])


def test_images_are_128x64_rgb(root):
    for path in root.rglob("*.jpg"):
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 128), path.name  # PIL: (w, h)


def test_images_differ_between_identities_and_cameras(root):
    """Not blank, not copies: a person differs from another and from themselves in another camera."""
    rows = read_folder(root)
    pixels = {name: np.asarray(Image.open(root / "bounding_box_train" / name), dtype=np.float32)
              for name, _, _ in rows["bounding_box_train"]}
    for x in pixels.values():
        assert x.std() > 10
    values = list(pixels.values())
    assert min(np.abs(a - b).mean() for i, a in enumerate(values) for b in values[i + 1:]) > 1


def test_same_seed_gives_identical_bytes_and_other_seed_differs(root, tmp_path):
    again = make_synthetic(tmp_path / "again", num_ids=NUM_IDS, seed=0, progress=False)
    assert file_bytes(again) == file_bytes(root)
    other = make_synthetic(tmp_path / "other", num_ids=NUM_IDS, seed=1, progress=False)
    a, b = file_bytes(root), file_bytes(other)
    same_name = set(a) & set(b) - {"README.txt", MARKER}
    assert set(a) != set(b) or any(a[k] != b[k] for k in same_name)


def test_process_pool_gives_the_same_bytes(tmp_path):
    serial = make_synthetic(tmp_path / "serial", num_ids=4, seed=3, progress=False, num_distractors=2)
    pooled = make_synthetic(tmp_path / "pooled", num_ids=4, seed=3, progress=False, num_distractors=2, workers=2)
    assert file_bytes(serial) == file_bytes(pooled)


def test_interrupted_generation_leaves_no_dataset(tmp_path, monkeypatch):
    calls = {"n": 0}
    render = synthetic.render_shot

    def render_then_fail(shot):
        calls["n"] += 1
        if calls["n"] > 30:
            raise RuntimeError("simulated crash")
        return render(shot)

    monkeypatch.setattr(synthetic, "render_shot", render_then_fail)
    target = tmp_path / "synthetic"
    with pytest.raises(RuntimeError, match="simulated crash"):
        make_synthetic(target, num_ids=NUM_IDS, seed=0, progress=False)
    assert calls["n"] == 31, "the crash must happen in the middle of drawing"
    assert list(tmp_path.iterdir()) == [], "neither the root nor a temp folder may remain"
    monkeypatch.undo()
    make_synthetic(target, num_ids=4, seed=0, progress=False)  # a later run completes normally
    assert (target / MARKER).is_file()


def test_existing_root_is_reused_replaced_or_refused(tmp_path):
    target = make_synthetic(tmp_path / "syn", num_ids=4, seed=0, progress=False)
    marker_time = (target / MARKER).stat().st_mtime_ns
    assert make_synthetic(target, num_ids=4, seed=0, progress=False) == target
    assert (target / MARKER).stat().st_mtime_ns == marker_time, "the same dataset must not be redrawn"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_synthetic(target, num_ids=4, seed=1, progress=False)
    make_synthetic(target, num_ids=4, seed=1, progress=False, overwrite=True)
    assert json.loads((target / MARKER).read_text())["params"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syn"], "the old copy must be cleaned up"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a synthetic dataset"):
        make_synthetic(foreign, num_ids=4, progress=False, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (make_synthetic(empty, num_ids=2, progress=False) / MARKER).is_file()


@pytest.mark.parametrize("kwargs, word", [
    (dict(num_ids=1), "num_ids"), (dict(num_ids=10_000), "num_ids"), (dict(num_ids=2.5), "num_ids"),
    (dict(num_ids=4, num_distractors=-1), "num_distractors"), (dict(num_ids=4, workers=0), "workers"),
])
def test_bad_sizes_raise_naming_the_argument(tmp_path, kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_synthetic(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_family_members_differ_in_one_fine_detail():
    rng = np.random.default_rng(0)
    groups = {"print": {"print_shape", "print_colour"}, "shoes": {"shoes"}, "hair": {"hair", "hair_style"},
              "bag": {"bag", "bag_colour"}, "top2": {"top2"}, "sleeves": {"sleeves"}, "cap": {"hair_style", "cap"}}
    assert set(groups) == set(FINE_DETAILS)
    for _ in range(50):
        base = sample_identity(rng)
        for detail in FINE_DETAILS:
            member = vary_identity(base, detail, rng)
            changed = {k for k in base.__dataclass_fields__ if getattr(base, k) != getattr(member, k)}
            assert changed and changed <= groups[detail], (detail, changed)
    family = sample_family(3, rng)
    assert len(family) == 3 and len({repr(m) for m in family}) == 3


def count_colour(img: Image.Image, rgb) -> int:
    return int((np.asarray(img) == np.array(rgb, dtype=np.uint8)).all(-1).sum())


def test_bags_show_from_some_sides_only():
    green, magenta = (0, 255, 0), (255, 0, 255)
    base = sample_identity(np.random.default_rng(1))
    canvas = lambda: Image.new("RGB", (128, 256), (128, 128, 128))  # noqa: E731

    def bag_pixels(ident, view, facing=1):
        img = canvas()
        draw_person(img, ident, view, facing, 64, 10, 236, 0.3)
        return count_colour(img, green)

    backpack = replace(base, bag="backpack", bag_colour=green, top=magenta, top2=magenta)
    assert bag_pixels(backpack, "back") > 5 * max(1, bag_pixels(backpack, "front"))
    assert bag_pixels(backpack, "side") > 0
    shoulder = replace(backpack, bag="shoulder", bag_side=1)
    assert bag_pixels(shoulder, "side", facing=1) > 0 and bag_pixels(shoulder, "side", facing=-1) == 0
    nobag = replace(backpack, bag="none")
    assert all(bag_pixels(nobag, v) == 0 for v in ("front", "back", "side"))


def test_a_larger_test_scale_adds_test_identities_and_keeps_the_rest():
    base = plan_synthetic(NUM_IDS, seed=0)
    scaled = plan_synthetic(NUM_IDS, seed=0, test_scale=3)
    assert scaled[:len(base)] == base  # the training set and the first test identities are drawn as before
    extra = scaled[len(base):]
    train = {s.pid for s in base if s.folder == "bounding_box_train"}
    test = {s.pid for s in base if s.folder == "query"}
    new_test = {s.pid for s in extra if s.folder == "query"}
    assert new_test == set(range(NUM_IDS + 1, NUM_IDS + 1 + 2 * len(test)))  # (3 - 1) x as many again
    assert not any(s.folder == "bounding_box_train" for s in extra) and not new_test & train
    assert {s.pid for s in extra if s.folder == "bounding_box_test"} - {0} == new_test
    assert sum(s.pid == 0 for s in scaled) == NUM_IDS * 3  # two distractors per test identity, as in the base
    assert len({s.name for s in scaled}) == len(scaled)
    assert sum(s.pid == 0 for s in plan_synthetic(NUM_IDS, seed=0, num_distractors=5, test_scale=3)) == 5


def test_the_test_scale_is_in_the_marker_only_when_used(tmp_path):
    small = make_synthetic(tmp_path / "s", num_ids=4, seed=0, progress=False, num_distractors=2, test_scale=2)
    meta = json.loads((small / MARKER).read_text())
    assert meta["params"]["test_scale"] == 2 and meta["test_ids"] == 4 and meta["train_ids"] == 2
    assert "test_scale=2" in (small / "README.txt").read_text()
    assert synthetic.synthetic_params(4, 0) == dict(format_version=synthetic.FORMAT_VERSION, num_ids=4, seed=0,
                                                    num_distractors=4)
    with pytest.raises(ValueError, match="test_scale"):
        plan_synthetic(4, test_scale=0)
