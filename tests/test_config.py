import dataclasses
import json

import pytest

from reidlab.config import NECK_PRESETS, PRESETS, TABLE1, TRICKS, Config


def test_table1_rows_add_one_trick_each():
    rows = list(TABLE1.values())
    assert list(TABLE1) == ["baseline_s", *TRICKS]
    for prev, row, trick in zip(rows, rows[1:], TRICKS):
        diff = {f.name for f in dataclasses.fields(Config) if getattr(prev, f.name) != getattr(row, f.name)}
        assert diff == {trick}
    assert TABLE1["center_loss"] == PRESETS["bot"] == Config()


def test_baseline_s_has_no_tricks():
    b = TABLE1["baseline_s"]
    assert (b.warmup, b.random_erasing, b.label_smoothing, b.last_stride, b.bnneck, b.center_loss) == \
        (False, False, False, 2, False, False)
    assert b.resolved_neck == "neck3" and b.losses == ("id", "triplet")


def test_neck_presets_follow_tmm_table_iii():
    assert NECK_PRESETS["neck1"].losses == ("id",)
    assert NECK_PRESETS["bnneck2"].losses == ("triplet",)
    assert NECK_PRESETS["bnneck"].resolved_neck == "bnneck" and not NECK_PRESETS["bnneck"].center_loss
    assert len(NECK_PRESETS) == 7


@pytest.mark.parametrize("field,value", [("last_stride", 3), ("backbone", "resnet51"), ("distance", "l1"),
                                         ("test_feature", "f"), ("amp", "fp8"), ("erase_value", "mean")])
def test_bad_value_names_field_and_allowed_values(field, value):
    with pytest.raises(ValueError, match=field) as e:
        Config(**{field: value})
    assert "allowed" in str(e.value)


def test_contradicting_neck_and_bnneck_is_rejected():
    with pytest.raises(ValueError, match="bnneck"):
        Config(bnneck=False, neck="bnneck2")


def test_round_trip_through_json(tmp_path):
    cfg = PRESETS["tmm_bnneck3"].replace(image_size=(384, 128), milestones=(30, 60), pretrained=None)
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    cfg.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == cfg


def test_unknown_key_suggests_the_nearest():
    with pytest.raises(ValueError, match="'label_smoothing'"):
        Config().replace(lable_smoothing=False)
    with pytest.raises(ValueError, match="lable_smoothing"):
        Config.from_dict({"lable_smoothing": True})
