"""`imagenet-clean apply`: clean manifest + original split -> cleaned ImageFolder tree."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apply_tree import WNIDS, expected_tree, make_split, tree_files, write_jpeg, write_manifest
from imagenet_clean.classes import ClassList
from imagenet_clean.cli import main
from imagenet_clean.publish.apply import (
    STATE_FILE,
    SourceMismatchError,
    apply_clean,
    placeholder_bytes,
)
from imagenet_clean.publish.filelist import imagefolder_target_map, read_file_list


@pytest.mark.parametrize("layout", ["train", "val", "v2"])
def test_apply_builds_exactly_the_clean_manifest(tmp_path, layout):
    root, manifest, df = make_split(tmp_path, layout)
    out = tmp_path / "clean_out"
    counts = apply_clean(manifest, root, out)

    want = expected_tree(df)
    assert tree_files(out) == set(want)
    assert dict(read_file_list(out / f"{layout}.txt")) == want
    # every real entry is a symlink to its source, which is untouched
    for r in df[df.action != "placeholder"].itertuples():
        dest = next(out / d for d in want if d.startswith(r.wnid + "/") and os.path.realpath(out / d) == str((root / r.path).resolve()))
        assert dest.is_symlink()
    ph = out / WNIDS[3] / "__placeholder__.JPEG"
    assert ph.read_bytes() == placeholder_bytes()
    assert np.asarray(Image.open(ph)).max() <= 2  # black (JPEG may leave tiny noise)
    assert counts | {"split": None} == {
        "split": None, "mode": "symlink", "source_files": 12, "images": 12, "classes": 4,
        "kept": 7, "relabelled": 2, "merged": 2, "placeholders": 1, "deepaugment": 0,
        "removed": 1, "created": 12, "unchanged": 0, "stale_removed": 0,
    }
    assert (out / "classes.txt").read_text().splitlines() == WNIDS
    card = (out / "README.md").read_text()
    assert "left out (removed) | 1" in card and "n04000004" in card


def test_v2_name_collision_resolved_deterministically(tmp_path):
    root, manifest, df = make_split(tmp_path, "v2")
    # 0/0000.jpeg is fixed into class 1, which holds 1/0000.jpeg: the first sample_id keeps the name
    apply_clean(manifest, root, tmp_path / "out")
    files = tree_files(tmp_path / "out")
    assert {f"{WNIDS[1]}/0000.jpeg", f"{WNIDS[1]}/1__0000.jpeg", f"{WNIDS[2]}/3__0001.jpeg"} <= files
    real = lambda d: os.path.realpath(tmp_path / "out" / d)  # noqa: E731
    assert real(f"{WNIDS[1]}/0000.jpeg") == str((root / "0/0000.jpeg").resolve())
    assert real(f"{WNIDS[1]}/1__0000.jpeg") == str((root / "1/0000.jpeg").resolve())


def test_imagefolder_yields_clean_labels(tmp_path):
    from torchvision.datasets import ImageFolder

    root, manifest, df = make_split(tmp_path, "val")
    out = tmp_path / "out"
    apply_clean(manifest, root, out)
    ds = ImageFolder(out)
    assert ds.classes == sorted(WNIDS)  # ImageFolder's order: sorted folders, not label order
    to_label = imagefolder_target_map(out)
    got = {Path(p).relative_to(out).as_posix(): to_label[t] for p, t in ds.samples}
    assert got == dict(read_file_list(out / "val.txt")) == expected_tree(df)
    img, _ = ds[0]
    assert img.size in ((8, 8), (224, 224))


def test_timm_dataset_with_class_map_yields_clean_labels(tmp_path):
    from timm.data import create_dataset

    root, manifest, df = make_split(tmp_path, "v2")
    out = tmp_path / "out"
    apply_clean(manifest, root, out)
    ds = create_dataset("", root=str(out), split="", class_map="classes.txt")
    got = {Path(p).relative_to(out).as_posix(): t for p, t in ds.reader.samples}
    assert got == dict(read_file_list(out / "v2.txt")) == expected_tree(df)


@pytest.mark.parametrize("mode", ["hardlink", "copy"])
def test_hardlink_and_copy_modes(tmp_path, mode):
    root, manifest, df = make_split(tmp_path, "train")
    out = tmp_path / "out"
    apply_clean(manifest, root, out, mode=mode)
    for d in expected_tree(df):
        p = out / d
        assert p.is_file() and not p.is_symlink()
    src = root / df.path[1]
    dest = out / df.wnid[1] / Path(df.path[1]).name
    assert dest.read_bytes() == src.read_bytes()
    assert os.path.samefile(src, dest) == (mode == "hardlink")


def test_second_run_changes_nothing_and_resume(tmp_path):
    root, manifest, df = make_split(tmp_path, "train")
    out = tmp_path / "out"
    apply_clean(manifest, root, out)
    before = {p: os.lstat(p).st_mtime_ns for p in out.rglob("*")}
    counts = apply_clean(manifest, root, out)
    assert counts["created"] == 0 and counts["unchanged"] == 12
    assert {p: os.lstat(p).st_mtime_ns for p in out.rglob("*")} == before

    # an interrupted run: two entries missing, a leftover temporary file
    gone = sorted(expected_tree(df))[:2]
    for d in gone:
        (out / d).unlink()
    (out / WNIDS[0] / ".x.JPEG.imagenet-clean-tmp").write_text("partial")
    counts = apply_clean(manifest, root, out)
    assert counts["created"] == 2 and tree_files(out) == set(expected_tree(df))


def test_mode_switch_replaces_entries(tmp_path):
    root, manifest, df = make_split(tmp_path, "train")
    out = tmp_path / "out"
    apply_clean(manifest, root, out, mode="symlink")
    counts = apply_clean(manifest, root, out, mode="copy")
    assert (counts["created"], counts["unchanged"]) == (11, 1)  # the placeholder is a file in every mode
    assert not any(p.is_symlink() for p in out.rglob("*"))


def test_stale_entries_removed_foreign_files_kept(tmp_path):
    root, manifest, df = make_split(tmp_path, "train")
    out = tmp_path / "out"
    apply_clean(manifest, root, out)
    foreign = out / WNIDS[0] / "my_notes.txt"
    foreign.write_text("mine")
    smaller = df[df.sample_id != df.sample_id[1]]
    write_manifest(manifest, smaller, root=root, layout="train", split="train")
    counts = apply_clean(manifest, root, out)
    assert counts["stale_removed"] == 1 and counts["removed"] == 2
    assert tree_files(out) - {foreign.relative_to(out).as_posix()} == set(expected_tree(smaller))
    assert foreign.read_text() == "mine"


def test_tampered_and_missing_sources_refused_with_list(tmp_path):
    root, manifest, df = make_split(tmp_path, "train")
    hashed = df[df.content_hash.notna() & (df.action != "placeholder")].path.tolist()
    same_size = root / hashed[0]
    data = bytearray(same_size.read_bytes())
    data[-3] ^= 0xFF
    same_size.write_bytes(bytes(data))  # size kept, content changed
    (root / hashed[1]).write_bytes(b"short")  # size changed
    (root / hashed[2]).unlink()  # missing
    out = tmp_path / "out"
    with pytest.raises(SourceMismatchError) as e:
        apply_clean(manifest, root, out)
    problems = {p: why for _, p, why in e.value.problems}
    assert set(problems) == set(hashed[:3])
    assert problems[hashed[0]].startswith("content hash")
    assert problems[hashed[1]].startswith("size 5 != manifest")
    assert problems[hashed[2]] == "missing"
    assert not out.exists()  # nothing written
    # sizes only: the same-size tamper is not caught, the others still are
    with pytest.raises(SourceMismatchError) as e:
        apply_clean(manifest, root, out, check_hash=False)
    assert {p for _, p, _ in e.value.problems} == set(hashed[1:3])


def test_symlink_escaping_root_refused(tmp_path):
    root, manifest, df = make_split(tmp_path, "train")
    rel = df.path[1]
    outside = tmp_path / "elsewhere.JPEG"
    outside.write_bytes((root / rel).read_bytes())
    (root / rel).unlink()
    (root / rel).symlink_to(outside)
    with pytest.raises(SourceMismatchError, match="outside the root"):
        apply_clean(manifest, root, tmp_path / "out")


@pytest.mark.parametrize("where", ["inside_root", "is_root", "contains_root"])
def test_out_overlapping_root_refused(tmp_path, where):
    root, manifest, _ = make_split(tmp_path, "train")
    out = {"inside_root": root / "cleaned", "is_root": root, "contains_root": tmp_path}[where]
    with pytest.raises(ValueError, match="overlaps"):
        apply_clean(manifest, root, out)
    assert not (root / "cleaned").exists()


def test_foreign_nonempty_out_refused(tmp_path):
    root, manifest, _ = make_split(tmp_path, "train")
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(ValueError, match="not made by"):
        apply_clean(manifest, root, out)
    assert sorted(os.listdir(out)) == ["something"]


def test_unknown_mode_refused(tmp_path):
    root, manifest, _ = make_split(tmp_path, "train")
    with pytest.raises(ValueError, match="'move'"):
        apply_clean(manifest, root, tmp_path / "out", mode="move")


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: d.drop(columns=["content_hash"]), "missing columns"),
        (lambda d: d.assign(action=d.action.where(d.index != 0, "delete")), "'delete'"),
        (lambda d: d.assign(path=d.path.where(d.index != 0, "../../etc/passwd")), "not a plain relative path"),
        (lambda d: d.assign(sample_id=d.sample_id.where(d.index != 1, d.sample_id[0])), "more than once"),
        (lambda d: d.assign(label=d.label.where(d.index != 1, 3)), "several"),
    ],
)
def test_bad_manifest_refused(tmp_path, corrupt, message):
    root, manifest, df = make_split(tmp_path, "train")
    write_manifest(manifest, corrupt(df), root=root, layout="train", split="train")
    with pytest.raises(ValueError, match=message):
        apply_clean(manifest, root, tmp_path / "out")


def test_labels_disagreeing_with_class_list_refused(tmp_path):
    root, manifest, _ = make_split(tmp_path, "train")
    sorted_classes = ClassList(tuple(sorted(WNIDS)), tuple(sorted(WNIDS)))
    with pytest.raises(ValueError, match="disagree with the class list"):
        apply_clean(manifest, root, tmp_path / "out", classes=sorted_classes)


def test_deepaugment_copies_follow_their_original(tmp_path):
    root, manifest, df = make_split(tmp_path, "train")
    rng = np.random.default_rng(1)
    for rel in [f"{WNIDS[0]}/{WNIDS[0]}_0", f"{WNIDS[1]}/{WNIDS[1]}_2"]:  # a fixed one, a removed one
        for tag in ("CAE", "EDSR"):
            write_jpeg(root / f"{rel}_{tag}.JPEG", rng)
    out = tmp_path / "out"
    counts = apply_clean(manifest, root, out, deepaugment=True)
    assert counts["deepaugment"] == 2 and counts["removed"] == 3  # the removed image and its 2 copies
    files = dict(read_file_list(out / "train.txt"))
    assert files[f"{WNIDS[1]}/{WNIDS[0]}_0_CAE.JPEG"] == 1 and files[f"{WNIDS[1]}/{WNIDS[0]}_0_EDSR.JPEG"] == 1
    assert not any("n01000001_2_" in f for f in files)
    # without the flag the copies are left out
    counts = apply_clean(manifest, root, out)
    assert counts["deepaugment"] == 0 and counts["stale_removed"] == 2


def test_cli_apply_and_refusal(tmp_path, capsys):
    root, manifest, df = make_split(tmp_path, "val")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["apply", "--clean", str(manifest), "--root", str(root), "--out", str(out), "--mode", "copy"])
    assert e.value.code in (0, None)
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert counts["images"] == 12 and counts["mode"] == "copy"
    assert (out / STATE_FILE).is_file()

    (root / df.path[0]).unlink()
    with pytest.raises(SystemExit) as e:
        main(["apply", "--clean", str(manifest), "--root", str(root), "--out", str(tmp_path / "out2")])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refusing" in err and df.path[0] in err
    listed = (tmp_path / "out2.refused.tsv").read_text().splitlines()
    assert listed[1:] == [f"{df.sample_id[0]}\t{df.path[0]}\tmissing"]
    assert not (tmp_path / "out2").exists()


def test_size_zero_means_not_recorded_hash_still_checked(tmp_path):
    root, manifest, df = make_split(tmp_path, "train")
    write_manifest(manifest, df.assign(size=0), root=root, layout="train", split="train")  # as a manifest without sizes
    assert apply_clean(manifest, root, tmp_path / "out")["images"] == 12
    hashed = df[df.content_hash.notna() & (df.action != "placeholder")].path.iloc[0]
    (root / hashed).write_bytes(b"other")
    with pytest.raises(SourceMismatchError, match="content hash"):
        apply_clean(manifest, root, tmp_path / "out")
