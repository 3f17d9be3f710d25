"""Small CNN families for the embedded default, registered as timm architectures.

timm's ImageNet architectures downsample 4x in their stem, which leaves a small
digit image a tiny map before the first block; they stay far from the 90 %
out-of-fold accuracy the embedded run needs (``docs/embedded.md`` has the
measurements). These families keep the stem at stride 1 and downsample twice, so
a 16 px input ends in a 4x4 feature map (what the CAMs explain). Five families,
as the paper's ensemble mixed families (SqueezeNet, MobileNet, EfficientNet,
ResNet ...):

==================  ===========================================================
``digits_vgg``      plain 3x3 convolutions, batch norm, ReLU (VGG)
``digits_resnet``   residual basic blocks, batch norm, ReLU (ResNet)
``digits_squeeze``  fire modules (1x1 squeeze, 1x1 and 3x3 expands), max-pool
                    downsampling (SqueezeNet)
``digits_mbnet``    inverted residuals: 1x1 expand, depthwise 3x3, squeeze-
                    excite, 1x1 project, hard-swish (MobileNetV3)
``digits_dense``    dense blocks, 1x1 transitions, average-pool downsampling
                    (DenseNet)
==================  ===========================================================

``digits_vgg_wide`` is ``digits_vgg`` at 1.5x the width (24-48-96): the model
table 2 retrains, whose seeds spread less than the narrow one's.

Every model starts with :class:`LumaStandardize` (``luma=False`` leaves it out).
Importing this module registers them, so ``timm.create_model("digits_resnet",
num_classes=11)`` and every ``models.<name>.arch`` of params.yaml can name them;
``width`` (channels of the first stage, doubled at each downsampling) and
``drop_rate`` are kwargs. They are trained here from scratch and have no
pretrained weights.
"""
from __future__ import annotations

import torch
from timm.layers import ConvNormAct, SqueezeExcite
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

__all__ = ["DigitsNet"]


