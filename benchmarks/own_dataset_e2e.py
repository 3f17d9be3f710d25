"""Own dataset end to end (issue 27): a fresh clone, `init folders`, `dvc repro`, timed and scored against the truth.

Makes (or reuses) the noisy copy of ``benchmarks/own_dataset_quality.py`` (every
photo of an ImageFolder pooled, ``--noise`` of them moved to a wrong class,
``truth.csv`` beside), clones this repository into ``WORK/project``, runs
``imagenet-clean init folders --train WORK/noisy`` with the three offline
EfficientNet-Lite backbones (probe mode, the preset's values), then ``dvc repro``,
and scores ``data/decisions/train.parquet`` with the issue's definitions.
Prints the wall and CPU time of ``dvc repro`` (children included) and one JSON line.

Usage (development data only, never in tests)::

    python benchmarks/own_dataset_e2e.py /work/shared/data/hymenoptera /tmp/e2e27
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from own_dataset_quality import make_noisy_copy, score  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = ("efficientnet_lite0:pypi", "efficientnet_lite1:pypi", "efficientnet_lite2:pypi")


def sh(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "IMAGENET_CLEAN_PROGRESS": "0", "PYTHONPATH": str(REPO / "src")}
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="an ImageFolder (class folders, possibly under split folders)")
    ap.add_argument("work", type=Path)
    ap.add_argument("--noise", type=float, default=0.10)
    ap.add_argument("--noise-seed", type=int, default=0)
    a = ap.parse_args()
    noisy, truth_csv = a.work / "noisy", a.work / "truth.csv"
    if not truth_csv.is_file():
        make_noisy_copy(a.src, noisy, noise=a.noise, seed=a.noise_seed)  # writes truth.csv beside the copy
    truth = pd.read_csv(truth_csv)
    project = a.work / "project"
    shutil.rmtree(project, ignore_errors=True)
    sh(["git", "clone", "-q", str(REPO), str(project)], a.work)
    init = ["imagenet-clean", "init", "folders", "--train", str(noisy.resolve())]
    for m in MODELS:
        init += ["--model", m]
    sh(init, project)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    sh(["dvc", "repro"], project)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    dec = pd.read_parquet(project / "data/decisions/train.parquet").set_index("sample_id")
    truth = truth.set_index("path").loc[dec.index].reset_index()
    classes = sorted(truth["given"].unique())  # the folder source's class list: the train folders, sorted
    res = score(truth, classes, dec["action"].to_numpy(), dec["new_label"].to_numpy())
    res.update(images=len(dec), misfiled=int((truth["given"] != truth["true"]).sum()), repro_wall_s=round(wall, 1),
               repro_cpu_s=round(cpu, 1), cpus=os.cpu_count())
    print(f"dvc repro: {wall:.0f} s wall, {cpu:.0f} s CPU; {res['fixes']} fixes + {res['removals']} removals, "
          f"precision {res['precision']:.3f}, recall {res['recall']:.3f} ({res['misfiled']} misfiled of {res['images']})")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
