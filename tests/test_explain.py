"""`imagenet-clean explain`: the CAM stage's numbers for one image, a side-by-side PNG, one-line errors."""
from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest
import torch
from PIL import Image

from imagenet_clean.classes import ClassList, write_classes
from imagenet_clean.cleanup.cam import find_exemptions
from imagenet_clean.cleanup.camcache import CACHE_FILE, CACHE_VERSION, ScoreCache
from imagenet_clean.cli import main
from imagenet_clean.config import CamConfig, ModelConfig
from imagenet_clean.models.factory import build_model, save_checkpoint

TINY = ModelConfig(arch="test_efficientnet", input_size=(3, 48, 48))
K = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain")
    torch.manual_seed(0)
    model, _ = build_model(TINY, num_classes=K)
    save_checkpoint(model, tmp / "tiny.safetensors")
    write_classes(tmp / "classes.tsv", ClassList(tuple(f"n0000000{i}" for i in range(K)), tuple("abcd")))
    from skimage import data

    Image.fromarray(data.chelsea()).save(tmp / "cat.png")
    return tmp


def _explain(tmp, capsys, *extra, out="sheet.png"):
    capsys.readouterr()
    argv = ["explain", "--model", f"test_efficientnet:{tmp / 'tiny.safetensors'}", "--input-size", "3,48,48",
            "--classes", str(tmp / "classes.tsv"), "--params", str(tmp / "none.yaml"), "--out", str(tmp / out), *extra]
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr()


def test_explain_json_equals_the_cam_stage_cached_scores(setup, capsys):
    tmp = setup
    box = [100.0, 20.0, 350.0, 300.0]
    code, cap = _explain(tmp, capsys, "--image", str(tmp / "cat.png"), "--label", "n00000002", "--box",
                         ",".join(map(str, box)))
    assert code == 0, cap.err
    got = json.loads(cap.out.strip().splitlines()[-1])
    assert got["label"] == 2 and set(got["scores"]) == {"gradcam", "gradcam++", "scorecam"}
    sheet = Image.open(tmp / "sheet.png")
    assert sheet.width > 3 * sheet.height  # 4 panels side by side

    # the CAM stage on the same image, label and box, every method, into its cache
    model, cfg = build_model(TINY, num_classes=K, checkpoint=tmp / "tiny.safetensors")
    cands = pd.DataFrame([dict(sample_id="cat", path="cat.png", label=2, boxes=[box], width=451, height=300,
                               content_hash="hcat", models=["tiny"], folds=[-1])])
    find_exemptions(cands, root=tmp, load_model=lambda n, f: (model, cfg), cfg=CamConfig(), cache_dir=tmp / "cache",
                    lazy=False)
    with sqlite3.connect(tmp / "cache" / CACHE_FILE) as db:
        cached = dict(db.execute("SELECT method, score FROM scores WHERE image='hcat'").fetchall())
    assert cached == got["scores"]


@pytest.mark.parametrize("args, message", [
    (["--image", "{tmp}/nothing.png", "--label", "1"], "cannot read"),
    (["--image", "{tmp}/garbage.png", "--label", "1"], "cannot read"),
    (["--image", "{tmp}/cat.png", "--label", "1", "--box", "500,400,600,500"], "lies outside the 451x300 image"),
    (["--image", "{tmp}/cat.png", "--label", "1", "--box", "10,10,5,20"], "is not [xmin, ymin, xmax, ymax]"),
    (["--image", "{tmp}/cat.png", "--label", "n99999999"], "unknown class id"),
    (["--image", "{tmp}/cat.png", "--label", "7"], "out of range for 4 classes"),
    (["--image", "{tmp}/cat.png", "--label", "1", "--methods", "gradcam,lime"], "'lime'"),
])
def test_bad_input_is_one_line_and_writes_nothing(setup, capsys, args, message):
    tmp = setup
    (tmp / "garbage.png").write_bytes(b"not an image at all")
    code, cap = _explain(tmp, capsys, *[a.format(tmp=tmp) for a in args], out="bad.png")
    assert code == 1
    assert len(cap.err.strip().splitlines()) == 1 and message in cap.err, cap.err
    assert not (tmp / "bad.png").exists() and not list(tmp.glob(".bad.png.*"))


def test_a_model_without_a_4d_feature_layer_is_one_line(setup, capsys):
    tmp = setup
    vit = ModelConfig(arch="test_vit", input_size=(3, 64, 64))
    save_checkpoint(build_model(vit, num_classes=K)[0], tmp / "vit.safetensors")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["explain", "--model", f"test_vit:{tmp / 'vit.safetensors'}", "--input-size", "3,64,64",
              "--classes", str(tmp / "classes.tsv"), "--image", str(tmp / "cat.png"), "--label", "1",
              "--params", str(tmp / "none.yaml"), "--out", str(tmp / "vit.png")])
    err = capsys.readouterr().err
    assert e.value.code == 1 and len(err.strip().splitlines()) == 1 and "no module outputs a 4-D feature map" in err
    assert not (tmp / "vit.png").exists()




@pytest.mark.parametrize("damage", ["garbage", "old_version", "truncated"])
def test_corrupt_or_other_version_cache_is_reported_in_one_line_and_rebuilt(tmp_path, capsys, damage):
    path = tmp_path / CACHE_FILE
    c = ScoreCache(tmp_path)
    c.put_many({("img", 1, "b", "m", -1, "fp", "gradcam", 0.75): 0.5})
    c.close()
    if damage == "garbage":
        path.write_bytes(b"this is not an sqlite file" * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    else:
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA user_version = 1")
    capsys.readouterr()
    c = ScoreCache(tmp_path)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "rebuilding" in err and str(path) in err
    assert len(c) == 0  # nothing of the old file is trusted
    c.put_many({("img", 1, "b", "m", -1, "fp", "gradcam", 0.75): 0.25})
    c.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == CACHE_VERSION
    capsys.readouterr()
    ScoreCache(tmp_path).close()
    assert capsys.readouterr().err == ""  # a good cache is trusted silently
