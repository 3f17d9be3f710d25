"""The CAM work of a split sharded over 2 gloo ranks: disjoint shares, cached, resumable, same decisions."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import pandas as pd
    from cam_models import load_tiny as load
    from imagenet_clean.cleanup import cam as cam_mod
    from imagenet_clean.models.distributed import process_group

    mode, folder, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    log = []
    real = cam_mod.compute_heatmaps
    kill_after = int(os.environ.get("KILL_AFTER", "0"))

    def logging(model, layer, x, labels, **k):
        if kill_after and int(os.environ.get("RANK", "0")) == 1 and len(log) >= kill_after:
            os._exit(3)  # killed after committing kill_after batches
        log.append([k["method"], len(x)])
        return real(model, layer, x, labels, **k)

    cam_mod.compute_heatmaps = logging
    with process_group() as info:
        if mode == "cams":
            from imagenet_clean.config import CamConfig
            cands = pd.read_pickle(folder / "cands.pkl")
            res = cam_mod.find_exemptions(cands, root=folder, load_model=load, cfg=CamConfig(heat=0.5, pass_score=0.2, batch_size=2),
                                          cache_dir=folder / "cache")
            if info.is_main:
                res.to_json(out / "exemptions.json")
        else:
            from imagenet_clean.config import load_params
            from imagenet_clean.stages import clean as clean_stage
            from imagenet_clean.workspace import Workspace
            params = load_params(folder / "params.yaml")
            clean_stage.run(params, Workspace(folder), "val", load_model=lambda n, f: load(n, f, 8))
    (out / f"log{info.rank}.json").write_text(json.dumps(log))
    """
)


def _cands(folder: Path, n: int = 14, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        w, h = int(rng.integers(30, 90)), int(rng.integers(30, 90))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        x0, y0 = rng.uniform(0, w * 0.5), rng.uniform(0, h * 0.5)
        box = [x0, y0, x0 + rng.uniform(5, w * 0.5), y0 + rng.uniform(5, h * 0.5)]
        k = int(rng.integers(1, 4))
        rows.append(dict(sample_id=f"s{i}", path=f"img{i}.png", label=int(rng.integers(0, 5)), boxes=[box],
                         width=w, height=h, content_hash=f"h{i}", models=list(rng.permutation(["a", "b", "c"])[:k]),
                         folds=[-1] * k))
    rows[3]["path"] = "missing.png"  # an image error every rank must learn about
    return pd.DataFrame(rows)


def _run(tmp: Path, mode: str, folder: Path, out: Path, procs: int, **env) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    script = tmp / "worker.py"
    script.write_text(WORKER)
    src = str(Path(__file__).resolve().parents[1] / "src")
    tests = str(Path(__file__).resolve().parent)  # the workers import cam_models from here
    e = {**os.environ, "PYTHONPATH": os.pathsep.join([src, tests, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1",
         **env}
    cmd = ([sys.executable, str(script)] if procs == 1 else
           [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), str(script)])
    return subprocess.run([*cmd, mode, str(folder), str(out)], env=e, capture_output=True, text=True, timeout=None)


def _logs(out: Path) -> list[list]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("log*.json"))]


@pytest.mark.slow
def test_two_gloo_ranks_share_the_cams_disjointly_resume_after_a_kill_and_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for f in (one, two):
        f.mkdir()
        _cands(f).to_pickle(f / "cands.pkl")
    r = _run(tmp_path, "cams", one, tmp_path / "out1", 1)
    assert r.returncode == 0, r.stderr
    (single_log,) = _logs(tmp_path / "out1")
    # rank 1 dies after its first batch: its committed batch stays in the cache
    r = _run(tmp_path, "cams", two, tmp_path / "killed", 2, KILL_AFTER="1")
    assert r.returncode != 0
    r = _run(tmp_path, "cams", two, tmp_path / "out2", 2)
    assert r.returncode == 0, r.stderr
    single = (tmp_path / "out1/exemptions.json").read_text().replace(str(one).replace("/", "\\/"), "ROOT")
    assert single == (tmp_path / "out2/exemptions.json").read_text().replace(str(two).replace("/", "\\/"), "ROOT")
    rank0, rank1 = _logs(tmp_path / "out2")
    assert rank0 and rank1  # both ranks worked
    done = sum(n for _, n in single_log)
    resumed = sum(n for _, n in rank0 + rank1)
    assert resumed < done  # the batch committed before the kill was not recomputed
    res = pd.read_json(tmp_path / "out2/exemptions.json")
    assert "missing.png" in json.loads(res.cam_scores[3])["error"]


@pytest.mark.slow
def test_clean_stage_decisions_are_byte_identical_over_two_ranks(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from stage_project import make_project  # noqa: E402

    def project(folder: Path):
        folder.mkdir()
        _, manifest, _ = make_project(folder, cam={"batch_size": 1})
        rng = np.random.default_rng(0)
        for p in manifest["path"]:
            (folder / "raw/val" / p).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "raw/val" / p, "PNG")
        return folder

    a, b = project(tmp_path / "a"), project(tmp_path / "b")
    r = _run(tmp_path, "stage", a, tmp_path / "outa", 1)
    assert r.returncode == 0, r.stderr
    r = _run(tmp_path, "stage", b, tmp_path / "outb", 2)
    assert r.returncode == 0, r.stderr
    for f in ("data/decisions/val.parquet", "data/clean/val.parquet", "data/changes/val.csv", "metrics/cleanup/val.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    rank0, rank1 = _logs(tmp_path / "outb")
    assert rank0 and rank1 and sum(n for _, n in rank0 + rank1) == sum(n for _, n in _logs(tmp_path / "outa")[0])
