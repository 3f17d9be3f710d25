"""Full-size ingest: ``imagenet-clean ingest --split train`` over a 1,281,167-file ImageNet-layout tree.

Usage::

    python benchmarks/make_imagenet_tree.py /work/bench18/tree          # once (about 4 minutes on 2 cores)
    python benchmarks/bench_full_ingest.py /work/bench18/tree /work/bench18/proj

Runs the stage command as DVC would (``init imagenet`` params: 2 header
workers, content hashes on), in a fresh process, and prints files/s, wall and
CPU time, peak RSS of the largest process and the manifest's size. The project
folder is kept: the other ``bench_full_*`` scripts use its manifest.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq
from fullsize import CLI, imagenet_project, run_measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tree", type=Path)
    ap.add_argument("project", type=Path)
    args = ap.parse_args()

    project = imagenet_project(args.project, args.tree)
    r = run_measured(CLI + ["ingest", "--split", "train"], cwd=project)
    manifest = project / "data/manifests/train.parquet"
    n = pq.ParquetFile(manifest).metadata.num_rows
    stats = json.loads((project / "metrics/ingest/train.json").read_text())
    res = {
        "files": n, "ok": stats.get("n_ok"), "with_boxes": stats.get("n_with_boxes"),
        "wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "files_per_s": round(n / r["wall_s"]),
        "max_rss_mb": r["max_rss_mb"], "manifest_mb": round(manifest.stat().st_size / 2**20, 1),
    }
    print(f"ingest: {n} files in {r['wall_s']:.0f} s = {res['files_per_s']} files/s "
          f"({stats.get('n_with_boxes')} with boxes); peak RSS {r['max_rss_mb']} MB; manifest {res['manifest_mb']} MB")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
