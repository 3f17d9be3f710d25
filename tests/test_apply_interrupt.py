"""SIGKILL `imagenet-clean apply` mid-run: the rerun completes to exactly the uninterrupted tree (issue 8)."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from imagenet_clean.classes import load_classes
from imagenet_clean.config import GenerateConfig, NoiseConfig
from imagenet_clean.data.generate import generate
from imagenet_clean.data.ingest import ingest_split
from imagenet_clean.io import write_table

ENV = {**os.environ, "IMAGENET_CLEAN_PROGRESS": "0"}


def tree(out: Path) -> dict[str, str]:
    """Every entry of an applied tree (hidden temporaries included) with a digest of its content."""
    return {p.relative_to(out).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != ".imagenet-clean-apply.json"}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """A 1,500-image flat validation split and its clean manifest (every image kept)."""
    base = tmp_path_factory.mktemp("apply-kill")
    raw = base / "raw"
    generate(GenerateConfig(out=str(raw), image_size=32, n_train=20, n_val=1500, n_v2=10, noise=NoiseConfig(0, 0, 0, 0)), seed=0)
    classes = load_classes(raw / "classes.tsv")
    df, _ = ingest_split(raw / "val", layout="val", classes=classes, annotations=raw / "LOC_val_solution.csv", workers=1)
    clean = df[["sample_id", "path", "label", "wnid", "size", "content_hash"]].assign(
        orig_label=df["label"], orig_wnid=df["wnid"], action="keep")
    manifest = base / "clean_val.parquet"
    write_table(manifest, clean, metadata={"root": raw / "val", "layout": "val", "split": "val",
                                           "classes": raw / "classes.tsv", "num_classes": len(classes)})
    return raw / "val", manifest


def apply_cmd(root: Path, manifest: Path, out: Path) -> list[str]:
    return ["imagenet-clean", "apply", "--clean", str(manifest), "--root", str(root), "--out", str(out), "--mode", "copy",
            "--workers", "1"]


@pytest.mark.slow
def test_killed_apply_reruns_to_the_uninterrupted_tree(split, tmp_path):
    root, manifest = split
    reference = tmp_path / "reference"
    subprocess.run(apply_cmd(root, manifest, reference), env=ENV, check=True, capture_output=True)
    want = tree(reference)
    assert len(want) > 1500  # images, file list, classes, card

    out = tmp_path / "killed"
    proc = subprocess.Popen(apply_cmd(root, manifest, out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and sum(1 for _ in out.rglob("*.JPEG")) >= 200:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the kill did not land mid-run"
    assert len(tree(out)) < len(want)  # a partial tree

    subprocess.run(apply_cmd(root, manifest, out), env=ENV, check=True, capture_output=True)
    assert tree(out) == want
    assert not [p for p in out.rglob(".*tmp*")], "a temporary file survived the rerun"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["copy", "hardlink"])
def test_twenty_kills_of_apply_at_random_moments_rerun_to_the_uninterrupted_tree(split, tmp_path, mode):
    """Issue 18: 20 kills at seeded random moments (each run resumes what the last kill left), then a rerun."""
    import shutil

    from kill_loop import kill_loop, timed_run

    root, manifest = split
    out = tmp_path / "out"
    cmd = apply_cmd(root, manifest, out)
    cmd[cmd.index("copy")] = mode
    start = lambda: subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # noqa: E731
                                     start_new_session=True)
    window = timed_run(start)
    want = tree(out)
    assert len(want) > 1500

    def finished():
        assert tree(out) == want
        shutil.rmtree(out)

    shutil.rmtree(out)
    loop = kill_loop(start, kills=20, seed=18, window=window, outputs=out, after_kill=lambda: None, after_finish=finished)
    subprocess.run(cmd, env=ENV, check=True, capture_output=True)
    assert tree(out) == want
    assert not [p for p in out.rglob(".*tmp*")], "a temporary file survived the rerun"
    print(f"apply ({mode}) kill loop: {loop}")
