"""Dataset readers against tiny fake datasets written here, each compared with a plain reference parse."""
import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
import time
import types
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from reidlab.datasets import (EXPECTED_COUNTS, DatasetError, Record, ReidDataset, check_counts, extract_archive,
                              load_dataset, verify_images)
from reidlab.paths import REPO_ROOT

MARKET_ARCHIVE = REPO_ROOT.parent / "shared" / "datasets" / "market1501" / "market1501.tar.xz"

# Market names: train ids 7, 2, 5 (relabelled 0..2 in order 2, 5, 7), junk -1 in train and gallery, distractor 0000
MARKET = {
    "bounding_box_train": ["0007_c1s1_000001_01.jpg", "0002_c6s2_000002_00.jpg", "0002_c1s1_000003_01.jpg",
                           "0005_c3s1_000004_02.jpg", "-1_c2s1_000005_00.jpg"],
    "query": ["0003_c1s1_000010_00.jpg", "0004_c2s1_000011_00.jpg"],
    "bounding_box_test": ["0003_c2s1_000020_01.jpg", "0003_c1s1_000021_01.jpg", "0004_c5s1_000022_01.jpg",
                          "0000_c4s1_000023_01.jpg", "-1_c1s1_000024_01.jpg"],
}
DUKE = {
    "bounding_box_train": ["0010_c8_f0000001.jpg", "0001_c1_f0000002.jpg", "0010_c2_f0000003.jpg"],
    "query": ["0020_c7_f0000010.jpg"],
    "bounding_box_test": ["0020_c3_f0000011.jpg", "0000_c8_f0000012.jpg", "-1_c1_f0000013.jpg"],
}


def write_image(path: Path, shade: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 8), (shade % 256, 40, 80)).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


def write_layout(root: Path, layout: dict[str, list[str]]) -> Path:
    for i, (folder, names) in enumerate((f, n) for f, ns in layout.items() for n in ns):
        write_image(root / folder / names, i)
    return root


def reference_split(folder: Path, names: list[str], relabel: bool) -> list[Record]:
    """The conventions written out plainly: junk out, cameras 0-based, train ids ranked, sorted by path."""
    rows = []
    for name in names:
        pid_text, cam_text = name.split("_")[:2]
        if int(pid_text) == -1:
            continue
        rows.append(Record(str(folder / name), int(pid_text), int(cam_text[1]) - 1))
    if relabel:
        ids = sorted(set(r.pid for r in rows))
        rows = [Record(r.path, ids.index(r.pid), r.camid) for r in rows]
    return sorted(rows)


def reference_market(base: Path, layout: dict[str, list[str]]) -> tuple[list, list, list]:
    return (reference_split(base / "bounding_box_train", layout["bounding_box_train"], True),
            reference_split(base / "query", layout["query"], False),
            reference_split(base / "bounding_box_test", layout["bounding_box_test"], False))


def as_tuple(ds: ReidDataset) -> tuple[list, list, list]:
    return ds.train, ds.query, ds.gallery


def make_zip(zip_path: Path, source: Path, top: str) -> Path:
    with zipfile.ZipFile(zip_path, "w") as z:
        for p in sorted(source.rglob("*")):
            z.write(p, f"{top}/{p.relative_to(source).as_posix()}")
    return zip_path


# --- Market-1501 ------------------------------------------------------------------------------------------
def test_market_conventions(tmp_path):
    base = write_layout(tmp_path / "Market-1501-v15.09.15", MARKET)
    ds = load_dataset("market1501", tmp_path, verbose=False)
    assert as_tuple(ds) == reference_market(base, MARKET)
    assert [r.pid for r in ds.train if r.path.endswith("0007_c1s1_000001_01.jpg")] == [2]  # largest id -> last label
    assert all(r.pid != -1 for r in ds.train + ds.query + ds.gallery)
    assert any(r.pid == 0 for r in ds.gallery)  # the distractor stays
    assert ds.num_train_pids == 3 and ds.num_train_cams == 3
    assert ds.summary() == ("market1501: train 3 ids / 4 images / 3 cams | query 2 ids / 2 images / 2 cams | "
                            "gallery 3 ids / 4 images / 4 cams")


