"""Backbones, strides, stem ReLU, necks, IBN-a layout and weight loading, each checked against a plain
reference written here."""
import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision import models

import reidlab.pretrained as pretrained
from reidlab.config import BACKBONES, NECKS, Config
from reidlab.ibn import IBN, resnet50_ibn_a
from reidlab.model import FEATURE_DIMS, ReidModel, build_backbone, build_model, count_flops
from reidlab.pretrained import PretrainedWeightsError, convert_deepsort_mobilenetv2, load_pretrained

torch.set_num_threads(1)
SMALL = (64, 32)  # (height, width): the final map is 2x1 at stride 2, 4x2 at stride 1
NUM_IDS = 7


def make_cfg(**changes) -> Config:
    neck = changes.get("neck", "bnneck")
    changes.setdefault("bnneck", neck.startswith("bnneck"))
    changes.setdefault("pretrained", None)
    return Config(**changes)


def batch(n=4, size=SMALL, seed=0):
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(seed))


# --- backbones x last stride x neck ----------------------------------------------------------------------

@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
@pytest.mark.parametrize("last_stride", [1, 2])
def test_shapes(backbone, last_stride):
    dim = FEATURE_DIMS[backbone]
    model = build_model(make_cfg(backbone=backbone, last_stride=last_stride), NUM_IDS)
    assert model.feature_dim == dim
    fmap = model.backbone(batch())
    assert fmap.shape == (4, dim, 64 // (16 * last_stride), 32 // (16 * last_stride))
    assert model.feature_map_size((256, 128)) == ((16, 8) if last_stride == 1 else (8, 4))
    for neck in NECKS:  # the necks share this backbone
        model = ReidModel(model.backbone, dim, NUM_IDS, neck)
        assert model.neck == neck
        logits, feat = model.train()(batch())
        assert logits.shape == (4, NUM_IDS) and feat.shape == (4, dim)
        assert model.eval()(batch()).shape == (4, dim)


@pytest.mark.parametrize("backbone", [b for b in BACKBONES if b not in ("resnet18", "mobilenet_v2")])
def test_every_other_backbone(backbone):
    # one build per backbone (the deep ones are slow to initialise): stride 1 gives a 1/16 map
    model = build_model(make_cfg(backbone=backbone, last_stride=1), NUM_IDS)
    logits, feat = model.train()(batch(2))
    assert logits.shape == (2, NUM_IDS) and feat.shape == (2, FEATURE_DIMS[backbone])
    assert model.backbone(batch(2)).shape[2:] == (4, 2)


@pytest.mark.parametrize("backbone, changed", [
    ("resnet50", {"layer4.0.conv2", "layer4.0.downsample.0"}),  # Bottleneck: stride on the 3x3 conv2
    ("resnet18", {"layer4.0.conv1", "layer4.0.downsample.0"}),  # BasicBlock: on conv1
    ("mobilenet_v2", {"features.14.conv.1.0"}),  # the last stride-2 block's depthwise conv
])
def test_last_stride_touches_only_the_last_downsampling(backbone, changed):
    one, _ = build_backbone(backbone, last_stride=1)
    two, _ = build_backbone(backbone, last_stride=2)
    strides = lambda net: {n: m.stride for n, m in net.named_modules() if isinstance(m, nn.Conv2d)}  # noqa: E731
    diff = {n for n, s in strides(one).items() if s != strides(two)[n]}
    assert diff == changed
    assert all(m.dilation == (1, 1) for m in one.modules() if isinstance(m, nn.Conv2d))


# --- stem ReLU ---------------------------------------------------------------------------------------------

def reference_resnet_forward(net, x, stem_relu):
    x = net.bn1(net.conv1(x))
    if stem_relu:
        x = F.relu(x)
    x = F.max_pool2d(x, 3, 2, 1)
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        x = layer(x)
    return x


@pytest.mark.parametrize("stem_relu", [True, False])
def test_stem_relu_switch(stem_relu):
    torch.manual_seed(0)
    backbone, _ = build_backbone("resnet18", stem_relu=stem_relu)
    backbone.eval()
    x = batch(2)
    torch.testing.assert_close(backbone(x), reference_resnet_forward(backbone, x, stem_relu))
    assert torch.any(backbone(x) != reference_resnet_forward(backbone, x, not stem_relu))


def test_stem_relu_changes_the_model_output():
    outs = []
    for stem_relu in (True, False):
        torch.manual_seed(0)
        outs.append(build_model(make_cfg(backbone="resnet18", stem_relu=stem_relu), NUM_IDS).eval()(batch(2)))
    assert not torch.allclose(*outs)


# --- necks -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("neck", NECKS)
def test_neck_outputs_match_reference(neck):
    torch.manual_seed(0)
    model = build_model(make_cfg(backbone="resnet18", neck=neck), NUM_IDS)
    x = batch()
    logits, feat = model.train()(x)
    # plain reference: GAP, optional BN with batch statistics, classifier on the ID feature
    f = model.backbone(x).mean(dim=(2, 3))
    if neck.startswith("bnneck"):
        bn = model.bottleneck
        f_i = (f - f.mean(0)) / torch.sqrt(f.var(0, unbiased=False) + bn.eps) * bn.weight + bn.bias
    else:
        f_i = f
    torch.testing.assert_close(logits, f_i @ model.classifier.weight.T + (
        model.classifier.bias if model.classifier.bias is not None else 0))
    torch.testing.assert_close(feat, f if neck in ("bnneck", "neck1", "neck2", "neck3") else f_i)
    out = model.extract(x)
    assert set(out) == {"f_t", "f_i"}
    torch.testing.assert_close(out["f_t"], f)
    torch.testing.assert_close(out["f_i"], f_i)


@pytest.mark.parametrize("neck", ["neck3", "bnneck3", "bnneck"])
@pytest.mark.parametrize("test_feature", ["f_t", "f_i"])
def test_eval_returns_configured_feature(neck, test_feature):
    model = build_model(make_cfg(backbone="resnet18", neck=neck, test_feature=test_feature), NUM_IDS).eval()
    x = batch()
    f = model.backbone(x).mean(dim=(2, 3))
    bn = model.bottleneck
    if bn is not None and test_feature == "f_i":  # eval BN: running statistics
        f = (f - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(model(x), f)


@pytest.fixture(scope="module")
def resnet18():
    return build_backbone("resnet18")[0]


@pytest.mark.parametrize("neck", NECKS)
def test_classifier_and_bn_init(neck, resnet18):
    torch.manual_seed(0)
    dim, ids = 512, 2000  # many weights so the std estimate is tight
    model = ReidModel(resnet18, dim, ids, neck)
    weight = model.classifier.weight
    assert weight.shape == (ids, dim)
    if neck.startswith("bnneck"):
        assert model.classifier.bias is None
        assert abs(weight.std().item() - 0.001) < 0.00005 and abs(weight.mean().item()) < 0.00005
        assert torch.equal(model.bottleneck.weight, torch.ones(dim))
        assert torch.equal(model.bottleneck.bias, torch.zeros(dim))
        assert not model.bottleneck.bias.requires_grad and model.bottleneck.weight.requires_grad
    else:
        assert model.bottleneck is None and model.classifier.bias is not None
        # PyTorch's default: uniform(-1/sqrt(D), 1/sqrt(D)), std = 1/sqrt(3D)
        assert abs(weight.std().item() - (3 * dim) ** -0.5) < 0.001


def test_bn_shift_stays_zero_after_optimizer_step():
    model = build_model(make_cfg(backbone="resnet18", neck="bnneck"), NUM_IDS).train()
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(p is not model.bottleneck.bias for p in params)
    opt = torch.optim.Adam(params, lr=0.1, weight_decay=5e-4)
    weight_before = model.bottleneck.weight.detach().clone()
    for _ in range(2):
        logits, feat = model(batch())
        loss = F.cross_entropy(logits, torch.arange(4) % NUM_IDS) + feat.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.bottleneck.bias.grad is None
    assert torch.equal(model.bottleneck.bias, torch.zeros(512))
    assert not torch.equal(model.bottleneck.weight, weight_before)


def test_bad_arguments_raise(resnet18):
    backbone, dim = resnet18, 512
    with pytest.raises(ValueError, match="num_classes"):
        ReidModel(backbone, dim, 0)
    with pytest.raises(ValueError, match="neck="):
        ReidModel(backbone, dim, 3, neck="bn")
    with pytest.raises(ValueError, match="backbone="):
        build_backbone("resnet51")
    with pytest.raises(ValueError, match="last_stride"):
        build_backbone("resnet18", last_stride=4)


def test_channels_last_gives_the_same_features():
    outs = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = build_model(make_cfg(backbone="resnet18", channels_last=channels_last), NUM_IDS).eval()
        outs.append(model(batch(2)))
    assert next(model.backbone.parameters()).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(*outs, rtol=1e-4, atol=1e-5)


# --- FLOPs -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
def test_count_flops_matches_torch_flop_counter(backbone):
    model = build_model(make_cfg(backbone=backbone, last_stride=1), NUM_IDS)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, 128, 64))
    assert count_flops(model, (128, 64)) * 2 == counter.get_total_flops()  # torch counts a multiply-add as 2


