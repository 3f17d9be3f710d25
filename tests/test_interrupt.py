"""SIGKILL in the middle of a stage, then rerun (issue 8).

``imagenet-clean generate`` and ``imagenet-clean ingest --split train`` run as
subprocesses in a tiny project (tests/hostile_corpus.py: ``write_tiny_project``)
and are killed (the whole process group, like a crash) at several points: when
their temporary output appears, when a later part of it appears, after delays.
After every kill, each output is either absent or complete; after a rerun it is
identical to an uninterrupted run's. The same through ``dvc repro`` (slow).
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_run import CLI, ENV, SLOW_CLI, run, stale_stages
from hostile_corpus import manifest_without_mtime, metrics_without_timing, run_main, tree_bytes, write_tiny_project
from kill_loop import KillLoop, kill_loop, temporaries, timed_run
from stage_project import CLEAN_OUTPUTS, clean_project


def kill_when(args: list[str], cwd: Path, *, pattern: str | None = None, delay: float = 0.0) -> bool:
    """Start ``args``; SIGKILL its process group ``delay`` s after ``pattern`` (a glob in ``cwd``) matches.

    Returns:
        Whether the process was still running when killed (False: it finished first).
    """
    proc = subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        if pattern:
            while proc.poll() is None and not glob.glob(str(cwd / pattern)):
                time.sleep(0.002)
        if delay:
            time.sleep(delay)
        alive = proc.poll() is None
        if alive:
            os.killpg(proc.pid, signal.SIGKILL)
        return alive
    finally:
        proc.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted generate + ingest of the tiny project: its outputs."""
    ref = write_tiny_project(tmp_path_factory.mktemp("ref"))
    run(CLI + ["generate"], ref)
    run(CLI + ["ingest", "--split", "train"], ref)
    return ref


def _leftovers(project: Path) -> list[str]:
    """Files and folders no stage wrote on purpose (temporary names)."""
    out = []
    for p in project.rglob("*"):
        rel = p.relative_to(project).as_posix()
        if ".tmp" in p.name or ".old-" in p.name:
            out.append(rel)
    return sorted(out)


# ------------------------------------------------------------------ generate

GENERATE_KILLS = [
    pytest.param("data/.raw.tmp-*", 0.0, marks=pytest.mark.slow),  # the temporary tree was just created
    ("data/.raw.tmp-*/val", 0.0),  # train written, val being written
    ("data/.raw.tmp-*/truth.parquet", 0.0),  # just before the rename
    pytest.param("data/.raw.tmp-*", 0.15, marks=pytest.mark.slow),
    pytest.param(None, 1.0, marks=pytest.mark.slow),  # during start-up (imports)
]


@pytest.mark.parametrize("pattern,delay", GENERATE_KILLS)
def test_killed_generate_leaves_no_partial_raw_and_rerun_is_identical(tmp_path, reference, pattern, delay):
    project = write_tiny_project(tmp_path / "p")
    want = tree_bytes(reference / "data/raw")
    assert kill_when(SLOW_CLI + ["generate"], project, pattern=pattern, delay=delay)
    raw = tree_bytes(project / "data/raw")
    assert raw in ({}, want), "data/raw is partial after a kill"
    run(CLI + ["generate"], project)
    assert tree_bytes(project / "data/raw") == want
    # Whatever a killed run left behind is beside data/raw, never inside an output.
    assert all(not p.startswith(("data/raw/", "data/manifests/")) for p in _leftovers(project)), _leftovers(project)


@pytest.mark.slow
def test_killed_regenerate_keeps_the_previous_good_raw(tmp_path, reference):
    project = write_tiny_project(tmp_path / "p")
    shutil.copytree(reference / "data/raw", project / "data/raw")
    want = tree_bytes(reference / "data/raw")
    for pattern in ("data/.raw.tmp-*", "data/.raw.tmp-*/v2", "data/.raw.old-*"):
        assert kill_when(SLOW_CLI + ["generate"], project, pattern=pattern)
        # data/raw is the old tree or the new one (identical here), or missing only inside the two renames
        assert tree_bytes(project / "data/raw") in ({}, want)
        run(CLI + ["generate"], project)
        assert tree_bytes(project / "data/raw") == want


# ------------------------------------------------------------------ ingest

INGEST_KILLS = [
    ("data/manifests/.train.parquet.*.tmp", 0.0),  # inside the manifest write
    pytest.param("data/manifests/train.parquet", 0.0, marks=pytest.mark.slow),  # manifest renamed, metrics not yet
    ("metrics/ingest/.train.json.*.tmp", 0.0),
    pytest.param(None, 0.5, marks=pytest.mark.slow),  # during start-up (imports)
]


