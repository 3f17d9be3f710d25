"""Category merges: the paper's table A.1, the embedded pair, custom tables, placeholders."""
import pytest

from imagenet_clean.classes import ClassList, imagenet_classes
from imagenet_clean.cleanup.merges import apply_merges, load_merges, placeholder_rows, read_merge_table


@pytest.fixture(scope="module")
def imagenet():
    return imagenet_classes()


def test_table_a1_has_21_pairs_and_matches_the_class_list(imagenet):
    merges = load_merges("imagenet", imagenet, check_names=True)
    assert len(merges) == 21
    assert len(set(merges) | set(merges.values())) == 40  # 42 table cells; keyboard and tusker are targets twice
    assert merges["n02504458"] == "n01871265"  # African elephant -> tusker, as the paper has it
    assert merges["n04264628"] == merges["n04505470"] == "n03085013"


def test_embedded_table():
    classes = ClassList(tuple(f"n9000000{i}" for i in range(10)) + ("n90000010",), tuple("abcdefghijk"))
    assert load_merges("embedded", classes) == {"n90000010": "n90000001"}
    assert load_merges("none", classes) == {}


def test_apply_merges_and_placeholders():
    classes = ClassList(("a", "b", "c", "d"), ("A", "B", "C", "D"))
    merges = {"c": "a", "d": "b"}
    new, moved = apply_merges([0, 2, 3, 1, 2], merges, classes)
    assert new.tolist() == [0, 0, 1, 1, 0] and moved.tolist() == [False, True, True, False, True]
    ph = placeholder_rows(merges, classes)
    assert ph["path"].tolist() == ["__placeholder__/c.JPEG", "__placeholder__/d.JPEG"]
    assert ph["label"].tolist() == [2, 3] and (ph["action"] == "placeholder").all()


def test_custom_csv_and_bad_tables(tmp_path, imagenet):
    classes = ClassList(("a", "b", "c"), ("A", "B", "C"))
    good = tmp_path / "m.csv"
    good.write_text("merged_wnid,target_wnid\nc,a\n")
    assert load_merges(good, classes) == {"c": "a"}
    (tmp_path / "unk.csv").write_text("merged_wnid,target_wnid\nc,zz\n")
    with pytest.raises(ValueError, match="line 2: target_wnid 'zz' is not in the class list"):
        load_merges(tmp_path / "unk.csv", classes)
    (tmp_path / "chain.csv").write_text("merged_wnid,target_wnid\nc,b\nb,a\n")
    with pytest.raises(ValueError, match="both a merge target and merged"):
        load_merges(tmp_path / "chain.csv", classes)
    (tmp_path / "twice.csv").write_text("merged_wnid,target_wnid\nc,b\nc,a\n")
    with pytest.raises(ValueError, match="merged twice"):
        load_merges(tmp_path / "twice.csv", classes)
    (tmp_path / "self.csv").write_text("merged_wnid,target_wnid\nc,c\n")
    with pytest.raises(ValueError, match="into itself"):
        load_merges(tmp_path / "self.csv", classes)
    (tmp_path / "cols.csv").write_text("from,to\nc,a\n")
    with pytest.raises(ValueError, match="needs columns"):
        read_merge_table(tmp_path / "cols.csv")
    with pytest.raises(FileNotFoundError, match="merge table not found"):
        load_merges(tmp_path / "missing.csv", classes)
    with pytest.raises(ValueError, match="not in the class list"):
        load_merges("imagenet", classes)  # the paper's table on a dataset without those classes
