"""The Markdown report, the changes-per-class plot data and the paper's reference figures."""

import json

import pandas as pd
import pytest

from imagenet_clean.evaluate import paper
from imagenet_clean.evaluate.ablations import write_ablations
from imagenet_clean.evaluate.report import changes_per_class, render_report, write_report
from imagenet_clean.evaluate.table1 import write_table1
from imagenet_clean.evaluate.table2 import write_table2
from imagenet_clean.evaluate.table3 import write_table3
from imagenet_clean.workspace import Workspace
from table_project import MODELS, FakeBackend, make_project, make_split, tables_params


def test_paper_figures_transcribed():
    assert len(paper.PAPER_TABLE1) == 14 and len(paper.PAPER_TABLE2) == 7 and len(paper.PAPER_TABLE3) == 4
    assert paper.PAPER_TABLE1[0] == ("SqueezeNet", 13716, (56.15, 79.38), (63.78, 85.66))
    assert paper.PAPER_TABLE1[9] == ("ENet-B2 (NS)", 4658, (81.41, 95.94), (90.73, 99.37))
    assert paper.PAPER_TABLE2[2][1][2] == (83.11, 96.78)
    assert paper.PAPER_TABLE2[6][1] == ((88.35, 98.65), (90.87, 99.25), None, (80.10, 95.86), (84.12, 97.81))
    assert paper.PAPER_TABLE3[2] == ("180x320 (P)", ((-1.03, -0.30), (+0.25, +0.33)))
    # the pretrained rows of table 2 repeat table 1's V and V_c figures
    t1 = {m: (v, vc) for m, _, v, vc in paper.PAPER_TABLE1}
    for m, cells in paper.PAPER_TABLE2[3:]:
        key = {"IG-ResNeXt101": "IG-ResNeXt101"}.get(m, m)
        assert (cells[0], cells[1]) == t1[key]


def test_report_with_only_table1_notes_the_rest(tmp_path):
    paths = make_project(tmp_path, splits=("val",))
    write_table1(list(MODELS), ["val"], paths=paths)
    out = write_report(["val"], workspace=paths)
    md = out.read_text()
    assert "## Table 1" in md and "| m1 | 3 | 81.82/100.00 | 100.00/100.00 | +18.18/+0.00 |" in md
    assert "*table2: not computed.*" in md and "*ablations: not computed.*" in md
    assert "13716" in md  # the paper's figures beside ours


def test_report_renders_all_tables(tmp_path):
    paths = make_project(tmp_path, n=40)
    write_table1(list(MODELS), ["val", "v2"], paths=paths)
    fake = FakeBackend()
    write_table2(tables_params(archs=["a1"], seeds=2), paths=paths, backend=fake)
    write_table3(tables_params(archs=["a1"], seeds=2, resolutions=True), paths=paths, backend=fake)
    write_ablations(tables_params(archs=["a1"], seeds=2), paths=paths, backend=fake)  # switched off
    md = write_report(["train", "val", "v2"], workspace=paths).read_text()
    assert "## Table 2" in md and "T_c, V_c" in md and "T_c, V2_c" in md and "±" in md
    assert "T_c-T on V_c top-1 [95 % CI] verdict" in md and "mean±std over 2 seed(s)" in md
    t2 = json.loads(paths.metric("table2.json").read_text())["a1"]["gain"]
    for s in ("val", "val_clean", "v2", "v2_clean"):  # every set's paired gain, interval and verdict, as table2.json has them
        g = t2[s]["top1"]
        assert f"{g['gain']:+.2f} [{g['ci95'][0]:+.2f}, {g['ci95'][1]:+.2f}] {g['verdict']}" in md, s
    assert "## Table 3" in md and "56x32 (L)" in md and "square 32x32" in md
    assert "*ablations: skipped (tables.ablations is false).*" in md
    assert "83.11/96.78" in md and "+1.36/+0.75" in md
    t3 = md[md.index("## Table 3"):]
    assert t3.index("40x24 (L)") < t3.index("56x32 (L)") < t3.index("24x40 (P)")
    csv = pd.read_csv(paths.metrics / "plots" / "changes_per_class.csv")
    assert list(csv.columns) == ["split", "class", "fixes", "removals"]
    val = csv[csv["split"] == "val"].set_index("class")
    assert val["fixes"].sum() == 2 and val["removals"].sum() == 2


