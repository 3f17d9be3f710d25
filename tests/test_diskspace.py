"""Stages refuse to start when their outputs would not fit on the disk (issue 18)."""
from __future__ import annotations

import pytest

from imagenet_clean import diskspace
from imagenet_clean.diskspace import check_free_space, clean_outputs_bytes, prediction_file_bytes
from imagenet_clean.io import OutputError
from imagenet_clean.stages import clean as clean_stage
from imagenet_clean.workspace import Workspace
from stage_project import make_project


def test_a_need_above_the_free_space_names_the_folder_and_both_sizes(tmp_path, monkeypatch):
    monkeypatch.setattr(diskspace, "free_bytes", lambda folder: 100 * 2**20)
    check_free_space({tmp_path: 10 * 2**20}, what="x")
    with pytest.raises(OutputError, match=rf"predict@val: needs about 2.1 GB free in {tmp_path}/a but only 100.0 MB is free"):
        check_free_space({tmp_path / "a": 2**31, tmp_path / "b" / "c": 0}, what="predict@val")
    with pytest.raises(OutputError, match="needs about 164.0 MB"):  # folders on one file system add up (+ 64 MB margin)
        check_free_space({tmp_path / "a": 50 * 2**20, tmp_path / "b": 50 * 2**20}, what="x")


def test_estimates_grow_with_the_inputs(tmp_path):
    assert prediction_file_bytes(1_281_167, 1000) > 1_281_167 * 2000  # float16 ImageNet train: > 2.5 GB a model
    f = tmp_path / "m.parquet"
    f.write_bytes(b"x" * 1000)
    assert clean_outputs_bytes(f, 10) == 2000 + 4000


def test_clean_fails_before_starting_when_the_disk_is_too_full(tmp_path, monkeypatch):
    params, _, _ = make_project(tmp_path)
    monkeypatch.setattr(diskspace, "free_bytes", lambda folder: 1000)
    with pytest.raises(OutputError, match=r"clean@val: needs about \d+\.\d MB free in .*data/decisions but only 0.0 MB"):
        clean_stage.run(params, Workspace(tmp_path), "val", cam=False)
    assert not (tmp_path / "data/decisions").exists() and not (tmp_path / "data/clean").exists()
    monkeypatch.undo()
    clean_stage.run(params, Workspace(tmp_path), "val", cam=False)
    assert (tmp_path / "data/clean/val.parquet").is_file()
