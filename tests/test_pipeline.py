"""The whole DVC pipeline end to end on a tiny embedded configuration (issues 6 and 8).

One uninterrupted ``dvc repro`` of a tiny project (tests/pipeline_project.py:
220 digit images of 32 px, two trained models (two folds, one epoch) and two
fixed-output models that make val's CAM candidates certain) is the reference.
Each test works on a copy of it, or on a fresh project, and checks what a user
relies on: every stage writes its outputs and ``dvc status`` is clean; a
threshold experiment reruns only what a threshold can change and reuses the
CAM scores; a queued sweep runs; ``dvc repro --force`` gives the same outputs;
``dvc repro`` killed inside ``fit``, ``predict`` and ``clean`` reruns to outputs
identical to the uninterrupted run's. Every test runs DVC in subprocesses and
takes minutes on 2 CPU cores, so all are marked slow.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cli_run import stale_stages
from pipeline_project import (
    ENV,
    FIXED_MODELS,
    TINY_MODELS,
    commit,
    metrics_tree,
    output_bytes,
    run,
    stages_run,
    write_pipeline_project,
)

pytestmark = pytest.mark.slow

SPLITS = ("train", "val", "v2", "imagenet_r")
CLEAN_SPLITS = ("train", "val", "v2")
PREDICT_SPLITS = ("val", "v2")  # imagenet_r has no root in the embedded params: skipped
EXPENSIVE = ("generate", "ingest@", "fit@", "predict@")
"""Stages a threshold can never change: nothing of these may rerun in a threshold experiment."""


def certain_cam_candidates(project: Path) -> list[str]:
    """The val images that are CAM candidates by construction (pipeline_project.FIXED_MODELS): label 0, with a box.

    Asserts that there are some, and that the clean stage's decisions made each one a consensus removal that the CAM
    exemption then scored: the condition the CAM tests need, checked rather than hoped for.
    """
    m = pq.read_table(project / "data/manifests/val.parquet").to_pandas()
    fixed = FIXED_MODELS["fixed0"]
    ids = [r.sample_id for r in m.itertuples() if r.label == fixed and r.status == "ok" and r.boxes is not None
           and len(r.boxes)]
    assert ids, f"the seeded val split has no image of class {fixed} with a box: the CAM condition is gone"
    d = pq.read_table(project / "data/decisions/val.parquet").to_pandas().set_index("sample_id")
    for sid in ids:
        row = d.loc[sid]
        assert "consensus" in list(row["rules"]) and json.loads(row["cam_scores"] or "{}"), \
            f"{sid}: not a CAM-scored consensus removal ({row.to_dict()})"
    return ids


def dvc_status_is_clean(project: Path) -> None:
    stale = stale_stages(project)
    assert not stale, f"dvc status is not clean: {stale}"


def copy_project(src: Path, dst: Path) -> Path:
    """A copy of a project (git, DVC cache, workspace and the git-ignored caches under data/cache)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def cam_rows(project: Path) -> dict[tuple, tuple[int, float]]:
    """Every CAM score in the project's caches: ``(split, key...) -> (rowid, score)``.

    ``INSERT OR REPLACE`` gives a replaced row a new rowid, so an unchanged rowid
    means the score was not recomputed.
    """
    out = {}
    for db in sorted((project / "data/cache/cams").glob("*/cam_scores.sqlite")):
        con = sqlite3.connect(db)
        try:
            for rowid, *key, score in con.execute("SELECT rowid, image, label, boxes, model, fold, fingerprint, "
                                                  "method, heat, score FROM scores"):
                out[(db.parent.name, *key)] = (rowid, score)
        finally:
            con.close()
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny project after one uninterrupted ``dvc repro``, with ``dvc.lock`` committed."""
    project = write_pipeline_project(tmp_path_factory.mktemp("pipeline") / "ref")
    t0 = time.perf_counter()
    res = run(["dvc", "repro"], project)
    seconds = time.perf_counter() - t0
    commit(project, "reference repro")
    return {"project": project, "output": res.stdout, "seconds": seconds}


# ------------------------------------------------------------------ 1. every stage writes its outputs


def test_repro_writes_every_stage_output_and_status_is_clean(reference):
    project, output = reference["project"], reference["output"]
    ran, _ = stages_run(output)
    stages = set(run(["dvc", "stage", "list", "--name-only"], project).stdout.split())
    assert ran == stages, f"stages not run: {sorted(stages - ran)}"

    want = [f"data/manifests/{s}.parquet" for s in SPLITS] + [f"metrics/ingest/{s}.json" for s in SPLITS]
    want += [f"data/models/{m}/fold{k}.safetensors" for m in TINY_MODELS for k in (0, 1)]
    want += [f"data/predictions/train/{m}.parquet" for m in TINY_MODELS]
    want += [f"data/predictions/{s}/{m}.parquet" for s in PREDICT_SPLITS for m in TINY_MODELS]
    for s in CLEAN_SPLITS:
        want += [f"data/decisions/{s}.parquet", f"data/clean/{s}.parquet", f"data/changes/{s}.csv",
                 f"metrics/cleanup/{s}.json"]
    want += [f"metrics/{n}.json" for n in ("detection", "table1", "table2", "table3", "ablations")]
    want += ["metrics/report.md", "metrics/plots/changes_per_class.csv", "data/raw/truth.parquet"]
    missing = [p for p in want if not (project / p).is_file()]
    assert not missing, f"outputs missing after dvc repro: {missing}"

    for s in CLEAN_SPLITS:  # one decision per manifest row, every model's predictions one row per sample
        n = pq.read_metadata(project / f"data/manifests/{s}.parquet").num_rows
        assert n > 0
        assert pq.read_metadata(project / f"data/decisions/{s}.parquet").num_rows == n, s
        for m in TINY_MODELS:
            assert pq.read_metadata(project / f"data/predictions/{s}/{m}.parquet").num_rows == n, (s, m)
    for name in ("detection", "table1", "table2"):
        assert json.loads((project / f"metrics/{name}.json").read_text()), f"metrics/{name}.json is empty"
    assert (project / "metrics/report.md").read_text().strip()
    dvc_status_is_clean(project)


# ------------------------------------------------------------------ 2. threshold experiments


def assert_only_thresholded_stages_ran(output: str) -> set[str]:
    ran, skipped = stages_run(output)
    assert not [s for s in ran if s.startswith(EXPENSIVE)], f"a threshold reran {sorted(ran)}"
    assert {f"clean@{s}" for s in CLEAN_SPLITS} <= ran, sorted(ran)
    assert {"generate", *(f"fit@{m}" for m in TINY_MODELS), "predict@val", "predict@v2"} <= skipped, sorted(skipped)
    return ran


def test_threshold_experiment_reruns_only_what_a_threshold_changes_and_reuses_cams(reference, tmp_path):
    project = copy_project(reference["project"], tmp_path / "exp")
    ref_val = json.loads((project / "metrics/cleanup/val.json").read_text())
    certain = certain_cam_candidates(project)
    assert ref_val["thresholds"]["h3"] == 1 and ref_val["cam_candidates"] >= len(certain), ref_val
    cams = cam_rows(project)
    assert cams, "no CAM score cached by the reference run"

    # a threshold of the rules: no training, prediction or ingestion reruns; raising h3 never adds removals.
    # h3 = 4 (every model): the certain candidates' fixed0 has their label, so they are no longer removed
    res = run(["dvc", "exp", "run", "-n", "h3-four", "-S", "h3=4"], project)
    assert_only_thresholded_stages_ran(res.stdout)
    val = json.loads((project / "metrics/cleanup/val.json").read_text())
    assert val["thresholds"]["h3"] == 4
    assert val["remove"] <= ref_val["remove"] and val["consensus_only"] <= ref_val["consensus_only"] - len(certain)

    # a threshold of the CAM exemption: the same candidates, every score read from the cache
    # (h3=null: the top-level h3 of the previous experiment no longer applies; each split has its own again)
    res = run(["dvc", "exp", "run", "-n", "pass-half", "-S", "h3=null", "-S", "cam.pass_score=0.5"], project)
    assert_only_thresholded_stages_ran(res.stdout)
    val = json.loads((project / "metrics/cleanup/val.json").read_text())
    assert val["cam_candidates"] == ref_val["cam_candidates"]
    after = cam_rows(project)
    recomputed = [k for k, v in cams.items() if after.get(k) != v]
    assert not recomputed, f"{len(recomputed)} cached CAM scores recomputed or lost, e.g. {recomputed[:2]}"
    # a stricter pass score may consult a further model of a candidate (lazy: the next model only when the last
    # one failed), but never scores again an (image, model) the reference already scored
    scored = {(k[0], k[1], k[4]) for k in cams}
    again = [k for k in after if k not in cams and (k[0], k[1], k[4]) in scored]
    assert not again, f"CAM scores computed again for (image, model) pairs already scored, e.g. {again[:2]}"

    exps = _experiments(json.loads(run(["dvc", "exp", "show", "--json"], project).stdout))
    assert {"h3-four", "pass-half"} <= set(exps), sorted(exps)
    assert exps["h3-four"]["params"]["h3"] == 4 and exps["pass-half"]["params"]["cam"]["pass_score"] == 0.5
    for name in ("h3-four", "pass-half"):
        head = exps[name]["metrics"]["metrics/headline.json"]
        assert head and "val.precision" in head, f"headline metrics of {name} missing from dvc exp show"
        # the detail files are outputs for people, not experiment columns (issue 29)
        assert set(exps[name]["metrics"]) == {"metrics/headline.json"}, sorted(exps[name]["metrics"])
    # dvc exp show puts each experiment's thresholds beside its headline figures
    assert exps["h3-four"]["metrics"]["metrics/headline.json"]["val.h3"] == 4
    assert exps["h3-four"]["metrics"]["metrics/headline.json"]["val.removals"] <= ref_val["remove"]


def _experiments(shown) -> dict[str, dict]:
    """``name -> {"params": params.yaml values, "metrics": {file: values}}`` from ``dvc exp show --json``."""
    out = {}

    def visit(node):
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and "params" in data:
                name = node.get("name") or data.get("name") or data.get("rev")
                params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
                metrics = {f: (v or {}).get("data") for f, v in (data.get("metrics") or {}).items()}
                out[name] = {"params": params, "metrics": metrics}
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(shown)
    return out


# ------------------------------------------------------------------ 3. a queued sweep


def test_queued_threshold_sweep_runs_every_experiment(reference, tmp_path):
    project = copy_project(reference["project"], tmp_path / "queue")
    run(["dvc", "exp", "run", "--queue", "-S", "h3=0.5,2"], project)  # a grid: one experiment per value
    try:
        run(["dvc", "queue", "start", "-j", "1"], project)
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            status = run(["dvc", "queue", "status"], project).stdout
            if not any(w in status for w in ("Queued", "Running")):
                break
            time.sleep(5)
        assert "Failed" not in status and "Queued" not in status and "Running" not in status, status
    finally:
        run(["dvc", "queue", "stop"], project, check=False)
    exps = _experiments(json.loads(run(["dvc", "exp", "show", "--json"], project).stdout))
    by_h3 = {e["params"].get("h3"): e for name, e in exps.items() if name not in ("workspace", "main")}
    assert {0.5, 2} <= set(by_h3), {name: e["params"].get("h3") for name, e in exps.items()}
    for h3 in (0.5, 2):
        head = by_h3[h3]["metrics"].get("metrics/headline.json")
        assert head and "train.removals" in head, f"experiment h3={h3} has no headline metrics"


# ------------------------------------------------------------------ 4. determinism


def test_repro_force_from_scratch_gives_identical_outputs_and_metrics(reference, tmp_path):
    """Same params and seed, everything recomputed (checkpoints and caches removed): the same bytes and metrics."""
    project = copy_project(reference["project"], tmp_path / "force")
    want, want_metrics = output_bytes(project), metrics_tree(project)
    shutil.rmtree(project / "data/models")  # persistent fold checkpoints: fit would resume from them
    shutil.rmtree(project / "data/cache")  # CAM scores, retraining runs
    res = run(["dvc", "repro", "--force"], project)
    ran, _ = stages_run(res.stdout)
    assert ran == set(run(["dvc", "stage", "list", "--name-only"], project).stdout.split())
    got = output_bytes(project)
    assert sorted(got) == sorted(want)
    differ = [k for k in want if got[k] != want[k]]
    assert not differ, f"not byte-identical after dvc repro --force: {differ}"
    assert metrics_tree(project) == want_metrics
    dvc_status_is_clean(project)


def test_repro_force_with_fold_checkpoints_keeps_every_training_curve(reference, tmp_path):
    project = copy_project(reference["project"], tmp_path / "force-resume")
    want = {k: v for k, v in metrics_tree(project).items() if k.startswith("train/resnet/")}
    res = run(["dvc", "repro", "--force", "--single-item", "fit@resnet"], project, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert {k: v for k, v in metrics_tree(project).items() if k.startswith("train/resnet/")} == want


# ------------------------------------------------------------------ 5. SIGKILL inside the long stages


def kill_repro(project: Path, stage: str, pattern: str | None, *, grace: float = 120.0) -> bool:
    """Start ``dvc repro``; SIGKILL its process group once ``stage`` runs and ``pattern`` (a glob) exists.

    When ``pattern`` does not appear within ``grace`` seconds of the stage's start, kill anyway.

    Returns:
        Whether the stage was running when killed.
    """
    log = project.parent / f"{project.name}-{stage}.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(["dvc", "repro"], cwd=project, env={**ENV, "PYTHONUNBUFFERED": "1"},
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = None
        while proc.poll() is None:
            if started is None and f"Running stage '{stage}'" in log.read_text():
                started = time.monotonic()
            if started is not None and (pattern is None or list(project.glob(pattern))
                                        or time.monotonic() - started > grace):
                break
            time.sleep(0.05)
        alive = proc.poll() is None and started is not None
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        return alive
    finally:
        proc.wait()


KILLS = [
    ("fit@resnet", "data/models/resnet/fold0.safetensors"),  # fold 0 saved, fold 1 training
    ("fit@resnet", "data/models/resnet/fold1.safetensors"),  # every fold saved, the full model training
    ("predict@val", "data/predictions/val/*.parquet"),  # one model's predictions written, the next running
    ("clean@val", "data/cache/cams/val/cam_scores.sqlite"),  # CAM scores being computed
    ("clean@val", "data/decisions/val.parquet"),  # CAMs done (from the cache), decisions written, the rest next
]


def test_killed_repro_inside_fit_predict_and_clean_reruns_to_identical_outputs(reference, tmp_path):
    certain_cam_candidates(reference["project"])  # clean@val writes CAM scores, so the kill inside that write can land
    project = write_pipeline_project(tmp_path / "killed")
    for stage, pattern in KILLS:
        assert kill_repro(project, stage, pattern), f"the kill did not land inside {stage}"
    res = run(["dvc", "repro"], project)
    ran, _ = stages_run(res.stdout)
    assert "clean@val" in ran
    want = output_bytes(reference["project"])
    got = output_bytes(project)
    assert sorted(got) == sorted(want)
    differ = [k for k in want if got[k] != want[k]]
    assert not differ, f"outputs differ from the uninterrupted run's: {differ}"
    got_m, want_m = metrics_tree(project), metrics_tree(reference["project"])
    # training curves persist beside their checkpoints (metrics/train/<m> is a persistent output): nothing lost
    assert sorted(got_m) == sorted(want_m)
    assert got_m == want_m
    dvc_status_is_clean(project)


# ------------------------------------------------------------------ 6. publish: push, fresh clone, pull, apply (issue 7)


@pytest.mark.slow
def test_pushed_clean_splits_pull_into_a_fresh_clone_and_apply_to_the_dataset(reference, tmp_path):
    from torchvision.datasets import ImageFolder

    project = copy_project(reference["project"], tmp_path / "publisher")
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "--local", "-f", "-d", "test", str(remote)], project)
    run(["dvc", "push"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["dvc", "remote", "add", "--local", "-f", "-d", "test", str(remote)], clone)
    run(["dvc", "pull", "clean"], clone)
    for split in ("train", "val", "v2"):
        assert (clone / f"data/clean/{split}.parquet").read_bytes() == (project / f"data/clean/{split}.parquet").read_bytes()
    out = tmp_path / "val-clean"
    res = run(["imagenet-clean", "apply", "--clean", str(clone / "data/clean/val.parquet"),
               "--root", str(project / "data/raw/val"), "--out", str(out)], clone)
    counts = json.loads(res.stdout.strip().splitlines()[-1])
    clean = pq.read_table(clone / "data/clean/val.parquet").to_pandas()
    assert counts["kept"] + counts["relabelled"] + counts["placeholders"] >= len(clean) - counts.get("merged", 0)
    wnids = (out / "classes.txt").read_text().splitlines()  # line i is label i (empty lines: label gaps)
    folder = ImageFolder(str(out))
    got = sorted((Path(p).name, wnids.index(folder.classes[t])) for p, t in folder.samples)
    want = sorted((Path(p).name if a != "placeholder" else "__placeholder__.JPEG", int(lbl))
                  for p, lbl, a in zip(clean["path"], clean["label"], clean["action"]))
    assert got == want


@pytest.mark.slow
def test_publish_commits_a_release_that_a_fresh_clone_pulls_offline_and_applies(reference, tmp_path):
    """`imagenet-clean publish` on the pipeline itself (issue 17), as the repository's release is made.

    The release goes to a remote committed inside the repository; a fresh clone
    pulls it with no other step, byte-identical to its dvc.lock, and
    `imagenet-clean generate` recreates the images it applies to.
    """
    import hashlib

    import yaml

    project = copy_project(reference["project"], tmp_path / "publisher")
    res = run(["imagenet-clean", "publish", "--remote", "published/remote", "--prune", "--tag", "embedded-v1"], project)
    assert json.loads(res.stdout.strip().splitlines()[-1])["tag"] == "embedded-v1"
    assert run(["git", "status", "--porcelain", "--untracked-files=no"], project).stdout.strip() == ""
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    run(["dvc", "pull", "clean"], clone)
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    outs = {o["path"]: o["md5"] for name, st in lock["stages"].items() if name.startswith("clean@")
            for o in st["outs"] if not o["path"].startswith("metrics/")}
    assert len(outs) == 3 * len(CLEAN_SPLITS)
    assert {p: hashlib.md5((clone / p).read_bytes()).hexdigest() for p in outs} == outs
    run(["imagenet-clean", "generate"], clone)
    out = tmp_path / "val-clean"
    res = run(["imagenet-clean", "apply", "--clean", "data/clean/val.parquet", "--root", "data/raw/val",
               "--out", str(out)], clone)  # refuses unless every image's content hash matches the manifest
    assert json.loads(res.stdout.strip().splitlines()[-1])["images"] == pq.read_metadata(clone / "data/clean/val.parquet").num_rows


# ------------------------------------------------------------------ 7. human review in a real browser (issue 16)


@pytest.mark.slow
def test_review_in_chromium_then_repro_applies_the_verdicts(reference, tmp_path):
    """Accept, reject and relabel one change each with the keyboard, then `dvc repro` applies them.

    Skips without Chromium and chromedriver (tests/review_browser.py). With
    ``IMAGENET_CLEAN_UPDATE_SCREENSHOT=1`` the screenshot replaces docs/review.png (the README's).
    """
    from review_browser import review_then_repro

    project = copy_project(reference["project"], tmp_path / "review")
    shot = tmp_path / "review.png"
    result = review_then_repro(project, shot)
    assert shot.stat().st_size > 10_000
    assert {"score", "tables", "report"} <= result["ran"]
    if os.environ.get("IMAGENET_CLEAN_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, Path(__file__).resolve().parents[1] / "docs" / "review.png")
