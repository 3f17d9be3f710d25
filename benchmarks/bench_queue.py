"""A queued threshold variant against a workspace `dvc exp run` of the same change, side by side (issue 29).

Makes (or reuses) a project that has run `dvc repro` and committed its lock,
copies it (git, DVC cache, workspace and the untracked ``data/cache``) once per
variant, and times in each copy, one after the other:

* ``workspace``: ``dvc exp run -S <change>``;
* ``queued``: ``dvc exp run --queue -S <change>``, ``dvc queue start -j 1``, and
  polling ``dvc queue status`` until it finished: DVC runs it in a temporary copy
  (``.dvc/tmp/exps/``), whose CAM scores and retraining runs come from the
  parent project's ``data/cache`` (``Workspace.shared_cache``);
* ``queued_own_cache`` (``--old``): the same with ``IMAGENET_CLEAN_CACHE=data/cache``,
  i.e. each copy with its own empty caches, as before.

Prints one JSON line per variant (seconds, retraining runs and CAM scores the
run added to the cache it used) and the ratios queued / workspace::

    PYTHONPATH=$PWD/src python benchmarks/bench_queue.py --embedded /tmp/bench/embedded [--old]
    PYTHONPATH=$PWD/src python benchmarks/bench_queue.py --tiny /tmp/bench/tiny

``--embedded`` makes the project with the shipped params.yaml (a full `dvc repro`,
5-8 minutes on 2 cores) unless the folder already holds one; ``--tiny`` the
tests' tiny pipeline (tests/pipeline_project.py). Run it with ``PYTHONPATH``
pointing at this checkout's ``src`` so that the stages run this code.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))


def _env(**extra) -> dict:
    env = {**os.environ, "IMAGENET_CLEAN_PROGRESS": "0", "DVC_NO_ANALYTICS": "1"}
    env.pop("IMAGENET_CLEAN_CACHE", None)
    env.update(extra)
    return env


def sh(args: list[str], cwd: Path, env: dict) -> str:
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{args} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res.stdout


def cache_counts(project: Path) -> dict[str, int]:
    """Finished retraining runs and CAM scores in ``project``'s data/cache."""
    retrain = len(list((project / "data/cache/retrain").glob("*/done.json")))
    cams = 0
    for db in (project / "data/cache/cams").glob("*/cam_scores.sqlite"):
        con = sqlite3.connect(db)
        try:
            cams += con.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        finally:
            con.close()
    return {"retrain_runs": retrain, "cam_scores": cams}


def make_project(folder: Path, kind: str) -> Path:
    """The reference project: made and reproduced unless ``folder`` already has a committed lock."""
    from pipeline_project import commit, write_embedded_project, write_pipeline_project

    if (folder / "dvc.lock").is_file():
        if sh(["git", "status", "--porcelain", "--untracked-files=no"], folder, _env()).strip():
            # a workspace left at an experiment's results: back to the committed reference
            sh(["git", "checkout", "--", "."], folder, _env())
            sh(["dvc", "checkout", "--force"], folder, _env())
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    project = write_embedded_project(folder) if kind == "embedded" else write_pipeline_project(folder)
    t0 = time.perf_counter()
    sh(["dvc", "repro"], project, _env())
    print(json.dumps({"variant": "reference dvc repro", "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    commit(project, "reference repro")
    return project


def run_workspace(project: Path, change: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    sh(["dvc", "exp", "run", *change], project, env)
    return time.perf_counter() - t0


def run_queued(project: Path, change: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    sh(["dvc", "exp", "run", "--queue", *change], project, env)
    sh(["dvc", "queue", "start", "-j", "1"], project, env)
    try:
        while True:
            status = sh(["dvc", "queue", "status"], project, env)
            if not any(w in status for w in ("Queued", "Running")):
                break
            time.sleep(2)
    finally:
        subprocess.run(["dvc", "queue", "stop"], cwd=project, env=env, capture_output=True)
    seconds = time.perf_counter() - t0
    if "Failed" in status or "Success" not in status:
        raise SystemExit(f"the queued experiment did not succeed:\n{status}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--embedded", type=Path, help="folder of the embedded project (made if it has no dvc.lock)")
    where.add_argument("--tiny", type=Path, help="folder of the tests' tiny project (made if it has no dvc.lock)")
    ap.add_argument("--set", default="h3=2", help="the threshold change (dvc exp run -S)")
    ap.add_argument("--old", action="store_true", help="also time a queued run with its own empty caches")
    args = ap.parse_args()
    ref = make_project((args.embedded or args.tiny).resolve(), "embedded" if args.embedded else "tiny")
    change = ["-S", args.set]
    variants = [("workspace", run_workspace, {}), ("queued", run_queued, {})]
    if args.old:
        variants.append(("queued_own_cache", run_queued, {"IMAGENET_CLEAN_CACHE": "data/cache"}))
    seconds = {}
    for name, fn, extra in variants:
        copy = ref.parent / f"{ref.name}-{name}"
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(ref, copy, symlinks=True)
        before = cache_counts(copy)
        seconds[name] = fn(copy, change, _env(**extra))
        after = cache_counts(copy)
        print(json.dumps({"variant": name, "change": args.set, "seconds": round(seconds[name], 1),
                          "added_to_project_cache": {k: after[k] - before[k] for k in after}}), flush=True)
        shutil.rmtree(copy / ".dvc/tmp/exps", ignore_errors=True)
    ratios = {f"{n}/workspace": round(s / seconds["workspace"], 3) for n, s in seconds.items() if n != "workspace"}
    print(json.dumps({"ratios": ratios, "cpu_count": os.cpu_count()}), flush=True)


if __name__ == "__main__":
    main()