@pytest.mark.parametrize("pattern,delay", INGEST_KILLS)
def test_killed_ingest_leaves_old_or_complete_outputs_and_rerun_is_byte_identical(tmp_path, reference, pattern, delay):
    project = write_tiny_project(tmp_path / "p")
    shutil.copytree(reference / "data/raw", project / "data/raw")  # same bytes and mtimes as the reference
    want = (reference / "data/manifests/train.parquet").read_bytes()
    want_metrics = metrics_without_timing(reference / "metrics/ingest/train.json")
    assert kill_when(SLOW_CLI + ["ingest", "--split", "train"], project, pattern=pattern, delay=delay)
    man, met = project / "data/manifests/train.parquet", project / "metrics/ingest/train.json"
    assert not man.exists() or man.read_bytes() == want, "partial manifest after a kill"
    assert not met.exists() or metrics_without_timing(met) == want_metrics
    assert sorted(p.name for p in (project / "data/manifests").glob("*.parquet")) in ([], ["train.parquet"])
    run(CLI + ["ingest", "--split", "train"], project)
    assert man.read_bytes() == want
    assert metrics_without_timing(met) == want_metrics


@pytest.mark.slow
def test_rerun_after_regenerate_gives_the_same_manifest_apart_from_mtimes(tmp_path, reference):
    """A kill during generate forces a regenerate: same bytes, new mtimes; the manifest differs only in mtime_ns."""
    project = write_tiny_project(tmp_path / "p")
    kill_when(CLI + ["generate"], project, pattern="data/.raw.tmp-*/val")
    run(CLI + ["generate"], project)
    run(CLI + ["ingest", "--split", "train"], project)
    got, got_meta = manifest_without_mtime(project / "data/manifests/train.parquet")
    want, want_meta = manifest_without_mtime(reference / "data/manifests/train.parquet")
    assert got.equals(want) and got_meta == want_meta


def test_outputs_are_readable_like_any_new_file(reference):
    """Atomic writes must not narrow permissions: outputs are as readable as files written with open()."""
    umask = os.umask(0)
    os.umask(umask)
    assert (reference / "data/manifests/train.parquet").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (reference / "metrics/ingest/train.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (reference / "data/raw").stat().st_mode & 0o777 == 0o777 & ~umask


# ------------------------------------------------------------------ through dvc repro


def make_dvc_repo(folder: Path, *, splits=("train",)) -> Path:
    """A DVC repo (no git) with the project's generate, scan and ingest stages (restricted to ``splits``), tiny params."""
    import yaml

    write_tiny_project(folder)
    src = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())
    stages = {"generate": src["stages"]["generate"], "scan": src["stages"]["scan"], "ingest": src["stages"]["ingest"]}
    stages["scan"]["foreach"] = list(splits)  # ingest depends on the split's listing fingerprint (data/scan/<split>.json)
    stages["ingest"]["foreach"] = list(splits)
    # stage commands on the "slow disk" (see SLOW_CLI), so that kills land while temporary outputs exist
    (folder / "slow_cli.py").write_text(SLOW_CLI[2])
    for st in (stages["generate"], stages["ingest"]["do"]):
        st["cmd"] = st["cmd"].replace("imagenet-clean", f"{sys.executable} slow_cli.py", 1)
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    # the stages list the package's source as dependencies, as in a clone of this repository
    shutil.copytree(Path(__file__).resolve().parents[1] / "src" / "imagenet_clean", folder / "src" / "imagenet_clean",
                    ignore=shutil.ignore_patterns("__pycache__"))
    run(["dvc", "init", "--no-scm", "-q"], folder)
    run(["dvc", "config", "core.autostage", "false"], folder, check=False)
    return folder


DVC_KILLS = [
    ("data/.raw.tmp-*/val", 0.0),  # inside generate
    ("data/raw/generate.json", 0.3),  # generate done, DVC committing or ingest starting
    ("data/manifests/.train.parquet.*.tmp", 0.0),  # inside ingest's write
    ("data/manifests/train.parquet", 0.0),  # ingest done, DVC committing
]


