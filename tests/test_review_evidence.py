"""The review app shows issue 30's evidence: duplicate pairs side by side, quality measures, label sets with a CAM
per class, and takes relabel_set verdicts; a project without that evidence shows no such section.

The project is :mod:`review_project`'s synthetic split with the evidence written directly
(:func:`review_project.add_issue30_evidence`: seeded, no pipeline run).
"""
from __future__ import annotations

import io
import json

import pytest

from imagenet_clean.cleanup.verdicts import read_verdicts
from imagenet_clean.io import read_table
from imagenet_clean.review.data import Filter, ReviewData
from imagenet_clean.review.duplicates import DuplicateIndex, reason_line
from imagenet_clean.review.render import CamRenderer
from imagenet_clean.review.server import create_app
from review_project import QUALITY_MEASURES, add_issue30_evidence, make_review_project
from stage_project import WNIDS

CSRF = "test-csrf-token"
HOST = {"Host": "127.0.0.1:8765"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    p = make_review_project(tmp_path_factory.mktemp("review30"))
    p["ev"] = add_issue30_evidence(p)
    return p


@pytest.fixture()
def data(project, tmp_path):
    d = ReviewData(project["tmp"], "val")
    d.reviews = tmp_path / "reviews/val.csv"
    return d


def client(data, **kw):
    return create_app(data, csrf_token=CSRF, reviewer="tester", now=lambda: "2026-12-06T12:00:00+00:00", **kw).test_client()


def get(c, url, **kw):
    return c.get(url, headers=HOST, **kw)


def post(c, body):
    return c.post("/api/verdict", json=body, headers={**HOST, "X-CSRF-Token": CSRF})


# ------------------------------------------------------------------ duplicates


def test_duplicate_pairs_are_listed_per_split_pair_with_kind_distance_reason_and_leakage(data, project):
    ev = project["ev"]
    c = client(data)
    meta = get(c, "/api/meta").get_json()
    summary = {p["name"]: p for p in meta["duplicates"]}
    assert set(summary) == {"train-val", "val-val", "val-v2"}  # pairs with a val image; not train-train
    assert (summary["val-val"]["exact"], summary["val-val"]["near"], summary["val-val"]["leakage"]) == (1, 1, False)
    assert summary["train-val"]["leakage"] and summary["train-val"]["total"] == 1 and summary["val-v2"]["total"] == 0
    rows = get(c, "/api/duplicates?pair=val-val").get_json()["rows"]
    assert [r["kind"] for r in rows] == ["exact", "near"]  # closest first
    assert {rows[0]["a"]["sample_id"], rows[0]["b"]["sample_id"]} == set(ev["exact"])
    assert rows[0]["reason"] == "exact copy: the same content hash" and not rows[0]["leakage"]
    assert rows[1]["distance"] == pytest.approx(0.0123)
    assert rows[1]["reason"] == "near copy: cosine distance 0.0123 of the pooled features (<= 0.05)"
    leak = get(c, "/api/duplicates?pair=train-val").get_json()["rows"]
    assert len(leak) == 1 and leak[0]["leakage"] and leak[0]["a"] == {"split": "train", "sample_id": ev["leak"][0],
                                                                      "change": False, "action": ""}
    assert leak[0]["reason"].endswith("; leakage: the same image in train and val")
    assert leak[0]["b"]["change"] and leak[0]["b"]["action"] in ("fix", "remove")
    assert get(c, "/api/duplicates?kind=near").get_json()["total"] == 2
    for bad in ("pair=train-train", "pair=../x", "kind=fuzzy", "offset=x"):
        r = get(c, "/api/duplicates?" + bad)
        assert r.status_code == 400 and r.get_json()["error"], bad


def test_both_copies_of_a_pair_are_served_and_nothing_else(data, project):
    ev = project["ev"]
    c = client(data)
    train_id, val_id = ev["leak"]
    for split, sid in (("train", train_id), ("val", val_id), ("val", ev["near"][1])):
        r = get(c, "/image", query_string={"split": split, "id": sid})
        assert r.status_code == 200 and r.data[:4] == b"\x89PNG", (split, sid)
    data.ready()
    served = set(data.pos) | {s for v in data.examples.values() for s in v} | set(ev["near"]) | set(ev["exact"])
    unlisted = next(s for s in project["dec"]["sample_id"] if s not in served)  # neither a change, an example nor a copy
    for q in ({"split": "train", "id": "n90000000/x.JPEG"},  # a pair of train-train only: not listed for val
              {"split": "train", "id": val_id}, {"split": "val", "id": unlisted}, {"split": "v2", "id": val_id},
              {"split": "train", "id": "../../etc/passwd"}, {"id": train_id}):
        assert get(c, "/image", query_string=q).status_code == 404, q


def test_a_samples_page_shows_its_duplicates(data, project):
    ev = project["ev"]
    c = client(data)
    d = get(c, "/api/change", query_string={"id": ev["leak"][1]}).get_json()
    assert [(x["other"]["split"], x["other"]["sample_id"], x["leakage"]) for x in d["duplicates"]] == [("train", ev["leak"][0], True)]
    s = get(c, "/api/change", query_string={"id": ev["sets"][0]}).get_json()
    assert [x["other"]["sample_id"] for x in s["duplicates"]] == [ev["near"][1]] and s["duplicates"][0]["kind"] == "near"


def test_reason_line():
    assert reason_line("near", 0.01234, "val", "v2", max_distance=0.05) == (
        "near copy: cosine distance 0.0123 of the pooled features (<= 0.05); leakage: the same image in val and v2")
    assert reason_line("exact", 0.0, "val", "val") == "exact copy: the same content hash"


# ------------------------------------------------------------------ quality


def test_quality_measures_and_the_quality_rules_reason(data, project):
    ev = project["ev"]
    data.quality_bounds = {"contrast": (0.06, None), "entropy": (3.0, None)}
    c = client(data)
    rows = get(c, "/api/changes?rule=quality").get_json()["rows"]
    assert [r["sample_id"] for r in rows] == [ev["quality"]] and rows[0]["action"] == "remove"
    d = get(c, "/api/change", query_string={"id": ev["quality"]}).get_json()
    assert d["reason"] == "image quality: contrast 0.0312 < min 0.06; entropy 2.1 < min 3"
    m = {x["name"]: x for x in d["quality"]["measures"]}
    assert list(m) == list(QUALITY_MEASURES)
    assert m["contrast"] == {"name": "contrast", "value": 0.0312, "min": 0.06, "max": None, "beyond": True}
    assert m["entropy"]["beyond"] and not m["brightness"]["beyond"] and m["brightness"]["min"] is None
    # an unreadable row: no figures, its reason
    bad = project["dec"].loc[project["dec"]["rules"].map(lambda r: "unreadable" in list(r)), "sample_id"].iloc[0]
    q = get(c, "/api/change", query_string={"id": bad}).get_json()["quality"]
    assert q["status"] == "error" and q["reason"] == "truncated JPEG" and all(x["value"] is None for x in q["measures"])


# ------------------------------------------------------------------ label sets


def test_label_sets_are_filtered_and_shown_with_their_classes(data, project):
    ev = project["ev"]
    c = client(data)
    page = get(c, "/api/changes?action=relabel_set").get_json()
    assert sorted(r["sample_id"] for r in page["rows"]) == sorted(ev["sets"])
    assert get(c, "/api/changes?rule=label_set").get_json()["total"] == 2
    for sid, labels in zip(ev["sets"], ev["set_labels"]):
        d = get(c, "/api/change", query_string={"id": sid}).get_json()
        assert d["action"] == "relabel_set" and [x["index"] for x in d["labels"]] == labels
        assert [x["index"] for x in d["set_cams"]] == labels and d["new"]["index"] == labels[0]
        assert {x["index"] for x in d["candidates"]} >= set(labels)
    # a class filter finds a set by its first class
    first = ev["set_labels"][1][0]
    assert ev["sets"][1] in [r["sample_id"] for r in get(c, f"/api/changes?cls={WNIDS[first]}&limit=500").get_json()["rows"]]
    other = get(c, "/api/change", query_string={"id": ev["quality"]}).get_json()
    assert other["labels"] == [] and other["set_cams"] == []


def test_a_set_shows_the_windows_where_each_class_was_found(data, project):
    ev = project["ev"]
    c = client(data)
    for sid, labels in zip(ev["sets"], ev["set_labels"]):
        d = get(c, "/api/change", query_string={"id": sid}).get_json()
        sw = d["set_windows"]
        assert (sw["width"], sw["height"]) == (64, 64) and [x["index"] for x in sw["classes"]] == labels
        quarter = {0: [0, 0, 32, 32], 1: [32, 0, 64, 32], 3: [32, 32, 64, 64]}  # the fixture's 2 x 2 grid of 64 px
        for x in sw["classes"]:
            if x["index"] == 7:  # merged into class 1 by the embedded table: the clean stage never finds class 7
                assert x["windows"] == []
            else:
                assert x["windows"] == [quarter[w] for w in ev["set_windows"][sid][x["index"]]]
    assert "set_windows" not in get(c, "/api/change", query_string={"id": ev["quality"]}).get_json()


def test_set_windows_say_why_they_are_missing(project, tmp_path):
    import shutil

    from imagenet_clean.io import read_metadata, write_table

    ev = project["ev"]
    copy = tmp_path / "p"
    shutil.copytree(project["tmp"], copy)
    windows = copy / "data/windows/val.parquet"
    rows = read_table(windows)
    rows.loc[rows["sample_id"] == ev["sets"][0], ["status", "reason"]] = ["gated", "whole image read with confidence"]
    write_table(windows, rows, metadata=read_metadata(windows))
    d = ReviewData(copy, "val")
    assert d.detail_of(ev["sets"][0])["set_windows_error"] == "not read window by window: whole image read with confidence"
    assert "set_windows" in d.detail_of(ev["sets"][1])
    windows.unlink()
    d = ReviewData(copy, "val")
    assert d.detail_of(ev["sets"][1])["set_windows_error"] == "val.parquet: no window evidence (run `imagenet-clean windows`)"


def test_a_cam_per_class_of_a_set(data, project, tmp_path):
    import timm
    import torch
    from PIL import Image

    def load(name, fold):
        torch.manual_seed(0)
        m = timm.create_model("test_resnet", num_classes=8)
        return m, {**timm.data.resolve_data_config({}, model=m), "input_size": (3, 128, 128)}  # 32 px: a 1x1 map, no heat

    c = client(data, cams=CamRenderer(load, tmp_path / "cams"), cam_methods=("gradcam",))
    sid = project["ev"]["sets"][1]
    pngs = []
    for cls in project["ev"]["set_labels"][1]:
        r = get(c, "/cam", query_string={"id": sid, "model": "a", "method": "gradcam", "cls": cls})
        assert r.status_code == 200 and min(Image.open(io.BytesIO(r.data)).size) >= 256
        pngs.append(r.data)
    assert len(set(pngs)) >= 2  # the heat follows the class (a random model may have none for one of them)
    assert len(list((tmp_path / "cams").glob("*.png"))) == 3  # one heatmap per class, cached apart
    for bad in ("8", "-1", "x"):
        assert get(c, "/cam", query_string={"id": sid, "model": "a", "method": "gradcam", "cls": bad}).status_code == 404


def test_the_app_writes_relabel_set_verdicts_and_refuses_bad_sets(data, project, tmp_path):
    ev = project["ev"]
    c = client(data)
    reviews = tmp_path / "reviews/val.csv"
    fix = project["dec"].loc[project["dec"]["action"] == "fix", "sample_id"].iloc[0]
    for body in ({"sample_id": fix, "verdict": "relabel_set", "wnids": [WNIDS[1]]},
                 {"sample_id": fix, "verdict": "relabel_set", "wnids": [WNIDS[1], WNIDS[1]]},
                 {"sample_id": fix, "verdict": "relabel_set", "wnids": [WNIDS[1], "n99999999"]},
                 {"sample_id": fix, "verdict": "relabel_set", "wnids": f'["{WNIDS[1]}","{WNIDS[2]}"]'},
                 {"sample_id": fix, "verdict": "relabel_set", "wnids": [1, 2]},
                 {"sample_id": fix, "verdict": "accept", "wnids": [WNIDS[1], WNIDS[2]]}):
        r = post(c, body)
        assert r.status_code == 400 and r.get_json()["error"], body
    assert not reviews.exists()
    r = post(c, {"sample_id": fix, "verdict": "relabel_set", "wnids": [WNIDS[4], WNIDS[1], WNIDS[4]]})
    assert r.status_code == 200 and json.loads(r.get_json()["verdict"]["wnids"]) == [WNIDS[4], WNIDS[1]]
    assert post(c, {"sample_id": ev["sets"][0], "verdict": "accept"}).status_code == 200
    got = read_verdicts(reviews)
    assert got[fix].verdict == "relabel_set" and got[fix].wnids == (WNIDS[4], WNIDS[1])
    assert got[ev["sets"][0]].wnids == () and reviews.read_text().splitlines()[0].endswith(",note,wnids")
    row = get(c, "/api/changes?reviewed=yes&action=fix").get_json()["rows"][0]
    assert row["verdict"]["verdict"] == "relabel_set"


# ------------------------------------------------------------------ a project without the new evidence


def test_without_the_new_evidence_the_sections_are_absent(tmp_path):
    p = make_review_project(tmp_path)
    data = ReviewData(p["tmp"], "val")
    assert len(data.duplicates) == 0 and DuplicateIndex(p["tmp"], "val").summary() == []
    c = client(data)
    assert get(c, "/api/meta").get_json()["duplicates"] == []
    assert get(c, "/api/duplicates").get_json() == {"total": 0, "offset": 0, "rows": []}
    sid = data.page(Filter(action="remove"), 0, 1)["rows"][0]["sample_id"]
    d = get(c, "/api/change", query_string={"id": sid}).get_json()
    assert not {"labels", "set_cams", "quality", "duplicates"} & set(d)
    assert get(c, "/api/changes?action=relabel_set").get_json()["total"] == 0
    assert get(c, "/api/meta").get_json()["label_sets"] is False
    r = post(c, {"sample_id": sid, "verdict": "relabel_set", "wnids": [WNIDS[1], WNIDS[2]]})
    assert r.status_code == 400 and "label sets are off" in r.get_json()["error"]
    assert not data.reviews.exists()
    # a broken pairs file is skipped, not a broken app
    (p["tmp"] / "data/duplicates").mkdir(parents=True)
    (p["tmp"] / "data/duplicates/val-val.parquet").write_text("not parquet")
    assert ReviewData(p["tmp"], "val").duplicates.summary() == []


def test_the_export_lists_sets_reasons_and_copies(project, tmp_path):
    import imagenet_clean.review.export as export

    ev = project["ev"]
    data = ReviewData(project["tmp"], "val")
    export.export_html(data, tmp_path / "report")
    text = "".join(p.read_text() for p in sorted((tmp_path / "report").glob("page-*.html")))
    labels = ev["set_labels"][1]
    assert "proposed: label set: " + ", ".join(f"class {c} ({WNIDS[c]})" for c in labels) in text
    assert "reason: image quality: contrast 0.0312 &lt; min 0.06" in text
    assert f"near copy: train {ev['leak'][0]} (near copy: cosine distance 0.0071" in text
