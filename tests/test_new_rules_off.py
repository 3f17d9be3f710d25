"""With every rule issue 30 added switched off (quality, label sets, duplicate removal), the clean stage writes the
decisions the code before issue 30 wrote (fc9e8e3), even with every new evidence file present.

The digests below were computed by running fc9e8e3's ``imagenet_clean`` on :func:`stage_project.make_project`'s
split (``git worktree add /tmp/old fc9e8e3``, ``PYTHONPATH=/tmp/old/src``, the helper :func:`content_digest`):
the file bytes with the pyarrow that wrote them (26.0.1), and a digest of the content (schema, metadata
other than pandas', rows) that does not depend on the parquet writer's version.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from imagenet_clean.io import write_table
from imagenet_clean.stages import clean as clean_stage
from imagenet_clean.workspace import Workspace
from stage_project import FakeCam, make_project

BEFORE = {  # fc9e8e3, the commit issue 30 was filed against
    "data/decisions/val.parquet": ("ccebb3a2cdc405725e3c7921b5760664b608a1264435293f118de10e48554075",
                                   "5d53f2d8f72e38f2c6e36dae9abec464ea42d9a7c56bd86f7c76af6b02b5a004"),
    "data/clean/val.parquet": ("d97a3b8dc45a4614af64885c4f994dab96b7040c862e1ca12d6cd50a012a88a3",
                               "db8f4f687f1c342fb706cc8f3fc5e88eb2944458dff0b60306111b6701e2216d"),
}
BEFORE_CHANGES = "ad16d7c8e4d202b2f34502e76199299ad882c58e6a4107e781b10f23953f5cfd"
WRITER = "26.0.1"  # the pyarrow whose bytes BEFORE records


def content_digest(path) -> str:
    t = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (t.schema.metadata or {}).items() if k != b"pandas"}
    blob = json.dumps({"schema": str(t.schema.remove_metadata()), "meta": meta, "rows": t.to_pylist()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _evidence_files(ws: Workspace, manifest: pd.DataFrame, models: list[str]) -> None:
    """Quality figures beyond any bound, windows that find two classes in every image, a removal list naming two copies."""
    from imagenet_clean.data.quality import MEASURES, QUALITY_SCHEMA
    from imagenet_clean.stages.windows import WINDOWS_SCHEMA

    n = len(manifest)
    cols = {m: np.full(n, 0.01) for m in MEASURES}
    write_table(ws.quality("val"), pd.DataFrame({"sample_id": manifest["sample_id"], "status": "ok", "reason": "", **cols})
                [QUALITY_SCHEMA.names])
    cls = np.zeros((n, len(models), 4, 3), np.int16)
    cls[:, :, 1, 0] = 1
    prob = np.zeros(cls.shape, np.float32)
    prob[:, :, :2, 0] = 0.95
    df = pd.DataFrame({"sample_id": manifest["sample_id"], "status": "ok", "reason": "", "width": 64, "height": 64,
                       "classes": list(cls.reshape(n, -1)), "probs": list(prob.reshape(n, -1))})
    write_table(ws.windows("val"), pa.Table.from_pandas(df, schema=WINDOWS_SCHEMA, preserve_index=False),
                metadata={"shape": f"{len(models)},4,3", "models": json.dumps(models), "window": "0.5", "stride": "0.5"})
    sid = manifest["sample_id"]
    ws.duplicate_removals.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"split": ["val"] * 2, "sample_id": [sid[21], sid[22]], "kept": [sid[20]] * 2,
                  "kind": ["exact", "near"], "distance": [0.0, 0.01]}).to_parquet(ws.duplicate_removals)


def test_every_new_rule_off_gives_the_decisions_of_before_issue_30(tmp_path):
    off = {"quality": {"enabled": False, "thresholds": {"contrast": {"min": 0.05}}},
           "label_sets": {"enabled": False}, "duplicates": {"remove": False}}
    params, manifest, _ = make_project(tmp_path, **off)
    ws = Workspace(tmp_path)
    _evidence_files(ws, manifest, list(params.models))
    clean_stage.run(params, ws, "val", find_exemptions=FakeCam(), load_model=lambda n, f: None)
    for out, (file_digest, content) in BEFORE.items():
        assert content_digest(tmp_path / out) == content, out
        if pa.__version__ == WRITER:
            assert hashlib.sha256((tmp_path / out).read_bytes()).hexdigest() == file_digest, out
    assert hashlib.sha256((tmp_path / "data/changes/val.csv").read_bytes()).hexdigest() == BEFORE_CHANGES
    dec = pq.read_table(ws.decisions("val")).to_pandas()
    assert "labels" not in dec and not any(r in ("quality", "label_set", "duplicate") for rs in dec["rules"] for r in rs)
