"""Bad clean-stage input is refused with the model, the row count and an example (issue 18)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imagenet_clean.cleanup.inputs import check_unique_ids
from imagenet_clean.io import read_table, write_table
from imagenet_clean.predictions import predictions_table, write_predictions
from imagenet_clean.stages import clean as clean_stage
from imagenet_clean.workspace import Workspace
from stage_project import K, make_project

IMAGENET_TRAIN = 1_281_167


def test_a_manifest_of_imagenet_size_with_duplicates_names_the_first_duplicates_and_their_rows():
    ids = np.array([f"n{i // 1300:08d}/n{i // 1300:08d}_{i}.JPEG" for i in range(IMAGENET_TRAIN)], dtype=object)
    ids[900_000], ids[1_200_000], ids[1_281_166] = ids[12], ids[12], ids[77]
    with pytest.raises(ValueError) as e:
        check_unique_ids(pd.Index(ids), source="data/manifests/train.parquet")
    msg = str(e.value)
    assert "3 duplicate sample_id(s) among 1281167 rows" in msg
    assert f"{ids[12]!r} (rows 12, 900000, 1200000), {ids[77]!r} (rows 77, 1281166)" in msg
    check_unique_ids(pd.Index(ids[:1000]), source="x")  # unique: no error


def test_clean_refuses_a_manifest_with_duplicate_sample_ids(tmp_path):
    params, manifest, _ = make_project(tmp_path)
    dup = manifest.copy()
    dup.loc[5, "sample_id"] = dup.loc[3, "sample_id"]
    write_table(tmp_path / "data/manifests/val.parquet", dup,
                metadata={"root": "raw/val", "layout": "val", "split": "val", "classes": "classes.tsv", "num_classes": K})
    with pytest.raises(ValueError, match=r"1 duplicate sample_id\(s\) among 160 rows, first: '.*img_0003.JPEG' \(rows 3, 5\)"):
        clean_stage.run(params, Workspace(tmp_path), "val", cam=False)
    assert not (tmp_path / "data/decisions/val.parquet").exists()


def _write(tmp_path, manifest, p, model="c"):
    write_predictions(tmp_path / f"data/predictions/val/{model}.parquet",
                      predictions_table(manifest["sample_id"].to_numpy(object), p), model=model, arch="x", split="val",
                      num_classes=p.shape[1])


@pytest.mark.parametrize("mutate, match", [
    # rows are positions among the usable rows (158: two are unreadable), so the sample id names the example
    (lambda p: p.__setitem__([7, 9, 11], np.nan),
     r"model 'c': row \d+ of pred_probs has NaN or infinite values \(3 of 158 rows\) \(sample '.*img_0007.JPEG'\)"),
    (lambda p: p.__setitem__((8, 0), -0.5),
     r"model 'c': row \d+ of pred_probs has negative values \(min -0.5\) \(1 of 158 rows\) \(sample '.*img_0008.JPEG'\)"),
    (lambda p: p.__setitem__(slice(20, 30), p[20:30] * 1.5),
     r"model 'c': row \d+ of pred_probs sums to 1.5, not 1 .*\(10 of 158 rows\).*\(sample '.*img_0020.JPEG'\)"),
])
def test_clean_refuses_probabilities_that_are_not_probabilities(tmp_path, mutate, match):
    params, manifest, _ = make_project(tmp_path)
    p = np.full((len(manifest), K), 1.0 / K)
    mutate(p)
    _write(tmp_path, manifest, p)
    with pytest.raises(ValueError, match=match):
        clean_stage.run(params, Workspace(tmp_path), "val", cam=False)


def test_clean_refuses_a_wrong_class_count_before_reading_probabilities(tmp_path):
    params, manifest, _ = make_project(tmp_path)
    _write(tmp_path, manifest, np.full((len(manifest), K + 2), 1.0 / (K + 2)), model="b")
    with pytest.raises(ValueError, match=r"b.parquet, model 'b': 10 classes, but the class list has 8 "
                                         r"\(all 160 rows; e.g. row 0 \(sample '.*img_0000.JPEG'\) has 10 probabilities\)"):
        clean_stage.run(params, Workspace(tmp_path), "val", cam=False)
    assert read_table(tmp_path / "data/manifests/val.parquet").shape[0] == 160
