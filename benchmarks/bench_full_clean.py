"""Full-size clean: ``imagenet-clean clean --split train --no-cam`` at 1,281,167 x 1000 x M models vs bare cleanlab.

Usage::

    python benchmarks/bench_full_ingest.py /work/bench18/tree /work/bench18/proj       # the manifest
    python benchmarks/make_predictions.py /work/bench18/tree /work/bench18/proj/data/predictions/train \\
        --models efficientnet_lite0 efficientnet_lite1 efficientnet_lite2              # float16 out-of-fold files
    python benchmarks/bench_full_clean.py /work/bench18/proj [--models 1 3] [--bare]

Each measurement is a fresh process (peak RSS of that process, wall and CPU
time): the clean stage with the first M models of params.yaml (M from
``--models``: two values give the per-model slope, extrapolated to 8 and 10
models), and with ``--bare`` the bare cleanlab baseline on the same matrices:
read each model's float16 probabilities as float32 (as any caller must) and
call ``cleanlab.filter.find_label_issues(filter_by="prune_by_noise_rate")``,
one model per process (cleanlab keeps a by-class copy of the last matrix in a
module global, which the clean stage drops). Also printed: the disk the outputs take.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from fullsize import CLI, du_bytes, run_measured

BARE = r"""
import json, sys, time, resource
import numpy as np, pyarrow.parquet as pq
from cleanlab.filter import find_label_issues
labels = pq.read_table(sys.argv[1], columns=["label"])["label"].to_numpy()
t_read = t_cl = 0.0
issues = []
for path in sys.argv[2:]:
    t0 = time.perf_counter()
    col = pq.read_table(path, columns=["probs"])["probs"].combine_chunks()
    probs = col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1).astype(np.float32)
    del col
    t1 = time.perf_counter()
    mask = find_label_issues(labels, probs, filter_by="prune_by_noise_rate", frac_noise=1.0, n_jobs=1, verbose=False)
    t2 = time.perf_counter()
    t_read, t_cl = t_read + t1 - t0, t_cl + t2 - t1
    issues.append(int(mask.sum()))
    del probs
print(json.dumps({"read_s": round(t_read, 1), "cleanlab_s": round(t_cl, 1), "issues": issues}))
"""


def _restrict_models(project: Path, m: int) -> Path:
    """A copy of params.yaml listing only the first ``m`` models (thresholds resolve against |M|)."""
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text())
    names = list(params["models"])[:m]
    params["models"] = {n: params["models"][n] for n in names}
    out = project / f"params_{m}.yaml"
    out.write_text(yaml.safe_dump(params, sort_keys=False))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--models", type=int, nargs="+", default=[3])
    ap.add_argument("--bare", action="store_true", help="also time bare cleanlab on the same matrices")
    ap.add_argument("--skip-clean", action="store_true", help="only the bare cleanlab baseline")
    args = ap.parse_args()
    project = args.project
    res: dict = {"runs": {}}
    preds = sorted((project / "data/predictions/train").glob("*.parquet"))
    res["prediction_files_gb"] = round(sum(p.stat().st_size for p in preds) / 2**30, 2)
    for m in [] if args.skip_clean else args.models:
        params = _restrict_models(project, m)
        r = run_measured(CLI + ["clean", "--split", "train", "--no-cam", "--params", str(params)], cwd=project)
        metrics = json.loads((project / "metrics/cleanup/train.json").read_text())
        outs = [project / "data/decisions/train.parquet", project / "data/clean/train.parquet", project / "data/changes/train.csv"]
        res["runs"][m] = {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "max_rss_mb": r["max_rss_mb"],
                          "fix": metrics["fix"], "remove": metrics["remove"], "issues": metrics["issues_per_model"],
                          "outputs_mb": round(sum(p.stat().st_size for p in outs) / 2**20, 1)}
        print(f"clean, {m} model(s): {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU, peak RSS {r['max_rss_mb']} MB; "
              f"fix {metrics['fix']}, remove {metrics['remove']}; outputs {res['runs'][m]['outputs_mb']} MB", flush=True)
        shutil.copy(project / "data/decisions/train.parquet", project / f"decisions_{m}.parquet")
    if len(args.models) >= 2:  # CPU seconds: wall time on a shared machine follows the neighbours' load
        a, b = sorted(args.models)[0], sorted(args.models)[-1]
        slope = (res["runs"][b]["cpu_s"] - res["runs"][a]["cpu_s"]) / (b - a)
        base = res["runs"][a]["cpu_s"] - slope * a
        res["per_model_cpu_s"] = round(slope, 1)
        res["extrapolated_cpu_min"] = {m: round((base + slope * m) / 60, 1) for m in (8, 10)}
        print(f"per model {slope:.0f} CPU s; 8 models ~ {res['extrapolated_cpu_min'][8]} CPU min, "
              f"10 models ~ {res['extrapolated_cpu_min'][10]} CPU min (peak RSS does not grow with M: one model at a time)")
    if args.bare:  # one process per model: bare cleanlab keeps a by-class copy of the last matrix in a module global
        m = max(args.models)
        runs = []
        for name in _model_names(project)[:m]:
            f = str(project / "data/predictions/train" / f"{name}.parquet")
            r = run_measured([sys.executable, "-c", BARE, str(project / "data/manifests/train.parquet"), f], cwd=project)
            runs.append((r, json.loads(r["stdout"].strip().splitlines()[-1])))
            print(f"bare cleanlab {name}: {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU "
                  f"({runs[-1][1]['cleanlab_s']} s in find_label_issues), peak RSS {r['max_rss_mb']} MB", flush=True)
        bare = {"models": m, "wall_s": round(sum(r["wall_s"] for r, _ in runs), 1), "cpu_s": round(sum(r["cpu_s"] for r, _ in runs), 1),
                "max_rss_mb": max(r["max_rss_mb"] for r, _ in runs), "cleanlab_s": round(sum(b["cleanlab_s"] for _, b in runs), 1),
                "read_s": round(sum(b["read_s"] for _, b in runs), 1), "issues": [b["issues"][0] for _, b in runs]}
        res["bare_cleanlab"] = bare
        print(f"bare cleanlab, {m} models: {bare['wall_s']:.0f} s wall, {bare['cpu_s']:.0f} s CPU "
              f"({bare['cleanlab_s']} s in find_label_issues, {bare['read_s']} s reading), peak RSS {bare['max_rss_mb']} MB; "
              f"issues {bare['issues']}")
        if m in res["runs"]:
            st = res["runs"][m]
            res["issues_equal"] = list(st["issues"].values()) == bare["issues"]
            print(f"clean / bare: CPU {st['cpu_s'] / bare['cpu_s']:.2f}x, wall {st['wall_s'] / bare['wall_s']:.2f}x, "
                  f"peak RSS {st['max_rss_mb'] / bare['max_rss_mb']:.2f}x; cleanlab issues per model equal: {res['issues_equal']}")
    res["project_disk_gb"] = round(du_bytes(project) / 2**30, 2)
    print(json.dumps(res))


def _model_names(project: Path) -> list[str]:
    import yaml

    return list(yaml.safe_load((project / "params.yaml").read_text())["models"])


if __name__ == "__main__":
    main()
