"""`imagenet-clean apply --label-sets drop|first|csv`: images kept with a label set (action relabel_set, issue 30)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from apply_tree import WNIDS, expected_tree, make_split, tree_files, write_manifest
from folder_tree import CLASSES as FOLDER_CLASSES
from folder_tree import make_tree
from imagenet_clean.cli import main
from imagenet_clean.io import write_table
from imagenet_clean.publish.apply import LABEL_SETS_FILE, STATE_FILE, apply_clean
from imagenet_clean.publish.filelist import read_file_list


def _with_sets(tmp_path: Path, layout: str):
    """make_split's 12-image split with two kept images turned into label sets (and a ``labels`` column).

    Class 2's first image shows classes 2 and 0; class 0's second image shows 0, 3 and 1, where 3 was merged
    into 2 (the clean manifest holds the set after merges: [0, 2, 1]).
    """
    root, manifest, df = make_split(tmp_path, layout)
    df = df.copy()
    df["labels"] = [[int(x)] for x in df["label"]]
    sets = {}
    for orig, k, the_set in ((2, 0, [2, 0]), (0, 1, [0, 2, 1])):
        i = [j for j in df.index if df.at[j, "orig_label"] == orig and df.at[j, "action"] != "placeholder"][k]
        assert df.at[i, "label"] == the_set[0]
        df.at[i, "action"] = "relabel_set"
        df.at[i, "labels"] = the_set
        sets[df.at[i, "sample_id"]] = the_set
    write_manifest(manifest, df, root=root, layout=layout, split=layout)
    return root, manifest, df, sets


def _sets_csv(out: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO((out / LABEL_SETS_FILE).read_text())))


@pytest.mark.parametrize("layout", ["train", "val", "v2"])
def test_default_csv_keeps_first_label_and_writes_every_set(tmp_path, layout):
    root, manifest, df, sets = _with_sets(tmp_path, layout)
    out = tmp_path / "out"
    counts = apply_clean(manifest, root, out)
    want = expected_tree(df)
    assert tree_files(out) == set(want)  # the same tree as `first`: each set image under its first class
    assert dict(read_file_list(out / f"{layout}.txt")) == want
    rows = _sets_csv(out)
    assert [list(r) for r in rows[:1]] == [["path", "labels", "wnids"]]
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == 2
    for sid, the_set in sets.items():
        dest = next(d for d in want if d.startswith(WNIDS[the_set[0]] + "/") and Path(d).name in (Path(sid).name, sid.replace("/", "__")))
        assert json.loads(by_path[dest]["labels"]) == the_set
        assert json.loads(by_path[dest]["wnids"]) == [WNIDS[c] for c in the_set]
        assert want[dest] == the_set[0]
    assert counts["label_sets"] == 2 and counts["label_sets_mode"] == "csv" and counts["label_sets_dropped"] == 0
    assert counts["removed"] == 1 and counts["images"] == 12
    card = (out / "README.md").read_text()
    assert "images with a label set | 2 | filed under the first class of the set; every set in `label_sets.csv`" in card


def test_first_writes_no_set_and_removes_an_earlier_sets_file(tmp_path):
    root, manifest, df, _ = _with_sets(tmp_path, "train")
    out = tmp_path / "out"
    apply_clean(manifest, root, out, label_sets="csv")
    assert (out / LABEL_SETS_FILE).is_file()
    counts = apply_clean(manifest, root, out, label_sets="first")
    assert not (out / LABEL_SETS_FILE).exists()
    assert tree_files(out) == set(expected_tree(df))
    assert counts["unchanged"] == 12 and counts["label_sets_mode"] == "first"


def test_a_sets_file_the_user_put_there_is_never_touched(tmp_path):
    root, manifest, _, _ = _with_sets(tmp_path, "train")
    out = tmp_path / "out"
    apply_clean(manifest, root, out, label_sets="first")
    (out / LABEL_SETS_FILE).write_text("mine\n")
    apply_clean(manifest, root, out, label_sets="first")
    assert (out / LABEL_SETS_FILE).read_text() == "mine\n"


@pytest.mark.parametrize("layout", ["train", "v2"])
def test_drop_leaves_set_images_out_and_counts_them_removed(tmp_path, layout):
    root, manifest, df, sets = _with_sets(tmp_path, layout)
    out = tmp_path / "out"
    apply_clean(manifest, root, out, label_sets="csv", mode="copy")
    counts = apply_clean(manifest, root, out, label_sets="drop", mode="copy")  # over a csv tree: the set images go
    want = expected_tree(df[df["action"] != "relabel_set"])
    assert tree_files(out) == set(want)
    assert dict(read_file_list(out / f"{layout}.txt")) == want
    assert not (out / LABEL_SETS_FILE).exists()
    assert counts["label_sets_dropped"] == 2 and counts["removed"] == 3 and counts["stale_removed"] == 2
    assert (out / "classes.txt").read_text().splitlines() == WNIDS  # the class list is the manifest's, not the tree's
    assert "left out of this tree (counted as removed)" in (out / "README.md").read_text()


def test_without_label_sets_nothing_changes(tmp_path):
    """A manifest without a ``labels`` column (and no relabel_set row): the counts, files and card of today."""
    root, manifest, df = make_split(tmp_path, "train")
    a = apply_clean(manifest, root, tmp_path / "a", label_sets="drop")
    b = apply_clean(manifest, root, tmp_path / "b", label_sets="csv")
    assert a == b and not any(k.startswith("label_sets") for k in a)
    for out in ("a", "b"):
        assert not (tmp_path / out / LABEL_SETS_FILE).exists()
        assert "label set" not in (tmp_path / out / "README.md").read_text()
    assert (tmp_path / "a" / "README.md").read_text() == (tmp_path / "b" / "README.md").read_text()
    assert json.loads((tmp_path / "a" / STATE_FILE).read_text()).keys() == {"complete", "entries", "mode"}


def test_folder_dataset_set_image_filed_under_its_first_class(tmp_path):
    """An ImageFolder dataset (nested paths, class names with spaces and accents): torchvision reads the tree."""
    from torchvision.datasets import ImageFolder

    root = tmp_path / "photos"
    rels = make_tree(root)
    label = {c: i for i, c in enumerate(FOLDER_CLASSES)}
    moved = "bée/sub/img1.JPG"  # shows a cat first, then a bée
    rows = []
    for rel in rels:
        cls = rel.split("/")[0]
        new = "cat" if rel == moved else cls
        rows.append({"sample_id": rel, "path": rel, "label": label[new], "wnid": new, "orig_label": label[cls], "orig_wnid": cls,
                     "action": "relabel_set" if rel == moved else "keep", "size": (root / rel).stat().st_size,
                     "content_hash": None, "labels": [label["cat"], label["bée"]] if rel == moved else [label[new]]})
    meta = {"root": str(root), "layout": "imagefolder", "split": "train", "num_classes": 3}
    write_table(tmp_path / "clean.parquet", pd.DataFrame(rows), metadata=meta)
    out = tmp_path / "clean"
    counts = apply_clean(tmp_path / "clean.parquet", root, out, mode="copy")
    ds = ImageFolder(str(out))
    got = {Path(s).relative_to(out).as_posix(): ds.classes[t] for s, t in ds.samples}
    assert got["cat/sub/img1.JPG"] == "cat" and "bée/sub/img1.JPG" not in got and len(got) == len(rels)
    assert _sets_csv(out) == [{"path": "cat/sub/img1.JPG", "labels": "[2,1]", "wnids": '["cat","bée"]'}]
    assert counts["label_sets"] == 1
    apply_clean(tmp_path / "clean.parquet", root, tmp_path / "dropped", mode="copy", label_sets="drop")
    assert len(ImageFolder(str(tmp_path / "dropped")).samples) == len(rels) - 1


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: d.assign(labels=[[1, 0] if a == "relabel_set" else s for a, s in zip(d.action, d.labels)]),
         "does not start with its label"),
        (lambda d: d.assign(labels=[[] if a == "relabel_set" else s for a, s in zip(d.action, d.labels)]), "empty label set"),
        (lambda d: d.assign(labels=[[s[0], s[0]] if a == "relabel_set" else s for a, s in zip(d.action, d.labels)]),
         "negative or repeated"),
    ],
)
def test_bad_label_sets_refused_before_writing(tmp_path, corrupt, message):
    root, manifest, df, _ = _with_sets(tmp_path, "train")
    write_manifest(manifest, corrupt(df), root=root, layout="train", split="train")
    with pytest.raises(ValueError, match=message) as e:
        apply_clean(manifest, root, tmp_path / "out")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_unknown_label_sets_value_is_one_line_and_writes_nothing(tmp_path, capsys):
    root, manifest, _, _ = _with_sets(tmp_path, "val")
    with pytest.raises(ValueError, match="--label-sets 'keep' is not one of csv, first, drop"):
        apply_clean(manifest, root, tmp_path / "out", label_sets="keep")
    with pytest.raises(SystemExit) as e:
        main(["apply", "--clean", str(manifest), "--root", str(root), "--out", str(tmp_path / "out"), "--label-sets", "both"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == "imagenet-clean: error: --label-sets 'both' is not one of csv, first, drop"
    assert not (tmp_path / "out").exists()


def test_cli_label_sets_drop(tmp_path, capsys):
    root, manifest, _, _ = _with_sets(tmp_path, "val")
    with pytest.raises(SystemExit) as e:
        main(["apply", "--clean", str(manifest), "--root", str(root), "--out", str(tmp_path / "out"), "--label-sets", "drop"])
    assert e.value.code in (0, None)
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts["images"] == 10 and counts["label_sets_dropped"] == 2


def _release_root(tmp_path: Path, *, sets: bool) -> Path:
    from imagenet_clean.publish.lock import clean_manifest_path, decisions_path

    root = tmp_path / ("with_sets" if sets else "plain")
    acts = ["keep", "fix", "remove", "relabel_set" if sets else "keep"]
    write_table(root / decisions_path("val"), pd.DataFrame({"action": acts}))
    write_table(root / clean_manifest_path("val"), pd.DataFrame({"action": [a for a in acts if a != "remove"]}))
    return root


def test_release_card_counts_label_sets_only_where_there_are_some(tmp_path):
    from imagenet_clean.publish.release_card import Release, render_release_card, split_counts

    plain, with_sets = _release_root(tmp_path, sets=False), _release_root(tmp_path, sets=True)
    assert not any("relabel_set" in k for k in split_counts(plain, "val"))
    assert split_counts(with_sets, "val")["decision_relabel_set"] == 1 and split_counts(with_sets, "val")["clean_relabel_set"] == 1
    card = lambda root: render_release_card(Release(root, "v1", "published", "/remote", {}, ""), ["val"])  # noqa: E731
    a, b = card(plain), card(with_sets)
    assert "label set" not in a and "| split | images | keep | fix | remove | clean rows |" in a
    assert "| split | images | keep | fix | remove | label set | clean rows |" in b and "| val | 4 | 1 | 1 | 1 | 1 | 3 |" in b
    assert b.count("kept with a label set") == 1


def test_a_sets_file_of_a_killed_run_is_still_apply_s_own(tmp_path, monkeypatch):
    """Killed after writing label_sets.csv, before its final state: a later `first` run still removes the file."""
    from imagenet_clean.publish import apply as apply_mod

    root, manifest, _, _ = _with_sets(tmp_path, "train")
    out = tmp_path / "out"
    apply_clean(manifest, root, out, label_sets="first")
    real = apply_mod._write_state

    def killed_at_the_end(where, state):
        if state.get("complete"):
            raise KeyboardInterrupt("killed")
        real(where, state)

    monkeypatch.setattr(apply_mod, "_write_state", killed_at_the_end)
    with pytest.raises(KeyboardInterrupt):
        apply_clean(manifest, root, out, label_sets="csv")
    assert (out / LABEL_SETS_FILE).is_file()
    monkeypatch.setattr(apply_mod, "_write_state", real)
    apply_clean(manifest, root, out, label_sets="first")
    assert not (out / LABEL_SETS_FILE).exists()
