"""Diffing two decision tables."""
import pandas as pd
import pytest

from imagenet_clean.cleanup.diff import diff_decisions, diff_files, summarize
from imagenet_clean.io import write_table


def table(rows):
    return pd.DataFrame(rows, columns=["sample_id", "label", "action", "new_label", "rules", "content_hash"])


A = table([
    ("x/1.JPEG", 0, "keep", 0, [], "h1"),
    ("x/2.JPEG", 1, "fix", 2, ["cl_fix"], "h2"),
    ("x/3.JPEG", 1, "remove", 1, ["consensus"], "h3"),
    ("x/4.JPEG", 3, "keep", 3, [], "h4"),
    ("x/5.JPEG", 3, "keep", 3, [], "h5"),
    ("x/6.JPEG", 3, "keep", 3, [], "h6"),
])
B = table([
    ("x/1.JPEG", 0, "keep", 0, [], "h1"),                               # unchanged
    ("x/2.JPEG", 1, "fix", 4, ["cl_fix"], "h2"),                        # new label
    ("x/3.JPEG", 1, "keep", 1, ["consensus", "cam_exempt"], "h3"),      # exempted now
    ("y/4.JPEG", 3, "remove", 3, ["cl_remove"], "h4"),                  # renamed + removed
    ("x/5.JPEG", 3, "keep", 3, [], "other"),                            # image replaced
    ("x/7.JPEG", 2, "keep", 2, [], "h7"),                               # new image
])


def test_diff_reports_each_kind_of_change():
    got = diff_decisions(A, B)
    by_a = got.set_index("sample_id_a")
    assert by_a.loc["x/2.JPEG", "change"] == "new_label" and by_a.loc["x/2.JPEG", "new_label_b"] == 4
    assert by_a.loc["x/3.JPEG", "change"] == "action,rules"
    assert by_a.loc["x/4.JPEG", "change"] == "moved,action,rules" and by_a.loc["x/4.JPEG", "sample_id_b"] == "y/4.JPEG"
    assert by_a.loc["x/5.JPEG", "change"] == "content"
    assert by_a.loc["x/6.JPEG", "change"] == "only_a"
    assert got.loc[got["change"] == "only_b", "sample_id_b"].tolist() == ["x/7.JPEG"]
    assert "x/1.JPEG" not in by_a.index
    s = summarize(got)
    assert s["changed"] == 6 and s["remove->keep"] == 1 and s["keep->remove"] == 1 and s["moved"] == 1


def test_identical_tables_have_no_diff(tmp_path):
    write_table(tmp_path / "a.parquet", A)
    write_table(tmp_path / "b.parquet", A)
    assert diff_files(tmp_path / "a.parquet", tmp_path / "b.parquet").empty


def test_tables_without_hashes_and_bad_input():
    a = A.drop(columns=["content_hash"])
    b = a.copy()
    b.loc[0, "action"] = "remove"
    assert diff_decisions(a, b)["change"].tolist() == ["action"]
    with pytest.raises(ValueError, match="lacks columns"):
        diff_decisions(a.drop(columns=["action"]), b)
    with pytest.raises(ValueError, match="duplicate sample_id"):
        diff_decisions(pd.concat([a, a.iloc[:1]]), b)


def test_label_sets_are_compared_when_a_side_has_them(tmp_path):
    """A changed set is a ``labels`` change; an old table without the column counts as having no sets (issue 30)."""
    a = A.assign(labels=[[], [], [], [], [], []])
    b = B.assign(labels=[[], [], [], [], [], []])
    b.loc[0, ["action", "labels"]] = ["relabel_set", [0, 2]]  # x/1 is now a scene of classes 0 and 2
    a2 = a.copy()
    a2.at[5, "labels"] = [3, 1]
    a2.loc[5, "action"] = "relabel_set"
    got = diff_decisions(a, b)
    assert list(got.columns)[-2:] == ["labels_a", "labels_b"]
    x1 = got.set_index("sample_id_a").loc["x/1.JPEG"]
    assert x1["change"] == "action,labels" and x1["labels_a"] == [] and x1["labels_b"] == [0, 2]
    assert summarize(got)["keep->relabel_set"] == 1 and summarize(got)["labels"] == 1
    # the same set on both sides is no change; only the set differing is one
    b_same = b.copy()
    b_same.at[0, "labels"] = [0, 2]
    a_same = a.copy()
    a_same.loc[0, ["action", "labels"]] = ["relabel_set", [0, 2]]
    assert "x/1.JPEG" not in set(diff_decisions(a_same, b_same)["sample_id_a"])
    b_same.at[0, "labels"] = [0, 3]
    assert diff_decisions(a_same, b_same).set_index("sample_id_a").loc["x/1.JPEG", "change"] == "labels"
    # an old release (no column) against a new one: only the set rows differ, as action and labels
    old = diff_decisions(A, b)
    assert old.set_index("sample_id_a").loc["x/1.JPEG", "change"] == "action,labels"
    assert len(old) == len(diff_decisions(A, B)) + 1
    # rows only on one side carry their set
    only = diff_decisions(a2, b).set_index("sample_id_a").loc["x/6.JPEG"]
    assert only["change"] == "only_a" and only["labels_a"] == [3, 1] and only["labels_b"] is None
    # through parquet (list<int64> columns come back as arrays)
    write_table(tmp_path / "a.parquet", a_same)
    write_table(tmp_path / "b.parquet", b_same)
    assert diff_files(tmp_path / "a.parquet", tmp_path / "b.parquet").set_index("sample_id_a").loc["x/1.JPEG", "change"] == "labels"


def test_without_label_sets_the_diff_has_its_old_columns():
    assert list(diff_decisions(A, B).columns) == ["sample_id_a", "sample_id_b", "change", "label_a", "label_b", "action_a", "action_b",
                                                  "new_label_a", "new_label_b", "rules_a", "rules_b"]
