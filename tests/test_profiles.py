"""One builder: `reidlab train`, the batch runner and the notebooks get the same Config for the same request."""
import pytest

from reidlab import notebook, profiles
from reidlab.__main__ import build_config as train_config
from reidlab.__main__ import main
from reidlab.config import FIELD_NAMES, PRESETS, Config, suggest
from reidlab.profiles import PROFILES, ensure_warm_epochs, for_profile, warm_epochs

CASES = [  # (preset, profile, dataset, overrides)
    ("bot", "smoke", "", {}),
    ("baseline_s", "smoke", "synthetic", {"epochs": 3, "milestones": [3]}),
    ("bnneck", "cpu", "", {}),
    ("center_loss", "cpu", "synthetic", {"amp": "none", "seed": 2}),
    ("tmm_neck3", "full", "", {"progress": False}),
    ("warmup", "auto", "synthetic_small", {"P": 4, "K": 2}),
]


def as_sets(dataset: str, overrides: dict) -> list[str]:
    import json
    pairs = {**({"dataset": dataset} if dataset else {}), **overrides}
    return [f"{k}={json.dumps(v)}" for k, v in pairs.items()]


@pytest.mark.parametrize("preset, profile, dataset, overrides", CASES)
def test_three_entry_points_build_the_same_config(preset, profile, dataset, overrides):
    one = for_profile(preset, profile, dataset=dataset, **overrides)
    assert profiles.build_config(preset, profile, overrides, dataset=dataset) == one
    assert notebook.run_config(preset, profile, dataset, **overrides) == one
    assert train_config(preset, profile, as_sets(dataset, overrides)) == one
    assert one.dataset == (dataset or ("synthetic_small" if profile == "smoke" else profiles.default_dataset()))


def test_train_command_accepts_every_profile(tmp_path, monkeypatch):
    import reidlab.train
    seen = []
    monkeypatch.setattr(reidlab.train, "fit", lambda cfg, out, resume=True: seen.append(cfg) or {})
    for profile in PROFILES:
        main(["train", "--preset", "bnneck", "--profile", profile, "--set", "epochs=3", "--out", str(tmp_path)])
    assert seen == [notebook.run_config("bnneck", p, epochs=3) for p in PROFILES]
    assert seen[PROFILES.index("smoke")] == profiles.build_config("bnneck", "smoke", {"epochs": 3})
    assert seen[PROFILES.index("smoke")].dataset == "synthetic_small"


def test_smoke_flag_and_profile_names_are_checked_the_same_everywhere():
    assert profiles.build_config("bot", "full", smoke=True) == notebook.run_config("bot", "full", smoke=True)
    assert notebook.pick_profile("full", smoke=True) == "smoke"
    for build in (lambda: for_profile("bot", "gpu"), lambda: profiles.build_config("bot", "gpu"),
                  lambda: notebook.run_config("bot", "gpu")):
        with pytest.raises(ValueError, match="allowed values: 'auto', 'cpu', 'full', 'smoke'"):
            build()
    with pytest.raises(SystemExit, match="profile='gpu' is not valid"):
        train_config("bot", "gpu", [])


def test_unknown_preset_and_key_name_the_nearest():
    for build in (lambda: for_profile("bto"), lambda: profiles.build_config("bto"), lambda: notebook.run_config("bto")):
        with pytest.raises(ValueError, match=r"unknown preset 'bto'; did you mean 'bot'\? Presets: baseline_s"):
            build()
    with pytest.raises(SystemExit, match=r"unknown preset 'bto'; did you mean 'bot'\?"):
        train_config("bto", "smoke", [])
    with pytest.raises(ValueError, match="did you mean 'label_smoothing'"):
        profiles.build_config("bot", "smoke", {"lable_smoothing": False})
    with pytest.raises(ValueError, match="unknown config key 'smoke'"):  # not a Config field: no TypeError
        profiles.build_config("bot", "smoke", {"smoke": True})


def test_suggest_names_the_nearest_valid_name():
    assert suggest("lable_smoothing", FIELD_NAMES) == "; did you mean 'label_smoothing'?"
    assert suggest("center_los", PRESETS) == "; did you mean 'center_loss'?"
    assert suggest("market1051", ("synthetic", "market1501", "dukemtmc")) == "; did you mean 'market1501'?"
    assert suggest("zzzzzz", FIELD_NAMES) == ""


def test_warm_epochs_kept_everywhere_without_changing_any_preset():
    """ensure_warm_epochs runs in the one builder: a no-op for every preset under every profile today."""
    for name, preset in PRESETS.items():
        for profile in ("cpu", "full", "smoke"):
            cfg = preset.replace(**profiles.profile_values(profile))
            assert ensure_warm_epochs(cfg) == cfg, (name, profile)
    short = Config(epochs=3, warmup_epochs=1, milestones=(3,))  # warmup on, but no warm epoch
    assert warm_epochs(short) == []
    assert warm_epochs(for_profile(short, "full")) == [1]
    assert for_profile(short, "full", warmup_epochs=1).warmup_epochs == 1  # overrides win
