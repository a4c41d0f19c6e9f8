import pytest
import torch

from reidlab.config import Config, scale_schedule
from reidlab.schedule import adam_implementation, build_optimizer, lr_at


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


def test_adam_is_fused_on_a_cpu_and_trains_as_the_per_parameter_loop_does():
    cpu = [torch.zeros(2)]
    assert adam_implementation("auto", cpu) == {"fused": True}
    assert adam_implementation("for_loop", cpu) == {"foreach": False}
    assert adam_implementation("auto", [torch.zeros(2, device="meta")]) == {}  # elsewhere: PyTorch's default
    trained = {}
    for adam in ("for_loop", "auto"):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        start = torch.cat([p.detach().flatten() for p in net.parameters()])
        opt = build_optimizer(net.parameters(), Config(adam=adam, base_lr=1e-2, warmup=False))
        assert bool(opt.defaults["fused"]) is (adam == "auto")
        x, y = torch.randn(32, 6, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 3
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        trained[adam] = torch.cat([p.detach().flatten() for p in net.parameters()])
    assert (trained["for_loop"] - start).abs().max() > 1e-2  # it trained: 20 steps of up to lr each
    assert torch.allclose(trained["auto"], trained["for_loop"], atol=1e-6)
