"""The training step as one CUDA graph: on a CPU, everything but the capture runs and matches the eager step
bit for bit (warm-up leaves no trace; static inputs; a batch of another shape); the capture itself on a GPU."""
import copy
import functools

import pytest
import torch

from reidlab.config import PRESETS
from reidlab.graph_step import GraphedStep, graph_step, graph_unavailable, set_capturable
from reidlab.schedule import set_lr
from reidlab.train import TrainState, train_step

NUM_CLASSES = 5


def tiny_cfg(**changes):
    base = dict(backbone="mobilenet_v2", pretrained=None, image_size=(32, 16), P=3, K=2, device="cpu")
    return PRESETS["bot"].replace(**{**base, **changes})


def build_state(cfg, device="cpu", **adam):
    """Model, centers and both optimisers as fit builds them, from seed 0."""
    torch.manual_seed(0)
    state = TrainState.build(cfg, NUM_CLASSES, device, **adam)
    step = functools.partial(train_step, cfg, state)
    return dict(model=state.model, center=state.center, optimizer=state.optimizer, center_opt=state.center_optimizer,
                step=step)


def batches(cfg, n, device="cpu", seed=1):
    g = torch.Generator().manual_seed(seed)
    pids = torch.arange(cfg.P).repeat_interleave(cfg.K) % NUM_CLASSES
    for _ in range(n):
        yield torch.randn(cfg.P * cfg.K, 3, *cfg.image_size, generator=g).to(device), pids.to(device)


def snapshot(state) -> dict[str, torch.Tensor]:
    """Everything a step changes: parameters, BN buffers, centers, both optimisers' state."""
    out = {f"model.{k}": v.clone() for k, v in state["model"].state_dict().items()}
    out["centers"] = state["center"].centers.detach().clone()
    for name in ("optimizer", "center_opt"):
        for i, s in enumerate(state[name].state_dict()["state"].values()):
            out.update({f"{name}.{i}.{k}": v.clone() for k, v in s.items()})
    return {k: v.cpu() for k, v in out.items()}  # capturable Adam keeps its step counters on the GPU


def assert_same(a: dict, b: dict, exact: bool = True):
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            # bf16 with the GPU's atomics: Adam may move a weight by up to lr (3.5e-4) a step either way
            torch.testing.assert_close(a[key], b[key], rtol=2e-2, atol=5e-3, msg=key)


@pytest.mark.parametrize("pre_steps", [0, 2], ids=["fresh", "resumed"])
def test_graph_body_without_capture_equals_eager_bit_for_bit(pre_steps):
    cfg = tiny_cfg()
    eager, graphed = build_state(cfg), build_state(cfg)
    calls = {"n": 0}

    def counted(images, pids):
        calls["n"] += 1
        return graphed["step"](images, pids)

    stepper = None
    data = list(batches(cfg, pre_steps + 4))
    # the last batch is smaller (another shape): the graph runs it eagerly
    data.append((data[-1][0][:4], data[-1][1][:4]))
    for i, (images, pids) in enumerate(data):
        loss_a, terms_a = eager["step"](images, pids)
        if i == pre_steps:
            # Adam state already there ("resumed") or made by warm-up ("fresh"): both must be put back
            stepper = GraphedStep(counted, [graphed["model"], graphed["center"]],
                                  [graphed["optimizer"], graphed["center_opt"]], capture=False)
        loss_b, terms_b = (stepper or graphed["step"])(images, pids)
        assert torch.equal(loss_a, loss_b), i
        assert terms_a.keys() == terms_b.keys() == {"loss_id", "loss_triplet", "loss_center"}
        assert all(torch.equal(terms_a[k], terms_b[k]) for k in terms_a), i
        assert_same(snapshot(eager), snapshot(graphed))
    assert stepper.eager_calls == 1
    assert calls["n"] == 3 + 4 + 1  # warm-up, the four steps, the odd batch: warm-up really ran


def test_warm_up_without_restore_would_differ():
    """The comparison above can fail: three unrestored warm-up steps change every trained tensor."""
    cfg = tiny_cfg()
    a, b = build_state(cfg), build_state(cfg)
    (images, pids), = batches(cfg, 1)
    for _ in range(3):
        b["step"](images, pids)
    before, after = snapshot(a), snapshot(b)
    assert not torch.equal(before["centers"], after["centers"])
    assert not torch.equal(before["model.bottleneck.running_mean"], after["model.bottleneck.running_mean"])


def test_fit_falls_back_on_a_cpu_saying_why(tmp_path, tiny_market, capsys):
    from reidlab.datasets import load_dataset
    from reidlab.runs import load_history
    from reidlab.train import fit
    dataset = load_dataset("market1501", tiny_market, verbose=False)
    cfg = tiny_cfg(backbone="resnet18", epochs=1, warmup_epochs=2, milestones=(2,), num_workers=0, progress=False)
    fit(cfg, tmp_path / "eager", dataset=dataset)
    assert "cuda_graph" not in capsys.readouterr().out
    fit(cfg.replace(cuda_graph=True), tmp_path / "graph", dataset=dataset)
    assert "cuda_graph: training eagerly (device is cpu, not CUDA)" in capsys.readouterr().out
    assert load_history(tmp_path / "eager")[0]["loss"] == load_history(tmp_path / "graph")[0]["loss"]


