"""`dvc exp show` is readable after a threshold experiment (issue 29), checked with DVC's own commands.

A tiny project of the repository's pipeline (tests/pipeline_project.py) with
``h3 = 1`` on every cleaned split and no CAM exemption runs ``dvc repro`` and ``dvc exp run -S h3=2``
(which changes every split's consensus rule), as a user would. Then:

* ``COLUMNS=120 dvc exp show --only-changed``: DVC renders the table at its own
  width and pipes it to ``less -S`` in a terminal, which shows each line's first
  120 characters. No cell may be cut to ``…`` (DVC collapses columns that do not
  fit), and those 120 characters show the experiment names, every split's h3 and
  every split's removal count, with the values of ``--csv`` under their headers;
* ``--csv`` has at most 40 columns and only the headline file's figures as metrics;
* the detail files are still read by ``dvc metrics show FILE``;
* ``dvc plots diff`` draws the sweep plot across the two revisions.

Minutes on 2 cores (a `dvc repro` and an experiment): marked slow.
"""
from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest
import yaml

from pipeline_project import ENV, commit, run, write_pipeline_project

pytestmark = pytest.mark.slow

SPLITS = ("train", "val", "v2")
SCREEN = 120


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = write_pipeline_project(tmp_path_factory.mktemp("expshow") / "p")
    params = yaml.safe_load((project / "params.yaml").read_text())
    for s in SPLITS:  # h3 = 1 everywhere, so that -S h3=2 changes every split's consensus rule
        params["splits"][s]["h3"] = 1
    params["cam"]["enabled"] = False  # no CAM exemption: a cheaper project, and every h3 candidate is a removal
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit(project, "h3 = 1")
    run(["dvc", "repro"], project)
    commit(project, "reference repro")
    run(["dvc", "exp", "run", "-n", "h3-two", "-S", "h3=2"], project)
    return project