def test_report_ablations_and_rounds(tmp_path):
    paths = make_project(tmp_path, n=40)
    write_ablations(tables_params(archs=["a1"], seeds=2, ablations=True), paths=paths, backend=FakeBackend())
    r2 = paths.at_round(2)
    make_split(r2, "val")
    write_table1(list(MODELS), ["val"], paths=r2)
    md = write_report(["val"], rounds=2, workspace=paths).read_text()
    assert "# Round 1" in md and "# Round 2" in md
    r1 = md[md.index("# Round 1"):md.index("# Round 2")]
    assert "## Ablations" in r1 and "*table1: not computed.*" in r1
    rows = [line.split("|")[1].strip() for line in r1.splitlines() if line.startswith("| ") and "Variant" not in line]
    assert rows == ["none", "fixes", "removals", "merges", "all"]
    assert "## Table 1" in md[md.index("# Round 2"):]


def test_report_bad_metrics_file(tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "table1.json").write_text("{not json")
    with pytest.raises(ValueError, match="table1.json: not valid JSON"):
        write_report([], workspace=Workspace(tmp_path))
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        write_report([], rounds=0, workspace=Workspace(tmp_path))


def test_empty_report_and_empty_table():
    md = render_report({1: {"table1.json": {}, "table2.json": None}})
    assert "*table1: empty.*" in md and "*table2: not computed.*" in md


def test_changes_per_class():
    dec = pd.DataFrame({"wnid": ["b", "a", "a", "b", "c"], "action": ["fix", "remove", "keep", "fix", "keep"]})
    out = changes_per_class({"val": dec})
    assert out.to_dict("records") == [
        {"split": "val", "class": "a", "fixes": 0, "removals": 1},
        {"split": "val", "class": "b", "fixes": 2, "removals": 0},
        {"split": "val", "class": "c", "fixes": 0, "removals": 0},
    ]
    assert list(changes_per_class({}).columns) == ["split", "class", "fixes", "removals"]
    with pytest.raises(ValueError, match=r"split 'val': missing column\(s\) \['wnid'\]"):
        changes_per_class({"val": dec.drop(columns="wnid")})


