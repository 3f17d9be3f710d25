"""The change list CSV (cleanup/changes.py): spreadsheet formula injection is escaped."""
import csv
import io

import pandas as pd
import pytest

from imagenet_clean.classes import ClassList
from imagenet_clean.cleanup.changes import CHANGE_COLUMNS, change_list, escape_formula
from imagenet_clean.cleanup.rules import RULE_FIX, RULE_UNREADABLE

FORMULA_FILE = "=cmd|' /C calc'!A0.JPEG"
CLASSES = ClassList(("n00000001", "n00000002"), ("+plus sign", "cat"))


def _decisions():
    rows = [
        # an unreadable image named like a formula, removed
        dict(sample_id=FORMULA_FILE, path=FORMULA_FILE, label=1, wnid="n00000002", action="remove", new_label=-1,
             rules=[RULE_UNREADABLE], n_flagged=0, flagged_models=[], candidates=[], c_s=0, cam_scores="",
             exempted_by="", content_hash=None, reason="truncated file"),
        # a normal file fixed into the class whose name starts with '+'
        dict(sample_id="b.JPEG", path="b.JPEG", label=1, wnid="n00000002", action="fix", new_label=0,
             rules=[RULE_FIX], n_flagged=3, flagged_models=["a", "b", "c"], candidates=[0, 0, 0], c_s=0,
             cam_scores="", exempted_by="", content_hash="h", reason=""),
        dict(sample_id="@sum.JPEG", path="@sum.JPEG", label=0, wnid="n00000001", action="keep", new_label=0,
             rules=[], n_flagged=0, flagged_models=[], candidates=[], c_s=0, cam_scores="", exempted_by="",
             content_hash="h", reason=""),
    ]
    return pd.DataFrame(rows)


def _clean():
    return pd.DataFrame({"sample_id": ["b.JPEG"], "path": ["b.JPEG"], "label": [0], "wnid": ["n00000001"],
                         "orig_label": [1], "orig_wnid": ["n00000002"], "action": ["fix"], "size": [1],
                         "content_hash": ["h"]})


@pytest.mark.parametrize("text,want", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1+2", "'-1+2"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"), ("cat.JPEG", "cat.JPEG"), ("a=1", "a=1"), ("", ""),
])
def test_escape_formula(text, want):
    assert escape_formula(text) == want


