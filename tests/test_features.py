"""The features contract and extraction: float16 table, refusal of a file that does not match its manifest, shards, bad images."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from imagenet_clean.config import ModelConfig
from imagenet_clean.features import FeaturesMismatch, features_table, manifest_digest, read_features, write_features
from imagenet_clean.models.extract import extract_features
from imagenet_clean.models.speed import NUMERICS


def _manifest(n: int) -> pd.DataFrame:
    return pd.DataFrame({"sample_id": [f"c{i % 2}/img{i}.jpg" for i in range(n)], "path": [f"c{i % 2}/img{i}.jpg" for i in range(n)],
                         "status": ["ok"] * n})


def _write(path, df, values, *, model="m", status=None):
    t = features_table(df["sample_id"], values, status=status)
    write_features(path, t, model=model, arch="a", split="train", dim=values.shape[1], views=["center"],
                   digest=manifest_digest(df["sample_id"], df["path"]))


def test_roundtrip_is_float16_and_error_rows_are_null(tmp_path):
    df = _manifest(4)
    v = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    _write(tmp_path / "f.parquet", df, v, status=["ok", "error", "ok", "ok"])
    assert pq.read_schema(tmp_path / "f.parquet").field("features").type.value_type == "halffloat"
    f = read_features(tmp_path / "f.parquet", df, model="m")
    assert f.ok.tolist() == [True, False, True, True]
    np.testing.assert_allclose(f.values[f.ok], v[[0, 2, 3]], rtol=1e-3, atol=1e-3)
    assert (f.values[1] == 0).all()
    assert f.views == ["center"] and f.view("center").shape == (4, 6)


@pytest.mark.parametrize("change, words", [
    ("rows", "3 rows but the manifest has 4"),
    ("order", "rows or order differ"),
    ("paths", "other manifest rows"),
    ("model", "features of model 'other'"),
])
def test_a_file_that_does_not_match_its_manifest_is_refused_naming_it(tmp_path, change, words):
    df = _manifest(4)
    v = np.ones((4, 3), np.float32)
    path = tmp_path / "train.parquet"
    if change == "rows":
        _write(path, df.iloc[:3], v[:3])
    elif change == "order":
        _write(path, df.iloc[::-1].reset_index(drop=True), v)
    elif change == "paths":
        t = features_table(df["sample_id"], v)
        write_features(path, t, model="m", arch="a", split="train", dim=3, views=["center"],
                       digest=manifest_digest(df["sample_id"], df["path"] + ".moved"))
    else:
        _write(path, df, v, model="other")
    with pytest.raises(FeaturesMismatch, match=words) as e:
        read_features(path, df, model="m")
    assert str(path) in str(e.value)


def test_width_must_be_dim_times_views(tmp_path):
    df = _manifest(2)
    t = features_table(df["sample_id"], np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="not dim 3 x 2 views"):
        write_features(tmp_path / "f.parquet", t, model="m", arch="a", split="train", dim=3, views=["center", "flip"], digest="x")
    assert not (tmp_path / "f.parquet").exists()


@pytest.fixture
def tiny_tree(tmp_path, write_image):
    root = tmp_path / "tree"
    df = _manifest(7)
    for i, p in enumerate(df["path"]):
        write_image(root / p, size=(40, 30), seed=i)
    (root / df["path"][3]).write_bytes(b"not an image")  # unreadable now
    df.loc[5, "status"] = "unreadable"  # refused at ingest
    return root, df


def _model():
    import torch

    from imagenet_clean.models.factory import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(arch="test_efficientnet", input_size=(3, 32, 32)), num_classes=3)


def test_extraction_views_shards_resume_and_bad_images(tmp_path, tiny_tree):
    root, df = tiny_tree
    model, cfg = _model()
    shards = tmp_path / "shards"
    t1, dim = extract_features(model, cfg, root, df, views=("center", "flip"), numerics=NUMERICS["eager"], batch_size=2, workers=0,
                               shard_dir=shards, shard_size=3)
    assert t1.num_rows == 7 and t1.schema.field("features").type.list_size == 2 * dim
    st = t1["status"].to_pylist()
    assert st[3] == "error" and t1["reason"][3].as_py().startswith("unreadable now")
    assert st[5] == "error" and t1["reason"][5].as_py() == "unreadable"
    assert st.count("ok") == 5
    assert len(list(shards.glob("shard-*.parquet"))) == 3
    # a rerun reads the finished shards: identical bits, and a damaged shard is recomputed
    (shards / "shard-000001.parquet").write_bytes(b"junk")
    model2, cfg2 = _model()
    t2, _ = extract_features(model2, cfg2, root, df, views=("center", "flip"), numerics=NUMERICS["eager"], batch_size=2, workers=0,
                             shard_dir=shards, shard_size=3)
    assert t2.equals(t1)
    # the flip view is the mirrored image's features, not a copy of the center view
    f = np.asarray(t1["features"][0].as_py(), np.float32)
    assert not np.allclose(f[:dim], f[dim:])


def test_unknown_view_is_refused(tiny_tree):
    root, df = tiny_tree
    model, cfg = _model()
    with pytest.raises(ValueError, match="unknown feature view"):
        extract_features(model, cfg, root, df, views=("rotate",), numerics=NUMERICS["eager"])


def test_no_compile_when_the_instruction_set_is_pinned(monkeypatch, caplog):
    # inductor's CPU code was wrong under ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU (models/speed.compile_blocked)
    import logging

    import torch

    from imagenet_clean.models.extract import _Forward

    def must_not_compile(m, **kw):
        raise AssertionError("torch.compile called with ATEN_CPU_CAPABILITY set")

    monkeypatch.setattr(torch, "compile", must_not_compile)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with caplog.at_level(logging.WARNING):
        fwd = _Forward(model, [], NUMERICS["compile"], batch_size=2)
    assert fwd.run is fwd.model and "extracting without torch.compile: ATEN_CPU_CAPABILITY=avx2" in caplog.text
