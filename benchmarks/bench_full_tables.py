"""Full-size table 1: ``imagenet-clean tables`` on a 50,000-image validation split and a 10,000-image V2 split, 1000 classes, 3 models.

Usage::

    python benchmarks/bench_full_tables.py /work/bench18b/tables      # trees, project, then the measured run

Builds, under the given folder, what table 1 reads as the pipeline writes it:
a validation tree of 50 tiny JPEGs per class in ``<wnid>/`` folders and a V2
tree of 10 per class in ``0``..``999`` folders (``make_imagenet_tree.py``), a
project from ``init imagenet --val ... --v2 ...`` with 3 models and CAMs off,
the manifests (``ingest --split val`` / ``v2``), float16 prediction files of
every model on both splits (``make_predictions.py --split``: fold -1, as a
whole-split model writes them) and the decisions and clean manifests
(``clean --split val`` / ``v2 --no-cam``). Then ``tables`` runs in a fresh
process (wall and CPU time, peak RSS), with ``tables.extra_models`` empty so
that the figure is table 1's own work (prediction costs are in
``bench_predict.py``). The set-up stages are measured too and printed.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from fullsize import CLI, run_measured

HERE = Path(__file__).resolve().parent
MODELS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def _tree(out: Path, n: int) -> Path:
    """``make_imagenet_tree.py --n n`` into ``out``; returns its image folder (``<wnid>/`` folders)."""
    if not (out / "train").is_dir():
        subprocess.run([sys.executable, str(HERE / "make_imagenet_tree.py"), str(out), "--n", str(n)], check=True, capture_output=True)
    return out / "train"


def _v2_folders(images: Path) -> Path:
    """Rename the ``<wnid>/`` folders to V2's class indices ``0``..``999`` (timm's order)."""
    from imagenet_clean.classes import imagenet_classes

    for i, w in enumerate(imagenet_classes().wnids):
        if (images / w).is_dir():
            (images / w).rename(images / str(i))
    return images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("--n-val", type=int, default=50_000)
    ap.add_argument("--n-v2", type=int, default=10_000)
    args = ap.parse_args()
    val = _tree(args.work / "val_tree", args.n_val)
    v2 = _v2_folders(_tree(args.work / "v2_tree", args.n_v2))
    project = args.work / "proj"
    project.mkdir(parents=True, exist_ok=True)
    if not (project / "params.yaml").is_file():
        models = [a for m in MODELS for a in ("--model", f"{m}:pypi")]
        subprocess.run(CLI + ["init", "imagenet", "--val", str(val), "--v2", str(v2), *models, "--set", "cam.enabled=false",
                              "--set", "tables.extra_models={}"], cwd=project, check=True, capture_output=True)
    res: dict = {"setup": {}}
    for split in ("val", "v2"):
        for name, cmd in ((f"ingest {split}", ["ingest", "--split", split]), ("predictions", None),
                          (f"clean {split}", ["clean", "--split", split, "--no-cam"])):
            if cmd is None:
                subprocess.run([sys.executable, str(HERE / "make_predictions.py"), str(project / f"data/manifests/{split}.parquet"),
                                str(project / f"data/predictions/{split}"), "--models", *MODELS, "--split", split],
                               check=True, capture_output=True)
                continue
            r = run_measured(CLI + cmd, cwd=project)
            res["setup"][name] = {k: r[k] for k in ("wall_s", "cpu_s", "max_rss_mb")}
            print(f"{name}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, peak RSS {r['max_rss_mb']} MB", flush=True)
    preds = sorted((project / "data/predictions").glob("*/*.parquet"))
    res["prediction_files_mb"] = round(sum(p.stat().st_size for p in preds) / 2**20, 1)
    r = run_measured(CLI + ["tables"], cwd=project)
    res["tables"] = {k: r[k] for k in ("wall_s", "cpu_s", "max_rss_mb")}
    table = json.loads((project / "metrics/table1.json").read_text())
    res["table1"] = {m: {"issues": row["issues"], **{s: row[s]["n"] for s in row if isinstance(row[s], dict) and "n" in row[s]}}
                     for m, row in table.items() if isinstance(row, dict) and "issues" in row}
    print(f"tables: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU, peak RSS {r['max_rss_mb']} MB "
          f"({len(preds)} prediction files, {res['prediction_files_mb']} MB)", flush=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