def test_market_root_forms_read_the_same(tmp_path, capsys):
    source = write_layout(tmp_path / "src", MARKET)
    expected = load_dataset("market1501", source, verbose=False)
    assert load_dataset("market1501", tmp_path, verbose=False) == expected  # a folder holding it
    # the official zip, found inside root, extracted beside itself once
    holder = tmp_path / "holder"
    holder.mkdir()
    make_zip(holder / "Market-1501-v15.09.15.zip", source, "Market-1501-v15.09.15")
    base = holder / "Market-1501-v15.09.15"
    ds = load_dataset("market1501", holder, verbose=True)
    assert "market1501: train 3 ids / 4 images" in capsys.readouterr().out
    assert as_tuple(ds) == reference_market(base, MARKET)
    stamp = (base / "query").stat().st_mtime_ns
    (base / "marker").write_text("kept")  # a second extraction would replace the folder
    assert load_dataset("market1501", holder / "Market-1501-v15.09.15.zip", verbose=False) == ds  # the zip itself
    assert (base / "marker").exists() and (base / "query").stat().st_mtime_ns == stamp
    assert not list(holder.glob(".*partial"))


def test_market_bad_name_is_named(tmp_path):
    write_layout(tmp_path, MARKET)
    write_image(tmp_path / "query" / "person3_cam1.jpg")
    with pytest.raises(DatasetError, match="person3_cam1.jpg"):
        load_dataset("market1501", tmp_path, verbose=False)


def test_market_camera_out_of_range(tmp_path):
    write_layout(tmp_path, MARKET)
    write_image(tmp_path / "bounding_box_test" / "0003_c7s1_000030_01.jpg")
    with pytest.raises(DatasetError, match=r"0003_c7s1_000030_01.jpg.*1\.\.6"):
        load_dataset("market1501", tmp_path, verbose=False)


