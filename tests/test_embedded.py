"""The embedded default's CNN families (models/embedded.py), built through timm as params.yaml names them."""
from __future__ import annotations

import pytest
import torch

from imagenet_clean.models import timm_registry

ARCHS = ["digits_vgg", "digits_vgg_wide", "digits_resnet", "digits_squeeze", "digits_mbnet", "digits_dense"]


@pytest.mark.parametrize("arch", ARCHS)
def test_every_family_gives_logits_and_a_4x4_map_for_16_px_digits(arch):
    timm = timm_registry()
    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=11).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert logits.shape == (2, 11)
    assert features.shape[-2:] == (4, 4) and features.shape[1] == model.num_features
    assert model.pretrained_cfg["crop_pct"] == 1.0 and model.pretrained_cfg["input_size"] == (3, 16, 16)


def test_the_wide_vgg_is_the_vgg_at_one_and_a_half_times_the_width():
    timm = timm_registry()
    narrow, wide = timm.create_model("digits_vgg", num_classes=11), timm.create_model("digits_vgg_wide", num_classes=11)
    assert (narrow.num_features, wide.num_features) == (64, 96)
    assert [type(m).__name__ for m in narrow.modules()] == [type(m).__name__ for m in wide.modules()]
    assert sum(p.numel() for p in narrow.parameters()) == 75_355
    assert sum(p.numel() for p in wide.parameters()) == 168_323
    same = timm.create_model("digits_vgg", num_classes=11, width=24)
    assert [p.shape for p in same.parameters()] == [p.shape for p in wide.parameters()]


def test_an_unknown_family_is_refused_naming_the_known_ones():
    from imagenet_clean.models.embedded import DigitsNet

    with pytest.raises(ValueError, match="unknown DigitsNet family 'lenet'.*'vgg'"):
        DigitsNet(family="lenet")
