"""Explainability exemption: box/heatmap geometry, CAM target layers, lazy == exhaustive, cache, bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cam_models import TinyNet, load_tiny
from imagenet_clean.cleanup import cam as cam_mod
from imagenet_clean.cleanup.cam import compute_heatmaps, find_exemptions, find_target_layer
from imagenet_clean.cleanup.camgeom import (
    box_heat_score,
    boxes_to_input,
    eval_geometry,
    heatmap_to_original,
    input_to_original,
    original_to_input,
)
from imagenet_clean.config import CamConfig

GEOMETRIES = [  # (data_cfg, width, height)
    (dict(input_size=(3, 32, 32), crop_pct=0.875), 80, 50),  # landscape, crop cuts both ends
    (dict(input_size=(3, 32, 32), crop_pct=0.875), 47, 91),  # portrait, odd sizes
    (dict(input_size=(3, 24, 40), crop_pct=0.9), 100, 60),  # non-square input: ResizeKeepRatio
    (dict(input_size=(3, 40, 24), crop_pct=0.8), 60, 70),
    (dict(input_size=(3, 32, 32), crop_pct=1.0), 33, 33),  # no crop
    (dict(input_size=(3, 32, 48), crop_pct=0.95, crop_mode="squash"), 90, 40),
    (dict(input_size=(3, 32, 32), crop_pct=1.0, crop_mode="border"), 90, 40),  # padded top and bottom
    (dict(input_size=(3, 16, 16), crop_pct=0.875), 9, 7),  # upsampling a tiny image
]


def _timm_eval(data_cfg, img, interpolation="nearest"):
    import timm.data

    tf = timm.data.create_transform(**data_cfg, interpolation=interpolation, mean=(0, 0, 0), std=(1, 1, 1),
                                    is_training=False)
    return tf(img).numpy()


@pytest.mark.parametrize("data_cfg,width,height", GEOMETRIES)
def test_geometry_matches_timm_eval_transform_pixel_for_pixel(data_cfg, width, height):
    # encode each original pixel's (x, y) in R and G; timm's real transform (nearest) shows where it lands
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    code = np.stack([xs + 1, ys + 1, np.full_like(xs, 255)], axis=-1).astype(np.uint8)
    out = np.rint(_timm_eval(data_cfg, Image.fromarray(code)) * 255).astype(int)
    g = eval_geometry(data_cfg, width, height)
    assert out.shape[1:] == (g.input_h, g.input_w)
    inside = out[2] == 255  # padding (border mode) is 0 in the blue channel
    v, u = np.nonzero(inside)
    cont = input_to_original(np.stack([u + 0.5, v + 0.5], axis=-1), g)  # where each input pixel centre comes from
    for axis in (0, 1):
        wrong = np.floor(cont[:, axis]).astype(int) != out[axis][inside] - 1
        # PIL may round an exact tie (centre on a pixel edge) down; nothing else may differ
        tie = np.abs(cont[:, axis] - np.rint(cont[:, axis])) < 1e-6
        assert not (wrong & ~tie).any()
    if data_cfg.get("crop_mode") != "border":
        assert inside.all()


@pytest.mark.parametrize("data_cfg,width,height", GEOMETRIES)
def test_hot_square_on_the_mapped_box_scores_one_and_shifted_scores_zero(data_cfg, width, height):
    g = eval_geometry(data_cfg, width, height)
    box = [width * 0.3, height * 0.35, width * 0.6, height * 0.7]  # well inside the crop
    u0, v0, u1, v1 = boxes_to_input([box], g)[0]
    hm = np.zeros((g.input_h, g.input_w), np.float32)
    hm[int(np.floor(v0)):int(np.ceil(v1)), int(np.floor(u0)):int(np.ceil(u1))] = 1.0
    assert box_heat_score(hm, [box], g, heat=0.75) == 1.0
    assert box_heat_score(hm * 0.74, [box], g, heat=0.75) == 0.0  # not hot enough
    shifted = np.zeros_like(hm)
    shifted[int(np.floor(v0)):int(np.ceil(v1)), :max(0, int(np.floor(u0)) - 1)] = 1.0  # left of the box
    shifted[:max(0, int(np.floor(v0)) - 1), :] = 1.0  # above it
    assert box_heat_score(shifted, [box], g, heat=0.75) == 0.0


def test_real_timm_resize_of_a_box_image_is_the_box_heatmap():
    # the heatmap is the image of a white box pushed through timm's bicubic eval transform
    data_cfg = dict(input_size=(3, 48, 64), crop_pct=0.875)
    w, h, box = 150, 100, [60, 30, 100, 70]
    img = np.zeros((h, w, 3), np.uint8)
    img[30:70, 60:100] = 255
    hm = _timm_eval(data_cfg, Image.fromarray(img), interpolation="bicubic")[0]
    g = eval_geometry(data_cfg, w, h)
    assert box_heat_score(hm, [box], g, heat=0.5) > 0.95
    assert box_heat_score(hm, [[10, 30, 40, 70]], g, heat=0.5) == 0.0


def test_box_pixels_cut_by_the_crop_count_as_not_hot():
    # 200x100 -> shorter edge 32/0.875=36: resize to 72x36, crop 32x32 at (20, 2); the crop sees original
    # x in [20/0.36, 52/0.36) = [55.6, 144.4) and y in [5.6, 94.4): pixel centres 56..143 and 6..93
    g = eval_geometry(dict(input_size=(3, 32, 32), crop_pct=0.875), 200, 100)
    assert (g.resized_w, g.resized_h, g.left, g.top) == (72, 36, 20, 2)
    hm = np.ones((32, 32), np.float32)
    assert box_heat_score(hm, [[0, 0, 200, 100]], g) == 88 * 88 / (200 * 100)
    assert box_heat_score(hm, [[0, 0, 40, 100]], g) == 0.0  # entirely cut away
    # partly outside the image: clipped to it, so the visible half counts
    assert box_heat_score(hm, [[100, 50, 300, 300]], g) == pytest.approx(box_heat_score(hm, [[100, 50, 200, 100]], g))
    assert box_heat_score(hm, [[300, 300, 400, 400]], g) == 0.0
    assert box_heat_score(hm, [], g) == 0.0


def test_union_of_boxes_counts_overlap_once():
    g = eval_geometry(dict(input_size=(3, 20, 20), crop_pct=1.0), 20, 20)  # identity geometry
    hm = np.zeros((20, 20), np.float32)
    hm[:, :10] = 1.0
    # boxes: [0,10)x[0,10) hot (100 px), [5,15)x[0,10) half hot; union 150 px, 100 hot
    assert box_heat_score(hm, [[0, 0, 10, 10], [5, 0, 15, 10]], g) == pytest.approx(100 / 150)
    assert box_heat_score(hm, [0, 0, 10, 10], g) == 1.0  # a single box


def test_mapping_round_trips_and_heatmap_resamples_to_the_original_frame():
    g = eval_geometry(dict(input_size=(3, 24, 40), crop_pct=0.9), 100, 60)
    pts = np.random.default_rng(0).uniform(0, 60, size=(10, 2))
    np.testing.assert_allclose(input_to_original(original_to_input(pts, g), g), pts)
    big = heatmap_to_original(np.ones((24, 40), np.float32), g, fill=-1.0)
    assert big.shape == (60, 100) and set(np.unique(big)) <= {1.0, -1.0}


def test_bad_geometry_inputs_raise_with_values():
    with pytest.raises(ValueError, match="crop_mode 'zoom'"):
        eval_geometry(dict(input_size=(3, 8, 8), crop_mode="zoom"), 10, 10)
    with pytest.raises(ValueError, match="width=0"):
        eval_geometry(dict(input_size=(3, 8, 8)), 0, 10)
    g = eval_geometry(dict(input_size=(3, 8, 8)), 10, 10)
    with pytest.raises(ValueError, match=r"\(9, 8\)"):
        box_heat_score(np.zeros((9, 8)), [[0, 0, 1, 1]], g)
    with pytest.raises(ValueError, match="boxes"):
        box_heat_score(np.zeros((8, 8)), [[0, 0, 1]], g)


# ------------------------------------------------------------------ CAMs on models


@pytest.mark.parametrize("arch,layer", [("resnet10t", "layer4"), ("mobilenetv3_small_050", "blocks"),
                                        ("lcnet_050", "blocks"), ("efficientnet_lite0", "bn2"),
                                        ("test_efficientnet", "bn2"), ("test_convnext", "norm_pre")])
def test_target_layer_is_the_last_feature_map_and_all_methods_run(arch, layer):
    import timm

    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=4).eval()
    assert find_target_layer(model, input_size=(3, 64, 64)) == layer
    x = torch.randn(2, 3, 64, 64)
    for method in ("gradcam", "gradcam++"):
        hm = compute_heatmaps(model, layer, x, [1, 3], method=method)
        assert hm.shape == (2, 64, 64) and hm.min() >= 0 and hm.max() <= 1 + 1e-6


def test_vision_transformer_has_no_conv_stage():
    import timm

    with pytest.raises(ValueError, match="register_target_layer"):
        find_target_layer(timm.create_model("test_vit"), input_size=(3, 64, 64))


def _loader(calls=None):
    def load(name, fold):
        if calls is not None:
            calls.append((name, fold))
        return load_tiny(name, fold)
    return load


def _candidates(tmp_path, n=10, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        w, h = int(rng.integers(30, 90)), int(rng.integers(30, 90))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
        x0, y0 = rng.uniform(0, w * 0.5), rng.uniform(0, h * 0.5)
        box = [x0, y0, x0 + rng.uniform(5, w * 0.5), y0 + rng.uniform(5, h * 0.5)]
        k = int(rng.integers(1, 4))
        models = list(rng.permutation(["a", "b", "c"])[:k])
        rows.append(dict(sample_id=f"s{i}", path=f"img{i}.png", label=int(rng.integers(0, 5)), boxes=[box],
                         width=w, height=h, content_hash=f"h{i}", models=models,
                         folds=[int(f) for f in rng.integers(-1, 2, size=k)]))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("heat,pass_score", [(0.75, 0.01), (0.5, 0.2), (0.9, 0.05), (0.3, 0.6)])
def test_lazy_decisions_equal_computing_every_method_of_every_model(tmp_path, heat, pass_score):
    cands = _candidates(tmp_path, n=12, seed=int(heat * 100))
    cfg = CamConfig(heat=heat, pass_score=pass_score, batch_size=4)
    lazy = find_exemptions(cands, root=tmp_path, load_model=_loader(), cfg=cfg, cache_dir=None)
    full = find_exemptions(cands, root=tmp_path, load_model=_loader(), cfg=cfg, cache_dir=None, lazy=False)
    assert lazy.sample_id.tolist() == cands.sample_id.tolist()
    assert lazy.exempted_by.tolist() == full.exempted_by.tolist()
    n_lazy = n_full = 0
    for a, b in zip(lazy.cam_scores.map(json.loads), full.cam_scores.map(json.loads)):
        for model, scores in a.items():  # every lazy score is the exhaustive one
            assert scores == {m: b[model][m] for m in scores}
        n_lazy += sum(map(len, a.values()))
        n_full += sum(map(len, b.values()))
        assert all(len(s) == 3 for s in b.values())
    assert n_lazy < n_full


def test_lazy_path_skips_scorecam_when_gradcams_agree_and_stops_at_first_exempting_model(tmp_path):
    cands = _candidates(tmp_path, n=12, seed=1)
    everything = CamConfig(heat=0.0, pass_score=0.0)  # every method passes: first model exempts on 2 methods
    out = find_exemptions(cands, root=tmp_path, load_model=_loader(), cfg=everything, cache_dir=None)
    for row, (_, c) in zip(out.itertuples(), cands.iterrows()):
        assert row.exempted_by == c.models[0]
        scores = json.loads(row.cam_scores)
        assert list(scores) == [c.models[0]] and set(scores[c.models[0]]) == {"gradcam", "gradcam++"}
    nothing = CamConfig(heat=1.01, pass_score=0.5)  # nothing passes: no Score-CAM, every model tried
    out = find_exemptions(cands, root=tmp_path, load_model=_loader(), cfg=nothing, cache_dir=None)
    assert (out.exempted_by == "").all()
    for row, (_, c) in zip(out.itertuples(), cands.iterrows()):
        assert sorted(json.loads(row.cam_scores)) == sorted(c.models)
        assert all(set(s) == {"gradcam", "gradcam++"} for s in json.loads(row.cam_scores).values())


def test_cache_makes_a_rerun_compute_nothing_and_a_new_pass_score_only_what_it_needs(tmp_path, monkeypatch):
    cands = _candidates(tmp_path, n=8, seed=2)
    computed = []
    real = cam_mod.compute_heatmaps

    def counting(model, layer, x, labels, **k):
        computed.append((k["method"], len(x)))
        return real(model, layer, x, labels, **k)

    monkeypatch.setattr(cam_mod, "compute_heatmaps", counting)
    cfg = CamConfig(heat=0.5, pass_score=0.2, batch_size=3)
    first = find_exemptions(cands, root=tmp_path, load_model=_loader(), cfg=cfg, cache_dir=tmp_path / "cache")
    assert computed and (tmp_path / "cache" / "cam_scores.sqlite").is_file()
    computed.clear()
    again = find_exemptions(cands, root=tmp_path, load_model=_loader(), cfg=cfg, cache_dir=tmp_path / "cache")
    assert computed == [] and again.equals(first)
    full = find_exemptions(cands, root=tmp_path, load_model=_loader(), cfg=CamConfig(heat=0.5, pass_score=0.3),
                           cache_dir=tmp_path / "cache", lazy=False)
    n_first = sum(sum(map(len, json.loads(s).values())) for s in first.cam_scores)
    n_full = sum(sum(map(len, json.loads(s).values())) for s in full.cam_scores)
    assert sum(n for _, n in computed) == n_full - n_first  # only the scores not yet cached


def test_each_model_is_loaded_once_per_round(tmp_path):
    cands = _candidates(tmp_path, n=10, seed=3)
    calls = []
    find_exemptions(cands, root=tmp_path, load_model=_loader(calls), cfg=CamConfig(heat=1.01), cache_dir=None)
    rounds = max(map(len, cands.models))
    assert len(calls) <= rounds * len(set(calls))
    first_round = {(m[0], f[0]) for m, f in zip(cands.models, cands.folds)}
    assert set(calls[:len(first_round)]) == first_round


def test_frozen_weights_and_no_grad_context_still_give_gradcams():
    model = TinyNet(seed=0).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        hm = compute_heatmaps(model, "stage", torch.randn(2, 3, 32, 32), [0, 1], method="gradcam++")
    assert hm.shape == (2, 32, 32) and hm.max() > 0
    assert all(not p.requires_grad for p in model.parameters())


def test_scorecam_matches_per_image_and_is_deterministic():
    model = TinyNet(seed=1).eval()
    x = torch.randn(3, 3, 32, 32)
    a = compute_heatmaps(model, "stage", x, [0, 1, 2], method="scorecam", batch_size=4)
    b = compute_heatmaps(model, "stage", x[1:2], [1], method="scorecam", batch_size=7)
    np.testing.assert_allclose(a[1], b[0], atol=1e-6)


# ------------------------------------------------------------------ bad input


def test_unreadable_missing_boxless_and_outside_box_candidates_get_a_reason(tmp_path):
    cands = _candidates(tmp_path, n=5, seed=4)
    (tmp_path / "img0.png").write_bytes(b"not an image")
    (tmp_path / "img1.png").unlink()
    cands.at[2, "boxes"] = []
    cands.at[3, "boxes"] = [[500.0, 500.0, 600.0, 600.0]]
    out = find_exemptions(cands, root=tmp_path, load_model=_loader(), cfg=CamConfig(heat=0.0, pass_score=0.0),
                          cache_dir=None)
    reasons = [json.loads(s).get("error", "") for s in out.cam_scores]
    assert "img0.png" in reasons[0] and "img1.png" in reasons[1]
    assert reasons[2] == "no bounding box" and "outside" in reasons[3]
    assert out.exempted_by.tolist()[:4] == ["", "", "", ""] and out.exempted_by[4] != ""


def test_candidate_with_no_model_is_not_exempted(tmp_path):
    cands = _candidates(tmp_path, n=2, seed=5)
    cands.at[0, "models"], cands.at[0, "folds"] = [], []
    out = find_exemptions(cands, root=tmp_path, load_model=_loader(), cfg=CamConfig(heat=0.0), cache_dir=None)
    assert out.exempted_by[0] == "" and out.cam_scores[0] == "{}"


def test_boxes_in_manifest_pixels_follow_a_resized_decode(tmp_path):
    # manifest says 200x100 but the file decodes at 100x50 (e.g. JPEG draft): boxes are rescaled
    img = np.zeros((50, 100, 3), np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    cands = pd.DataFrame([dict(sample_id="a", path="a.png", label=0, boxes=[[100.0, 50.0, 200.0, 100.0]], width=200,
                               height=100, content_hash=None, models=["a"], folds=[-1])])
    out = find_exemptions(cands, root=tmp_path, load_model=_loader(), cfg=CamConfig(heat=0.0, pass_score=0.0),
                          cache_dir=None)
    assert out.exempted_by[0] == "a"  # the box was not judged outside the 100x50 image


def test_bad_candidates_and_config_raise_with_values(tmp_path):
    cands = _candidates(tmp_path, n=2, seed=6)
    with pytest.raises(ValueError, match="content_hash"):
        find_exemptions(cands.drop(columns="content_hash"), root=tmp_path, load_model=_loader(), cfg=CamConfig(),
                        cache_dir=None)
    bad = cands.copy()
    bad.at[1, "folds"] = [0, 0, 0, 0]
    with pytest.raises(ValueError, match="row 1 .*'s1'"):
        find_exemptions(bad, root=tmp_path, load_model=_loader(), cfg=CamConfig(), cache_dir=None)
    with pytest.raises(ValueError, match="'lime'"):
        find_exemptions(cands, root=tmp_path, load_model=_loader(), cfg=CamConfig(methods=("gradcam", "lime")),
                        cache_dir=None)
    bad = cands.copy()
    bad.at[0, "label"] = 7
    with pytest.raises(ValueError, match="'s0', 7"):
        find_exemptions(bad, root=tmp_path, load_model=_loader(), cfg=CamConfig(), cache_dir=None)
    with pytest.raises(ValueError, match="min_methods=4"):
        find_exemptions(cands, root=tmp_path, load_model=_loader(), cfg=CamConfig(min_methods=4), cache_dir=None)
