"""`init folders` (presets.folders_params) and the leakage guard of `init imagenet --mode`."""
from __future__ import annotations

import pytest
import yaml

from folder_tree import make_tree, write_image
from imagenet_clean.cli import main
from imagenet_clean.config import parse_params
from imagenet_clean.presets import PresetError, imagenet_params
from imagenet_clean.presets_folders import folders_params

LITE = "efficientnet_lite0:pypi"


def test_writes_a_valid_folders_params(tmp_path):
    make_tree(tmp_path / "train")
    make_tree(tmp_path / "val", per_class=2)
    params = folders_params(train=tmp_path / "train", val=tmp_path / "val", models=[LITE] * 3)
    p = parse_params(params)
    assert p.dataset.source == "folders" and p.dataset.classes == "data/scan/train.json"
    assert p.dataset.merges == "none" and p.dataset.truth is None and p.tables.archs == ()
    assert p.splits["train"].layout == "imagefolder" and p.splits["train"].root == str((tmp_path / "train").resolve())
    assert p.splits["val"].root and p.train.mode == "probe" and len(p.models) == 3
    assert p.splits["v2"].root is None and not p.generate.enabled


def test_every_problem_listed_and_nothing_written(tmp_path, capsys):
    make_tree(tmp_path / "train", classes=("solo",))
    make_tree(tmp_path / "val", classes=("solo", "extra"))
    out = tmp_path / "params.yaml"
    with pytest.raises(SystemExit) as e:
        main(["init", "folders", "--train", str(tmp_path / "train"), "--val", str(tmp_path / "val"),
              "--model", "no_such_arch", "--set", "nokey", "--params", str(out)])
    assert e.value.code == 1 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert any("one class only ('solo')" in line for line in err)
    assert any("1 class(es) not in --train ('extra')" in line for line in err)
    assert any("no_such_arch: unknown timm architecture" in line for line in err)
    assert any("--set 'nokey'" in line for line in err)
    assert all(line.startswith("imagenet-clean init: error: ") for line in err)


def test_empty_tree_and_flat_tree(tmp_path):
    (tmp_path / "empty").mkdir()
    write_image(tmp_path / "flat" / "a.png", 1)
    for root, match in (("empty", "no image files"), ("flat", "images lie directly in the root")):
        with pytest.raises(PresetError, match=match):
            folders_params(train=tmp_path / root, models=[LITE])


def test_csv_labels_and_their_problems(tmp_path):
    root = tmp_path / "flat"
    for i in range(4):
        write_image(root / f"p{i}.png", i)
    good = tmp_path / "good.csv"
    good.write_text("path,label\np0.png,a b\np1.png,a b\np2.png,ç\np3.png,ç\n")
    p = parse_params(folders_params(train=root, labels=good, models=[LITE]))
    assert p.splits["train"].layout == "csv" and p.splits["train"].labels == str(good.resolve())
    dup = tmp_path / "dup.csv"
    dup.write_text("path,label\np0.png,a\np0.png,b\n")
    with pytest.raises(PresetError, match="--labels .*listed more than once"):
        folders_params(train=root, labels=dup, models=[LITE])
    unsafe = tmp_path / "unsafe.csv"
    unsafe.write_text("path,label\np0.png,..\np1.png,a/b\np2.png,ok\n")
    with pytest.raises(PresetError) as e:
        folders_params(train=root, labels=unsafe, models=[LITE])
    assert sum("cannot be a folder name" in line for line in e.value.problems) == 2
    nowhere = tmp_path / "nowhere.csv"
    nowhere.write_text("path,label\nx.png,a\ny.png,b\n")
    with pytest.raises(PresetError, match="none of its 2 paths is a file under --train"):
        folders_params(train=root, labels=nowhere, models=[LITE])


def test_mode_checks(tmp_path):
    make_tree(tmp_path / "train")
    with pytest.raises(PresetError, match="--mode scratch trains from random weights"):
        folders_params(train=tmp_path / "train", models=[LITE], mode="scratch")
    with pytest.raises(PresetError, match="--mode probe needs pretrained weights"):
        folders_params(train=tmp_path / "train", models=["digits_vgg:train"], mode="probe")
    p = parse_params(folders_params(train=tmp_path / "train", models=["digits_vgg"], mode="scratch"))
    assert p.models["digits_vgg"].weights == "train" and p.train.mode == "scratch"


def _imagenet_train(tmp_path):
    write_image(tmp_path / "in" / "n01440764" / "n01440764_1.JPEG", 1)
    write_image(tmp_path / "in" / "n01443537" / "n01443537_1.JPEG", 2)
    return tmp_path / "in"


def test_leakage_guard_refuses_supervised_weights_on_imagenet_train(tmp_path, capsys):
    train = _imagenet_train(tmp_path)
    out = tmp_path / "params.yaml"
    with pytest.raises(SystemExit):
        main(["init", "imagenet", "--train", str(train), "--model", LITE, "--mode", "probe", "--params", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and not out.exists()
    assert "trained on ImageNet-1k's labels" in err[0] and "in-sample" in err[0] and "self-supervised or image-text" in err[0]


def test_imagenet_scratch_mode_unchanged_and_recorded(tmp_path):
    params = imagenet_params(train=_imagenet_train(tmp_path), models=["efficientnet_b0:train"])
    assert params["train"]["mode"] == "scratch" and params["dataset"]["source"] == "imagenet"
    assert yaml.safe_dump(params)  # writable
