"""Two runs at once in the same workspace (issue 8).

``dvc repro`` twice: DVC's lock refuses the second with a message naming the
busy output and the process holding it; the first finishes, nothing is
corrupted. Without DVC, two ``imagenet-clean`` runs of the same stage never
leave a partial output either: every write is a rename of a complete file.
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from cli_run import CLI, ENV, SLOW_CLI, run
from hostile_corpus import tree_bytes, write_tiny_project

# What DVC 3 prints when a second `dvc repro` meets the first one's locks (rwlock on the outputs, or the repo lock).
DVC_BUSY = re.compile(r"is busy, it is being blocked by:\s+\(PID \d+\): .*dvc repro|Unable to acquire lock", re.S)


def _slow_stage_repo(folder: Path, seconds: int = 5) -> Path:
    folder.mkdir(parents=True)
    (folder / "dvc.yaml").write_text(
        "stages:\n  slow:\n"
        f"    cmd: touch started && sleep {seconds} && echo done > out.txt\n"
        "    outs:\n      - out.txt\n")
    run(["dvc", "init", "--no-scm", "-q"], folder)
    return folder


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    while not path.exists():
        assert proc.poll() is None, "the first run ended before its stage started"
        time.sleep(0.05)


@pytest.mark.slow
def test_second_dvc_repro_is_refused_by_the_lock_and_nothing_is_corrupted(tmp_path):
    repo = _slow_stage_repo(tmp_path / "r")
    first = subprocess.Popen(["dvc", "repro", "-q"], cwd=repo, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        _wait_for(repo / "started", first)
        second = run(["dvc", "repro"], repo, check=False)
    finally:
        out, _ = first.communicate()
    assert second.returncode != 0
    msg = second.stdout + second.stderr
    assert "ERROR: failed to reproduce 'slow'" in msg or "Unable to acquire lock" in msg, msg
    assert DVC_BUSY.search(msg), msg
    assert first.returncode == 0, out
    assert (repo / "out.txt").read_text() == "done\n"
    status = run(["dvc", "status"], repo)
    assert "Data and pipelines are up to date." in status.stdout
    assert not (repo / ".dvc/tmp/rwlock").exists() or "out.txt" not in (repo / ".dvc/tmp/rwlock").read_text()


def test_two_concurrent_ingests_leave_one_complete_manifest(tmp_path):
    project = write_tiny_project(tmp_path / "p")
    run(CLI + ["generate"], project)
    run(CLI + ["ingest", "--split", "train"], project)
    want = (project / "data/manifests/train.parquet").read_bytes()
    procs = [subprocess.Popen(SLOW_CLI + ["ingest", "--split", "train"], cwd=project, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    assert (project / "data/manifests/train.parquet").read_bytes() == want
    assert not list(project.rglob("*.tmp"))


@pytest.mark.slow
def test_two_concurrent_generates_leave_one_complete_tree(tmp_path):
    """Without DVC's lock one of two generates may lose the rename race: it fails with one line, data/raw is whole."""
    project = write_tiny_project(tmp_path / "p")
    run(CLI + ["generate"], project)
    want = tree_bytes(project / "data/raw")
    procs = [subprocess.Popen(SLOW_CLI + ["generate"], cwd=project, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        assert code == 0 or (code == 1 and err.startswith("imagenet-clean: error:") and err.count("\n") == 1), err
    assert tree_bytes(project / "data/raw") == want
    assert sorted(p.name for p in (project / "data").iterdir()) == ["raw"]
