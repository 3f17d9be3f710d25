"""Image-quality measures (data/quality.py), the quality stage, and the optional quality rule in the clean stage."""
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imagenet_clean.cleanup.quality import apply_quality_rule, beyond_bounds
from imagenet_clean.config import ConfigError, QualityBound, parse_params
from imagenet_clean.data.quality import MEASURES, QUALITY_SCHEMA, box_measures, measure_split, pixel_measures
from imagenet_clean.io import read_table, write_table
from imagenet_clean.stages import clean as clean_stage
from imagenet_clean.workspace import Workspace
from stage_project import BAD_ROW, CONS_EXEMPT, FakeCam, make_project


def _flat(value=128, size=64):
    return np.full((size, size, 3), value, np.uint8)


def _scene(seed=0, size=64):
    """A sharp, colourful image: a bright square on a dark gradient, with mild grain."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size, 3), np.float32)
    img[...] = np.linspace(30, 90, size)[None, :, None] * np.array([1.0, 0.6, 0.3])
    img[16:48, 16:48] = (220, 180, 40)
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ measures


def test_flat_image_has_no_contrast_blur_information_or_noise():
    m = pixel_measures(_flat(128))
    assert m["contrast"] == 0.0 and m["blur"] == 0.0 and m["entropy"] == 0.0 and m["noise"] == 0.0
    assert m["brightness"] == pytest.approx(128 / 255)
    assert m["grayscale"] == 1.0


def test_brightness_orders_dark_and_light():
    assert pixel_measures(_flat(10))["brightness"] < 0.05 < 0.95 < pixel_measures(_flat(250))["brightness"]


def test_noise_estimate_tracks_added_gaussian_noise():
    rng = np.random.default_rng(1)
    base = _flat(128, 128).astype(np.float32)
    for sigma in (5.0, 20.0):
        noisy = np.clip(base + rng.normal(0, sigma, base.shape[:2])[..., None], 0, 255).astype(np.uint8)
        assert pixel_measures(noisy)["noise"] == pytest.approx(sigma, rel=0.15)  # gray noise: luma keeps sigma


def test_blur_lowers_the_laplacian_variance_and_checkerboard_has_full_entropy_of_two_levels():
    from PIL import ImageFilter

    sharp = _scene()
    blurred = np.asarray(Image.fromarray(sharp).filter(ImageFilter.GaussianBlur(3)))
    assert pixel_measures(blurred)["blur"] < 0.2 * pixel_measures(sharp)["blur"]
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    m = pixel_measures(np.repeat(checker[..., None], 3, axis=2))
    assert m["entropy"] == pytest.approx(1.0) and m["contrast"] == pytest.approx(0.5)


def test_grayscale_is_flagged_and_colour_is_not():
    gray = _scene()[..., :1].repeat(3, axis=2)
    assert pixel_measures(gray)["grayscale"] == 1.0
    assert pixel_measures(_scene())["grayscale"] == 0.0


def test_large_images_are_read_at_a_comparable_scale():
    small = _scene(size=64)
    big = np.asarray(Image.fromarray(small).resize((512, 512), Image.NEAREST))
    m_small, m_big = pixel_measures(small), pixel_measures(big)
    assert m_big["brightness"] == pytest.approx(m_small["brightness"], abs=0.01)
    assert m_big["contrast"] == pytest.approx(m_small["contrast"], abs=0.01)


def test_box_measures():
    m = box_measures([[0, 0, 10, 10], [0, 0, 20, 40]], 40, 80)
    assert m["object_size"] == pytest.approx(800 / 3200) and m["aspect_ratio"] == 0.5
    assert math.isnan(box_measures([], 40, 80)["object_size"])
    assert box_measures([[-10, -10, 100, 100]], 20, 20)["object_size"] == 1.0  # clipped to the image
    assert math.isnan(box_measures([[0, 0, 1, 1]], -1, -1)["aspect_ratio"])  # unreadable header


# ------------------------------------------------------------------ split and stage


def _tree(tmp_path):
    """A 'folders' split of real image files: flat, scene, gray, a truncated JPEG and a JPEG whose body is garbage."""
    root = tmp_path / "raw"
    (root / "a").mkdir(parents=True)
    Image.fromarray(_flat(100)).save(root / "a/flat.png")
    Image.fromarray(_scene()).save(root / "a/scene.png")
    Image.fromarray(_scene()[..., 0]).save(root / "a/gray.JPEG", quality=95)
    good = (root / "a/gray.JPEG").read_bytes()
    (root / "a/truncated.JPEG").write_bytes(good[: len(good) // 2])
    (root / "a/garbage.JPEG").write_bytes(good[:200] + bytes(len(good) - 202) + b"\xff\xd9")
    return root


def test_measure_split_records_unreadable_images_without_figures(tmp_path):
    from imagenet_clean.classes import ClassList
    from imagenet_clean.data.ingest import ingest_split

    root = _tree(tmp_path)
    manifest, _ = ingest_split(root, layout="folders", classes=ClassList(("a",), ("a",)), workers=1, max_pixels=10**8, hash=True)
    q = measure_split(manifest, root, max_pixels=10**8)
    assert q["sample_id"].tolist() == manifest["sample_id"].tolist()
    by = q.set_index("sample_id")
    assert by.loc["a/truncated.JPEG", "status"] == "error" and "truncated" in by.loc["a/truncated.JPEG", "reason"]
    assert by.loc["a/garbage.JPEG", "status"] == "error" and "cannot decode" in by.loc["a/garbage.JPEG", "reason"]
    for sid in ("a/truncated.JPEG", "a/garbage.JPEG"):
        assert by.loc[sid, list(MEASURES)].isna().all()
    assert by.loc["a/flat.png", "contrast"] == 0.0 and by.loc["a/scene.png", "contrast"] > 0.1
    assert by.loc["a/gray.JPEG", "grayscale"] == 1.0 and by.loc["a/scene.png", "grayscale"] == 0.0
    assert (by.loc[["a/flat.png", "a/scene.png"], "aspect_ratio"] == 1.0).all()
    assert by.loc[["a/flat.png", "a/scene.png", "a/gray.JPEG"], "status"].eq("ok").all()


def test_quality_stage_writes_one_row_per_manifest_row_and_is_deterministic(tmp_path):
    from imagenet_clean.classes import ClassList, write_classes
    from imagenet_clean.stages import ingest as ingest_stage
    from imagenet_clean.stages import quality as quality_stage

    root = _tree(tmp_path)
    write_classes(tmp_path / "classes.tsv", ClassList(("a",), ("a",)))
    params = parse_params({"dataset": {"classes": str(tmp_path / "classes.tsv")}, "ingest": {"workers": 1},
                           "splits": {"val": {"root": str(root), "layout": "folders"}}})
    ws = Workspace(tmp_path)
    ingest_stage.run(params, ws, "val")
    stats = quality_stage.run(params, ws, "val")
    assert (stats["n"], stats["ok"], stats["error"]) == (5, 3, 2)
    first = ws.quality("val").read_bytes()
    quality_stage.run(params, ws, "val")
    assert ws.quality("val").read_bytes() == first
    import pyarrow.parquet as pq

    assert pq.read_schema(ws.quality("val")).names == QUALITY_SCHEMA.names
    assert quality_stage.run(params, ws, "v2")["skipped"] and len(read_table(ws.quality("v2"))) == 0


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("bound, msg", [
    ({"contrast": {"min": 0.7}}, "quality.thresholds.contrast.min: 0.7 is out of range"),
    ({"object_size": {"min": -0.1}}, "quality.thresholds.object_size.min: -0.1 is out of range"),
    ({"sharpness": {"min": 1}}, "quality.thresholds: unknown quality measure|quality.thresholds.sharpness: unknown"),
    ({"noise": {"min": 5, "max": 1}}, "min 5 is above max 1"),
])
def test_bad_quality_thresholds_are_one_line_config_errors(bound, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        parse_params({"quality": {"thresholds": bound}})
    assert "\n" not in str(e.value)


def test_enabled_without_bounds_is_refused_and_defaults_are_off():
    with pytest.raises(ConfigError, match="sets no bound"):
        parse_params({"quality": {"enabled": True}})
    assert parse_params({}).quality.enabled is False


def test_init_imagenet_writes_the_rule_off_where_the_embedded_default_has_it_on(tmp_path):
    """The embedded default (the run every user sees first) has the quality and label-set rules on;
    ``init imagenet`` writes the paper's method: both off, and no colour thumbnails for duplicates."""
    import yaml

    from imagenet_clean.presets import embedded_params_text, imagenet_params

    embedded = yaml.safe_load(embedded_params_text())
    assert embedded["quality"]["enabled"] is True and embedded["label_sets"]["enabled"] is True
    v2 = tmp_path / "v2" / "0"
    v2.mkdir(parents=True)
    Image.fromarray(_scene()).save(v2 / "a.jpeg")
    p = imagenet_params(v2=tmp_path / "v2", models=["efficientnet_lite0"])
    assert p["quality"]["enabled"] is False and p["label_sets"]["enabled"] is False
    assert p["duplicates"]["pixels"] == 0 and p["duplicates"]["remove"] is False


