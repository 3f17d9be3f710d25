"""The clean stage's batch reader gives exactly the in-memory path's matrices and decisions (issue 18)."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from imagenet_clean.cleanup.streamread import ModelRows, read_model_rows
from imagenet_clean.io import read_table
from imagenet_clean.predictions import predictions_table, read_predictions
from imagenet_clean.stages import clean as clean_stage
from imagenet_clean.workspace import Workspace
from stage_project import make_project


def _in_memory(path, rows) -> ModelRows:
    """The previous path: the whole file through read_predictions, then the rows."""
    p = read_predictions(path)
    return ModelRows(probs=p.probs[rows], top5=p.top5[rows], fold=p.fold[rows])


def test_rows_read_in_batches_equal_read_predictions_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    n, k = 1000, 37
    p = rng.dirichlet(np.ones(k) * 0.3, n)
    status = np.where(rng.random(n) < 0.05, "error", "ok").astype(object)
    t = predictions_table(np.array([f"s{i:05d}" for i in range(n)], object), p, status=status,
                          reason=np.where(status == "ok", "", "bad"), fold=rng.integers(0, 4, n))
    f = tmp_path / "m.parquet"
    pq.write_table(t, f, row_group_size=97)  # many row groups, batches across their borders
    rows = rng.permutation(np.flatnonzero(status == "ok"))[:700]
    want = _in_memory(f, rows)
    for batch in (1, 64, 333, 5000):
        got = read_model_rows(f, rows, batch_rows=batch)
        assert got.probs.dtype == np.float32 and got.probs.tobytes() == want.probs.tobytes()
        assert np.array_equal(got.top5, want.top5) and np.array_equal(got.fold, want.fold)


@pytest.mark.parametrize("seed", [0, 1])
def test_clean_decisions_are_identical_to_the_in_memory_path_on_a_subsample(tmp_path, monkeypatch, seed):
    """The same split cleaned through the batch reader and through whole-file reads: byte-identical outputs."""
    outputs = ("data/decisions/val.parquet", "data/clean/val.parquet", "data/changes/val.csv")
    results = {}
    for name, reader in (("stream", read_model_rows), ("memory", _in_memory)):
        project = tmp_path / name
        project.mkdir()
        params, _, _ = make_project(project, n=400, seed=seed)
        monkeypatch.setattr(clean_stage, "read_model_rows", reader)
        clean_stage.run(params, Workspace(project), "val", cam=False)
        results[name] = {rel: (project / rel).read_bytes() for rel in outputs}
        assert read_table(project / outputs[0])["action"].isin(["fix", "remove"]).any()
    assert results["stream"] == results["memory"]
