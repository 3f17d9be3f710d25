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
