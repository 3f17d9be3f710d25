"""`imagenet-clean verify`: files changed since the manifest was written (data/verify.py)."""
from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from imagenet_clean.cli import app
from imagenet_clean.data.ingest import ingest_split, write_manifest
from imagenet_clean.data.verify import verify_manifest

W1 = "n00000001"


@pytest.fixture
def manifest(tmp_path, classes3, write_image):
    root = tmp_path / "train"
    for i in range(4):
        write_image(root / W1 / f"{i}.JPEG", seed=i)
    df, _ = ingest_split(root, layout="train", classes=classes3)
    out = tmp_path / "m.parquet"
    write_manifest(out, df, root=root, layout="train", split="train", classes="c", num_classes=3)
    return out, root


def test_unchanged_tree_is_ok(manifest):
    out, root = manifest
    rep = verify_manifest(out)
    assert rep["ok"] and rep["n_unchanged"] == 4 and rep["root"] == str(root)


def test_missing_changed_and_added_files(manifest, write_image):
    out, root = manifest
    (root / W1 / "0.JPEG").unlink()
    with open(root / W1 / "1.JPEG", "ab") as f:
        f.write(b"xx")
    st = os.stat(root / W1 / "2.JPEG")
    os.utime(root / W1 / "2.JPEG", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    write_image(root / W1 / "new.JPEG")
    rep = verify_manifest(out)
    assert not rep["ok"]
    assert rep["missing"] == [f"{W1}/0.JPEG"]
    assert {(c["sample_id"], c["what"]) for c in rep["changed"]} == {(f"{W1}/1.JPEG", "size"), (f"{W1}/2.JPEG", "mtime_ns")}
    assert rep["added"] == [f"{W1}/new.JPEG"] and rep["n_unchanged"] == 1


def test_cli_exit_code_and_root_override(manifest, tmp_path):
    out, root = manifest
    runner = CliRunner()
    assert runner.invoke(app, ["verify", str(out)]).exit_code == 0
    moved = tmp_path / "moved"
    root.rename(moved)
    res = runner.invoke(app, ["verify", str(out), "--root", str(moved)])
    assert res.exit_code == 0, res.output
    with pytest.raises(FileNotFoundError, match="image root"):
        verify_manifest(out)
    (moved / W1 / "3.JPEG").unlink()
    res = runner.invoke(app, ["verify", str(out), "--root", str(moved)])
    assert res.exit_code == 1 and "missing: n00000001/3.JPEG" in res.output
