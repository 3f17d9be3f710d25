"""Batched crops (models/batchaug.py) against timm's per-image transform: training time and accuracy, side by side.

Trains the same model with the same recipe twice per round, alternating the two
data paths, in one process with one thread, and prints per-epoch time, the
ratio and held-out top-1 (given labels) as JSON lines. When the recipe turns
its crops (``train.rotate``), a third run per round trains on the batched path
without the turns and prints what they cost (``turn_cost``: seconds with /
without):

    python benchmarks/bench_batchaug.py [--model vgg] [--epochs 10] [--rounds 2]

Needs the embedded project's data (``dvc repro ingest``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time


def main() -> None:
    import numpy as np
    import torch

    import imagenet_clean.models.train as train_mod
    from imagenet_clean.config import load_params
    from imagenet_clean.io import read_table
    from imagenet_clean.models.factory import data_config
    from imagenet_clean.models.predict import predict_samples

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = load_params(args.params)
    entry = params.models[args.model]
    cfg = dataclasses.replace(params.train, epochs=args.epochs, cache_images=True)
    train = read_table("data/manifests/train.parquet")
    val = read_table("data/manifests/val.parquet")
    train, val = train[train["status"] == "ok"], val[val["status"] == "ok"]
    real = train_mod.fast_path_reason

    def run(path: str, rotate: float = cfg.rotate) -> dict:
        train_mod.fast_path_reason = real if path == "batch" else (lambda *a, **k: "benchmark: per-image")
        t0 = time.perf_counter()
        model = train_mod.train_model(train, params.splits["train"].root, arch_cfg=entry, num_classes=11,
                                      cfg=dataclasses.replace(cfg, rotate=rotate), seed=0)
        seconds = time.perf_counter() - t0
        table = predict_samples(model, data_config(model, entry), params.splits["val"].root, val, batch_size=256, workers=0)
        top1 = np.array([t[0] for t in table["top5"].to_pylist()])
        return {"path": path, "rotate": rotate, "s_per_epoch": round(seconds / args.epochs, 3),
                "val_top1": round(float((top1 == val["label"]).mean()), 4)}

    run("batch")  # warm-up: imports, first allocations
    for r in range(args.rounds):
        batch, per_image = run("batch"), run("per-image")
        for row in (batch, per_image):
            print(json.dumps({"round": r, "model": args.model, "epochs": args.epochs, **row}))
        print(json.dumps({"round": r, "speedup_batch_over_per_image": round(per_image["s_per_epoch"] / batch["s_per_epoch"], 2)}))
        if cfg.rotate:
            upright = run("batch", rotate=0.0)
            print(json.dumps({"round": r, **upright}))
            print(json.dumps({"round": r, "turn_cost": round(batch["s_per_epoch"] / upright["s_per_epoch"], 2)}))


if __name__ == "__main__":
    main()
