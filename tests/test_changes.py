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
