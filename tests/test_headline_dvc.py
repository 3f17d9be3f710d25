"""The headline stage and the metrics layout of dvc.yaml under DVC's own commands, fast (issue 29).

A small git + DVC project takes the repository's top-level ``metrics:`` and
``plots:`` and its ``headline`` stage as they are, and puts in front of them one
stand-in stage that writes the detail metrics files (as plain ``cache: false``
outputs, like the pipeline's) from ``h3`` in a few milliseconds. ``dvc repro``
and ``dvc exp run -S h3=2`` then show what a user sees: the headline figures as
the only metrics columns, a ``--only-changed`` table that fits a 120-column
screen, and the detail files still read by ``dvc metrics show``. The whole
pipeline's version of this check is tests/test_exp_show.py (slow).
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

from pipeline_project import ENV, REPO, commit, run

STANDIN = textwrap.dedent('''
    """Stand-in for clean/score/tables/retrain: detail metrics files that depend on h3."""
    import json, pathlib, yaml
    p = yaml.safe_load(open("params.yaml"))
    h3 = p["h3"] if p["h3"] is not None else 5
    m = pathlib.Path("metrics")
    (m / "cleanup").mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(("train", "val", "v2")):
        n = 1000 // (i + 1)
        (m / "cleanup" / f"{s}.json").write_text(json.dumps({
            "split": s, "samples": n, "fix": 50 // (i + 1), "remove": n // (4 + h3), "merged": 7,
            "thresholds_resolved": {"fn": 1.0, "h1": 5.0, "h2": 4.0, "h3": float(h3)},
            "issues_per_model": {f"model{k}": 100 + k for k in range(40)}}))  # detail nobody compares
    (m / "detection.json").write_text(json.dumps({"splits": {s: {"detected": {
        "precision": round(0.6 + h3 / 20, 4), "recall": round(0.9 - h3 / 20, 4)}} for s in ("train", "val", "v2")}}))
    (m / "review.json").write_text(json.dumps({"splits": {}}))
    (m / "table1.json").write_text(json.dumps({"vgg": {"val_clean": {"top1": 90 + h3 / 10}}}))
    (m / "table2.json").write_text(json.dumps({"arch": {"headline": {"top1": {"T": 90.0, "T_c": 90 + h3 / 10,
                                                                            "gain": h3 / 10}}}}))
''')
DETAIL = ["metrics/cleanup", "metrics/detection.json", "metrics/review.json", "metrics/table1.json", "metrics/table2.json"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("headline_dvc") / "p"
    folder.mkdir()
    shutil.copytree(REPO / "src" / "imagenet_clean", folder / "src" / "imagenet_clean",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (folder / "standin.py").write_text(STANDIN)
    (folder / "params.yaml").write_text("h3: null\nsplits: {val: {h3: 0.6666}}\n")
    repo_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    dvc_yaml = {
        "metrics": repo_yaml["metrics"],
        "plots": [p for p in repo_yaml["plots"] if "metrics/plots/changes_per_class.csv" not in p],
        "stages": {
            "standin": {"cmd": f"{sys.executable} standin.py", "deps": ["standin.py"], "params": ["h3"],
                        "outs": [{d: {"cache": False}} for d in DETAIL]},
            "headline": repo_yaml["stages"]["headline"],
        },
    }
    (folder / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (folder / ".gitignore").write_text("__pycache__/\n")
    run(["git", "init", "-q", "-b", "main"], folder)
    run(["git", "config", "user.name", "t"], folder)
    run(["git", "config", "user.email", "t@t.invalid"], folder)
    run(["dvc", "init", "-q"], folder)
    run(["dvc", "repro"], folder)
    commit(folder, "repro")
    run(["dvc", "exp", "run", "-n", "h3-two", "-S", "h3=2"], folder)
    return folder


def _show(project, *args) -> str:
    env = {k: v for k, v in ENV.items() if k not in ("DVC_PAGER", "PAGER")}
    res = subprocess.run(["dvc", "exp", "show", *args], cwd=project, env={**env, "COLUMNS": "120"},
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_only_the_headline_figures_are_metrics_columns(project):
    header = next(csv.reader(io.StringIO(_show(project, "--csv"))))
    metrics = [c for c in header if "." in c and c.split(".")[0] in ("train", "val", "v2", "table1", "table2")]
    head = json.loads((project / "metrics/headline.json").read_text())
    assert metrics == list(head), (metrics, list(head))  # the headline file's order is the column order
    assert not [c for c in header if c.startswith("metrics/") and ":" in c], header  # no detail file's figure


def test_only_changed_fits_120_columns_with_h3_and_every_splits_removals(project):
    table = _show(project, "--only-changed")
    assert "…" not in table, table
    screen = [line[:120] for line in table.splitlines()]
    header = next(line for line in screen if "Experiment" in line)
    for h in ("train.h3", "val.h3", "v2.h3", "train.removals", "val.removals", "v2.removals"):
        assert h in header, "\n".join(screen)
    row = next(line for line in screen if "h3-two" in line)
    removals = {s: json.loads((project / f"metrics/cleanup/{s}.json").read_text())["remove"] for s in ("train", "val", "v2")}
    assert removals == {"train": 1000 // 6, "val": 500 // 6, "v2": 333 // 6}  # the workspace holds the experiment
    cells = row.split()
    for s in ("train", "val", "v2"):
        assert str(removals[s]) in cells, (s, row)
    oc = next(csv.reader(io.StringIO(_show(project, "--only-changed", "--csv"))))
    assert len(oc) <= 40 and "h3" in oc, oc


def test_detail_files_are_read_by_dvc_metrics_show_and_diff(project):
    shown = json.loads(run(["dvc", "metrics", "show", "metrics/cleanup/val.json", "--json"], project).stdout)
    data = next(iter(shown.values()))["data"]["metrics/cleanup/val.json"]["data"]
    assert data["issues_per_model"]["model0"] == 100
    diff = json.loads(run(["dvc", "metrics", "diff", "main", "--targets", "metrics/detection.json", "--json"], project).stdout)
    assert diff["metrics/detection.json"]["splits.val.detected.recall"]["old"] == 0.65
    assert diff["metrics/detection.json"]["splits.val.detected.recall"]["new"] == 0.8


def test_sweep_plots_draw_each_experiment_at_its_h3(project):
    plots = json.loads(run(["dvc", "plots", "diff", "main", "h3-two", "--json"], project).stdout)["data"]
    for plot_id, fields in (("sweep_changes", {"fixes", "removals"}), ("sweep_precision", {"precision", "recall"})):
        points = [p for entry in plots[plot_id] for p in entry["content"]["data"]["values"]]
        assert {p["field"] for p in points} == fields
        # one point per cleaned split, field and experiment, at the split's h3
        assert sorted((p["rev"], p["split"], p["h3"]) for p in points if p["field"] == min(fields)) == sorted(
            (rev, s, h3) for rev, h3 in (("main", "5"), ("h3-two", "2")) for s in ("train", "val", "v2"))
