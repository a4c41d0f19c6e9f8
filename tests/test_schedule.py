import pytest
import torch

from reidlab.config import Config, scale_schedule
from reidlab.schedule import build_optimizer, lr_at


def authors_warmup_multistep(k, base=3.5e-4, warmup=True):
    """The authors' WarmupMultiStepLR after k scheduler steps (one per epoch, before it runs), restated."""
    factor = 1.0
    if warmup and k < 10:
        alpha = k / 10
        factor = 0.01 * (1 - alpha) + alpha
    return base * factor * 0.1 ** sum(k >= m for m in (40, 70))


def test_lr_matches_section_8_values():
    cfg = Config()
    assert lr_at(1, cfg) == pytest.approx(3.815e-5)
    assert lr_at(9, cfg) == pytest.approx(3.5e-4 * (0.01 * 0.1 + 0.9))
    for k in (10, 25, 39):
        assert lr_at(k, cfg) == pytest.approx(3.5e-4)
    for k in (40, 55, 69):
        assert lr_at(k, cfg) == pytest.approx(3.5e-5)
    for k in (70, 100, 120):
        assert lr_at(k, cfg) == pytest.approx(3.5e-6)


@pytest.mark.parametrize("warmup", [True, False])
def test_lr_equals_restated_scheduler_every_epoch(warmup):
    cfg = Config(warmup=warmup)
    for k in range(1, 121):
        assert lr_at(k, cfg) == pytest.approx(authors_warmup_multistep(k, warmup=warmup), rel=1e-12)


def test_no_warmup_starts_at_base():
    assert lr_at(1, Config(warmup=False)) == pytest.approx(3.5e-4)


def test_scaled_schedule_keeps_the_shape():
    cfg = scale_schedule(Config(), 12)
    assert (cfg.epochs, cfg.warmup_epochs, cfg.milestones) == (12, 2, (4, 7))
    assert lr_at(1, cfg) < lr_at(2, cfg) == cfg.base_lr  # one warm epoch
    assert lr_at(12, cfg) == pytest.approx(3.5e-6)


def test_optimizer_is_adam_with_coupled_l2_on_every_trainable_parameter():
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    net[1].bias.requires_grad_(False)  # a frozen BN shift, as in BNNeck
    opt = build_optimizer(net.parameters(), Config())
    assert isinstance(opt, torch.optim.Adam) and not isinstance(opt, torch.optim.AdamW)
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == 3 and all(g["weight_decay"] == 5e-4 for g in opt.param_groups)