@pytest.mark.slow
def test_killed_dvc_repro_reruns_to_identical_outputs(tmp_path):
    ref = make_dvc_repo(tmp_path / "ref")
    run(["dvc", "repro", "-q"], ref)
    want_raw = tree_bytes(ref / "data/raw")
    want_man, want_meta = manifest_without_mtime(ref / "data/manifests/train.parquet")
    want_metrics = metrics_without_timing(ref / "metrics/ingest/train.json")
    for i, (pattern, delay) in enumerate(DVC_KILLS):
        repo = make_dvc_repo(tmp_path / f"r{i}")
        assert kill_when(["dvc", "repro", "-q"], repo, pattern=pattern, delay=delay), pattern
        assert tree_bytes(repo / "data/raw") in ({}, want_raw), pattern
        res = run(["dvc", "repro", "-q"], repo, check=False)
        assert res.returncode == 0, f"rerun after a kill at {pattern!r} failed:\n{res.stdout}\n{res.stderr}"
        assert tree_bytes(repo / "data/raw") == want_raw
        got_man, got_meta = manifest_without_mtime(repo / "data/manifests/train.parquet")
        assert got_man.equals(want_man) and got_meta == want_meta
        assert metrics_without_timing(repo / "metrics/ingest/train.json") == want_metrics
        assert not stale_stages(repo), stale_stages(repo)


# ------------------------------------------------------------------ full disk, read-only outputs


@pytest.fixture
def ingested(tmp_path, reference, monkeypatch):
    """A project with a good manifest and metrics already written; the cwd of the test."""
    project = write_tiny_project(tmp_path / "p")
    shutil.copytree(reference / "data/raw", project / "data/raw")
    for rel in ("data/manifests/train.parquet", "metrics/ingest/train.json"):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(reference / rel, project / rel)
    monkeypatch.chdir(project)
    monkeypatch.setenv("IMAGENET_CLEAN_TRACEBACK", "0")
    return project


def _failing_after(n_bytes: int, err: int):
    """A ``pq.write_table`` that writes ``n_bytes`` of the file, then fails with ``err`` (disk full mid-write)."""
    def write_table(table, where, **kw):
        with open(where, "wb") as f:
            f.write(b"PAR1" + b"\0" * n_bytes)
        raise OSError(err, os.strerror(err))

    return write_table


def _outputs(project: Path) -> dict[str, bytes]:
    return {rel: (project / rel).read_bytes() for rel in ("data/manifests/train.parquet", "metrics/ingest/train.json")}


def test_disk_full_while_writing_the_manifest_is_one_line_and_keeps_the_old_outputs(ingested, monkeypatch, capsys):
    import errno

    import pyarrow.parquet as pq

    before = _outputs(ingested)
    monkeypatch.setattr(pq, "write_table", _failing_after(100, errno.ENOSPC))
    code, out, err = run_main(["ingest", "--split", "train"], capsys)
    assert code == 1
    assert err == "imagenet-clean: error: cannot write data/manifests/train.parquet: No space left on device\n"
    assert _outputs(ingested) == before  # the previous good manifest and metrics are untouched
    assert sorted(p.name for p in (ingested / "data/manifests").iterdir()) == ["train.parquet"]  # no temp left


@pytest.mark.parametrize("failing", ["manifest", "metrics"])
def test_read_only_output_folder_is_one_line_and_keeps_the_old_file(ingested, monkeypatch, capsys, failing):
    """A read-only folder (EROFS at the rename, as a read-only mount gives even to root)."""
    import errno

    target = {"manifest": "train.parquet", "metrics": "train.json"}[failing]
    real_replace = os.replace
    before = _outputs(ingested)

    def replace(src, dst, **kw):
        if Path(dst).name == target:
            raise OSError(errno.EROFS, "Read-only file system", str(dst))
        return real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = run_main(["ingest", "--split", "train"], capsys)
    assert code == 1
    rel = {"manifest": "data/manifests/train.parquet", "metrics": "metrics/ingest/train.json"}[failing]
    assert err == f"imagenet-clean: error: cannot write {rel}: Read-only file system\n"
    assert (ingested / rel).read_bytes() == before[rel]
    assert not list(ingested.rglob("*.tmp"))


def test_disk_full_during_generate_is_one_line_and_keeps_the_old_raw(ingested, monkeypatch, capsys):
    import errno

    from PIL import Image

    before = tree_bytes(ingested / "data/raw")
    real_save, calls = Image.Image.save, []

    def save(self, *a, **kw):
        calls.append(1)
        if len(calls) > 20:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, *a, **kw)

    monkeypatch.setattr(Image.Image, "save", save)
    try:
        code, _, err = run_main(["generate"], capsys)
    except OSError as e:
        raise AssertionError(f"generate crashed with a traceback: {e!r}") from None
    finally:
        assert tree_bytes(ingested / "data/raw") == before
        assert [p.name for p in (ingested / "data").iterdir() if p.name.startswith(".")] == []
    assert code == 1 and err.startswith("imagenet-clean: error: cannot write data/raw") and err.count("\n") == 1