def test_a_file_named_like_a_formula_is_escaped_in_the_csv():
    changes = change_list(_decisions(), _clean(), CLASSES, n_models=3, thresholds={"h1": 2, "h2": 2, "h3": 2})
    text = changes.to_csv(index=False, lineterminator="\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(CHANGE_COLUMNS)
    by_action = {r["action"]: r for r in rows}
    # what a spreadsheet reads: text starting with an apostrophe, never a formula
    assert by_action["remove"]["file"] == "'" + FORMULA_FILE
    assert by_action["remove"]["new_label"] == "-1"  # numbers stay numbers
    assert by_action["fix"]["new_name"] == "'+plus sign"
    assert by_action["fix"]["file"] == "b.JPEG" and by_action["fix"]["old_name"] == "cat"
    for r in rows:
        for col in CHANGE_COLUMNS:
            if col not in ("old_label", "new_label"):
                assert not r[col].startswith(("=", "+", "-", "@", "\t", "\r")), (col, r[col])


def test_folder_dataset_change_list_uses_paths_and_class_names_as_written(tmp_path):
    """A folder dataset's class list is its train scan (names as written); `file` is the path below the split root."""
    import json

    from imagenet_clean.classes import load_classes

    scan = tmp_path / "train.json"
    scan.write_text(json.dumps({"classes": ["ant s", "bée"]}))
    classes = load_classes(scan)
    dec = pd.DataFrame([
        dict(sample_id="bée/sub/x.png", path="bée/sub/x.png", label=1, wnid="bée", action="fix", new_label=0,
             rules=[RULE_FIX], n_flagged=3, flagged_models=["a", "b", "c"], candidates=[0, 0, 0], c_s=0,
             cam_scores="", exempted_by="", content_hash="h", reason=""),
    ])
    clean = pd.DataFrame({"sample_id": ["bée/sub/x.png"], "path": ["bée/sub/x.png"], "label": [0], "wnid": ["ant s"],
                          "orig_label": [1], "orig_wnid": ["bée"], "action": ["fix"], "size": [1], "content_hash": ["h"]})
    row = change_list(dec, clean, classes, n_models=3, thresholds={"h1": 2.0, "h2": 2.0, "h3": 3.0}).iloc[0]
    assert (row["file"], row["old_name"], row["new_name"], row["old_wnid"], row["new_wnid"]) == (
        "bée/sub/x.png", "bée", "ant s", "bée", "ant s")


# ---------------------------------------------------------------- label sets (issue 30)

SET_CLASSES = ClassList(("n00000001", "n00000002", "n00000003", "n00000004"), ("ant", "bee, honey", "cat|dog", "dove"))


def _set_decisions(*, with_labels: bool):
    base = dict(n_flagged=0, flagged_models=[], candidates=[], c_s=0, cam_scores="", exempted_by="", content_hash="h", reason="")
    rows = [
        dict(sample_id="a.JPEG", path="a.JPEG", label=0, wnid="n00000001", action="keep", new_label=0, rules=[], **base),
        dict(sample_id="b.JPEG", path="b.JPEG", label=1, wnid="n00000002", action="fix", new_label=0,
             **(base | dict(rules=[RULE_FIX], n_flagged=3, flagged_models=["a", "b", "c"], candidates=[0, 0, 0]))),
        # a scene with classes 1, 2 and 3; class 3 is merged into class 0 afterwards
        dict(sample_id="c.JPEG", path="c.JPEG", label=1, wnid="n00000002", action="relabel_set", new_label=1,
             rules=["label_set"], **base),
        # a set whose first class is the merged one: the clean label is the merge target
        dict(sample_id="d.JPEG", path="d.JPEG", label=2, wnid="n00000003", action="relabel_set", new_label=3,
             rules=["label_set"], **base),
        dict(sample_id="e.JPEG", path="e.JPEG", label=2, wnid="n00000003", action="remove", new_label=-1,
             rules=[RULE_UNREADABLE], **(base | dict(reason="truncated"))),
    ]
    dec = pd.DataFrame(rows)
    if with_labels:
        dec.insert(dec.columns.get_loc("reason") + 1, "labels", [[], [], [1, 2, 3], [3, 2], []])
    return dec


def _set_clean(*, with_labels: bool):
    clean = pd.DataFrame({
        "sample_id": ["a.JPEG", "b.JPEG", "c.JPEG", "d.JPEG"], "path": ["a.JPEG", "b.JPEG", "c.JPEG", "d.JPEG"],
        "label": [0, 0, 1, 0], "wnid": ["n00000001", "n00000001", "n00000002", "n00000001"],
        "orig_label": [0, 1, 1, 2], "orig_wnid": ["n00000001", "n00000002", "n00000002", "n00000003"],
        "action": ["keep", "fix", "relabel_set", "relabel_set"], "size": [1] * 4, "content_hash": ["h"] * 4,
    })
    if with_labels:
        clean["labels"] = [[0], [0], [1, 2, 0], [0, 2]]  # after merges (3 -> 0), order kept
    return clean


def _csv_rows(changes: pd.DataFrame) -> list[dict]:
    return list(csv.DictReader(io.StringIO(changes.to_csv(index=False, lineterminator="\n"))))


def test_label_set_rows_are_listed_with_their_set_after_merges_as_json():
    import json

    changes = change_list(_set_decisions(with_labels=True), _set_clean(with_labels=True), SET_CLASSES, n_models=3,
                          thresholds={"h1": 2, "h2": 2, "h3": 2})
    rows = _csv_rows(changes)
    assert list(rows[0]) == [*CHANGE_COLUMNS, "wnids"]
    by_file = {r["file"]: r for r in rows}
    c = by_file["c.JPEG"]
    assert (c["action"], c["new_label"], c["new_wnid"], c["new_name"]) == ("relabel_set", "1", "n00000002", "bee, honey")
    assert json.loads(c["wnids"]) == ["n00000002", "n00000003", "n00000001"]
    assert "label set n00000002 (bee, honey) + n00000003 (cat|dog) + n00000001 (ant)" in c["reason"]
    d = by_file["d.JPEG"]  # the first class was merged: the new label is the merge target, and the reason says so
    assert (d["new_label"], d["new_wnid"]) == ("0", "n00000001")
    assert json.loads(d["wnids"]) == ["n00000001", "n00000003"]
    assert d["reason"].endswith("then n00000004 merged into n00000001")
    assert by_file["b.JPEG"]["wnids"] == "" and by_file["e.JPEG"]["wnids"] == ""  # only set rows carry a set
    assert "a.JPEG" not in by_file  # a keep is no change


def test_without_a_labels_column_the_change_list_is_byte_identical():
    """The same decisions and clean manifest, minus the ``labels`` columns and the set rows, write the old CSV."""
    dec = _set_decisions(with_labels=True)
    clean = _set_clean(with_labels=True)
    plain_dec = dec.drop(columns=["labels"])[~dec["action"].eq("relabel_set")].reset_index(drop=True)
    plain_clean = clean.drop(columns=["labels"])[~clean["action"].eq("relabel_set")].reset_index(drop=True)
    kw = dict(n_models=3, thresholds={"h1": 2, "h2": 2, "h3": 2})
    text = change_list(plain_dec, plain_clean, SET_CLASSES, **kw).to_csv(index=False, lineterminator="\n")
    assert text.splitlines()[0] == ",".join(CHANGE_COLUMNS)
    # the same rows written by the code before label sets existed (committed expectation)
    assert text == (
        "file,old_label,old_wnid,old_name,new_label,new_wnid,new_name,action,reason\n"
        "b.JPEG,1,n00000002,\"bee, honey\",0,n00000001,ant,fix,"
        "\"confident learning: 3 of 3 models flagged it (>= h1=2); candidates a->0, b->0, c->0\"\n"
        "e.JPEG,2,n00000003,cat|dog,-1,,,remove,unreadable: truncated\n"
    )
    # and with the column, the other rows' cells are the same as without it
    with_sets = change_list(dec, clean, SET_CLASSES, **kw)
    same = with_sets[~with_sets["action"].eq("relabel_set")].drop(columns=["wnids"]).reset_index(drop=True)
    assert same.to_csv(index=False, lineterminator="\n") == text


def test_relabel_set_without_labels_column_keeps_its_first_label():
    """A relabel_set decision without a ``labels`` column (an older reader's view) is listed under its clean label."""
    dec = _set_decisions(with_labels=False)
    rows = _csv_rows(change_list(dec, _set_clean(with_labels=False), SET_CLASSES, n_models=3, thresholds={"h1": 2}))
    assert list(rows[0]) == list(CHANGE_COLUMNS)
    c = next(r for r in rows if r["file"] == "c.JPEG")
    assert (c["action"], c["new_label"]) == ("relabel_set", "1")