# ------------------------------------------------------------------ the rule


def test_beyond_bounds_names_each_measure_and_ignores_missing_figures():
    f = pd.DataFrame({"contrast": [0.01, 0.2, np.nan], "noise": [30.0, 0.5, 40.0]})
    why = beyond_bounds(f, {"contrast": QualityBound(min=0.05), "noise": QualityBound(max=20.0)})
    assert why == ["contrast 0.01 < min 0.05; noise 30 > max 20", "", "noise 40 > max 20"]


def _quality_file(ws, manifest, low_contrast: list[int]):
    n = len(manifest)
    cols = {m: np.full(n, 0.5 if m != "contrast" else 0.2) for m in MEASURES}
    cols["contrast"][low_contrast] = 0.01
    df = pd.DataFrame({"sample_id": manifest["sample_id"], "status": "ok", "reason": "", **cols})
    write_table(ws.quality("val"), df[QUALITY_SCHEMA.names])


def _clean(tmp_path, **over):
    params, manifest, _ = make_project(tmp_path, **over)
    ws = Workspace(tmp_path)
    return params, manifest, ws


def test_rule_off_gives_byte_identical_outputs_even_with_a_quality_file(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, over in ((a, {}), (b, {"quality": {"enabled": False, "thresholds": {"contrast": {"min": 0.05}}}})):
        d.mkdir()
        params, manifest, ws = _clean(d, **over)
        if over:
            _quality_file(ws, manifest, list(range(20, 40)))
        clean_stage.run(params, ws, "val", find_exemptions=FakeCam(), load_model=lambda n, f: None)
    for out in ("data/decisions/val.parquet", "data/clean/val.parquet", "data/changes/val.csv", "metrics/cleanup/val.json"):
        assert (a / out).read_bytes() == (b / out).read_bytes(), out


def test_rule_on_removes_beyond_bounds_but_never_a_fix_and_a_verdict_wins(tmp_path):
    params0, manifest, ws = _clean(tmp_path)
    clean_stage.run(params0, ws, "val", find_exemptions=FakeCam(), load_model=lambda n, f: None)
    before = read_table(ws.decisions("val"))
    fixed = int(np.flatnonzero(before["action"] == "fix")[0])
    plain = [(a == "keep" and len(r) == 0) for a, r in zip(before["action"], before["rules"])]
    kept = [int(i) for i in np.flatnonzero(plain)[:3]]
    assert list(before.loc[CONS_EXEMPT, "rules"]) == ["consensus", "cam_exempt"]
    _quality_file(ws, manifest, [fixed, BAD_ROW, CONS_EXEMPT, *kept])
    sid = manifest["sample_id"]
    (tmp_path / "reviews").mkdir()
    (tmp_path / "reviews/val.csv").write_text("sample_id,content_hash,verdict,wnid,reviewer,time,note\n"
                                              f"{sid[kept[2]]},{manifest['content_hash'][kept[2]]},reject,,me,,\n")
    params, _, _ = make_project(tmp_path, quality={"enabled": True, "thresholds": {"contrast": {"min": 0.05}}})
    metrics = clean_stage.run(params, ws, "val", find_exemptions=FakeCam(), load_model=lambda n, f: None)
    dec = read_table(ws.decisions("val"))
    for i in kept[:2]:
        assert dec.loc[i, "action"] == "remove" and list(dec.loc[i, "rules"]) == ["quality"]
        assert dec.loc[i, "reason"] == "image quality: contrast 0.01 < min 0.05"
    assert dec.loc[kept[2], "action"] == "keep" and list(dec.loc[kept[2], "rules"]) == ["quality", "human"]  # the verdict wins
    assert dec.loc[CONS_EXEMPT, "action"] == "remove"  # a CAM exemption does not outweigh the image's quality
    assert list(dec.loc[CONS_EXEMPT, "rules"]) == ["consensus", "cam_exempt", "quality"]
    assert dec.loc[fixed, "action"] == "fix" and "quality" not in list(dec.loc[fixed, "rules"])  # fixes are never removed
    assert list(dec.loc[BAD_ROW, "rules"]) == ["unreadable"] and dec.loc[BAD_ROW, "reason"] == "truncated JPEG"
    others = [i for i in range(len(dec)) if i not in (fixed, BAD_ROW, CONS_EXEMPT, *kept)]
    assert dec.loc[others, "action"].tolist() == before.loc[others, "action"].tolist()
    assert metrics["remove_quality"] == 4 and metrics["remove"] == (before["action"] == "remove").sum() + 3
    changes = (tmp_path / "data/changes/val.csv").read_text()
    assert "image quality: contrast 0.01 < min 0.05" in changes


def test_rule_on_refuses_a_missing_or_stale_quality_file(tmp_path):
    params, manifest, ws = _clean(tmp_path, quality={"enabled": True, "thresholds": {"contrast": {"min": 0.05}}})
    with pytest.raises(FileNotFoundError, match="imagenet-clean quality --split val"):
        clean_stage.run(params, ws, "val", cam=False)
    _quality_file(ws, manifest.iloc[:-1], [])
    with pytest.raises(ValueError, match="stale"):
        clean_stage.run(params, ws, "val", cam=False)


def test_apply_quality_rule_keeps_removals_of_other_rules_and_adds_evidence():
    dec = pd.DataFrame({"sample_id": ["x", "y"], "action": ["remove", "keep"], "reason": ["", ""],
                        "rules": pd.Series([["consensus"], []], dtype=object)})
    fig = pd.DataFrame({"sample_id": ["y", "z", "x"], "noise": [1.0, 99.0, 50.0]})  # z: a row a later round no longer cleans
    out = apply_quality_rule(dec, fig, {"noise": QualityBound(max=20.0)})
    assert out["action"].tolist() == ["remove", "keep"]
    assert list(out.loc[0, "rules"]) == ["consensus", "quality"] and out.loc[0, "reason"] == "image quality: noise 50 > max 20"
    assert list(dec.loc[0, "rules"]) == ["consensus"]  # the input is not changed
