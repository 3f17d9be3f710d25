"""Publishing with real DVC: push to the default local remote, clone afresh, pull, apply, load.

A temporary git+DVC repository stands in for the pipeline repository: its
default remote is a folder beside the repository, pushed with plain ``dvc push``
(``imagenet-clean publish`` is tested in tests/test_publish_release.py), and a
``dvc.yaml`` stage whose outs are a clean manifest, a decisions table and a
metrics file, as the real pipeline's are.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from apply_tree import expected_tree, make_split, tree_files
from imagenet_clean.publish.filelist import imagefolder_target_map, read_file_list

ENV = os.environ | {
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
}


def run(*cmd: str, cwd: Path) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"{' '.join(cmd)} failed in {cwd}:\n{res.stdout}\n{res.stderr}"
    return res.stdout


def dvc(*args: str, cwd: Path) -> str:
    return run(sys.executable, "-m", "dvc", *args, cwd=cwd)


def imagenet_clean(*args: str, cwd: Path) -> str:
    exe = shutil.which("imagenet-clean")
    cmd = [exe] if exe else [sys.executable, "-c", "from imagenet_clean.cli import main; main()"]
    return run(*cmd, *args, cwd=cwd)


@pytest.fixture
def published(tmp_path):
    """A pipeline repo whose clean/decisions/metrics outs were produced by `dvc repro` and pushed."""
    root, manifest, df = make_split(tmp_path / "user", "val")  # the user's copy of the split + the clean manifest
    decisions = manifest.parent / "decisions.parquet"
    import pandas as pd

    from imagenet_clean import io

    io.write_table(decisions, pd.DataFrame({"sample_id": df.sample_id, "action": "keep", "rules": [["consensus"]] * len(df)}))
    repo = tmp_path / "repo"
    repo.mkdir()
    run("git", "init", "-q", cwd=repo)
    dvc("init", "-q", cwd=repo)
    # a default remote in a folder beside the repository (this project's own is committed inside it:
    # tests/test_publish_release.py); DVC resolves the relative url from .dvc/
    (repo / ".dvc" / "config").write_text("[core]\n    remote = local\n['remote \"local\"']\n"
                                          "    url = ../../imagenet-clean-remote\n")
    (repo / "make_clean.py").write_text(
        "import json, os, shutil\n"
        "for d in ('data/clean', 'data/decisions', 'metrics'):\n"
        "    os.makedirs(d, exist_ok=True)\n"
        f"shutil.copy({str(manifest)!r}, 'data/clean/val.parquet')\n"
        f"shutil.copy({str(decisions)!r}, 'data/decisions/val.parquet')\n"
        "json.dump({'kept': 7}, open('metrics/clean.json', 'w'))\n"
    )
    (repo / "dvc.yaml").write_text(
        "stages:\n  clean:\n"
        f"    cmd: {json.dumps(sys.executable + ' make_clean.py')}\n"
        "    outs: [data/clean, data/decisions]\n"
        "    metrics: [metrics/clean.json]\n"
    )
    dvc("repro", "-q", cwd=repo)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-q", "-m", "cleaned val", cwd=repo)
    dvc("push", cwd=repo)
    return repo, root, df


def test_push_clone_pull_apply_load(published, tmp_path):
    from torchvision.datasets import ImageFolder

    repo, root, df = published
    remote = tmp_path / "imagenet-clean-remote"  # the default: a folder beside the repository
    assert any(p.is_file() for p in (remote / "files" / "md5").rglob("*"))

    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    assert not (clone / "data" / "clean" / "val.parquet").exists()
    dvc("pull", "data/clean", cwd=clone)
    assert (clone / "data/clean/val.parquet").read_bytes() == (repo / "data/clean/val.parquet").read_bytes()
    assert not (clone / "data/decisions/val.parquet").exists()  # only what was asked for

    out = tmp_path / "cleaned"
    stdout = imagenet_clean("apply", "--clean", "data/clean/val.parquet", "--root", str(root), "--out", str(out), cwd=clone)
    counts = json.loads(stdout.strip().splitlines()[-1])
    assert counts["images"] == len(df) and counts["removed"] == 1
    want = expected_tree(df)
    assert tree_files(out) == set(want) and dict(read_file_list(out / "val.txt")) == want

    ds = ImageFolder(out)
    to_label = imagefolder_target_map(out)
    assert {Path(p).relative_to(out).as_posix(): to_label[t] for p, t in ds.samples} == want
    assert len(run("git", "rev-parse", "HEAD", cwd=clone).strip()) == 40
    assert run("git", "rev-parse", "HEAD", cwd=clone).strip() in (out / "README.md").read_text()

    # another project takes the cleaned split without cloning: dvc get
    got = tmp_path / "elsewhere" / "val.parquet"
    got.parent.mkdir()
    dvc("get", str(repo), "data/clean/val.parquet", "-o", str(got), cwd=got.parent)
    assert got.read_bytes() == (repo / "data/clean/val.parquet").read_bytes()


@pytest.mark.slow
def test_personal_remote_override(published, tmp_path):
    """`dvc remote modify --local` points a clone at another remote without touching .dvc/config."""
    repo, _, _ = published
    mine = tmp_path / "my-remote"
    shutil.copytree(tmp_path / "imagenet-clean-remote", mine)
    shutil.rmtree(tmp_path / "imagenet-clean-remote")
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    dvc("remote", "modify", "--local", "local", "url", str(mine), cwd=clone)
    dvc("pull", "data/clean", "data/decisions", cwd=clone)
    assert (clone / "data/decisions/val.parquet").is_file()
    assert run("git", "status", "--porcelain", cwd=clone).strip() == ""
