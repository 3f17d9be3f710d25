"""Size the embedded default's training: time and held-out top-1 per model.

Trains each model of ``params.yaml`` (or ``--arch`` entries) on a training
manifest with the ``train`` recipe and reports wall time, training throughput
and top-1 on a held-out manifest, as one JSON line per model.

    python benchmarks/bench_train.py --train data/manifests/train.parquet \
        --val data/manifests/val.parquet [--params params.yaml] [--model NAME ...] [--set epochs=6 ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import pandas as pd
import yaml


def _root(manifest: str, df: pd.DataFrame, given: str | None) -> str:
    if given:
        return given
    from imagenet_clean.io import read_metadata

    return read_metadata(manifest).get("root", ".")


def main() -> None:
    import torch

    from imagenet_clean.config import load_params
    from imagenet_clean.models.datasets import ImageSamples, make_loader
    from imagenet_clean.models.train import train_model
    from imagenet_clean.models.transforms import eval_transform

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--train-root")
    ap.add_argument("--val-root")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", action="append", help="model names from params (default: all)")
    ap.add_argument("--set", action="append", default=[], help="train.KEY=VALUE overrides (YAML values)")
    ap.add_argument("--num-classes", type=int)
    args = ap.parse_args()

    params = load_params(args.params)
    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    cfg = dataclasses.replace(params.train, **overrides)
    tr = pd.read_parquet(args.train)
    va = pd.read_parquet(args.val)
    tr, va = tr[tr.status == "ok"], va[va.status == "ok"]
    k = args.num_classes or int(max(tr.label.max(), va.label.max()) + 1)
    names = args.model or list(params.models)
    for name in names:
        mc = params.models[name]
        t0 = time.perf_counter()
        model = train_model(tr[["path", "label"]], _root(args.train, tr, args.train_root), arch_cfg=mc, num_classes=k, cfg=cfg,
                            seed=params.seed)
        t_train = time.perf_counter() - t0
        from imagenet_clean.models.factory import data_config

        data_cfg = data_config(model, mc)
        ds = ImageSamples.from_frame(va, _root(args.val, va, args.val_root), transform=eval_transform(data_cfg))
        correct = n = 0
        t1 = time.perf_counter()
        with torch.inference_mode():
            for x, y, _, _ in make_loader(ds, batch_size=128, shuffle=False, seed=0):
                p = model(x.contiguous(memory_format=torch.channels_last)).argmax(1)
                correct += int((p == y).sum())
                n += len(y)
        print(json.dumps({
            "model": name, "arch": mc.arch, "kwargs": mc.kwargs, "input_size": data_cfg["input_size"],
            "epochs": cfg.epochs, "batch_size": cfg.batch_size, "bf16": cfg.bf16,
            "train_s": round(t_train, 1), "train_img_per_s": round(cfg.epochs * len(tr) / t_train, 1),
            "eval_s": round(time.perf_counter() - t1, 1), "val_top1": round(correct / max(n, 1), 4),
        }), flush=True)


if __name__ == "__main__":
    main()