def test_missing_root_names_layout_and_script(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("market1501", tmp_path / "nowhere", verbose=False)
    text = str(err.value)
    for needed in ("does not exist", "bounding_box_train/", "query/", "Market-1501-v15.09.15.zip",
                   "data_scripts/prepare_market1501.py", "non-commercial"):
        assert needed in text


def test_mislaid_folder_lists_what_is_there(tmp_path):
    layout = {k: v for k, v in MARKET.items() if k != "query"}
    write_layout(tmp_path / "Market", layout)
    write_layout(tmp_path / "Market" / "queries", {"": MARKET["query"]})
    with pytest.raises(DatasetError) as err:
        load_dataset("market1501", tmp_path / "Market", verbose=False)
    text = str(err.value)
    assert "ROOT/bounding_box_train/, ROOT/bounding_box_test/, ROOT/query/" in text
    assert "holds: bounding_box_test/, bounding_box_train/, queries/" in text
    assert "prepare_market1501.py" in text


def test_two_copies_are_ambiguous(tmp_path):
    write_layout(tmp_path / "a", MARKET)
    write_layout(tmp_path / "b", MARKET)
    with pytest.raises(DatasetError, match="several copies"):
        load_dataset("market1501", tmp_path, verbose=False)


def test_unknown_name_and_option():
    with pytest.raises(DatasetError, match="did you mean 'market1501'"):
        load_dataset("market", "/nowhere")
    with pytest.raises(DatasetError, match="unknown option 'variant'"):
        load_dataset("market1501", "/nowhere", variant="labeled")


# --- DukeMTMC-reID ----------------------------------------------------------------------------------------
def test_dukemtmc_from_zip(tmp_path):
    source = write_layout(tmp_path / "src", DUKE)
    root = tmp_path / "duke"
    root.mkdir()
    make_zip(root / "DukeMTMC-reID.zip", source, "DukeMTMC-reID")
    ds = load_dataset("dukemtmc", root, verbose=False)
    base = root / "DukeMTMC-reID"
    expected = (reference_split(base / "bounding_box_train", DUKE["bounding_box_train"], True),
                reference_split(base / "query", DUKE["query"], False),
                reference_split(base / "bounding_box_test", DUKE["bounding_box_test"], False))
    assert as_tuple(ds) == expected
    assert {r.camid for r in ds.train} == {0, 1, 7}  # c8 -> 7


def test_dukemtmc_rejects_camera_9(tmp_path):
    write_layout(tmp_path, DUKE)
    write_image(tmp_path / "query" / "0020_c9_f0000099.jpg")
    with pytest.raises(DatasetError, match="0020_c9_f0000099.jpg"):
        load_dataset("dukemtmc", tmp_path, verbose=False)


def test_dukemtmc_missing_names_its_script(tmp_path):
    with pytest.raises(DatasetError, match="prepare_dukemtmc.py"):
        load_dataset("dukemtmc", tmp_path, verbose=False)


# --- MSMT17 -----------------------------------------------------------------------------------------------
MSMT_LISTS = {
    "list_train.txt": ["0001/0001_000_01_0303morning_0015_0.jpg 1", "0000/0000_001_15_0303noon_0016_1.jpg 0"],
    "list_val.txt": ["0003/0003_002_07_0304afternoon_0001_0.jpg 3"],
    "list_query.txt": ["0010/0010_000_02_0113morning_0001_0.jpg 10"],
    "list_gallery.txt": ["0010/0010_001_05_0113noon_0002_0.jpg 10", "0011/0011_000_03_0113noon_0003_0.jpg 11"],
}


def write_msmt17(base: Path, train_dir: str, test_dir: str, lists=MSMT_LISTS) -> None:
    for list_name, lines in lists.items():
        folder = train_dir if list_name in ("list_train.txt", "list_val.txt") else test_dir
        for i, line in enumerate(lines):
            write_image(base / folder / line.split()[0], i)
        (base / list_name).parent.mkdir(parents=True, exist_ok=True)
        (base / list_name).write_text("\n".join(lines) + "\n")


def reference_msmt17(base: Path, train_dir: str, test_dir: str, include_val: bool):
    def parse(list_name, folder):
        rows = []
        for line in MSMT_LISTS[list_name]:
            rel, label = line.split(" ")
            rows.append(Record(str(base / folder / rel), int(label), int(Path(rel).name.split("_")[2]) - 1))
        return rows

    train = parse("list_train.txt", train_dir) + (parse("list_val.txt", train_dir) if include_val else [])
    ids = sorted(set(r.pid for r in train))
    train = sorted(Record(r.path, ids.index(r.pid), r.camid) for r in train)
    return train, sorted(parse("list_query.txt", test_dir)), sorted(parse("list_gallery.txt", test_dir))


@pytest.mark.parametrize("train_dir, test_dir", [("train", "test"), ("mask_train_v2", "mask_test_v2"),
                                                ("mask_train_V2", "mask_test_V2")])
@pytest.mark.parametrize("include_val", [True, False])
def test_msmt17_v1_and_v2(tmp_path, train_dir, test_dir, include_val):
    base = tmp_path / "MSMT17"
    write_msmt17(base, train_dir, test_dir)
    ds = load_dataset("msmt17", tmp_path, verbose=False, include_val=include_val)
    assert as_tuple(ds) == reference_msmt17(base, train_dir, test_dir, include_val)
    assert {r.camid for r in ds.train} >= {0, 14}


def test_msmt17_from_tar_gz(tmp_path):
    write_msmt17(tmp_path / "src", "train", "test")
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "MSMT17_V1.tar.gz", "w:gz") as t:
        t.add(tmp_path / "src", arcname="MSMT17_V1")
    ds = load_dataset("msmt17", root, verbose=False)
    assert as_tuple(ds) == reference_msmt17(root / "MSMT17_V1", "train", "test", True)


def test_msmt17_bad_line_is_named(tmp_path):
    lists = dict(MSMT_LISTS, **{"list_query.txt": ["0010/q10.jpg 10"]})
    write_msmt17(tmp_path, "train", "test", lists)
    with pytest.raises(DatasetError, match=r"list_query.txt line 1.*q10.jpg"):
        load_dataset("msmt17", tmp_path, verbose=False)


