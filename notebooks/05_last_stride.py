# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 Last stride = 1
#
# **The claim (CVPRW Sec. 3.4, Table 1).** ResNet-50 downsamples a 256x128 image 32 times, to an 8x4 feature
# map, before global average pooling. Setting the stride of the last downsampling (the first block of
# `layer4`) from 2 to 1 keeps a 16x8 map: four times as many spatial positions to pool, no new parameters,
# and only `layer4` pays for it. On top of warmup, random erasing and label smoothing (91.4 / 80.3 rank-1 /
# mAP on Market-1501) it gives **92.0 / 81.7: +0.6 rank-1, +1.4 mAP**. The paper counts no extra parameters and
# only a light extra computation; below we count it.
#
# The steps: the code, a check on a toy tensor (map size and FLOPs at stride 1 and 2), a run with and
# without the trick (the `label_smoothing` and `last_stride` rows of Table 1), the comparison.

# %% tags=["parameters"]
smoke: bool = False  # True: seconds on a CPU (SMOKE_PROFILE on synthetic_small), for the tests
dataset: str = ""  # "": reidlab.notebook.default_dataset() (Market-1501 when prepared, else synthetic)
device: str = "auto"
profile: str = "auto"  # "full" (the paper's recipe), "cpu" (CPU_PROFILE), "auto": full with CUDA + Market
out_dir: str = "results/notebooks/05_last_stride"  # run folders, tables, figures; from the repo root

# %%
# %matplotlib inline
import time

import pandas as pd
import torch

from reidlab import paper
from reidlab.model import _set_mobilenet_last_stride, _set_resnet_last_stride, build_model, count_flops
from reidlab.notebook import pick_profile, plot_comparison, plot_run_losses, run_config, show, train_and_compare
from reidlab.paths import resolve
from reidlab.viz import savefig

chosen = pick_profile(profile, smoke)
out = resolve(out_dir)
out.mkdir(parents=True, exist_ok=True)
configs = {row: run_config(row, profile, dataset, device, smoke=smoke) for row in ("label_smoothing", "last_stride")}
cfg = configs["last_stride"]
print(f"profile {chosen}: {cfg.backbone}, {cfg.image_size[0]}x{cfg.image_size[1]}, {cfg.epochs} epochs, "
      f"dataset {cfg.dataset}; runs in {out}")
print("paper, Market-1501 (rank-1, mAP):", {row: paper.TABLE1[row] for row in configs},
      "delta", paper.delta("last_stride", "label_smoothing"))

# %% [markdown]
# ## The code
#
# `build_backbone` hands the first block of `layer4` to this function. In a torchvision Bottleneck the stride
# sits on the 3x3 `conv2` and on the 1x1 `downsample` conv of the shortcut; both must change, or the two
# branches of the residual sum would disagree in size. No dilation: the receptive field of a `layer4`
# output shrinks a little, the map gets finer. The CPU and smoke profiles train an ImageNet MobileNetV2; its last
# stride-2 block (`features[14]`) has a stride only on its depthwise 3x3 conv (a block that changes size has
# no residual shortcut), so that one conv changes.

# %%
show(_set_resnet_last_stride)
if cfg.backbone == "mobilenet_v2":
    show(_set_mobilenet_last_stride)

# %% [markdown]
# ## Check on a toy tensor: map size, multiply-adds, parameters
#
# `count_flops` runs one zero image through the model and counts the multiply-adds of every Conv2d and Linear
# (the classifier is not run at test time). We compare stride 2 and 1 for the backbone of this profile at its
# image size, and for the paper's ResNet-50 at 256x128 (random weights: only shapes matter here).

# %%
def measure(backbone: str, image_size: tuple[int, int], stride: int) -> dict:
    model = build_model(cfg.replace(backbone=backbone, image_size=image_size, last_stride=stride, pretrained=None),
                        num_classes=751).eval()
    h, w = model.feature_map_size(image_size)
    x = torch.zeros(8, 3, *image_size)
    with torch.no_grad():
        model(x)  # warm up
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            model(x)
            seconds.append(time.perf_counter() - start)
    ms = 1000 * min(seconds) / len(x)  # the least disturbed of three
    return {"backbone": backbone, "input": f"{image_size[0]}x{image_size[1]}", "last_stride": stride,
            "feature map": f"{h}x{w}", "positions": h * w, "GMACs": count_flops(model, image_size) / 1e9,
            "params (M)": sum(p.numel() for n, p in model.named_parameters() if "classifier" not in n) / 1e6,
            "ms / image": ms}


