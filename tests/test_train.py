"""Training one model: the recipe runs, is deterministic, logs to dvclive, survives bad images."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from imagenet_clean.config import ModelConfig, TrainConfig  # noqa: E402
from imagenet_clean.models.train import build_train_model, train_model  # noqa: E402
from train_data import make_dataset  # noqa: E402

ARCH = ModelConfig(arch="test_efficientnet", input_size=(3, 32, 32))
TINY = TrainConfig(folds=2, epochs=1, batch_size=8, lr=0.05, warmup_epochs=0, cooldown_epochs=0, threads=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("train")
    return root, make_dataset(root)


def _weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_two_runs_with_the_same_seed_give_identical_weights(tiny):
    root, df = tiny
    a = _weights(train_model(df, root, arch_cfg=ARCH, num_classes=3, cfg=TINY, seed=3))
    b = _weights(train_model(df, root, arch_cfg=ARCH, num_classes=3, cfg=TINY, seed=3))
    c = _weights(train_model(df, root, arch_cfg=ARCH, num_classes=3, cfg=TINY, seed=4))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # label smoothing is part of the recipe: same seed, other loss, other weights
    d = _weights(train_model(df, root, arch_cfg=ARCH, num_classes=3, cfg=dataclasses.replace(TINY, smoothing=0.1), seed=3))
    assert not all(torch.equal(a[k], d[k]) for k in a)


def test_trained_model_is_eval_mode_contiguous_and_has_the_dataset_classes(tiny):
    root, df = tiny
    model = train_model(df, root, arch_cfg=ARCH, num_classes=3, cfg=TINY, seed=0)
    assert not model.training
    assert model.num_classes == 3
    assert all(p.is_contiguous() for p in model.parameters())
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_dvclive_writes_per_epoch_curves(tiny, tmp_path):
    root, df = tiny
    cfg = TrainConfig(**{**TINY.__dict__, "epochs": 2})
    train_model(df, root, arch_cfg=ARCH, num_classes=3, cfg=cfg, seed=0, live_dir=tmp_path / "live")
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert {"train", "lr", "step"} <= set(metrics)
    loss = pd.read_csv(tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
    assert len(loss) == 2 and np.isfinite(loss["loss"]).all()
    assert (tmp_path / "live" / "plots" / "metrics" / "train" / "acc.tsv").is_file()


def test_learns_an_easy_task(tiny):
    root, df = tiny
    cfg = TrainConfig(epochs=6, batch_size=8, lr=0.05, warmup_epochs=1, cooldown_epochs=1, reprob=0.0, auto_augment=None,
                      hflip=0.0, scale=(0.6, 1.0), threads=1)
    model = train_model(df, root, arch_cfg=ARCH, num_classes=3, cfg=cfg, seed=0)
    from imagenet_clean.models.factory import data_config
    from imagenet_clean.models.predict import predict_samples

    table = predict_samples(model, data_config(model, ARCH), root, df, batch_size=16, workers=0)
    top1 = np.array([t[0] for t in table["top5"].to_pylist()])
    assert (top1 == df["label"].to_numpy()).mean() >= 0.6


def test_an_image_that_became_unreadable_is_skipped_not_fatal(tiny, tmp_path):
    root, df = tiny
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / df["path"].iloc[0]).write_bytes(b"not an image any more")
    (copy / df["path"].iloc[1]).unlink()
    model = train_model(df, copy, arch_cfg=ARCH, num_classes=3, cfg=TINY, seed=0)
    assert model.num_classes == 3


def test_bad_labels_and_empty_input_are_rejected(tiny):
    root, df = tiny
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\)"):
        train_model(df, root, arch_cfg=ARCH, num_classes=2, cfg=TINY, seed=0)
    with pytest.raises(ValueError, match="no training samples"):
        train_model(df.iloc[:0], root, arch_cfg=ARCH, num_classes=3, cfg=TINY, seed=0)


def test_unknown_architecture_stops_before_training(tiny):
    root, df = tiny
    from imagenet_clean.models.weights import ModelError

    with pytest.raises(ModelError, match="unknown architecture 'resnet_nope'"):
        train_model(df, root, arch_cfg=ModelConfig(arch="resnet_nope"), num_classes=3, cfg=TINY, seed=0)


def test_training_at_the_configured_input_size_with_output_stride():
    model, data_cfg = build_train_model(ModelConfig(arch="resnet10t", input_size=(3, 64, 64), kwargs={"output_stride": 16}), num_classes=11)
    assert data_cfg["input_size"] == (3, 64, 64)
    assert model.training
    with torch.no_grad():
        assert model.forward_features(torch.zeros(1, 3, 64, 64)).shape[-2:] == (4, 4)


def test_bf16_autocast_on_cpu_trains(tiny):
    root, df = tiny
    cfg = TrainConfig(**{**TINY.__dict__, "bf16": True})
    model = train_model(df, root, arch_cfg=ARCH, num_classes=3, cfg=cfg, seed=0)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.parametrize("dvc", [False, True], ids=["git-init", "git-and-dvc-init"])
def test_curves_are_logged_in_a_fresh_repository_without_commits(tiny, tmp_path, monkeypatch, dvc):
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git not installed")
    root, df = tiny
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    if dvc:
        subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
    monkeypatch.chdir(project)
    cfg = TrainConfig(**{**TINY.__dict__, "epochs": 2})
    train_model(df, root, arch_cfg=ARCH, num_classes=3, cfg=cfg, seed=0, live_dir=Path("metrics/train/m"))
    live = project / "metrics" / "train" / "m"
    metrics = json.loads((live / "metrics.json").read_text())
    assert {"train", "step"} <= set(metrics) and metrics["step"] == 1
    loss = pd.read_csv(live / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
    assert list(loss["step"]) == [0, 1] and np.isfinite(loss["loss"]).all()


def test_the_per_image_recipe_turns_crops_before_normalising():
    from imagenet_clean.models.batchaug import RandomTurn
    from imagenet_clean.models.train import train_transform

    data_cfg = {"input_size": (3, 16, 16), "mean": (0.5,) * 3, "std": (0.25,) * 3, "interpolation": "bilinear"}
    names = [type(t).__name__ for t in train_transform(data_cfg, TINY).transforms]
    assert "RandomTurn" not in names
    turned = train_transform(data_cfg, TrainConfig(rotate=15.0)).transforms  # RandAugment, erasing: the per-image path
    names = [type(t).__name__ for t in turned]
    assert names.index("RandomTurn") == names.index("Normalize") - 1
    assert next(t for t in turned if isinstance(t, RandomTurn)).degrees == 15.0
    from PIL import Image

    out = train_transform(data_cfg, TrainConfig(rotate=15.0))(Image.new("RGB", (40, 30), (120, 60, 30)))
    assert out.shape == (3, 16, 16)