def test_msmt17_missing_names_lists_and_script(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset("msmt17", tmp_path, verbose=False)
    assert "list_gallery.txt" in str(err.value) and "prepare_msmt17.py" in str(err.value)


# --- CUHK03-NP --------------------------------------------------------------------------------------------
CUHK = {
    "bounding_box_train": ["0005_c1_1.png", "0001_c2_2.png", "0005_c2_3.png"],
    "query": ["0700_c1_1.png"],
    "bounding_box_test": ["0700_c2_1.png", "0701_c1_2.png"],
}


@pytest.mark.parametrize("variant", ["detected", "labeled"])
def test_cuhk03_variants(tmp_path, variant):
    write_layout(tmp_path / "cuhk03-np" / "detected", CUHK)
    labeled = {"bounding_box_train": CUHK["bounding_box_train"][:2], "query": CUHK["query"],
               "bounding_box_test": CUHK["bounding_box_test"][:1]}  # a different set, to tell the variants apart
    write_layout(tmp_path / "cuhk03-np" / "labeled", labeled)
    ds = load_dataset("cuhk03", tmp_path, verbose=False, variant=variant)
    base = tmp_path / "cuhk03-np" / variant
    layout = {f: [n for n in CUHK[f] if (base / f / n).exists()] for f in CUHK}
    assert as_tuple(ds) == reference_market(base, layout)
    assert ds.name == f"cuhk03_{variant}" and ds.name in EXPECTED_COUNTS


def test_cuhk03_bad_variant_and_missing(tmp_path):
    with pytest.raises(DatasetError, match="'detected' or 'labeled'"):
        load_dataset("cuhk03", tmp_path, verbose=False, variant="manual")
    with pytest.raises(DatasetError, match=r"(?s)cuhk03-np/labeled/.*prepare_cuhk03.py"):
        load_dataset("cuhk03", tmp_path, verbose=False, variant="labeled")


# --- custom folder ----------------------------------------------------------------------------------------
def test_custom_market_names(tmp_path):
    layout = {"train": MARKET["bounding_box_train"], "query": MARKET["query"], "gallery": MARKET["bounding_box_test"]}
    write_layout(tmp_path, layout)
    ds = load_dataset("custom", tmp_path, verbose=False)
    # all cameras seen (c1..c6) are numbered in sorted order, so here they match Market's c - 1
    expected = (reference_split(tmp_path / "train", layout["train"], True),
                reference_split(tmp_path / "query", layout["query"], False),
                reference_split(tmp_path / "gallery", layout["gallery"], False))
    assert as_tuple(ds) == expected


def test_custom_regex_with_subfolders(tmp_path):
    files = {"train": ["12/cam2_a.jpg", "12/cam10_b.jpg", "3/cam2_c.jpg"], "query": ["40/cam10_q.jpg"],
             "gallery": ["40/cam2_g.jpg", "-1/cam2_junk.jpg", "0/cam10_d.jpg"]}
    write_layout(tmp_path, files)
    ds = load_dataset("custom", tmp_path, verbose=False, regex=r"(?P<pid>-?\d+)/cam(?P<cam>\d+)_")
    cam = {"2": 0, "10": 1}  # numeric order, not string order
    expected = []
    for split, rels in files.items():
        rows = [Record(str(tmp_path / split / r), int(r.split("/")[0]), cam[r.split("cam")[1].split("_")[0]])
                for r in rels if not r.startswith("-1/")]
        if split == "train":
            rows = [r._replace(pid={3: 0, 12: 1}[r.pid]) for r in rows]
        expected.append(sorted(rows))
    assert list(as_tuple(ds)) == expected


def test_custom_csv(tmp_path):
    lines = ["path,pid,camid", "train/a.jpg,20,north", "train/b.jpg,4,south", "train/c.jpg,20,south",
             "query/q.jpg,7,north", "gallery/g1.jpg,7,south", "gallery/g2.jpg,-1,north"]
    for line in lines[1:]:
        write_image(tmp_path / line.split(",")[0])
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    ds = load_dataset("custom", tmp_path, verbose=False)
    p = lambda rel: str(tmp_path / rel)  # noqa: E731
    assert ds.train == [Record(p("train/a.jpg"), 1, 0), Record(p("train/b.jpg"), 0, 1), Record(p("train/c.jpg"), 1, 1)]
    assert ds.query == [Record(p("query/q.jpg"), 7, 0)]
    assert ds.gallery == [Record(p("gallery/g1.jpg"), 7, 1)]
    # the same file given explicitly
    moved = tmp_path.parent / f"{tmp_path.name}_labels.csv"
    (tmp_path / "labels.csv").rename(moved)
    assert load_dataset("custom", tmp_path, verbose=False, csv=moved) == ds


def test_custom_csv_errors(tmp_path):
    for rel in ("train/a.jpg", "query/q.jpg", "gallery/g.jpg", "gallery/extra.jpg"):
        write_image(tmp_path / rel)
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("path,pid,camid\ntrain/a.jpg,1,0\nquery/q.jpg,2,0\ngallery/g.jpg,2,1\n")
    with pytest.raises(DatasetError, match="extra.jpg"):
        load_dataset("custom", tmp_path, verbose=False)
    csv_file.write_text("path,pid,camid\ntrain/a.jpg,1,0\nquery/missing.jpg,2,0\n")
    with pytest.raises(DatasetError, match="line 3.*missing.jpg"):
        load_dataset("custom", tmp_path, verbose=False)
    csv_file.write_text("file,id,cam\ntrain/a.jpg,1,0\n")
    with pytest.raises(DatasetError, match="path,pid,camid"):
        load_dataset("custom", tmp_path, verbose=False)


def test_custom_bad_name_regex_and_missing(tmp_path):
    write_layout(tmp_path, {"train": ["0001_c1_a.jpg"], "query": ["0002_c1_q.jpg"], "gallery": ["holiday.jpg"]})
    with pytest.raises(DatasetError, match="holiday.jpg"):
        load_dataset("custom", tmp_path, verbose=False)
    with pytest.raises(DatasetError, match=r"\(\?P<cam>"):
        load_dataset("custom", tmp_path, verbose=False, regex=r"(?P<pid>\d+)")
    with pytest.raises(DatasetError, match=r"(?s)train/, ROOT/query/, ROOT/gallery/.*prepare_custom.py"):
        load_dataset("custom", tmp_path / "train", verbose=False)


def test_custom_names_every_bad_file_at_once(tmp_path):
    write_layout(tmp_path, {"train": ["0001_c1_a.jpg", "scan.jpg"], "query": ["0002_c1_q.jpg"],
                            "gallery": ["holiday.jpg", "0002_c2_g.jpg"]})
    with pytest.raises(DatasetError, match=r"(?s)^custom: .*2 of 5 images.*train/scan\.jpg.*gallery/holiday\.jpg"):
        load_dataset("custom", tmp_path, verbose=False)


def test_custom_needs_a_camera_for_every_image(tmp_path):
    write_layout(tmp_path, {"train": ["a.jpg"], "query": ["q.jpg"], "gallery": ["g.jpg"]})
    (tmp_path / "labels.csv").write_text("path,pid\ntrain/a.jpg,1\nquery/q.jpg,2\ngallery/g.jpg,2\n")
    with pytest.raises(DatasetError, match="header `path,pid,camid`, got"):
        load_dataset("custom", tmp_path, verbose=False)


def test_custom_cameras_are_numbered_as_own_data_numbers_them(tmp_path):
    """Mixed labels sort as strings (numeric order only when every label is an integer); junk is not counted."""
    from reidlab.folder_labels import number_cameras
    from reidlab.own_data import load_own_data

    rows = [("train/a.jpg", 1, "2"), ("train/b.jpg", 3, "north"), ("train/j.jpg", -1, "attic"),
            ("query/q.jpg", 2, "10"), ("gallery/g.jpg", 2, "2"), ("gallery/h.jpg", 2, "north")]
    for rel, _, _ in rows:
        write_image(tmp_path / rel)
    (tmp_path / "labels.csv").write_text("path,pid,camid\n" + "".join(f"{r},{p},{c}\n" for r, p, c in rows))
    ds = load_dataset("custom", tmp_path, verbose=False)
    assert number_cameras(["2", "north", "10"]) == {"10": 0, "2": 1, "north": 2}
    assert number_cameras(["2", "10"]) == {"2": 0, "10": 1}
    assert number_cameras(["007", "7", "10"]) == {"007": 0, "7": 1, "10": 2}  # equal integers: an order all the same
    camid = {"10": 0, "2": 1, "north": 2}
    assert [r.camid for r in [*ds.train, *ds.query, *ds.gallery]] == [camid[c] for _, p, c in rows if p != -1]
    ours, _ = load_own_data(tmp_path)
    assert (ours.train, ours.query, ours.gallery) == (ds.train, ds.query, ds.gallery)


# --- synthetic --------------------------------------------------------------------------------------------
def test_synthetic_drawn_once_when_missing(tmp_path, monkeypatch):
    calls = []

    def make_synthetic(root, num_ids=4, seed=0, test_scale=1, **drawing):  # a stand-in for reidlab.synthetic
        calls.append((Path(root), num_ids, seed, test_scale))
        write_layout(Path(root), MARKET)
        return Path(root)

    stand_in = types.SimpleNamespace(make_synthetic=make_synthetic, read_marker=lambda root: None)
    monkeypatch.setitem(sys.modules, "reidlab.synthetic", stand_in)
    root = tmp_path / "synthetic"
    ds = load_dataset("synthetic", root, verbose=False, num_ids=9, seed=3)
    assert calls == [(root, 9, 3, 4)]  # the built-in set's test_scale unless told otherwise
    assert as_tuple(ds) == reference_market(root, MARKET) and ds.name == "synthetic"
    assert load_dataset("synthetic", root, verbose=False) == ds
    assert len(calls) == 1  # an existing set without options is read as it is
    assert load_dataset("synthetic", root, verbose=False, num_ids=9, seed=3) == ds
    assert calls[-1] == (root, 9, 3, 4)  # with options, make_synthetic checks the set on disk matches them


def test_the_built_in_synthetic_set_as_older_versions_drew_it_is_redrawn(tmp_path, monkeypatch, capsys):
    from reidlab import datasets, synthetic

    calls, draw = [], synthetic.make_synthetic

    def make_synthetic(root, **options):  # records the call; draws the real thing small
        calls.append(options)
        return draw(root, **{**options, "num_ids": 4, "num_distractors": 2, "progress": False})

    old, custom = tmp_path / "old", tmp_path / "custom"
    for root, params in ((old, datasets.SYNTHETIC_SET_BEFORE), (custom, dict(datasets.SYNTHETIC_SET_BEFORE, seed=5))):
        write_layout(root, MARKET)
        (root / synthetic.MARKER).write_text(json.dumps({"params": params}))
    monkeypatch.setattr(synthetic, "make_synthetic", make_synthetic)
    load_dataset("synthetic", old, verbose=False)
    assert len(calls) == 1 and calls[0]["overwrite"] and calls[0]["test_scale"] == 4
    assert "redrawing it" in capsys.readouterr().out
    assert synthetic.read_marker(old)["params"]["test_scale"] == 4  # replaced by a set drawn today
    ds = load_dataset("synthetic", custom, verbose=False)  # any other set of reidlab's is read as it is
    assert len(calls) == 1 and as_tuple(ds) == reference_market(custom, MARKET)


def test_synthetic_real_generator_if_present(tmp_path):
    pytest.importorskip("reidlab.synthetic")
    ds = load_dataset("synthetic", tmp_path / "syn", verbose=False, num_ids=4, seed=1, progress=False)
    assert ds.num_train_pids == len({r.pid for r in ds.train}) and sorted({r.pid for r in ds.train}) == list(
        range(ds.num_train_pids))
    assert min(r.camid for r in ds.train + ds.query + ds.gallery) == 0 and all(r.pid != -1 for r in ds.gallery)
    assert ds.query and ds.gallery


# --- image checks, counts, prepare scripts ----------------------------------------------------------------
def test_verify_images_names_each_corrupt_file(tmp_path):
    write_layout(tmp_path, MARKET)
    good = load_dataset("market1501", tmp_path, verbose=False)
    verify_images(good, progress=False, workers=2)
    truncated = tmp_path / "query" / "0003_c1s1_000010_00.jpg"
    truncated.write_bytes(truncated.read_bytes()[:-80])
    garbage = tmp_path / "bounding_box_test" / "0004_c5s1_000022_01.jpg"
    garbage.write_bytes(b"not an image at all")
    empty = tmp_path / "bounding_box_train" / "0005_c3s1_000004_02.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DatasetError) as err:
        verify_images(good, progress=False, workers=2)
    text = str(err.value)
    assert "3 of 10 images" in text
    bad_lines = [line for line in text.splitlines() if line.startswith("  ")]
    assert sorted(line.split(": ")[0].strip() for line in bad_lines) == sorted(map(str, (truncated, garbage, empty)))
    with pytest.raises(DatasetError, match="0004_c5s1_000022_01.jpg"):
        verify_images([r for r in good.gallery], progress=False)  # a list of records works too
    verify_images(good.train[:1], progress=False)


def test_check_counts():
    ds = ReidDataset("market1501", [Record("a", 0, 0)], [Record("b", 1, 0)], [Record("c", 1, 1)])
    check_counts(ds, (1, 1, 1, 1))
    with pytest.raises(DatasetError, match=r"train ids 1 \(expected 751\)"):
        check_counts(ds)


def run_script(name: str, argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "data_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def test_prepare_market_places_zip_and_checks_counts(tmp_path, capsys):
    source = write_layout(tmp_path / "src", MARKET)
    zip_path = make_zip(tmp_path / "Market-1501-v15.09.15.zip", source, "Market-1501-v15.09.15")
    assert run_script("prepare_market1501", [str(zip_path), "--root", str(tmp_path / "data")]) == 1
    out = capsys.readouterr()
    assert "train 3 ids / 4 images" in out.out and "train ids 3 (expected 751)" in out.err
    assert (tmp_path / "data" / "Market-1501-v15.09.15" / "query").is_dir()
    assert run_script("prepare_market1501", [str(tmp_path / "absent.zip"), "--root", str(tmp_path / "d")]) == 1
    assert "absent.zip does not exist" in capsys.readouterr().err


def test_prepare_custom_symlinks_folder(tmp_path, capsys):
    write_layout(tmp_path / "mine", {"train": ["0001_c1_a.jpg"], "query": ["0002_c1_q.jpg"],
                                     "gallery": ["0002_c2_g.jpg"]})
    assert run_script("prepare_custom", [str(tmp_path / "mine"), "--root", str(tmp_path / "data")]) == 0
    assert (tmp_path / "data" / "mine").is_symlink()
    assert "custom: train 1 ids / 1 images" in capsys.readouterr().out


def test_extract_archive_refuses_other_files(tmp_path):
    with pytest.raises(DatasetError, match="not an archive"):
        extract_archive(tmp_path / "notes.txt")


# --- the real Market-1501 (optional) ----------------------------------------------------------------------
@pytest.fixture(scope="session")
def market_root(tmp_path_factory):
    if not MARKET_ARCHIVE.is_file():
        pytest.skip(f"{MARKET_ARCHIVE} is absent")
    root = tmp_path_factory.mktemp("market")
    start = time.perf_counter()
    if shutil.which("tar") and shutil.which("xz"):  # about twice as fast as Python's tarfile + lzma
        subprocess.run(["tar", "xJf", str(MARKET_ARCHIVE), "-C", str(root)], check=True)
    else:
        extract_archive(MARKET_ARCHIVE, into=root)
    print(f"unpacked Market-1501 in {time.perf_counter() - start:.1f} s")
    return root


@pytest.mark.market
def test_market1501_counts(market_root):
    ds = load_dataset("market1501", market_root, verbose=False)
    assert (ds.num_train_pids, len(ds.train), len(ds.query), len(ds.gallery)) == (751, 12936, 3368, 15913)
    assert ds.num_train_cams == 6 and {r.pid for r in ds.train} == set(range(751))
    assert len({r.pid for r in ds.query}) == 750 and sum(r.pid == 0 for r in ds.gallery) > 0
    check_counts(ds)