# ------------------------------------------------------------------ clean (decisions, clean manifest, change list, metrics)

CLEAN_KILLS = [
    "data/decisions/.val.parquet.*.tmp",  # inside the decisions write
    "data/clean/.val.parquet.*.tmp",  # decisions written, the clean manifest being written
    pytest.param("data/changes/.val.csv.*.tmp", marks=pytest.mark.slow),
    pytest.param("metrics/cleanup/.val.json.*.tmp", marks=pytest.mark.slow),
]


def _clean_output(project: Path, rel: str):
    return metrics_without_timing(project / rel) if rel.endswith(".json") else (project / rel).read_bytes()


@pytest.fixture(scope="module")
def clean_reference(tmp_path_factory):
    ref = clean_project(tmp_path_factory.mktemp("clean-ref"))
    run(CLI + ["clean", "--split", "val"], ref)
    return ref


@pytest.mark.parametrize("pattern", CLEAN_KILLS)
@pytest.mark.parametrize("previous", [False, True], ids=["fresh", "over-previous-outputs"])
def test_killed_clean_leaves_old_or_complete_outputs_and_rerun_is_byte_identical(tmp_path, clean_reference, pattern,
                                                                                previous):
    project = clean_project(tmp_path / "p")
    if previous:  # an earlier good run's outputs are there; each must stay whole (old or new, never partial)
        for rel in CLEAN_OUTPUTS:
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(clean_reference / rel, project / rel)
    want = {rel: _clean_output(clean_reference, rel) for rel in CLEAN_OUTPUTS}
    assert kill_when(SLOW_CLI + ["clean", "--split", "val"], project, pattern=pattern)
    for rel in CLEAN_OUTPUTS:
        assert not (project / rel).exists() or _clean_output(project, rel) == want[rel], f"partial {rel} after a kill"
    assert (project / "data/decisions/val.parquet").exists() or pattern.startswith("data/decisions")
    run(CLI + ["clean", "--split", "val"], project)
    assert {rel: _clean_output(project, rel) for rel in CLEAN_OUTPUTS} == want
    assert all(Path(p).name.startswith(".") for p in _leftovers(project)), _leftovers(project)


# ------------------------------------------------------------------ kill loops: 20 kills at seeded random moments (issue 18)


def _starter(args: list[str], cwd: Path):
    return lambda: subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)


def _loop_stage(project: Path, args: list[str], want: dict, read, *, seed: int) -> KillLoop:
    """20 kills of ``args`` (on the slow disk) at random moments; every output absent or whole after each, then a rerun."""
    def after_kill():
        for rel, good in want.items():
            assert not (project / rel).exists() or read(project, rel) == good, f"partial {rel} after a kill"

    def after_finish():
        assert {rel: read(project, rel) for rel in want} == want
        assert not temporaries(project / "data") + temporaries(project / "metrics")
        for rel in want:
            (project / rel).unlink()

    start = _starter(SLOW_CLI + args, project)
    window = timed_run(start)
    after_finish()
    loop = kill_loop(start, kills=20, seed=seed, window=window, outputs=project, after_kill=after_kill,
                     after_finish=after_finish)
    run(CLI + args, project)
    assert {rel: read(project, rel) for rel in want} == want
    assert not temporaries(project / "data") + temporaries(project / "metrics"), "a killed write's temporary survived"
    return loop


@pytest.mark.slow
def test_twenty_kills_of_ingest_at_random_moments_each_leave_whole_outputs_and_rerun_identical(tmp_path, reference):
    project = write_tiny_project(tmp_path / "p")
    shutil.copytree(reference / "data/raw", project / "data/raw")
    rels = ("data/manifests/train.parquet", "metrics/ingest/train.json")
    read = lambda p, rel: metrics_without_timing(p / rel) if rel.endswith(".json") else (p / rel).read_bytes()  # noqa: E731
    loop = _loop_stage(project, ["ingest", "--split", "train"], {rel: read(reference, rel) for rel in rels}, read, seed=8)
    print(f"ingest kill loop: {loop}")


@pytest.mark.slow
def test_twenty_kills_of_clean_at_random_moments_each_leave_whole_outputs_and_rerun_identical(tmp_path, clean_reference):
    project = clean_project(tmp_path / "p")
    want = {rel: _clean_output(clean_reference, rel) for rel in CLEAN_OUTPUTS}
    loop = _loop_stage(project, ["clean", "--split", "val"], want, _clean_output, seed=18)
    print(f"clean kill loop: {loop}")