def test_a_run_resumes_with_cuda_graph_flipped(tmp_path, tiny_market):
    """cuda_graph changes no math: a checkpoint resumes under the other setting (config.json says which ran last)."""
    from reidlab.datasets import load_dataset
    from reidlab.runs import load_history
    from reidlab.train import fit
    dataset = load_dataset("market1501", tiny_market, verbose=False)
    cfg = tiny_cfg(backbone="resnet18", epochs=2, warmup_epochs=2, milestones=(2,), checkpoint_every=1,
                   num_workers=0, progress=False)
    fit(cfg.replace(epochs=1), tmp_path, dataset=dataset)
    fit(cfg.replace(cuda_graph=True), tmp_path, dataset=dataset)
    assert [r["epoch"] for r in load_history(tmp_path)] == [1, 2]
    with pytest.raises(ValueError, match="base_lr"):
        fit(cfg.replace(base_lr=1e-3, epochs=3), tmp_path, dataset=dataset)  # other fields are still checked


def test_reasons_a_graph_cannot_serve():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert "CUDA" in graph_unavailable(tiny_cfg(), cpu)
    assert "fp16" in graph_unavailable(tiny_cfg(amp="fp16"), gpu)
    assert "DDP" in graph_unavailable(tiny_cfg(), gpu, world=2)
    assert "compile" in graph_unavailable(tiny_cfg(compile=True), gpu)
    assert graph_unavailable(tiny_cfg(amp="bf16", channels_last=True), gpu) is None
    with pytest.raises(ValueError, match="cuda_graph"):
        tiny_cfg(cuda_graph="yes")


def test_a_graph_checkpoint_resumes_eagerly():
    """A checkpoint of a graphed run holds capturable Adam (lr as a tensor); loaded eagerly it is switched back."""
    cfg = tiny_cfg()
    src, dst = build_state(cfg), build_state(cfg)
    for images, pids in batches(cfg, 1):
        src["step"](images, pids)
    set_capturable([src["optimizer"]], True, torch.device("cpu"))
    group = src["optimizer"].param_groups[0]
    assert group["capturable"] and isinstance(group["lr"], torch.Tensor)
    set_lr(src["optimizer"], 1e-5)  # filled in place: the tensor a graph captured stays the same
    assert group["lr"] is src["optimizer"].param_groups[0]["lr"] and group["lr"].item() == pytest.approx(1e-5)
    saved = copy.deepcopy(src["optimizer"].state_dict())
    dst["optimizer"].load_state_dict(saved)
    step = graph_step(cfg, dst["step"], torch.device("cpu"), 1, [dst["model"], dst["center"]],
                      [dst["optimizer"], dst["center_opt"]])
    group = dst["optimizer"].param_groups[0]
    assert group["capturable"] is False and group["lr"] == pytest.approx(1e-5)
    assert all(s["step"].device.type == "cpu" for s in dst["optimizer"].state.values())
    for images, pids in batches(cfg, 1, seed=2):
        loss, _ = step(images, pids)  # eager Adam on a CPU: raises if anything stayed capturable
    assert torch.isfinite(loss)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA GPU: the capture itself is checked on a GPU (python -m reidlab gpucheck)")
@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_captured_step_matches_eager_on_a_gpu(amp):
    cfg = tiny_cfg(device="cuda", amp=amp, image_size=(64, 32))
    eager, graphed = build_state(cfg, "cuda"), build_state(cfg, "cuda")
    set_capturable([graphed["optimizer"]], True, torch.device("cuda"))
    stepper = GraphedStep(graphed["step"], [graphed["model"], graphed["center"]],
                          [graphed["optimizer"], graphed["center_opt"]])
    for i, (images, pids) in enumerate(batches(cfg, 12, "cuda")):
        if i == 6:
            set_lr(eager["optimizer"], 3.5e-5)
            set_lr(graphed["optimizer"], 3.5e-5)  # a new lr, no recapture
        loss_a, _ = eager["step"](images, pids)
        loss_b, _ = stepper(images, pids)
        torch.testing.assert_close(loss_a, loss_b, rtol=1e-2 if amp == "bf16" else 1e-4, atol=1e-4)
    assert stepper.graph is not None and stepper.eager_calls == 0
    assert_same(snapshot(eager), snapshot(graphed), exact=False)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA GPU: fit with the captured step is checked on a GPU (python -m reidlab gpucheck)")
def test_fit_with_the_graph_resumes_on_a_gpu(tmp_path, tiny_market, capsys):
    from reidlab.datasets import load_dataset
    from reidlab.runs import load_history
    from reidlab.train import fit
    dataset = load_dataset("market1501", tiny_market, verbose=False)
    cfg = tiny_cfg(device="cuda", amp="bf16", channels_last=True, data_path="resident", cuda_graph=True, epochs=3,
                   warmup_epochs=2, milestones=(3,), checkpoint_every=1, num_workers=0, progress=False)
    fit(cfg, tmp_path / "straight", dataset=dataset)

    class Stop(Exception):
        pass

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(cfg, tmp_path / "resumed", dataset=dataset, on_epoch_end=stop_after_two)
    fit(cfg, tmp_path / "resumed", dataset=dataset)
    assert "training eagerly" not in capsys.readouterr().out
    a, b = load_history(tmp_path / "straight"), load_history(tmp_path / "resumed")
    assert [r["lr"] for r in a] == [r["lr"] for r in b] and len(a) == 3
    torch.testing.assert_close(torch.tensor([r["loss"] for r in a]), torch.tensor([r["loss"] for r in b]),
                               rtol=1e-2, atol=1e-4)