def test_count_flops_of_a_tiny_net_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=4),
                        nn.Flatten(), nn.Linear(8 * 16 * 8, 5))
    assert count_flops(net, (32, 16)) == 8 * 16 * 8 * (3 * 9) + 8 * 16 * 8 * (2 * 9) + 5 * 8 * 16 * 8


def test_stride_one_quadruples_layer4_flops():
    flops = {s: count_flops(build_model(make_cfg(backbone="resnet18", last_stride=s), NUM_IDS), (256, 128))
             for s in (1, 2)}
    two, _ = build_backbone("resnet18", last_stride=2)
    layer4 = count_flops(nn.Sequential(*list(two.children())[:-1]), (256, 128))  # everything but layer4
    assert flops[1] - layer4 == 4 * (flops[2] - layer4)


# --- IBN-a ---------------------------------------------------------------------------------------------

def published_ibn_a_keys() -> dict[str, tuple]:
    """Key -> shape of `resnet50_ibn_a-d9d0bb7b.pth` (IBN-Net v1.0 release), written out from its layout."""
    keys = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix, c, tracked=True):
        keys.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                     f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    bn("bn1", 64)
    inplanes = 64
    for layer, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            keys[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            if layer < 4:  # IBN-a: instance norm (affine, no running stats) on half of bn1's channels
                keys[f"{p}.bn1.IN.weight"] = keys[f"{p}.bn1.IN.bias"] = (planes // 2,)
                bn(f"{p}.bn1.BN", planes - planes // 2)
            else:
                bn(f"{p}.bn1", planes)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            keys[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            if b == 0:
                keys[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    keys["fc.weight"], keys["fc.bias"] = (1000, 2048), (1000,)
    return keys


def test_ibn_a_keys_match_the_published_checkpoint():
    net = resnet50_ibn_a()
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert got == published_ibn_a_keys()
    assert "layer1.0.bn1.IN.weight" in got and "layer3.5.bn1.BN.running_mean" in got
    assert "layer4.0.bn1.running_var" in got and "layer4.0.bn1.IN.weight" not in got
    # and the same as torchvision's ResNet-50 but for the split bn1 of layer1-3
    plain = set(models.resnet50().state_dict())
    assert {k for k in got if ".bn1.IN." not in k and ".bn1.BN." not in k} == {
        k for k in plain if not (k.startswith(("layer1", "layer2", "layer3")) and ".bn1." in k)}


def test_ibn_forward_matches_reference():
    torch.manual_seed(0)
    ibn = IBN(6).train()
    with torch.no_grad():
        ibn.IN.weight.uniform_(0.5, 1.5), ibn.IN.bias.normal_()
        ibn.BN.weight.uniform_(0.5, 1.5), ibn.BN.bias.normal_()
    x = torch.randn(4, 6, 5, 3)
    a, b = x[:, :3], x[:, 3:]
    ref_a = F.instance_norm(a, weight=ibn.IN.weight, bias=ibn.IN.bias, eps=ibn.IN.eps)
    mean, var = b.mean((0, 2, 3), keepdim=True), b.var((0, 2, 3), unbiased=False, keepdim=True)
    ref_b = (b - mean) / torch.sqrt(var + ibn.BN.eps) * ibn.BN.weight.view(1, 3, 1, 1) + ibn.BN.bias.view(1, 3, 1, 1)
    torch.testing.assert_close(ibn(x), torch.cat([ref_a, ref_b], 1))


def test_ibn_a_backbone_loads_the_published_layout(tmp_path):
    # a checkpoint in the published layout (with fc, without num_batches_tracked as in old releases)
    state = {k: torch.randn(v) if v else torch.tensor(0) for k, v in published_ibn_a_keys().items()
             if not k.endswith("num_batches_tracked")}
    state = {k: (v.abs() + 0.5 if k.endswith("running_var") else v) for k, v in state.items()}
    path = tmp_path / "resnet50_ibn_a-d9d0bb7b.pth"
    torch.save(state, path)
    model = build_model(make_cfg(backbone="resnet50_ibn_a", pretrained=str(path)), NUM_IDS)
    assert torch.equal(model.backbone.layer2[1].bn1.IN.weight, state["layer2.1.bn1.IN.weight"])
    assert torch.equal(model.backbone.layer4[2].bn3.running_var, state["layer4.2.bn3.running_var"])


# --- weights from a local file ------------------------------------------------------------------------

def test_local_file_round_trip(tmp_path):
    torch.manual_seed(1)
    source, _ = build_backbone("resnet18")
    state = dict(source.state_dict(), **{"fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)})
    plain, wrapped = tmp_path / "plain.pth", tmp_path / "ckpt.pth"
    torch.save(state, plain)
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    for path in (plain, wrapped):
        torch.manual_seed(2)
        model = build_model(make_cfg(backbone="resnet18", pretrained=str(path)), NUM_IDS)
        assert model.pretrained_source == str(path)
        for key, value in source.state_dict().items():
            assert torch.equal(model.backbone.state_dict()[key], value), key


def test_reidlab_model_checkpoint_gives_its_backbone(tmp_path):
    trained = build_model(make_cfg(backbone="resnet18"), NUM_IDS)
    path = tmp_path / "run.pth"
    torch.save({"model": trained.state_dict()}, path)
    torch.manual_seed(5)
    model = build_model(make_cfg(backbone="resnet18", pretrained=str(path)), 3)
    x = batch(2)
    torch.testing.assert_close(model.backbone.eval()(x), trained.backbone.eval()(x))


def test_mismatched_checkpoint_names_the_keys(tmp_path):
    state = build_backbone("resnet18")[0].state_dict()
    del state["layer2.0.conv1.weight"]
    state["layer3.1.conv2.weight"] = torch.zeros(256, 256, 1, 1)
    state["head.proj.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(PretrainedWeightsError) as err:
        build_model(make_cfg(backbone="resnet18", pretrained=str(path)), NUM_IDS)
    msg = str(err.value)
    for part in ("1 missing keys", "layer2.0.conv1.weight", "1 unexpected keys", "head.proj.weight",
                 "1 shape mismatches", "layer3.1.conv2.weight: checkpoint (256, 256, 1, 1) vs model (256, 256, 3, 3)"):
        assert part in msg


def test_another_backbones_checkpoint_is_refused(tmp_path):
    path = tmp_path / "r34.pth"
    torch.save(build_backbone("resnet34")[0].state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match=r"unexpected keys \(layer1.2.conv1.weight"):
        build_model(make_cfg(backbone="resnet18", pretrained=str(path)), NUM_IDS)


def test_missing_file_and_non_state_dict(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="not 'imagenet', None, or an existing file"):
        build_model(make_cfg(backbone="resnet18", pretrained=str(tmp_path / "nope.pth")), NUM_IDS)
    path = tmp_path / "list.pth"
    torch.save([1, 2], path)
    with pytest.raises(PretrainedWeightsError, match="holds no state dict"):
        build_model(make_cfg(backbone="resnet18", pretrained=str(path)), NUM_IDS)


def test_none_means_from_scratch():
    backbone, _ = build_backbone("resnet18")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    assert load_pretrained(backbone, "resnet18", None) is None
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


# --- "imagenet": online through torch.hub, offline a clear error ----------------------------------------

@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(pretrained, "MOBILENET_V2_FILE", tmp_path / "absent" / "mobilenet_v2_imagenet.pth")
    return tmp_path


def offline(url, dst, *args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50_ibn_a", "mobilenet_v2"])
def test_imagenet_offline_raises_with_the_fixes(backbone, empty_hub, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PretrainedWeightsError) as err:
        build_model(make_cfg(backbone=backbone, pretrained="imagenet"), NUM_IDS)
    msg = str(err.value)
    assert "URLError" in msg and "pretrained=None" in msg and "pretrained='path/to/" in msg
    assert ("get_pretrained.py" in msg) == (backbone == "mobilenet_v2")


def test_imagenet_online_downloads_through_torchvision(empty_hub, monkeypatch):
    torch.manual_seed(3)
    served, _ = build_backbone("resnet18")
    urls = []

    def download(url, dst, *args, **kwargs):
        urls.append(url)
        torch.save(dict(served.state_dict(), **{"fc.weight": torch.zeros(1000, 512)}), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    model = build_model(make_cfg(backbone="resnet18", pretrained="imagenet"), NUM_IDS)
    assert urls == [models.ResNet18_Weights.IMAGENET1K_V1.url]
    assert torch.equal(model.backbone.layer3[1].conv2.weight, served.layer3[1].conv2.weight)
    build_model(make_cfg(backbone="resnet18", pretrained="imagenet"), NUM_IDS)
    assert len(urls) == 1  # the second build reads torch.hub's cache


def test_mobilenet_imagenet_prefers_the_converted_file(empty_hub, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    torch.manual_seed(4)
    source, _ = build_backbone("mobilenet_v2")
    path = empty_hub / "mobilenet_v2_imagenet.pth"
    torch.save(source.state_dict(), path)
    monkeypatch.setattr(pretrained, "MOBILENET_V2_FILE", path)
    model = build_model(make_cfg(backbone="mobilenet_v2", pretrained="imagenet"), NUM_IDS)
    assert model.pretrained_source == str(path)
    assert torch.equal(model.backbone.features[17].conv[2].weight, source.features[17].conv[2].weight)


# --- deep-sort layout (the wheel itself is checked in test_pretrained.py) ---------------------------------

def to_deepsort_layout(state):
    """Reference inverse mapping, written per block type: torchvision keys -> the wheel's flat Sequential."""
    flat = {}
    for key, value in state.items():
        parts = key.split(".")
        if len(parts) > 3 and parts[2] == "conv" and parts[1] != "0":
            block, rest = int(parts[1]), parts[3:]
            expand = block != 1
            if expand:
                table = {("0", "0"): 0, ("0", "1"): 1, ("1", "0"): 3, ("1", "1"): 4, ("2",): 6, ("3",): 7}
            else:
                table = {("0", "0"): 0, ("0", "1"): 1, ("1",): 3, ("2",): 4}
            head = tuple(rest[:2]) if tuple(rest[:2]) in table else (rest[0],)
            index = table[head]
            key = ".".join(["features", str(block), "conv", str(index)] + rest[len(head):])
        flat[key] = value
    return flat


def test_convert_deepsort_inverts_the_reference_mapping():
    state = build_backbone("mobilenet_v2")[0].state_dict()
    flat = to_deepsort_layout(state)
    assert "features.2.conv.7.running_var" in flat and "features.1.conv.4.weight" in flat
    converted = convert_deepsort_mobilenetv2(flat)
    assert list(converted) == list(state)
    assert all(converted[k] is state[k] for k in state)


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet18"])
def test_folded_batch_norms_give_the_same_features(backbone):
    """fold_batch_norms (CPU evaluation) against the model as trained, with batch norms whose statistics moved."""
    from reidlab.model import fold_batch_norms
    torch.manual_seed(0)
    model = build_model(Config(backbone=backbone, pretrained=None, image_size=(64, 32)), num_classes=10)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5), bn.bias.data.uniform_(-0.2, 0.2)
    model.train()
    x = torch.randn(4, 3, 64, 32)
    folded = fold_batch_norms(model)
    with torch.no_grad():
        expected = model.eval()(x)
        torch.testing.assert_close(folded(x), expected, rtol=1e-4, atol=1e-4)
    left = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert before > 0 and left < before  # folded where a Sequential holds convolution then batch norm
    if backbone == "mobilenet_v2":
        assert left == 0  # every one of MobileNetV2's
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == before  # the model itself is untouched


def test_cpu_feature_extraction_folds_a_copy_and_gives_the_model_back_in_its_mode():
    from reidlab.evaluate import extract_features
    torch.manual_seed(0)
    model = build_model(Config(backbone="mobilenet_v2", pretrained=None, image_size=(64, 32)), num_classes=10).train()
    x = torch.randn(6, 3, 64, 32)
    feats, _, _ = extract_features(model, [(x, [1] * 6, [0] * 6)], "cpu", progress=False)
    assert model.training
    with torch.no_grad():
        torch.testing.assert_close(feats, model.eval()(x), rtol=1e-4, atol=1e-4)
