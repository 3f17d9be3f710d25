"""The review app on a synthetic split of ImageNet-train size: start-up, first page, filtered pages, memory.

Usage::

    python benchmarks/bench_review.py                       # 1,281,167 samples, 160,000 changes, 1,000 classes
    python benchmarks/bench_review.py --changes 40000       # memory scales with the changes, not the pages

A synthetic decisions table and manifest (the real contracts: list columns,
boxes, content hashes; fixes, removals and CAM exemptions with their rules,
flagging models, candidates and C_s) are written to a temporary folder (not
timed). Then, in a fresh process (so that its peak RSS is the app's alone):

* ``load_s``: :class:`~imagenet_clean.review.data.ReviewData` of the split up to
  where its changes can be paged (what ``imagenet-clean review`` does before it listens);
* ``first_page_s``: the first ``GET /api/changes`` (50 rows, default sort), through
  Flask's test client (routing, JSON), and ``start_to_first_page_s`` the sum;
* ``pages_s``: pages with filters (action, rule, class, sort by C_s, a deep offset)
  and, after ``--verdicts`` verdicts were written, ``reviewed=no``;
* ``evidence_loaded_after_s``: when the background thread had read the changes' evidence and
  manifest rows (opening a change waits for it);
* ``verdict_s``: one ``POST /api/verdict`` (read, change and atomically rewrite the file);
* ``detail_s``: one ``GET /api/change`` (no prediction files: top-5 lists are empty);
* ``rss_mb``: peak resident memory of the process, and ``rss_after_import_mb`` before loading.

Prediction files are not generated (K x N float16 would be 2.5 GB per model):
each model's top-5 is read once, in batches, the first time a change is opened.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

IMAGENET_TRAIN = 1_281_167


def make_split(folder: Path, *, n: int, changes: int, k: int, models: int, seed: int = 0) -> None:
    """Write data/decisions/train.parquet, data/manifests/train.parquet and classes.tsv under ``folder``."""
    import pyarrow as pa

    from imagenet_clean.classes import ClassList, write_classes
    from imagenet_clean.cleanup.ensemble import DECISIONS_SCHEMA
    from imagenet_clean.io import write_table

    rng = np.random.default_rng(seed)
    classes = ClassList(tuple(f"n{i:08d}" for i in range(k)), tuple(f"class {i}" for i in range(k)))
    write_classes(folder / "classes.tsv", classes)
    label = rng.integers(0, k, n).astype(np.int64)
    wnids = np.asarray(classes.wnids, dtype=object)
    ids = np.asarray([f"{wnids[c]}/{wnids[c]}_{i}.JPEG" for i, c in enumerate(label)], dtype=object)
    changed = np.sort(rng.choice(n, changes, replace=False))
    kind = rng.choice(3, changes, p=[0.5, 0.4, 0.1])  # 0 fix, 1 remove, 2 CAM-exempted keep
    action = np.full(n, "keep", dtype=object)
    action[changed] = np.asarray(["fix", "remove", "keep"], dtype=object)[kind]
    new_label = label.copy()
    fix_rows = changed[kind == 0]
    new_label[fix_rows] = (label[fix_rows] + 1 + rng.integers(0, k - 1, len(fix_rows))) % k
    rule_sets = {0: ["cl_fix"], 1: ["consensus"], 2: ["consensus", "cam_exempt"]}
    n_rules = np.zeros(n, np.int64)
    n_rules[changed] = [len(rule_sets[t]) for t in kind]
    rules_flat = [r for t in kind for r in rule_sets[t]]
    n_flag = np.zeros(n, np.int64)
    n_flag[changed] = rng.integers(1, models + 1, changes)
    names = [f"model{j}" for j in range(models)]
    flag_flat = [names[j] for c in n_flag[changed] for j in range(c)]
    cand_flat = rng.integers(0, k, len(flag_flat)).astype(np.int64)
    c_s = np.zeros(n, np.int64)
    c_s[changed] = rng.integers(0, models + 1, changes)

    def lists(counts, values, typ):
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(counts, out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, typ))

    hashes = pa.array([f"{h:032x}" for h in rng.integers(0, 2**62, n)], pa.string())
    dec = pa.table({
        "sample_id": pa.array(ids, pa.string()), "path": pa.array(ids, pa.string()), "label": label,
        "wnid": pa.array(wnids[label], pa.string()), "action": pa.array(action, pa.string()), "new_label": new_label,
        "rules": lists(n_rules, rules_flat, pa.string()), "n_flagged": n_flag,
        "flagged_models": lists(n_flag, flag_flat, pa.string()), "candidates": lists(n_flag, cand_flat, pa.int64()),
        "c_s": c_s, "cam_scores": pa.array(np.where(action == "keep", "{}", '{"model0": {"gradcam": 0.5}}').tolist()),
        "exempted_by": pa.array(np.where(np.isin(np.arange(n), changed[kind == 2]), "model0", "").tolist()),
        "content_hash": hashes, "reason": pa.array([""] * n, pa.string()),
    }, schema=DECISIONS_SCHEMA)
    meta = {"root": "raw/train", "layout": "train", "split": "train", "classes": "classes.tsv",
            "num_classes": str(k), "models": json.dumps(names)}
    write_table(folder / "data/decisions/train.parquet", dec, metadata=meta)
    boxes = lists(np.ones(n, np.int64), [[10.0, 10.0, 200.0, 200.0]] * n, pa.list_(pa.float64(), 4))
    man = pa.table({
        "sample_id": dec["sample_id"], "path": dec["path"], "label": label, "wnid": dec["wnid"], "boxes": boxes,
        "width": pa.array(np.full(n, 500, np.int32)), "height": pa.array(np.full(n, 375, np.int32)),
        "size": pa.array(np.full(n, 110_000, np.int64)), "mtime_ns": pa.array(np.zeros(n, np.int64)),
        "content_hash": hashes, "status": pa.array(["ok"] * n, pa.string()), "reason": pa.array([""] * n, pa.string()),
    })
    write_table(folder / "data/manifests/train.parquet", man, metadata=meta)


def rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(folder: Path, verdicts: int) -> dict:
    """Time the app on the split in ``folder`` (run in a fresh process)."""
    from imagenet_clean.review.data import ReviewData
    from imagenet_clean.review.server import create_app

    host = {"Host": "127.0.0.1"}
    out = {"rss_after_import_mb": round(rss_mb(), 1)}
    t0 = time.perf_counter()
    data = ReviewData(folder, "train", background=True)  # as `imagenet-clean review` does
    out["load_s"] = round(time.perf_counter() - t0, 3)
    app = create_app(data, csrf_token="t", reviewer="bench")
    c = app.test_client()
    t1 = time.perf_counter()
    r = c.get("/api/changes?limit=50", headers=host)
    out["first_page_s"] = round(time.perf_counter() - t1, 3)
    out["start_to_first_page_s"] = round(time.perf_counter() - t0, 3)
    assert r.status_code == 200 and len(r.get_json()["rows"]) == 50
    out["changes"] = r.get_json()["total"]
    pages = {}
    for name, q in {"action=remove": "action=remove", "rule=cam_exempt": "rule=cam_exempt",
                    "class": f"cls={data.classes.wnids[7]}", "sort=-c_s": "sort=-c_s",
                    "offset=150000": "offset=150000"}.items():
        t = time.perf_counter()
        r = c.get("/api/changes?limit=50&" + q, headers=host)
        pages[name] = round(time.perf_counter() - t, 4)
        assert r.status_code == 200, r.get_json()
    from imagenet_clean.cleanup.verdicts import Verdict, format_verdicts

    rng = np.random.default_rng(1)
    pick = rng.choice(len(data.ids), verdicts, replace=False)
    data.reviews.parent.mkdir(parents=True, exist_ok=True)
    data.reviews.write_text(format_verdicts([Verdict(sample_id=data.ids[i], content_hash="", verdict="accept")
                                             for i in pick]))
    t = time.perf_counter()
    r = c.get("/api/changes?limit=50&reviewed=no", headers=host)
    pages[f"reviewed=no ({verdicts} verdicts, file re-read)"] = round(time.perf_counter() - t, 4)
    t = time.perf_counter()
    r = c.get("/api/changes?limit=50&reviewed=no", headers=host)
    pages["reviewed=no (again)"] = round(time.perf_counter() - t, 4)
    out["pages_s"] = pages
    data.ready()
    out["evidence_loaded_after_s"] = round(time.perf_counter() - t0, 3)
    sid = data.ids[int(rng.integers(len(data.ids)))]
    t = time.perf_counter()
    r = c.post("/api/verdict", json={"sample_id": sid, "verdict": "reject"}, headers={**host, "X-CSRF-Token": "t"})
    out["verdict_s"] = round(time.perf_counter() - t, 4)
    assert r.status_code == 200, r.get_json()
    t = time.perf_counter()
    r = c.get("/api/change", query_string={"id": sid}, headers=host)
    out["detail_s"] = round(time.perf_counter() - t, 4)
    assert r.status_code == 200
    out["rss_mb"] = round(rss_mb(), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=IMAGENET_TRAIN, help="samples in the split")
    ap.add_argument("--changes", type=int, default=160_000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--verdicts", type=int, default=2000)
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.measure:
        print(json.dumps(measure(a.measure, a.verdicts)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        make_split(Path(tmp), n=a.n, changes=a.changes, k=a.classes, models=a.models)
        made = time.perf_counter() - t
        out = {"n": a.n, "changes_asked": a.changes, "classes": a.classes, "models": a.models, "make_s": round(made, 1)}
        for run in ("first_start", "restart"):  # a restart reads the paging index cached by the first start
            res = subprocess.run([sys.executable, __file__, "--measure", tmp, "--verdicts", str(a.verdicts)],
                                 capture_output=True, text=True, env={**os.environ, "IMAGENET_CLEAN_PROGRESS": "0"})
            if res.returncode:
                sys.exit(res.stderr)
            out[run] = json.loads(res.stdout.strip().splitlines()[-1])
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
