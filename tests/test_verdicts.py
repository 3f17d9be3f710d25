"""Human verdicts as a pipeline input (issue 16): reviews/<split>.csv applied by the clean stage, metrics/review.json."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from imagenet_clean.cleanup.ensemble import DECISIONS_SCHEMA
from imagenet_clean.cleanup.verdicts import (
    VERDICT_COLUMNS,
    Verdict,
    VerdictError,
    format_verdicts,
    parse_verdicts,
    read_verdicts,
    record_verdict,
)
from imagenet_clean.io import read_table
from imagenet_clean.review.metrics import machine_action, review_metrics
from imagenet_clean.stages import clean as clean_stage
from imagenet_clean.workspace import Workspace
from stage_project import WNIDS, FakeCam, make_project

HEADER = ",".join(VERDICT_COLUMNS) + "\n"
OUTPUTS = ("data/decisions/val.parquet", "data/clean/val.parquet", "data/changes/val.csv", "metrics/cleanup/val.json")


def run_clean(tmp, params):
    return clean_stage.run(params, Workspace(tmp), "val", find_exemptions=FakeCam(), load_model=lambda n, f: None)


def outputs(tmp) -> dict[str, bytes]:
    return {p: (tmp / p).read_bytes() for p in OUTPUTS}


@pytest.fixture()
def machine(tmp_path):
    """The synthetic split of stage_project cleaned without reviews: params, manifest, decisions, output bytes."""
    params, manifest, _ = make_project(tmp_path)
    run_clean(tmp_path, params)
    return dict(tmp=tmp_path, params=params, manifest=manifest, dec=read_table(tmp_path / OUTPUTS[0]),
                bytes=outputs(tmp_path))


def write_reviews(tmp, rows: list[dict]) -> None:
    (tmp / "reviews").mkdir(exist_ok=True)
    (tmp / "reviews/val.csv").write_text(format_verdicts([Verdict(**r) for r in rows]))


def pick(dec, action, rule=None, n=1, skip=()):
    """Sample ids of ``n`` rows with ``action`` (and ``rule``)."""
    ok = (dec["action"] == action) & ~dec["rules"].map(lambda r: "unreadable" in list(r))
    if rule:
        ok &= dec["rules"].map(lambda r: rule in list(r))
    ids = [s for s in dec.loc[ok, "sample_id"] if s not in skip]
    assert len(ids) >= n, (action, rule)
    return ids[:n]


# ------------------------------------------------------------------ the file


def test_parse_reports_the_line_of_a_malformed_row():
    good = HEADER + "a.JPEG,h1,accept,,me,2026-11-30T10:00:00+00:00,\n"
    assert [v.verdict for v in parse_verdicts(good)] == ["accept"]
    cases = {
        "b.JPEG,h,maybe,,,,\n": "line 3: verdict 'maybe'",
        "b.JPEG,h,relabel,,,,\n": "line 3: relabel of 'b.JPEG' names no wnid",
        "b.JPEG,h,accept,n01,,,\n": "line 3: accept of 'b.JPEG' names a wnid",
        "b.JPEG,h,accept,,,\n": "line 3: 6 fields, expected 7",
        "b.JPEG,h,accept,,,yesterday,\n": "line 3: time 'yesterday' is not ISO 8601",
        ",h,accept,,,,\n": "line 3: empty sample_id",
        "b.JPEG,h,relabel,n99,,,\n": "line 3: relabel of 'b.JPEG' to unknown class 'n99'",
    }
    for row, msg in cases.items():
        with pytest.raises(VerdictError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            parse_verdicts(good + row, source="reviews/val.csv", wnids={"n01"})
    with pytest.raises(VerdictError, match="line 1: header"):
        parse_verdicts("sample_id,verdict\n")
    # a quoted note may hold commas and a newline: the line number still counts physical lines
    text = HEADER + 'a.JPEG,h,accept,,,,"one, two\nthree"\nb.JPEG,h,nope,,,,\n'
    with pytest.raises(VerdictError, match="line 4:"):
        parse_verdicts(text)


def test_last_verdict_per_sample_wins_and_a_missing_file_is_no_verdicts(tmp_path):
    assert read_verdicts(tmp_path / "none.csv") == {}
    (tmp_path / "r.csv").write_text(HEADER + "a,h,accept,,,,\na,h,reject,,,,\nb,h,relabel,n1,,,x\n")
    v = read_verdicts(tmp_path / "r.csv")
    assert v["a"].verdict == "reject" and v["b"].wnid == "n1" and v["b"].note == "x"


def _writer(args):
    path, who, n = args
    for i in range(n):
        record_verdict(path, Verdict(sample_id=f"{who}-{i:03d}", content_hash="h", verdict="accept", reviewer=who))
        record_verdict(path, Verdict(sample_id=f"shared-{i % 5}", content_hash="h", verdict="reject", reviewer=who))


def test_concurrent_writers_lose_no_verdict(tmp_path):
    path = tmp_path / "reviews/val.csv"
    with multiprocessing.get_context("fork").Pool(3) as pool:
        pool.map(_writer, [(path, f"tab{k}", 40) for k in range(3)])
    v = read_verdicts(path)
    assert {s for s in v if not s.startswith("shared")} == {f"tab{k}-{i:03d}" for k in range(3) for i in range(40)}
    assert {s for s in v if s.startswith("shared")} == {f"shared-{i}" for i in range(5)}
    assert [p.name for p in path.parent.iterdir()] == ["val.csv"]  # no temporary or lock file left in reviews/
    record_verdict(path, None, sample_id="tab0-000")
    assert "tab0-000" not in read_verdicts(path) and len(read_verdicts(path)) == 124


# ------------------------------------------------------------------ applied by the clean stage


def test_no_verdicts_leave_every_output_byte_identical(machine):
    tmp, params = machine["tmp"], machine["params"]
    (tmp / "reviews").mkdir()
    (tmp / "reviews/val.csv").write_text(HEADER)  # header only, as the repository ships it
    run_clean(tmp, params)
    assert outputs(tmp) == machine["bytes"]
    assert pq.read_schema(tmp / OUTPUTS[0]).names == DECISIONS_SCHEMA.names


def test_verdicts_are_applied_and_stale_ones_reported(machine):
    tmp, params, dec, man = machine["tmp"], machine["params"], machine["dec"], machine["manifest"]
    h = dict(zip(man["sample_id"], man["content_hash"]))
    fix_acc, fix_rej, fix_rel = pick(dec, "fix", n=3)
    rem_rej, rem_rel, stale = pick(dec, "remove", n=3)
    rows = [
        dict(sample_id=fix_acc, content_hash=h[fix_acc], verdict="accept", reviewer="ann"),
        dict(sample_id=fix_rej, content_hash=h[fix_rej], verdict="reject", reviewer="ann"),
        dict(sample_id=fix_rel, content_hash=h[fix_rel], verdict="relabel", wnid=WNIDS[6], reviewer="ann"),
        dict(sample_id=rem_rej, content_hash=h[rem_rej], verdict="reject"),
        dict(sample_id=rem_rel, content_hash=h[rem_rel], verdict="relabel", wnid=WNIDS[5], note="a 5, clearly"),
        dict(sample_id=stale, content_hash="0123", verdict="reject"),
        dict(sample_id="gone.JPEG", content_hash="h", verdict="accept"),
    ]
    write_reviews(tmp, rows)
    m = run_clean(tmp, params)
    new = read_table(tmp / OUTPUTS[0]).set_index("sample_id")
    old = dec.set_index("sample_id")
    assert pq.read_schema(tmp / OUTPUTS[0]).names == DECISIONS_SCHEMA.names + ["verdict"]
    lab = {s: int(old.loc[s, "label"]) for s in old.index}

    assert new.loc[fix_acc, "action"] == "fix" and new.loc[fix_acc, "verdict"] == "accept"
    assert new.loc[fix_acc, "new_label"] == old.loc[fix_acc, "new_label"] and "human" not in new.loc[fix_acc, "rules"]
    for s in (fix_rej, rem_rej):  # reject: kept with the original label
        assert (new.loc[s, "action"], new.loc[s, "new_label"], new.loc[s, "verdict"]) == ("keep", lab[s], "reject")
        assert list(new.loc[s, "rules"])[-1] == "human"
    for s, c in ((fix_rel, 6), (rem_rel, 5)):  # relabel: fixed to the reviewer's class, also a machine removal
        assert (new.loc[s, "action"], new.loc[s, "new_label"], new.loc[s, "verdict"]) == (
            ("fix", c, "relabel") if c != lab[s] else ("keep", lab[s], "relabel"))
    assert new.loc[stale, "action"] == "remove" and new.loc[stale, "verdict"] == ""  # stale: not applied
    untouched = [s for s in old.index if s not in {r["sample_id"] for r in rows}]
    assert (new.loc[untouched, "action"] == old.loc[untouched, "action"]).all()
    assert (new.loc[untouched, "verdict"] == "").all()

    clean = read_table(tmp / "data/clean/val.parquet").set_index("sample_id")
    assert fix_rej in clean.index and clean.loc[fix_rej, "orig_label"] == lab[fix_rej]
    assert rem_rej in clean.index and rem_rel in clean.index and stale not in clean.index
    changes = (tmp / "data/changes/val.csv").read_text()
    assert "human review: relabel" in changes and rem_rej not in changes
    assert m["reviewed"] == 5 and m["stale_verdicts"] == 2

    r = review_metrics(tmp, splits=("val",))
    v = r["splits"]["val"]
    assert v["reviewed"] == 5 and v["by_verdict"] == {"accept": 1, "reject": 2, "relabel": 2}
    assert v["by_action"]["fix"] == {"reviewed": 3, "accept": 1, "reject": 1, "relabel": 1,
                                     "precision": 0.3333, "flag_precision": 0.6667}
    assert v["by_action"]["remove"]["reviewed"] == 2 and v["by_action"]["remove"]["accept"] == 0
    assert v["by_rule"]["cl_fix"]["reviewed"] == 3
    assert sorted(s["sample_id"] for s in v["stale"]) == sorted([stale, "gone.JPEG"])
    assert {s["why"] for s in v["stale"]} == {"content_hash 0123 != manifest " + h[stale], "not in the split"}
    nf = v["by_n_flagged"]  # per number of flagging models, and cumulative (what h1 = n would keep)
    assert sum(b["reviewed"] for b in nf.values()) == sum(
        1 for s in (fix_acc, fix_rej, fix_rel, rem_rej, rem_rel)
        if {"cl_fix", "cl_remove"} & set(old.loc[s, "rules"]))
    first = min(nf, key=int)
    assert nf[first]["at_least"]["reviewed"] == sum(b["reviewed"] for b in nf.values())
    assert json.loads((tmp / "metrics/review.json").read_text()) == json.loads(json.dumps(r))

    run_clean(tmp, params)  # applying again gives the same outputs
    again = read_table(tmp / OUTPUTS[0])
    assert again["action"].tolist() == new.reset_index()["action"].tolist()


def test_malformed_reviews_fail_with_the_line_and_write_nothing(machine, monkeypatch, capsys):
    tmp, params = machine["tmp"], machine["params"]
    sid = machine["dec"]["sample_id"][20]
    (tmp / "reviews").mkdir()
    (tmp / "reviews/val.csv").write_text(HEADER + f"{sid},h,accept,,,,\n{sid},h,relabel,nope,,,\n")
    with pytest.raises(VerdictError, match=r"reviews/val.csv, line 3: relabel of .* to unknown class 'nope'"):
        run_clean(tmp, params)
    assert outputs(tmp) == machine["bytes"]
    # the CLI: one line, exit code 1
    env = {**os.environ, "IMAGENET_CLEAN_PROGRESS": "0"}
    res = subprocess.run([sys.executable, "-m", "imagenet_clean", "review-metrics"], cwd=tmp, capture_output=True,
                         text=True, env=env)
    assert res.returncode == 1 and res.stderr.strip().startswith("imagenet-clean: error: ")
    assert "line 3" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp / "metrics/review.json").exists()


def test_machine_action_from_rules():
    assert machine_action(["cl_fix"]) == "fix"
    assert machine_action(["cl_remove", "consensus"]) == "remove"
    assert machine_action(["consensus"]) == "remove"
    assert machine_action(["consensus", "cam_exempt"]) == "keep"
    assert machine_action(["consensus", "cam_exempt", "human"]) == "keep"
    assert machine_action([]) == "keep"


def test_verdicts_apply_to_cam_exempted_samples(machine):
    tmp, params, dec = machine["tmp"], machine["params"], machine["dec"]
    exempt = pick(dec, "keep", rule="cam_exempt")[0]
    h = dec.set_index("sample_id").loc[exempt, "content_hash"]
    write_reviews(tmp, [dict(sample_id=exempt, content_hash=h, verdict="relabel", wnid=WNIDS[7])])
    run_clean(tmp, params)
    new = read_table(tmp / OUTPUTS[0]).set_index("sample_id")
    assert new.loc[exempt, "action"] in ("fix", "keep") and new.loc[exempt, "verdict"] == "relabel"
    r = review_metrics(tmp, splits=("val",))["splits"]["val"]
    assert r["by_rule"]["cam_exempt"]["relabel"] == 1 and r["by_action"]["keep"]["reviewed"] == 1
    assert np.isclose(r["by_rule"]["cam_exempt"]["flag_precision"], 1.0)


def test_the_repositorys_reviews_files_parse_and_are_clean_stage_dependencies():
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    for split in ("train", "val", "v2"):
        path = repo / "reviews" / f"{split}.csv"
        assert path.read_text().splitlines()[0] == ",".join(VERDICT_COLUMNS)
        read_verdicts(path)  # parses (a committed malformed row would stop `dvc repro`)
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert "reviews/${item}.csv" in stages["clean"]["do"]["deps"]
    assert {d for d in stages["review"]["deps"] if not d.startswith("src/")} == {"data/decisions", "reviews"}


# ------------------------------------------------------------------ label sets (issue 30, LABELSETS.md)

SET_HEADER = ",".join(VERDICT_COLUMNS) + ",wnids\n"


def test_a_relabel_set_verdict_reads_its_classes_and_writes_them_back():
    text = SET_HEADER + 'a,h,relabel_set,,me,,,"[""n01"",""n02"",""n01""]"\nb,h,accept,,,,,\n'
    got = {v.sample_id: v for v in parse_verdicts(text, wnids={"n01", "n02"})}
    assert got["a"].wnids == ("n01", "n02") and got["b"].wnids == ()  # a repeat dropped, the order kept
    out = format_verdicts(got)
    assert out.splitlines()[0] == ",".join(VERDICT_COLUMNS) + ",wnids"
    assert out.splitlines()[1] == 'a,h,relabel_set,,me,,,"[""n01"",""n02""]"'
    assert {v.sample_id: v.wnids for v in parse_verdicts(out)} == {"a": ("n01", "n02"), "b": ()}
    # without a set, the file is written as before: seven columns
    assert format_verdicts([got["b"]]) == HEADER + "b,h,accept,,,,\n"


@pytest.mark.parametrize("cell, msg", [
    ('"[""n01""]"', r"names 1 distinct classes \(\[\"n01\"\]\); a label set needs at least 2"),
    ('"[""n01"",""n01""]"', "names 1 distinct classes"),
    ("", "names 0 distinct classes"),
    ('"[""n01"",""n99""]"', "names unknown class 'n99'"),
    ('"[""n01"",""n02""', "is not JSON"),
    ("not json", "is not JSON"),
    ('"{""a"": 1}"', "is not a JSON list of class ids"),
    ('"[1, 2]"', "is not a JSON list of class ids"),
])
def test_a_bad_label_set_names_the_file_and_line(cell, msg):
    text = SET_HEADER + "a,h,accept,,,,,\n" + f"b,h,relabel_set,,,,,{cell}\n"
    with pytest.raises(VerdictError, match=r"reviews/val.csv, line 3: .*" + msg):
        parse_verdicts(text, source="reviews/val.csv", wnids={"n01", "n02"})


def test_a_set_on_another_verdict_or_a_wnid_on_a_set_is_refused():
    with pytest.raises(VerdictError, match=r"line 2: accept of 'a' names wnids"):
        parse_verdicts(SET_HEADER + 'a,h,accept,,,,,"[""n01"",""n02""]"\n', source="r.csv")
    with pytest.raises(VerdictError, match=r"line 2: relabel_set of 'a' names a wnid"):
        parse_verdicts(SET_HEADER + 'a,h,relabel_set,n01,,,,"[""n01"",""n02""]"\n', source="r.csv")
    with pytest.raises(VerdictError, match=r"line 2: 7 fields, expected 8"):
        parse_verdicts(SET_HEADER + "a,h,accept,,,,\n", source="r.csv")


def test_old_reviews_files_without_wnids_read_byte_for_byte_the_same_decisions(machine):
    """A seven-column file (no ``wnids``) and the same verdicts with an empty ``wnids`` column give the same
    outputs; rewriting the old file through the app's writer leaves it byte for byte."""
    tmp, params, dec, man = machine["tmp"], machine["params"], machine["dec"], machine["manifest"]
    h = dict(zip(man["sample_id"], man["content_hash"]))
    fix, rem = pick(dec, "fix")[0], pick(dec, "remove")[0]
    rows = sorted([f"{fix},{h[fix]},relabel,{WNIDS[6]},me,2026-11-30T10:00:00+00:00,a note\n", f"{rem},{h[rem]},reject,,me,,\n"])
    old = HEADER + "".join(rows)  # sorted by sample id, as the app writes it
    (tmp / "reviews").mkdir()
    path = tmp / "reviews/val.csv"
    path.write_text(old)
    run_clean(tmp, params)
    with_old = outputs(tmp)
    assert with_old != machine["bytes"]  # the verdicts were applied
    new = read_table(tmp / OUTPUTS[0]).set_index("sample_id")
    assert (new.loc[fix, "action"], new.loc[fix, "new_label"], new.loc[rem, "action"]) == ("fix", 6, "keep")
    assert "labels" not in new.columns  # label sets off: no new column
    path.write_text(SET_HEADER + "".join(line + ",\n" for line in old.splitlines()[1:]))
    run_clean(tmp, params)
    assert outputs(tmp) == with_old
    path.write_text(old)
    record_verdict(path, read_verdicts(path)[rem])  # the app's read-modify-write
    assert path.read_text() == old