cases = dict.fromkeys([(cfg.backbone, tuple(cfg.image_size)), ("resnet50", (256, 128))])  # unique, in order
toy = pd.DataFrame([measure(b, size, s) for b, size in cases for s in (2, 1)])
for (b, size), group in toy.groupby(["backbone", "input"], sort=False):
    s2, s1 = group.iloc[0], group.iloc[1]
    assert s1["positions"] == 4 * s2["positions"] and s1["params (M)"] == s2["params (M)"]
    print(f"{b} at {size}: stride 1 has 4x the positions, the same parameters, "
          f"{100 * (s1['GMACs'] / s2['GMACs'] - 1):+.0f}% multiply-adds")
toy.round(3)

# %% [markdown]
# Only `layer4` runs at the larger resolution, so the multiply-adds grow by far less than 4x, but not by a
# little either: ResNet-50 at 256x128 goes from 2.67 to 4.05 G (+52%). `layer4` is a fifth of the work at
# stride 2 (0.53 G) and nearly half at stride 1 (1.91 G). Time per image follows less closely: small maps
# leave a CPU or GPU partly idle, so measure on your own hardware (the column above is one CPU measurement,
# noisy on a shared machine).

# %% [markdown]
# ## Train with and without the trick
#
# `label_smoothing` (stride 2, the row above) and `last_stride` (stride 1) differ in this one field. Both are
# trained (or reused from an earlier notebook's run folder) under the profile above; on a CPU that is a small
# network at a small input on the synthetic set, so the numbers are not Market's. Compare the *direction* of
# the change; how far one seed moves a row, measured, is below (the committed Market pair and its yardstick).

# %%
assert {k for k, v in configs["last_stride"].to_dict().items() if configs["label_smoothing"].to_dict()[k] != v} \
    == {"last_stride"}
df = train_and_compare(configs, out, paper=paper.TABLE1)
df["d_rank1"], df["d_mAP"] = df["rank1"].diff(), df["mAP"].diff()
df[["rank1", "mAP", "mINP", "d_rank1", "d_mAP", "paper_rank1", "paper_mAP", "train_seconds"]].round(2)

# %%
fig = plot_comparison(df)
fig.suptitle(f"last stride on {cfg.dataset} ({chosen} profile) beside the paper's Market-1501")
savefig(fig, "last_stride", out)
df.drop(columns="run_dir").to_csv(out / "comparison.csv")
fig

# %% [markdown]
# ## The same change on real Market-1501, over three seeds
#
# One pair of short runs cannot tell a trick from seed noise. The committed chain (`make market`: every row of
# Table 1 on Market-1501 in its CPU profile, ImageNet MobileNetV2 at 96 x 48 for 6 epochs, seeds 0-2, about two
# hours on 2 cores; `results/tables/tricks_market1501_cpu.md`) gives this pair with the 95 % interval of its
# change over paired seeds, and the seed noise it measured there: the yardstick for the live change above.

# %%
from reidlab.notebook import committed_pair

committed_pair("last_stride", "label_smoothing")

# %% [markdown]
# The training losses per epoch: with stride 1 the pooled feature averages 4x as many positions; does the
# ID or triplet loss fall differently?

# %%
plot_run_losses({name: row.run_dir for name, row in df.iterrows()})

# %% [markdown]
# **Reading the result.** The paper's gain (+1.4 mAP on Market at 256x128) comes from a finer 16x8 map of a
# pretrained ResNet-50. At the CPU profile's small input the stride-2 map is tiny (the toy table: 2x1 for a
# 64x32 image, so global pooling averages two positions), so stride 1 might matter even more here; on the other
# hand one pair of short runs on a small synthetic set says little; `make demo` gives this change's 95 % interval
# over three paired seeds. Run it with
# `profile="full"` on a GPU with Market-1501 to see the paper's setting.
#
# ## Questions / try it
#
# 1. Why must the 1x1 `downsample` conv of the shortcut change its stride together with `conv2`? What error
#    would you get if it did not?
# 2. In `layer4[0]` one conv costs the same at stride 1 and 2. Which one, and why? (Print the block.)
# 3. Re-run the toy check with `image_size=(384, 128)`. Does the relative cost of stride 1 change?
# 4. The paper keeps global *average* pooling. With a 16x8 map, try max pooling instead (edit
#    `ReidModel.extract` in a copy): does the finer map help max pooling more or less?
# 5. Stride 1 without dilation changes the receptive field; a dilated `layer4` (as in DeepLab) would keep it.
#    Which would you expect to transfer better from ImageNet weights, and why?
