"""Labels CSVs: labels kept as text, whole-file problems one line, row problems per row."""
from __future__ import annotations

import pytest

from imagenet_clean.data.labelcsv import csv_classes, normalise_path, read_labels_csv


def _csv(tmp_path, text: str, name="labels.csv"):
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return p


def test_labels_are_text_never_numbers(tmp_path):
    rows = read_labels_csv(_csv(tmp_path, "path,label\na.png,007\nb.png,7\nc.png, Grand Café \n"))
    assert [r.label for r in rows] == ["007", "7", "Grand Café"]
    assert csv_classes(rows) == ["007", "7", "Grand Café"]


def test_duplicate_paths_refused_in_one_line(tmp_path):
    p = _csv(tmp_path, "path,label\na.png,x\nb.png,y\n./a.png,z\n")
    with pytest.raises(ValueError) as e:
        read_labels_csv(p)
    msg = str(e.value)
    assert "1 path(s) listed more than once" in msg and "'a.png' (lines 2 and 4)" in msg and "\n" not in msg


@pytest.mark.parametrize("text, match", [
    ("file,class\na.png,x\n", "the first line must be the header 'path,label'"),
    ("", "the first line must be the header"),
    ("path,label\na.png\n", r"labels.csv:2: expected two cells"),
    (b"path,label\nb\xe9.png,x\n", "not UTF-8 text"),
])
def test_unusable_csv_one_line(tmp_path, text, match):
    with pytest.raises(ValueError, match=match) as e:
        read_labels_csv(_csv(tmp_path, text))
    assert "\n" not in str(e.value)


def test_missing_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels CSV not found"):
        read_labels_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize("raw, want", [("a/b.png", "a/b.png"), ("./a//b.png", "a/b.png"), ("a\\b.png", "a/b.png"),
                                       ("/abs.png", None), ("../x.png", None), ("a/../../x", None), ("", None),
                                       ("C:/x.png", None)])
def test_normalise_path(raw, want):
    assert normalise_path(raw) == want
