"""ImageNet annotation formats: VOC XML, Kaggle LOC CSV, labels files (data/annotations.py)."""
from __future__ import annotations

import pytest

from imagenet_clean.data.annotations import (
    annotation_kind,
    load_annotations,
    parse_voc_xml,
    read_kaggle_csv,
    read_labels_file,
    read_voc,
)

VOC = """<annotation><filename>{stem}</filename><size><width>50</width><height>40</height></size>
{objects}</annotation>"""
OBJ = "<object><name>{w}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"


def voc(stem, *objects):
    return VOC.format(stem=stem, objects="".join(OBJ.format(w=w, b=b) for w, b in objects))


def test_parse_voc_xml(tmp_path):
    p = tmp_path / "n00000001_1.xml"
    p.write_text(voc("n00000001_1", ("n00000001", (1, 2, 30, 40)), ("n00000002", (5, 5, 9, 9))))
    assert parse_voc_xml(p) == [("n00000001", [1.0, 2.0, 30.0, 40.0]), ("n00000002", [5.0, 5.0, 9.0, 9.0])]


def test_malformed_xml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.xml"
    p.write_text("<annotation>\n<object>\n<name>n1</name>\n</annotation>\n")
    with pytest.raises(ValueError, match=r"bad\.xml:4: malformed XML"):
        parse_voc_xml(p)


def test_entity_expansion_is_refused_not_expanded(tmp_path):
    p = tmp_path / "laughs.xml"
    p.write_text('<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n'
                 "<annotation><object><name>&lol2;</name></object></annotation>\n")
    with pytest.raises(ValueError, match=r"laughs\.xml: unsafe XML refused") as e:
        parse_voc_xml(p)
    assert "lollol" not in str(e.value)


def test_external_entity_is_refused_and_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    p = tmp_path / "xxe.xml"
    p.write_text(f'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]>\n'
                 "<annotation><object><name>&x;</name></object></annotation>\n")
    with pytest.raises(ValueError, match=r"xxe\.xml: unsafe XML refused") as e:
        parse_voc_xml(p)
    assert "TOPSECRET" not in str(e.value)


def test_voc_object_without_box_names_file_and_object(tmp_path):
    p = tmp_path / "nobox.xml"
    p.write_text("<annotation><object><name>n00000001</name><bndbox><xmin>a</xmin></bndbox></object></annotation>")
    with pytest.raises(ValueError, match=r"nobox\.xml: object 1: <xmin> is not a number"):
        parse_voc_xml(p)


def test_voc_folder_nested_and_flat_collects_errors(tmp_path, classes3):
    (tmp_path / "n00000001").mkdir()
    (tmp_path / "n00000001" / "n00000001_1.xml").write_text(voc("n00000001_1", ("n00000001", (1, 2, 3, 4))))
    (tmp_path / "n00000002_7.xml").write_text(voc("n00000002_7", ("n00000002", (0, 0, 5, 5)), ("n99999999", (1, 1, 2, 2))))
    (tmp_path / "broken.xml").write_text("<annotation>")
    ann = read_voc(tmp_path, classes=classes3)
    assert ann.boxes["n00000001_1"] == [("n00000001", [1.0, 2.0, 3.0, 4.0])]
    assert ann.boxes["n00000002_7"] == [("n00000002", [0.0, 0.0, 5.0, 5.0])]
    assert ann.labels["n00000002_7"].wnid == "n00000002"
    assert any("broken.xml:1: malformed XML" in e for e in ann.errors)
    assert any("n00000002_7.xml: unknown class id 'n99999999'" in e for e in ann.errors)


def test_kaggle_csv_boxes_labels_and_bad_rows(tmp_path, classes3):
    p = tmp_path / "LOC_val_solution.csv"
    p.write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n00000002 1 2 3 4 n00000002 5 6 7 8 \n"
        "ILSVRC2012_val_00000002,n99999999 1 2 3 4\n"
        "ILSVRC2012_val_00000003,n00000001 1 2 3\n"
        "ILSVRC2012_val_00000004,n00000001 1 2 x 4\n"
    )
    ann = read_kaggle_csv(p, classes=classes3)
    assert ann.boxes["ILSVRC2012_val_00000001"] == [("n00000002", [1.0, 2.0, 3.0, 4.0]), ("n00000002", [5.0, 6.0, 7.0, 8.0])]
    assert ann.labels["ILSVRC2012_val_00000001"].wnid == "n00000002"
    assert ann.labels["ILSVRC2012_val_00000002"].wnid == "n99999999"  # kept so the image reports it
    assert f"{p}:3: unknown class id 'n99999999'" in ann.errors
    assert any(e.startswith(f"{p}:4: expected") for e in ann.errors)
    assert any(e.startswith(f"{p}:5: <xmax> is not a number") for e in ann.errors)


def test_kaggle_csv_wrong_header(tmp_path, classes3):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n")
    assert read_kaggle_csv(p, classes=classes3).errors[0].startswith(f"{p}:1: expected header")


def test_labels_file_wnids_and_indices(tmp_path, classes3):
    p = tmp_path / "val.txt"
    p.write_text("a.JPEG 2\nb.JPEG n00000001\n# comment\nc.JPEG 7\nd.JPEG nope\ne.JPEG\n")
    ann = read_labels_file(p, classes=classes3)
    assert ann.labels["a"].wnid == "n00000003" and ann.labels["b"].wnid == "n00000001"
    assert ann.labels["a"].where == f"{p}:1"
    assert f"{p}:4: class index 7 out of range [0, 3)" in ann.errors
    assert f"{p}:5: unknown class id 'nope'" in ann.errors
    assert any(e.startswith(f"{p}:6: expected") for e in ann.errors)


def test_kind_dispatch_and_missing_source(tmp_path, classes3):
    assert annotation_kind(tmp_path) == "voc"
    assert annotation_kind(tmp_path / "x.csv") == "kaggle"
    assert annotation_kind(tmp_path / "val.txt") == "labels"
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        load_annotations(tmp_path / "nowhere.csv", classes=classes3)
    with pytest.raises(ValueError, match="unknown annotation kind 'yaml'"):
        load_annotations(tmp_path, classes=classes3, kind="yaml")


@pytest.mark.parametrize("name", ["LOC_val_solution.csv", "val.txt"])
def test_non_utf8_text_file_is_a_valueerror_naming_the_file(tmp_path, classes3, name):
    p = tmp_path / name
    p.write_bytes(b"ImageId,PredictionString\nILSVRC2012_val_00000001,n00000001 1 1 2 2 \xff\xfe\n")
    with pytest.raises(ValueError, match=rf"{name}: not a UTF-8 text file \(byte \d+: invalid start byte\)"):
        load_annotations(p, classes=classes3)


def test_utf8_bom_is_accepted(tmp_path, classes3):
    p = tmp_path / "LOC_val_solution.csv"
    p.write_bytes("ImageId,PredictionString\nILSVRC2012_val_00000001,n00000001 1 1 2 2\n".encode("utf-8-sig"))
    ann = load_annotations(p, classes=classes3)
    assert ann.errors == [] and ann.labels["ILSVRC2012_val_00000001"].wnid == "n00000001"