def _set_decisions():
    """Five decisions with the ``labels`` column (label sets on): a set, a fix, a removal, two keeps."""
    import pandas as pd

    return pd.DataFrame({
        "sample_id": ["s0", "s1", "s2", "s3", "s4"], "label": [0, 1, 2, 3, 4],
        "action": ["relabel_set", "fix", "remove", "keep", "relabel_set"], "new_label": [5, 2, 2, 3, 1],
        "rules": [["label_set"], ["cl_fix"], ["cl_remove"], [], ["label_set"]],
        "content_hash": ["h0", "h1", "h2", "h3", "h4"],
        "labels": [[5, 0], [], [], [], [1, 4, 6]],
    })


def test_verdicts_on_label_sets_follow_the_contract():
    from imagenet_clean.classes import ClassList
    from imagenet_clean.cleanup.verdicts import apply_verdicts

    classes = ClassList(WNIDS, tuple(f"class {i}" for i in range(8)))
    dec = _set_decisions()
    v = {
        "s0": Verdict("s0", "h0", "accept"),
        "s1": Verdict("s1", "h1", "relabel_set", wnids=(WNIDS[7], WNIDS[1], WNIDS[2])),  # a fix edited into a set
        "s2": Verdict("s2", "h2", "relabel_set", wnids=(WNIDS[2], WNIDS[3])),  # a removal that shows two classes
        "s3": Verdict("s3", "h3", "reject"),
        "s4": Verdict("s4", "h4", "relabel", wnid=WNIDS[6]),
    }
    out, outcome = apply_verdicts(dec, v, classes)
    assert outcome.applied == {s: x.verdict for s, x in v.items()} and not outcome.stale
    got = out.set_index("sample_id")
    assert got.loc["s0", ["action", "new_label"]].tolist() == ["relabel_set", 5] and got.loc["s0", "labels"] == [5, 0]
    assert list(got.loc["s0", "rules"]) == ["label_set"]  # accept: the machine's set stands, no human rule
    assert got.loc["s1", ["action", "new_label"]].tolist() == ["relabel_set", 7] and got.loc["s1", "labels"] == [7, 1, 2]
    assert list(got.loc["s1", "rules"]) == ["cl_fix", "human"]
    assert got.loc["s2", ["action", "new_label"]].tolist() == ["relabel_set", 2] and got.loc["s2", "labels"] == [2, 3]
    assert got.loc["s4", ["action", "new_label"]].tolist() == ["fix", 6] and got.loc["s4", "labels"] == []
    # reject of a set: kept with its original label, no set
    rej, _ = apply_verdicts(dec, {"s0": Verdict("s0", "h0", "reject")}, classes)
    r = rej.set_index("sample_id").loc["s0"]
    assert (r["action"], r["new_label"], r["labels"], list(r["rules"])) == ("keep", 0, [], ["label_set", "human"])
    assert dec["labels"].tolist() == [[5, 0], [], [], [], [1, 4, 6]]  # the input is not changed
    again, _ = apply_verdicts(out.drop(columns="verdict"), v, classes)  # idempotent
    assert again["labels"].tolist() == out["labels"].tolist() and again["action"].tolist() == out["action"].tolist()


