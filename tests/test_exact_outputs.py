"""``imagenet-clean pull --exact``: every output of a release restored byte-identical, and no stage runs (issue 28).

A small release project (tests/release_project.py) shaped like the pipeline
where it matters here: a ``fit`` stage with a persisted folder of checkpoints
and uncached, persisted metrics (what DVC's run-cache does not cover), the
clean stages, a top-level metrics file. It is published with
``--exact-remote`` to a folder outside the repository, cloned fresh, pulled
with ``--exact``; then ``dvc repro`` must run no stage (only a stage named
``scan``, issue 27's always-run listing of the user's image tree, may run, and
then every other stage must be reported unchanged), every output must match
``dvc.lock`` and ``git status`` must be clean.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from release_project import dvc, git, imagenet_clean, make_release_project, md5

FIT = {
    "cmd": "python -c \"import os, json; os.makedirs('data/models/fit', exist_ok=True); os.makedirs('metrics/train/fit', "
           "exist_ok=True); [open(f'data/models/fit/fold{i}.bin', 'wb').write(bytes([i]) * 4096) for i in range(3)]; "
           "json.dump({'acc': 0.5}, open('metrics/train/fit/curve.json', 'w'))\"",
    "outs": [{"data/models/fit": {"persist": True}},
             {"metrics/train/fit": {"cache": False, "persist": True}}],
}
ALLOWED_TO_RUN = {"scan"}  # issue 27: an always-run listing fingerprint of the user's image tree; changes nothing downstream


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, Path]:
    """The project, committed, published with its full output set to ``<tmp>/exact-remote``."""
    tmp = tmp_path_factory.mktemp("exact")
    project = make_release_project(tmp, extra_stages={"fit": FIT})  # run and committed
    exact = tmp / "exact-remote"
    res = imagenet_clean("publish", "--remote", "published/remote", "--exact-remote", str(exact), cwd=project.repo)
    assert "exact outputs:" in res.stdout, res.stdout
    return project.repo, exact


def fresh_clone(repo: Path, where: Path) -> Path:
    git("clone", "-q", "--no-hardlinks", str(repo), str(where), cwd=where.parent)
    return where


def cached_lock_outs(clone: Path) -> dict[str, tuple[str, str]]:
    """``path -> (md5, stage)`` of every cached output in the clone's dvc.lock."""
    dvc_yaml = yaml.safe_load((clone / "dvc.yaml").read_text())
    uncached = {next(iter(o)) for st in dvc_yaml["stages"].values() for o in (st.get("do", st).get("outs") or [])
                + (st.get("do", st).get("metrics") or []) if isinstance(o, dict) and not next(iter(o.values())).get("cache", True)}
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    return {o["path"]: (o["md5"], name) for name, st in lock["stages"].items() for o in st.get("outs", [])
            if not any(o["path"] == u.replace("${item}", name.split("@")[-1]) for u in uncached)}


def tree_md5(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): md5(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def stages_that_ran(repro_output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", repro_output)


def test_pull_exact_restores_every_output_and_repro_runs_no_stage(published, tmp_path):
    repo, _ = published
    clone = fresh_clone(repo, tmp_path / "clone")
    assert not (clone / "data").exists()
    want = cached_lock_outs(clone)
    assert {"data/models/fit", "data/clean/val.parquet", "data/models/m.bin"} <= set(want), sorted(want)

    res = imagenet_clean("pull", "--exact", cwd=clone)
    assert f"restored {len(want)} outputs" in res.stdout, res.stdout
    for path, (digest, _) in want.items():
        if digest.endswith(".dir"):
            assert tree_md5(clone / path) == tree_md5(repo / path), path
        else:
            assert md5(clone / path) == digest, path

    repro = dvc("repro", cwd=clone)
    ran = stages_that_ran(repro.stdout)
    assert set(ran) <= ALLOWED_TO_RUN, f"stages ran instead of being restored: {ran}\n{repro.stdout}"
    assert dvc("status", "-q", cwd=clone).stdout.strip() == ""
    assert git("status", "--porcelain", cwd=clone).strip() == "", git("status", "--porcelain", cwd=clone)
    assert imagenet_clean("pull", "--exact", cwd=clone).stdout.startswith("restored 0 outputs")  # a second pull: all in place


def test_the_committed_remote_stays_small_and_the_full_set_is_a_separate_remote(published, tmp_path):
    repo, exact = published
    clone = fresh_clone(repo, tmp_path / "clone")
    config = (clone / ".dvc" / "config").read_text()
    assert "['remote \"exact\"']" in config and "remote = published" in config, config
    committed = {p.parent.name + p.name for p in (clone / "published/remote/files/md5").glob("*/*")}
    assert not any(d.startswith(md5((repo / "data/models/m.bin"))) for d in committed)  # models are not in the committed remote
    held = {p.parent.name + p.name for p in (exact / "files/md5").glob("*/*")}
    assert {m for m, _ in cached_lock_outs(clone).values()} <= held


def _break(exact: Path, tmp_path: Path, how: str) -> Path:
    """A copy of the exact remote with one checkpoint of the fit folder missing or holding other bytes."""
    broken = tmp_path / "broken-remote"
    shutil.copytree(exact, broken)
    target = md5(Path(str(exact)).parent / "repo" / "data/models/fit/fold1.bin")
    obj = broken / "files/md5" / target[:2] / target[2:]
    assert obj.is_file()
    if how == "missing":
        obj.unlink()
    else:
        obj.chmod(0o644)
        obj.write_bytes(b"other bytes")
    return broken


@pytest.mark.parametrize("how", ["missing", "mismatching"])
def test_a_broken_exact_remote_is_one_line_naming_the_stage_and_restores_nothing(published, tmp_path, how):
    repo, exact = published
    clone = fresh_clone(repo, tmp_path / "clone")
    broken = _break(exact, tmp_path, how)
    res = imagenet_clean("pull", "--exact", "--remote", str(broken), cwd=clone, check=False)
    err = res.stderr.strip()
    assert res.returncode == 1 and err.count("\n") == 0, res.stderr
    assert "stage fit" in err and "data/models/fit" in err and "nothing restored" in err, err
    assert not (clone / "data").exists() or not [p for p in (clone / "data").rglob("*") if p.is_file()]
    cache = clone / ".dvc/cache/files/md5"
    bad = md5(repo / "data/models/fit/fold1.bin")
    assert not (cache / bad[:2] / bad[2:]).exists()  # a wrong object is never kept
    assert git("status", "--porcelain", cwd=clone).strip() == ""


def test_an_unknown_remote_name_is_one_line(published, tmp_path):
    repo, _ = published
    clone = fresh_clone(repo, tmp_path / "clone")
    res = imagenet_clean("pull", "--exact", "--remote", "nosuch", cwd=clone, check=False)
    assert res.returncode == 1 and "no DVC remote named 'nosuch'" in res.stderr and res.stderr.strip().count("\n") == 0