def _show(project, *args, only_changed: bool = True) -> str:
    """``COLUMNS=120 dvc exp show --only-changed ARGS`` (DVC's default pager path; off a terminal it prints the page)."""
    env = {k: v for k, v in ENV.items() if k not in ("DVC_PAGER", "PAGER")}
    res = subprocess.run(["dvc", "exp", "show", *(["--only-changed"] if only_changed else []), *args], cwd=project,
                         env={**env, "COLUMNS": str(SCREEN)}, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _metric_files(node) -> set[str]:
    """Every metrics file named in `dvc exp show --json` output."""
    out = set()
    if isinstance(node, dict):
        if isinstance(node.get("metrics"), dict):
            out |= set(node["metrics"])
        for v in node.values():
            out |= _metric_files(v)
    elif isinstance(node, list):
        for v in node:
            out |= _metric_files(v)
    return out


def _csv(project, *, only_changed: bool = True) -> tuple[list[str], dict[str, dict[str, str]]]:
    rows = list(csv.reader(io.StringIO(_show(project, "--csv", only_changed=only_changed))))
    header = rows[0]
    by_name = {}
    for r in rows[1:]:
        d = dict(zip(header, r))
        by_name[d["Experiment"] or d["rev"]] = d
    return header, by_name


def test_only_changed_fits_a_120_column_screen_with_names_h3_and_every_splits_removals(project):
    table = _show(project)
    assert "…" not in table, f"a cell or a column is cut:\n{table}"
    lines = [line.rstrip() for line in table.splitlines()]
    screen = [line[:SCREEN] for line in lines]  # what `less -S` (DVC's pager) shows in a 120-column terminal
    header_i = next(i for i, line in enumerate(screen) if "Experiment" in line)
    header = screen[header_i]
    _, values = _csv(project, only_changed=False)
    # the tiny models (one epoch) may give the same removals at h3 = 1 and 2; the removal columns of changed
    # removals are then checked by test_headline_dvc.py, whose stand-in detail files always change
    changed = [s for s in SPLITS if values["main"][f"{s}.removals"] != values["h3-two"][f"{s}.removals"]]
    wanted = [f"{s}.h3" for s in SPLITS] + [f"{s}.removals" for s in changed]
    for h in wanted:
        assert f" {h} " in f" {header} ", f"{h} not in the first {SCREEN} columns:\n" + "\n".join(screen)
    for name in ("workspace", "main", "h3-two"):
        line = next((x for x in screen[header_i + 1:] if name in x), None)
        assert line is not None, f"experiment {name} not shown:\n" + "\n".join(screen)
        for h in wanted:  # metrics are right-justified: the value ends where its header ends
            end = f" {header} ".index(f" {h} ") + len(h)
            cell = line[:end].split()[-1]
            assert cell == values[name][h], (name, h, cell, values[name][h])
    h3 = {name: {s: int(values[name][f"{s}.h3"]) for s in SPLITS} for name in ("main", "h3-two")}
    assert h3 == {"main": dict.fromkeys(SPLITS, 1), "h3-two": dict.fromkeys(SPLITS, 2)}
    # a higher consensus threshold never removes more
    assert all(int(values["h3-two"][f"{s}.removals"]) <= int(values["main"][f"{s}.removals"]) for s in SPLITS)
    print(f"first {SCREEN} columns of `dvc exp show --only-changed` (removals changed on {changed}):")
    print("\n".join(screen))


def test_only_changed_csv_has_at_most_40_columns_and_only_headline_figures(project):
    header, values = _csv(project)
    print(f"dvc exp show --only-changed --csv: {len(header)} columns: {header}")
    assert len(header) <= 40, header
    assert "h3" in header and values["h3-two"]["h3"] == "2"
    detail = [c for c in header if c.startswith("metrics/") and not c.startswith(("metrics/headline.json",))]
    assert not [c for c in detail if ":" in c], f"columns from detail metrics files: {detail}"
    files = _metric_files(json.loads(run(["dvc", "exp", "show", "--json"], project).stdout))
    assert files == {"metrics/headline.json"}, files
    full = next(csv.reader(io.StringIO(run(["dvc", "exp", "show", "--csv"], project).stdout)))
    print(f"dvc exp show --csv: {len(full)} columns")


def test_detail_files_are_still_read_by_dvc_metrics_show(project):
    out = run(["dvc", "metrics", "show", "metrics/detection.json", "metrics/cleanup/val.json", "--json"], project).stdout
    shown = json.loads(out)
    data = next(iter(shown.values()))["data"]
    assert data["metrics/detection.json"]["data"]["splits"]["val"]["detected"]["recall"] is not None
    assert data["metrics/cleanup/val.json"]["data"]["thresholds_resolved"]["h3"] == 2.0
    head = json.loads((project / "metrics/headline.json").read_text())
    assert head["val.removals"] == data["metrics/cleanup/val.json"]["data"]["remove"]


def test_sweep_plot_draws_every_revision(project, tmp_path):
    out = run(["dvc", "plots", "diff", "main", "h3-two", "--json", "-o", str(tmp_path / "plots")], project).stdout
    plots = json.loads(out)
    for plot_id in ("sweep_changes", "sweep_precision"):
        assert plot_id in json.dumps(plots), f"{plot_id} not drawn: {sorted(plots)}"
    points = _datapoints(plots.get("sweep_changes") or plots.get("data", {}).get("sweep_changes"))
    assert {"main", "h3-two"} <= {p.get("rev") for p in points}, points[:3]
    assert {str(p.get("h3")) for p in points if p.get("rev") == "h3-two"} == {"2"}


def _datapoints(node) -> list[dict]:
    """Every data point (a dict with a ``rev``) under ``node`` of `dvc plots diff --json` output."""
    if isinstance(node, dict):
        if "rev" in node and not any(isinstance(v, (dict, list)) for v in node.values()):
            return [node]
        return [p for v in node.values() for p in _datapoints(v)]
    if isinstance(node, list):
        return [p for v in node for p in _datapoints(v)]
    return []