def _vgg_stage(cin: int, cout: int, *, stride: int, depth: int) -> nn.Module:
    layers = [ConvNormAct(cin, cout, 3, stride=stride)]
    layers += [ConvNormAct(cout, cout, 3) for _ in range(depth - 1)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions and a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, *, stride: int = 1):
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 3, stride=stride)
        self.conv2 = ConvNormAct(cout, cout, 3, apply_act=False)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else ConvNormAct(cin, cout, 1, stride=stride, apply_act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


def _resnet_stage(cin: int, cout: int, *, stride: int, depth: int) -> nn.Module:
    return nn.Sequential(BasicBlock(cin, cout, stride=stride), *[BasicBlock(cout, cout) for _ in range(depth - 1)])


class InvertedResidual(nn.Module):
    """MobileNetV3's block: expand, depthwise, squeeze-excite, project; residual when shapes match."""

    def __init__(self, cin: int, cout: int, *, stride: int = 1, expand: int = 2):
        super().__init__()
        mid = cin * expand
        self.expand = ConvNormAct(cin, mid, 1, act_layer=nn.Hardswish)
        self.dw = ConvNormAct(mid, mid, 3, stride=stride, groups=mid, act_layer=nn.Hardswish)
        self.se = SqueezeExcite(mid, rd_ratio=0.25)
        self.project = ConvNormAct(mid, cout, 1, apply_act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


def _mbnet_stage(cin: int, cout: int, *, stride: int, depth: int, expand: int = 2) -> nn.Module:
    return nn.Sequential(InvertedResidual(cin, cout, stride=stride, expand=expand),
                         *[InvertedResidual(cout, cout, expand=expand) for _ in range(depth - 1)])


class Fire(nn.Module):
    """SqueezeNet's fire module: a 1x1 squeeze, then 1x1 and 3x3 expands side by side."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.squeeze = ConvNormAct(cin, cout // 4, 1)
        self.expand1 = ConvNormAct(cout // 4, cout // 2, 1)
        self.expand3 = ConvNormAct(cout // 4, cout - cout // 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1(x), self.expand3(x)], 1)


def _squeeze_stage(cin: int, cout: int, *, stride: int, depth: int) -> nn.Module:
    pool = [nn.MaxPool2d(3, stride=stride, padding=1)] if stride > 1 else []
    return nn.Sequential(*pool, Fire(cin, cout), *[Fire(cout, cout) for _ in range(depth - 1)])


class DenseStage(nn.Module):
    """DenseNet's dense block: each 3x3 layer adds ``growth`` channels to the concatenated input; a 1x1 transition ends it."""

    def __init__(self, cin: int, cout: int, *, stride: int = 1, depth: int = 2):
        super().__init__()
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        growth = max(8, cout // 4)
        self.layers = nn.ModuleList(ConvNormAct(cin + i * growth, growth, 3) for i in range(depth))
        self.transition = ConvNormAct(cin + depth * growth, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.pool(x)]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return self.transition(torch.cat(feats, 1))


def _dense_stage(cin: int, cout: int, *, stride: int, depth: int) -> nn.Module:
    return DenseStage(cin, cout, stride=stride, depth=depth)


# family -> stage builder (cin, cout, stride, depth) -> module
STAGES = {"vgg": _vgg_stage, "resnet": _resnet_stage, "squeeze": _squeeze_stage, "mbnet": _mbnet_stage, "dense": _dense_stage}


class LumaStandardize(nn.Module):
    """Per-image luma standardisation: grey level, then zero mean and unit variance over the image.

    A digit's class does not depend on its colours or its contrast polarity's
    scale, which the embedded images draw at random; taking them out in the
    first layer lets a small network learn the shapes in a few epochs instead of
    spending them on colour (``docs/embedded.md`` has the measurements).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(1, keepdim=True) if x.shape[1] > 1 else x
        y = (y - y.mean((2, 3), keepdim=True)) / (y.std((2, 3), keepdim=True) + 1e-3)
        return y.expand(-1, x.shape[1], -1, -1)


class DigitsNet(nn.Module):
    """A stride-1 stem and three stages (the last two downsample 2x), then pooling and a linear head.

    Args:
        family: A key of :data:`STAGES`.
        num_classes: Width of the classifier (0: no classifier, features only).
        in_chans: Input channels.
        width: Channels of the first stage; each later stage doubles them.
        depths: Blocks (or convolutions) per stage.
        drop_rate: Dropout before the classifier.
        luma: Start with :class:`LumaStandardize`.
        **stage_kwargs: Passed to the family's stage builder (e.g. ``expand`` for ``mbnet``).
    """

    def __init__(self, family: str = "vgg", num_classes: int = 1000, in_chans: int = 3, width: int = 32,
                 depths: tuple[int, int, int] = (2, 2, 2), drop_rate: float = 0.0, luma: bool = True, **stage_kwargs):
        super().__init__()
        self.luma = LumaStandardize() if luma else nn.Identity()
        if family not in STAGES:
            raise ValueError(f"unknown DigitsNet family {family!r}; one of {sorted(STAGES)}")
        make = STAGES[family]
        chans = [width, 2 * width, 4 * width]
        self.stem = ConvNormAct(in_chans, width, 3)
        self.stages = nn.Sequential(*[make(cin, cout, stride=1 if i == 0 else 2, depth=d, **stage_kwargs)
                                      for i, (cin, cout, d) in enumerate(zip([width, *chans[:-1]], chans, depths))])
        self.num_features = self.head_hidden_size = chans[-1]
        self.num_classes = num_classes
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(chans[-1], num_classes) if num_classes else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(self.luma(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean((2, 3)))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs) -> dict:
    # 16 px inputs showing the whole image (crop_pct 1), no pretrained weights (hf_hub_id None)
    return {"num_classes": 11, "input_size": (3, 16, 16), "pool_size": (4, 4), "crop_pct": 1.0, "interpolation": "bilinear",
            "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "first_conv": "stem", "classifier": "fc", **kwargs}


default_cfgs = generate_default_cfgs({**{f"digits_{family}": _cfg() for family in STAGES}, "digits_vgg_wide": _cfg()})


def _create(variant: str, pretrained: bool = False, *, family: str | None = None, **kwargs) -> DigitsNet:
    family = family or variant.removeprefix("digits_")
    return build_model_with_cfg(DigitsNet, variant, pretrained, family=family, **kwargs)


@register_model
def digits_vgg(pretrained: bool = False, **kwargs) -> DigitsNet:
    """Plain VGG-style CNN: 2+2+2 3x3 conv-BN-ReLU, widths 16-32-64 (75 k parameters)."""
    return _create("digits_vgg", pretrained, **{"width": 16, **kwargs})


@register_model
def digits_vgg_wide(pretrained: bool = False, **kwargs) -> DigitsNet:
    """``digits_vgg`` at 1.5x the width, 24-48-96 (168 k parameters); table 2's retrained model."""
    return _create("digits_vgg_wide", pretrained, family="vgg", **{"width": 24, **kwargs})


@register_model
def digits_resnet(pretrained: bool = False, **kwargs) -> DigitsNet:
    """ResNet of basic blocks, 1+1+1, widths 16-32-64 (78 k parameters)."""
    return _create("digits_resnet", pretrained, **{"width": 16, "depths": (1, 1, 1), **kwargs})


@register_model
def digits_squeeze(pretrained: bool = False, **kwargs) -> DigitsNet:
    """SqueezeNet-style fire modules with max-pool downsampling, widths 32-64-128 (65 k parameters)."""
    return _create("digits_squeeze", pretrained, **{"width": 32, **kwargs})


@register_model
def digits_mbnet(pretrained: bool = False, **kwargs) -> DigitsNet:
    """MobileNetV3-style inverted residuals (expansion 2) with squeeze-excite and hard-swish, widths 24-48-96."""
    return _create("digits_mbnet", pretrained, **{"width": 24, **kwargs})


@register_model
def digits_dense(pretrained: bool = False, **kwargs) -> DigitsNet:
    """DenseNet-style blocks (concatenated 3x3 layers, 1x1 transitions, average-pool downsampling), widths 24-48-96."""
    return _create("digits_dense", pretrained, **{"width": 24, **kwargs})