def test_a_label_set_verdict_without_label_sets_is_refused_with_its_line():
    from imagenet_clean.classes import ClassList
    from imagenet_clean.cleanup.verdicts import apply_verdicts

    classes = ClassList(WNIDS, tuple(f"class {i}" for i in range(8)))
    dec = _set_decisions().drop(columns="labels")
    v = {"s3": Verdict("s3", "h3", "relabel_set", wnids=(WNIDS[1], WNIDS[2]), line=7)}
    with pytest.raises(VerdictError, match=r"line 7: relabel_set of 's3', but the decisions have no label sets"):
        apply_verdicts(dec, v, classes)
    with pytest.raises(VerdictError, match=r"line 7: relabel_set of 's3' to unknown class 'n42'"):
        apply_verdicts(_set_decisions(), {"s3": Verdict("s3", "h3", "relabel_set", wnids=(WNIDS[1], "n42"), line=7)}, classes)


def test_review_metrics_count_label_sets_only_where_there_are_some():
    import pandas as pd

    from imagenet_clean.review.metrics import split_review

    dec = _set_decisions()
    dec["verdict"] = ["accept", "relabel_set", "", "reject", "relabel"]
    dec["rules"] = [["label_set"], ["cl_fix", "human"], ["cl_remove"], ["human"], ["label_set", "human"]]
    dec["n_flagged"], dec["c_s"] = 0, 0
    r = split_review(dec, None)
    assert r["by_verdict"] == {"accept": 1, "reject": 1, "relabel": 1, "relabel_set": 1}
    assert r["by_action"]["relabel_set"]["reviewed"] == 2 and r["by_action"]["relabel_set"]["accept"] == 1
    assert r["by_rule"]["label_set"]["precision"] == 0.5
    plain = split_review(pd.DataFrame({**{c: dec[c] for c in ("sample_id", "content_hash", "n_flagged", "c_s")},
                                       "rules": [["cl_fix"]] * 5, "verdict": ["accept"] * 5}), None)
    assert set(plain["by_verdict"]) == {"accept", "reject", "relabel"} and set(plain["by_action"]) == {"fix", "remove", "keep"}
    assert machine_action(["label_set", "human"]) == "relabel_set"
