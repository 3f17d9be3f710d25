"""The speed settings' compile guard (models/speed.py)."""
import logging

import torch

from imagenet_clean.models.speed import compile_blocked, maybe_compile


def test_maybe_compile_runs_eagerly_when_not_wanted_or_the_instruction_set_is_pinned(monkeypatch, caplog):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: compiled.append(kw) or "compiled")
    model = torch.nn.Linear(2, 2)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    assert maybe_compile(model, want=False, device_type="cpu", what="x") is model and not compiled
    assert maybe_compile(model, want=True, device_type="cpu", what="x") == "compiled" and compiled == [{"dynamic": False}]
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    with caplog.at_level(logging.WARNING):
        assert maybe_compile(model, want=True, device_type="cpu", what="scoring") is model
    assert "scoring without torch.compile: ATEN_CPU_CAPABILITY=avx2 is set" in caplog.text
    assert compile_blocked("cuda") is None  # the switch pins CPU kernels only
    assert maybe_compile(model, want=True, device_type="cuda", what="x") == "compiled"
