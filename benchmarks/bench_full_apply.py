"""Full-size apply: a 1,281,167-row clean manifest onto the ImageNet-layout tree, symlink and hardlink modes.

Usage (after ``bench_full_clean.py``, which writes ``data/clean/train.parquet``)::

    python benchmarks/bench_full_apply.py /work/bench18/proj /work/bench18/tree/train /work/bench18/applied \\
        [--modes symlink hardlink] [--kill-at 0.5]

Per mode, each in a fresh process (wall time, peak RSS): the first apply into
an empty folder, a rerun over the finished tree (everything already correct),
then a kill-and-rerun: a new apply into another empty folder is SIGKILLed after
``--kill-at`` of the first run's time, and rerun; the rerun's tree is checked
against the first one (same entries, same link targets / inodes, no temporary
left). Content hashes are not re-checked (``--no-hash``: sizes are): hashing
2.5 GB is disk-bound and the same in every mode.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from fullsize import CLI, run_measured


def _cmd(project: Path, root: Path, out: Path, mode: str, workers: int) -> list[str]:
    return CLI + ["apply", "--clean", str(project / "data/clean/train.parquet"), "--root", str(root), "--out", str(out),
                  "--mode", mode, "--no-hash", "--workers", str(workers)]


def _entries(out: Path, mode: str) -> dict[str, object]:
    """Entry -> link target (symlink) or inode (hardlink): what must be equal between two trees."""
    res = {}
    for d in os.scandir(out):
        if not d.is_dir(follow_symlinks=False):
            continue
        for e in os.scandir(d.path):
            key = f"{d.name}/{e.name}"
            if e.is_symlink():
                res[key] = os.readlink(e.path)
            else:  # a hard link shares the source's inode; a placeholder is apply's own small file
                st = e.stat(follow_symlinks=False)
                res[key] = st.st_ino if st.st_nlink > 1 else st.st_size
    return res


def _temporaries(out: Path) -> list[str]:
    found = subprocess.run(["find", str(out), "-name", "*tmp*"], capture_output=True, text=True).stdout.split()
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("root", type=Path)
    ap.add_argument("out", type=Path, help="parent of the applied trees (removed per mode afterwards)")
    ap.add_argument("--modes", nargs="+", default=["symlink", "hardlink"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kill-at", type=float, default=0.5)
    ap.add_argument("--keep", action="store_true", help="keep the applied trees")
    args = ap.parse_args()
    env = {**os.environ, "IMAGENET_CLEAN_PROGRESS": "0"}
    res = {}
    for mode in args.modes:
        first, second = args.out / f"{mode}_a", args.out / f"{mode}_b"
        for d in (first, second):
            shutil.rmtree(d, ignore_errors=True)
        r1 = run_measured(_cmd(args.project, args.root, first, mode, args.workers), cwd=args.project)
        counts = json.loads(r1["stdout"].strip().splitlines()[-1]) if r1["stdout"].strip().startswith("{") else {}
        n = sum(1 for _ in _entries(first, mode))
        r2 = run_measured(_cmd(args.project, args.root, first, mode, args.workers), cwd=args.project)
        proc = subprocess.Popen(_cmd(args.project, args.root, second, mode, args.workers), cwd=args.project, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(args.kill_at * r1["wall_s"])
        killed = proc.poll() is None
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        partial = sum(1 for _ in _entries(second, mode)) if second.is_dir() else 0
        r3 = run_measured(_cmd(args.project, args.root, second, mode, args.workers), cwd=args.project)
        same = _entries(first, mode) == _entries(second, mode)
        left = _temporaries(second)
        res[mode] = {
            "entries": n, "counts": counts,
            "first": {k: r1[k] for k in ("wall_s", "cpu_s", "max_rss_mb")}, "first_per_s": round(n / r1["wall_s"]),
            "rerun": {k: r2[k] for k in ("wall_s", "cpu_s", "max_rss_mb")}, "rerun_per_s": round(n / r2["wall_s"]),
            "killed_at_s": round(args.kill_at * r1["wall_s"], 1), "killed": killed, "entries_at_kill": partial,
            "after_kill": {k: r3[k] for k in ("wall_s", "cpu_s", "max_rss_mb")},
            "after_kill_equal": same, "temporaries_left": len(left),
        }
        print(f"apply {mode}: {n} entries; first {r1['wall_s']:.0f} s ({n / r1['wall_s']:.0f}/s, peak RSS {r1['max_rss_mb']} MB); "
              f"rerun {r2['wall_s']:.0f} s ({n / r2['wall_s']:.0f}/s, {r2['max_rss_mb']} MB); killed after "
              f"{res[mode]['killed_at_s']} s with {partial} entries, rerun {r3['wall_s']:.0f} s: equal {same}, "
              f"temporaries left {len(left)}", flush=True)
        if not args.keep:
            for d in (first, second):
                shutil.rmtree(d, ignore_errors=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
