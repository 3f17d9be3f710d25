"""Shared helpers of the full-size benchmarks (``bench_full_*.py``): a project on the synthetic tree, measured runs.

Peak memory: each measured command runs under a small wrapper process whose
``RUSAGE_CHILDREN`` maximum is the peak resident set of the largest process of
the command (its worker processes included, each on its own; not their sum).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-c", "from imagenet_clean.cli import main; main()"]
_WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "w = time.perf_counter() - t\n"
    "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print('@@' + json.dumps({'rc': rc, 'wall_s': round(w, 2), 'max_rss_mb': round(ru.ru_maxrss / 1024),"
    " 'cpu_s': round(ru.ru_utime + ru.ru_stime, 1)}), file=sys.stderr)\n"
)


def run_measured(cmd: list[str], *, cwd: str | Path, env: dict | None = None, check: bool = True) -> dict:
    """Run ``cmd`` in ``cwd``; its wall time, CPU time, exit status and peak RSS (MB).

    Returns:
        ``{"rc", "wall_s", "cpu_s", "max_rss_mb", "stdout", "stderr"}``.
    """
    env = {**os.environ, "IMAGENET_CLEAN_PROGRESS": "0", **(env or {})}
    res = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    lines = res.stderr.splitlines()
    stats = json.loads(next(ln[2:] for ln in reversed(lines) if ln.startswith("@@")))
    err = "\n".join(ln for ln in lines if not ln.startswith("@@"))
    if check and stats["rc"] != 0:
        raise RuntimeError(f"{cmd} failed ({stats['rc']}):\n{res.stdout[-3000:]}\n{err[-3000:]}")
    return {**stats, "stdout": res.stdout, "stderr": err}


def imagenet_project(project: Path, tree: Path, *, models: int = 3, template: Path | None = None) -> Path:
    """A project folder whose params.yaml is ``init imagenet`` on ``tree`` with ``models`` model names and CAMs off.

    ``init`` checks the pretrained models (tens of seconds); a ``template``
    params.yaml written by an earlier call is copied instead when given.
    """
    project.mkdir(parents=True, exist_ok=True)
    if template is not None and template.is_file():
        shutil.copy(template, project / "params.yaml")
        return project
    names = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"][:models]
    cmd = CLI + ["init", "imagenet", "--train", str(tree / "train"), "--train-boxes", str(tree / "train_boxes"),
                 *[a for n in names for a in ("--model", f"{n}:pypi")], "--set", "cam.enabled=false"]
    subprocess.run(cmd, cwd=project, check=True, capture_output=True)
    return project


def du_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (``du``)."""
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def now() -> float:
    """``time.perf_counter()``."""
    return time.perf_counter()
