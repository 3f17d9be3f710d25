import os

import numpy as np
import pandas as pd
import pytest

from imagenet_clean.io import OutputError, file_digest, read_metadata, read_table, write_json, write_table


def test_write_table_roundtrip_with_metadata(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    write_table(tmp_path / "t.parquet", df, metadata={"root": "/data"})
    assert read_table(tmp_path / "t.parquet").equals(df)
    assert read_metadata(tmp_path / "t.parquet") == {"root": "/data"}


def test_writes_are_byte_deterministic(tmp_path):
    df = pd.DataFrame({"a": np.arange(100), "b": [f"s{i}" for i in range(100)]})
    write_table(tmp_path / "1.parquet", df)
    write_table(tmp_path / "2.parquet", df)
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()


def test_failed_write_keeps_previous_output(tmp_path):
    out = tmp_path / "m.json"
    write_json(out, {"v": 1})
    with pytest.raises(TypeError):
        write_json(out, {"v": object()})
    assert out.read_text().strip().endswith("}") and '"v": 1' in out.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(OutputError, match="cannot write"):
        write_json(ro / "x.json", {})


def test_enospc_is_a_clear_error_and_old_file_survives(tmp_path, monkeypatch):
    out = tmp_path / "m.json"
    write_json(out, {"v": 1})

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError, match="No space left"):
        write_json(out, {"v": 2})
    assert '"v": 1' in out.read_text()


def test_file_digest_changes_with_content(tmp_path):
    a = tmp_path / "a"
    a.write_bytes(b"hello")
    d1 = file_digest(a)
    a.write_bytes(b"hellp")
    assert d1 != file_digest(a) and len(d1) == 32
