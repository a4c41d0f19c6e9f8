"""The CPU profile's fast path (resident data, channels_last, the CPU's fastest precision) against the plain one."""
import copy

import pytest
import torch

from reidlab.profiles import build_config
from reidlab.config import CPU_PROFILE, PRESETS
from reidlab.cpu import fastest_amp, has_bf16_units
from reidlab.train import TrainingDiverged, TrainState, fit, train_step


def test_the_profile_takes_the_fast_path_and_the_fastest_precision():
    assert CPU_PROFILE["data_path"] == "resident" and CPU_PROFILE["channels_last"] is True
    cfg = build_config("bot", "cpu", dataset="synthetic")
    assert cfg.amp == "none"  # MobileNetV2: bf16 is slower on every CPU measured (reidlab.cpu)
    resnet = build_config("bot", "cpu", {"backbone": "resnet18"}, dataset="synthetic")
    assert resnet.amp == ("bf16" if has_bf16_units() else "none") == fastest_amp("resnet18")
    assert build_config("bot", "cpu", {"backbone": "resnet18", "amp": "none"}, dataset="synthetic").amp == "none"
    assert build_config("bot", "full", {"backbone": "resnet18"}, dataset="synthetic").amp == "none"  # CPU only


def test_old_run_folders_spelling_gpu_still_load():
    assert PRESETS["bot"].replace(data_path="gpu").data_path == "resident"


def steps(cfg, batches, n=3):
    torch.manual_seed(0)
    state = TrainState.build(cfg.replace(pretrained=None), num_classes=12)  # as fit builds it: channels_last too
    assert state.center is not None  # the full BoT: the centers' SGD step is part of every step
    losses = []
    for images, pids in batches[:n]:
        images = images.contiguous(memory_format=torch.channels_last) if cfg.channels_last else images
        loss, _ = train_step(cfg, state, images, pids)
        losses.append(loss.item())
    return losses, state.model.state_dict()


def test_channels_last_trains_the_same_steps_within_float_tolerance():
    cfg = PRESETS["bot"].replace(backbone="mobilenet_v2", image_size=(64, 32), P=4, K=2)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 64, 32, generator=g), torch.arange(4).repeat_interleave(2)) for _ in range(3)]
    plain, plain_state = steps(cfg, copy.deepcopy(batches))
    fast, fast_state = steps(cfg.replace(channels_last=True), copy.deepcopy(batches))
    # the first forward adds in another order only; Adam then amplifies last-bit differences of tiny gradients
    # into steps of up to lr per weight, so later losses agree to 1e-2 and weights to a few steps of lr
    assert fast[0] == pytest.approx(plain[0], rel=1e-5)
    assert fast == pytest.approx(plain, rel=1e-2)
    for name, value in plain_state.items():
        if value.is_floating_point():
            torch.testing.assert_close(fast_state[name], value, rtol=1e-2, atol=3 * cfg.base_lr, msg=name)
    # a control: another batch order is not within that tolerance, so the comparison can fail
    other, _ = steps(cfg, copy.deepcopy(batches[::-1]))
    assert other != pytest.approx(plain, rel=1e-2)


@pytest.mark.parametrize("adam, says", [
    ("for_loop", r"the optimiser step overflowed at epoch 1, step 0, lr [0-9.e+]+ "),  # Adam's own overflow error
    ("auto", r"the loss is not finite at epoch 1, step 1, lr [0-9.e+]+: "),  # fused: the next loss is inf / nan
])
def test_an_overflowing_step_names_epoch_step_and_lr(tmp_path, adam, says):
    cfg = build_config("bot", "smoke", {"base_lr": 1e38, "progress": False, "adam": adam}, smoke=True)
    with pytest.raises(TrainingDiverged, match=says + r".*lower base_lr"):
        fit(cfg, tmp_path / "run", resume=False)