def test_cli_report(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imagenet_clean.cli import app

    make_project(tmp_path, splits=("val",))
    (tmp_path / "params.yaml").write_text("splits:\n  val: {root: data/raw/val}\n")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["report"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "metrics" / "report.md").is_file()
    assert (tmp_path / "metrics" / "plots" / "changes_per_class.csv").read_text().startswith("split,class,fixes,removals\n")


def test_report_orders_val_first_and_ablations_use_val_clean(tmp_path):
    paths = make_project(tmp_path, n=40)
    write_table1(list(MODELS), ["val", "v2"], paths=paths)
    write_ablations(tables_params(archs=["a1"], seeds=2, ablations=True), paths=paths, backend=FakeBackend())
    md = write_report([], workspace=paths).read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Model | Label errors"))
    assert header.index("(V)") < header.index("(V2)")
    assert "a1: V_c top-1/top-5" in md


# ------------------------------------------------------------------ skipped tables and splits


def test_report_renders_what_exists_and_notes_skips(tmp_path):
    from imagenet_clean.io import write_json

    paths = make_project(tmp_path, splits=("val",))
    write_table1(list(MODELS), ["val"], paths=paths, skipped={"v2": "splits.v2.root is null"})
    write_json(paths.metric("table2.json"), {"skipped": True, "why": "tables.archs is empty"})
    write_json(paths.metric("table3.json"), {"skipped": "tables.resolutions is false"})  # the older format
    write_json(paths.metric("ablations.json"), {"a1": {"none": "not a row"}})  # unrenderable
    md = write_report(["val"], workspace=paths).read_text()
    assert "## Table 1" in md and "Skipped splits: v2 (splits.v2.root is null)." in md
    assert "*table2: skipped (tables.archs is empty).*" in md
    assert "*table3: skipped (tables.resolutions is false).*" in md
    assert "*ablations: could not be rendered (" in md


def test_report_ignores_decisions_of_skipped_splits(tmp_path):
    from imagenet_clean.config import parse_params
    from table_project import skip_split

    paths = make_project(tmp_path, splits=("val",))
    skip_split(parse_params({"splits": {"v2": {"root": None, "layout": "v2"}}}), "v2", tmp_path)
    write_report(["val", "v2"], workspace=paths)
    csv = pd.read_csv(paths.metrics / "plots" / "changes_per_class.csv")
    assert set(csv["split"]) == {"val"}


def test_table2_in_the_papers_layout(tmp_path):
    paths = make_project(tmp_path, n=40)
    write_table2(tables_params(archs=["a1"], seeds=3), paths=paths, backend=FakeBackend())
    md = write_report([], workspace=paths).read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Model | T, V"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols == ["Model", "T, V", "T, V_c", "T_c, V_c", "T, V2", "T_c, V2", "T, V2_c", "T_c, V2_c",
                    "T_c-T on V_c top-1 [95 % CI] verdict", "top-5"]
    row = next(line for line in md.splitlines() if line.startswith("| a1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert all("±" in c for c in cells[1:8])
    h = json.loads(paths.metric("table2.json").read_text())["a1"]["headline"]
    g1, g5 = h["top1"], h["top5"]
    assert cells[8] == f"{g1['gain']:+.2f} [{g1['ci95'][0]:+.2f}, {g1['ci95'][1]:+.2f}] {g1['verdict']}"
    assert cells[9].startswith(f"{g5['gain']:+.2f} [") and cells[9].endswith(g5["verdict"])
    assert g1["verdict"] in ("helps", "hurts", "not resolved") and "Verdict not computed" not in md


def test_table2_report_with_one_seed_says_why_there_is_no_verdict(tmp_path):
    paths = make_project(tmp_path, n=40)
    write_table2(tables_params(archs=["a1"], seeds=1), paths=paths, backend=FakeBackend())
    md = write_report([], workspace=paths).read_text()
    assert ("Verdict not computed: a confidence interval needs at least 2 seed pairs (T and T_c with the same seed); got 1."
            in md)
    row = next(line for line in md.splitlines() if line.startswith("| a1 |"))
    gains = md[md.index("Paired top-1 gain"):md.index("<details>", md.index("## Table 2"))]
    assert "| Model | V | V_c | V2 | V2_c |" in gains
    rows = [line for line in gains.splitlines() if line.startswith("| a1 |")] + [row]
    assert len(rows) == 2 and all("[" not in r for r in rows)  # no interval anywhere
    assert "not computed (1 pair(s))" in row and rows[0].count("not computed (1 pair(s))") == 4


def test_cli_report_with_skipped_metrics(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imagenet_clean.cli import app
    from imagenet_clean.io import write_json

    for name in ("table1.json", "table2.json", "table3.json", "ablations.json", "runs/table2.json"):
        write_json(tmp_path / "metrics" / name, {"skipped": True, "reason": "test"})  # the key before "why"
    (tmp_path / "params.yaml").write_text("splits:\n  val: {root: null}\n")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["report"])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "metrics" / "report.md").read_text()
    assert md.count("skipped (test)") == 4
    assert (tmp_path / "metrics" / "plots" / "changes_per_class.csv").read_text() == "split,class,fixes,removals\n"


def test_report_shows_each_splits_fix_removal_and_merge_counts_beside_the_papers(tmp_path):
    import json

    cleanup = tmp_path / "metrics" / "cleanup"
    cleanup.mkdir(parents=True)
    (cleanup / "val.json").write_text(json.dumps({"split": "val", "samples": 200, "fix": 10, "remove": 4, "merged": 2, "n_models": 3,
                                                  "thresholds_resolved": {"fn": 1.0, "h1": 1.5, "h2": 3.0, "h3": 1.9998}}))
    (cleanup / "train.json").write_text(json.dumps({"split": "train", "skipped": True, "why": "splits.train.root is null"}))
    write_report([], workspace=Workspace(tmp_path))
    md = (tmp_path / "metrics" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| V |"))
    assert "| 200 | 10 (5.00 %) | 4 (2.00 %) | 2 (1.00 %) |" in row and "3565 (7.13 %) | 2471 (4.9 %) |" in row
    assert "h3 1.9998" in row
    assert "*T: not cleaned (splits.train.root is null).*" in md
    assert "*V2: no cleanup metrics" in md
