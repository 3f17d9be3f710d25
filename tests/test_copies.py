"""Injected duplicates of the embedded generator (data/copies.py): exact and near copies within and across splits."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from imagenet_clean.config import GenerateConfig, NoiseConfig
from imagenet_clean.data.copies import NEAR_TRANSFORMS, TRUTH_COLUMNS
from imagenet_clean.data.generate import file_mtime_ns, generate
from imagenet_clean.data.ingest import ingest_split
from imagenet_clean.io import read_table


def config(out, **noise) -> GenerateConfig:
    return GenerateConfig(out=str(out), n_train=60, n_val=30, n_v2=30, noise=NoiseConfig(**noise))


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = tmp_path_factory.mktemp("copies") / "raw"
    summary = generate(config(out, exact_copies=0.1, near_copies=0.2), seed=5)
    return out, summary, read_table(out / "truth.parquet")


def test_copies_are_recorded_in_the_truth_with_their_original(raw):
    out, summary, truth = raw
    assert set(TRUTH_COLUMNS) <= set(truth.columns)
    cp = truth.dropna(subset=["duplicate_of"])
    n = {"train": 60, "val": 30, "v2": 30}
    for split, k in n.items():  # round(0.1 k) exact and round(0.2 k) near copies, beside the k originals
        got = cp[cp["split"] == split]["duplicate_kind"].value_counts().to_dict()
        assert got == {"exact": round(0.1 * k), "near": round(0.2 * k)}
        assert (truth["split"] == split).sum() == k + round(0.3 * k)
    assert set(cp.loc[cp["split"] == "train", "duplicate_of_split"]) == {"train"}
    assert set(cp["duplicate_of_split"]) == {"train", "val", "v2"}  # within and across splits
    assert {(s, o) for s, o in zip(cp["split"], cp["duplicate_of_split"]) if s != o} >= {("val", "train"), ("v2", "train")}
    assert set(cp.loc[cp["duplicate_kind"] == "near", "duplicate_transform"]) <= set(NEAR_TRANSFORMS)
    orig = truth.set_index(["split", "sample_id"])
    for row in cp.itertuples():
        src = orig.loc[(row.duplicate_of_split, row.duplicate_of)]
        assert pd_isna(src["duplicate_of"])  # an original is never a copy
        assert (row.true_label, row.given_label, row.problem) == (src["true_label"], src["given_label"], src["problem"])
    assert sum(sum(v.values()) for v in summary["copies"].values()) == len(cp)
    assert json.loads((out / "generate.json").read_text())["copies"] == summary["copies"]


def pd_isna(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def test_exact_copies_have_the_same_bytes_and_near_copies_differ_a_little(raw):
    out, _, truth = raw
    cp = truth.dropna(subset=["duplicate_of"])
    for row in cp.itertuples():
        a = (out / row.split / row.sample_id).read_bytes()
        b = (out / row.duplicate_of_split / row.duplicate_of).read_bytes()
        if row.duplicate_kind == "exact":
            assert a == b
            continue
        assert a != b
        x = np.asarray(Image.open(out / row.split / row.sample_id).convert("RGB").resize((32, 32)), np.float32)
        y = np.asarray(Image.open(out / row.duplicate_of_split / row.duplicate_of).convert("RGB").resize((32, 32)), np.float32)
        assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.6, (row.sample_id, row.duplicate_transform)


def test_copies_ingest_with_their_labels_and_val_boxes(raw):
    out, _, truth = raw
    from imagenet_clean.data.generate import embedded_classes

    for split in ("train", "val", "v2"):
        df, _ = ingest_split(out / split, layout=split, classes=embedded_classes(),
                             annotations=out / "LOC_val_solution.csv" if split == "val" else None)
        t = truth[truth["split"] == split].set_index("sample_id")
        assert sorted(df["sample_id"]) == sorted(t.index)
        assert (df["status"] == "ok").all()
        assert (df.set_index("sample_id")["label"].sort_index() == t["given_label"].sort_index()).all()
    csv = (out / "LOC_val_solution.csv").read_text().splitlines()
    assert len(csv) == 1 + (truth["split"] == "val").sum()


def test_rates_of_zero_leave_the_truth_and_file_times_as_before(tmp_path):
    cfg = config(tmp_path / "raw")
    generate(cfg, seed=5)
    truth = read_table(tmp_path / "raw" / "truth.parquet")
    assert list(truth.columns) == ["split", "sample_id", "true_label", "given_label", "problem", "true_labels"]
    assert "copies" not in json.loads((tmp_path / "raw" / "generate.json").read_text())

    @dataclasses.dataclass(frozen=True)
    class OldNoise:  # the noise section before copies existed
        flip: float = 0.08
        minuscule: float = 0.03
        bad_quality: float = 0.03
        multi_object: float = 0.03

    old = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)} | {"noise": OldNoise()}
    old_cfg = dataclasses.make_dataclass("OldGenerate", [(k, object) for k in old], frozen=True)(**old)
    assert file_mtime_ns(cfg, seed=5) == file_mtime_ns(old_cfg, seed=5)
    assert file_mtime_ns(config(tmp_path, near_copies=0.1), seed=5) != file_mtime_ns(cfg, seed=5)
