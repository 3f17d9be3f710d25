"""Label sets (issue 30) in the accuracy tables and the retraining: the ReaL-style set accuracy ``top1_set``.

A prediction is right on a cleaned row when its top-1 (after merges, as top-1 is scored) is any class of the
row's label set. Without a ``labels`` column nothing changes: the expected files below were written by the code
before label sets existed (same synthetic project, tests/table_project.py).
"""
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from imagenet_clean.evaluate.ablations import merge_map, placeholder_free, variant_manifest, write_ablations
from imagenet_clean.evaluate.accuracy import accuracy, cleaned_set, padded_sets, set_hits
from imagenet_clean.evaluate.headline import headline_metrics
from imagenet_clean.evaluate.report import render_table1, render_table2
from imagenet_clean.evaluate.table1 import write_table1
from imagenet_clean.evaluate.table2 import cleaned_train, write_table2
from imagenet_clean.io import read_table, write_table
from imagenet_clean.predictions import predictions_table, read_predictions, write_predictions
from table_project import MODELS, FakeBackend, K, make_project, tables_params


def _add_sets(paths, split: str, sets: dict[int, list[int]], *, action: str = "relabel_set") -> pd.DataFrame:
    """Give ``split``'s clean manifest a ``labels`` column: ``sets[i]`` for sample i (as ``relabel_set``), ``[label]`` elsewhere."""
    path = paths.clean(split)
    clean = read_table(path)
    from imagenet_clean.io import read_metadata

    meta = read_metadata(path)
    idx = {sid: int(sid.split("_")[-1].split(".")[0]) if not sid.startswith("__") else -1 for sid in clean["sample_id"]}
    labels, actions = [], []
    for sid, lab, act in zip(clean["sample_id"], clean["label"], clean["action"]):
        the_set = sets.get(idx[sid])
        if the_set is not None:
            assert the_set[0] == lab
        labels.append(list(the_set) if the_set is not None else [int(lab)])
        actions.append(action if the_set is not None else act)
    clean["labels"] = labels
    clean["action"] = actions
    write_table(path, clean, metadata=meta)
    return clean


# ------------------------------------------------------------------ the metric


def test_set_hits_and_padding():
    sets = padded_sets([[1, 0], [], None, [3, 2, 1]], np.array([1, 2, 0, 3]))
    assert sets.tolist() == [[1, 0, -1], [2, -1, -1], [0, -1, -1], [3, 2, 1]]
    assert set_hits(np.array([0, 2, -1, 1]), sets).tolist() == [True, True, False, True]
    with pytest.raises(ValueError, match="does not start with its label 2"):
        padded_sets([[1, 2]], np.array([2]), sample_ids=np.array(["x.png"], dtype=object), source="clean.parquet")


def _preds(tmp_path, best):
    probs = np.full((len(best), K), 0.05, np.float32)
    probs[np.arange(len(best)), best] = 0.85
    ids = [f"s{i}" for i in range(len(best))]
    write_predictions(tmp_path / "p.parquet", predictions_table(ids, probs, status=["ok"] * (len(best) - 1) + ["error"]),
                      model="m", split="val", num_classes=K)
    return read_predictions(tmp_path / "p.parquet"), np.array(ids, dtype=object)


def test_set_accuracy_counts_top1_in_the_set_and_errors_as_misses(tmp_path):
    preds, ids = _preds(tmp_path, np.array([0, 1, 2, 3, 0]))
    labels = np.array([0, 2, 2, 1, 0])
    sets = padded_sets([[0], [2, 1], [2, 3], [1, 0], [0, 1]], labels)
    acc = accuracy(preds, ids, labels, label_sets=sets)
    # top-1 right on 0 and 2; in the set also on 1 (1 in [2, 1]); 3 not in [1, 0]; the last row has no prediction
    assert (acc.top1, acc.top1_set, acc.n_error) == (40.0, 60.0, 1)
    assert list(acc.as_dict()) == ["n", "top1", "top5", "top1_set", "n_error"]
    plain = accuracy(preds, ids, labels)
    assert plain.top1_set is None and list(plain.as_dict()) == ["n", "top1", "top5", "n_error"]
    with pytest.raises(ValueError, match=r"label set \[1, 7\] of sample 's1' is outside the model's 4 classes"):
        accuracy(preds, ids, labels, label_sets=np.array([[0, -1], [1, 7], [2, -1], [1, -1], [0, -1]]))
    empty = accuracy(preds, ids[:0], labels[:0], label_sets=sets[:0])
    assert empty.as_dict()["top1_set"] is None


def test_set_accuracy_is_merge_aware(tmp_path):
    """Class 3 merged into 2: a top-1 of 3 counts as 2, which is in the set [1, 2] (the set is stored after merges)."""
    preds, ids = _preds(tmp_path, np.array([3, 3, 1, 0, 0]))
    lut = np.array([0, 1, 2, 2])
    labels = np.array([1, 2, 1, 0, 0])
    sets = padded_sets([[1, 2], [2], [1], [0], [0]], labels)
    acc = accuracy(preds, ids, labels, merges=lut, label_sets=sets)
    assert (acc.top1, acc.top1_set) == (60.0, 80.0)
    assert accuracy(preds, ids, labels, label_sets=sets).top1_set == 40.0  # without the merge, 3 is in no set


def test_cleaned_set_reads_labels_only_when_present():
    clean = pd.DataFrame({"sample_id": ["a", "b", "p"], "label": [1, 2, 3], "action": ["relabel_set", "keep", "placeholder"]})
    assert cleaned_set(clean, name="val_clean", split="val").label_sets is None
    with_sets = cleaned_set(clean.assign(labels=[[1, 0], [2], [3]]), name="val_clean", split="val")
    assert with_sets.label_sets.tolist() == [[1, 0], [2, -1]]  # placeholders left out, as everywhere


# ------------------------------------------------------------------ table 1, report, headline

TABLE1_BEFORE = (
    '{\n  "m1": {\n    "issues": {\n      "v2": 3,\n      "val": 3\n    },\n    "v2": {\n      "n": 11,\n      "n_error": 0,\n'
    '      "top1": 81.8182,\n      "top5": 100.0\n    },\n    "v2_clean": {\n      "n": 10,\n      "n_error": 0,\n'
    '      "top1": 100.0,\n      "top5": 100.0\n    },\n    "val": {\n      "n": 11,\n      "n_error": 0,\n'
    '      "top1": 81.8182,\n      "top5": 100.0\n    },\n    "val_clean": {\n      "n": 10,\n      "n_error": 0,\n'
    '      "top1": 100.0,\n      "top5": 100.0\n    }\n  },\n  "m2": {\n    "issues": {\n      "v2": 1,\n      "val": 1\n    },\n'
    '    "v2": {\n      "n": 11,\n      "n_error": 0,\n      "top1": 27.2727,\n      "top5": 100.0\n    },\n'
    '    "v2_clean": {\n      "n": 10,\n      "n_error": 0,\n      "top1": 30.0,\n      "top5": 100.0\n    },\n'
    '    "val": {\n      "n": 11,\n      "n_error": 0,\n      "top1": 27.2727,\n      "top5": 100.0\n    },\n'
    '    "val_clean": {\n      "n": 10,\n      "n_error": 0,\n      "top1": 30.0,\n      "top5": 100.0\n    }\n  }\n}\n'
)
"""metrics/table1.json of ``make_project(tmp)`` on val and v2, written by the code before label sets existed."""


def test_table1_without_label_sets_is_byte_identical(tmp_path):
    paths = make_project(tmp_path)
    out = write_table1(list(MODELS), ["val", "v2"], paths=paths)
    assert out.read_text() == TABLE1_BEFORE
    md = render_table1(json.loads(TABLE1_BEFORE))
    assert "| m2 | 1 | 27.27/100.00 | 30.00/100.00 | +2.73/+0.00 |" in md and "Set" not in md
    assert "Top-1/top-5 in percent. V: 11 images, V_c: 10; V2: 11 images, V2_c: 10.\n\n<details>" in md
    assert headline_metrics({}, table1=json.loads(TABLE1_BEFORE)) == {"table1.val_c": 65.0}


def test_table1_set_accuracy_on_a_cleaned_split_with_label_sets(tmp_path):
    paths = make_project(tmp_path)
    # sample 1 (class 1) also shows class 0; sample 6 (class 2) shows 0 and 3; m2 always says class 0
    _add_sets(paths, "val", {1: [1, 0], 6: [2, 0, 3]})
    out = write_table1(list(MODELS), ["val", "v2"], paths=paths)
    t = json.loads(out.read_text())
    assert t["m2"]["val_clean"] == {"n": 10, "top1": 30.0, "top5": 100.0, "top1_set": 50.0, "n_error": 0}
    assert t["m1"]["val_clean"]["top1_set"] == 100.0  # m1's top-1 is the first class of every set
    assert "top1_set" not in t["m1"]["v2_clean"] and "top1_set" not in t["m1"]["val"]  # no sets there / not a cleaned set
    md = render_table1(t)
    assert "Top-1/Top-5/Set V_c" in md and "Top-1/Top-5 V2_c" in md
    assert "| m2 | 1 | 27.27/100.00 | 30.00/100.00/50.00 | +2.73/+0.00 |" in md
    assert "Set: the ReaL-style set accuracy" in md
    assert headline_metrics({}, table1=t) == {"table1.val_c": 65.0, "table1.val_c_set": 75.0}


# ------------------------------------------------------------------ table 2, ablations (retraining consumers)

BEFORE_SHA256 = {
    "table2.json": "062b8f086f67e4cf0d52600dfbe246babf1478afa4618e4f2e38552aaf1a4fd0",
    "runs/table2.json": "18b80d99a9bcbffed810b972034ed19e9a7dbaa438f8a4e18870422deada0539",
    "ablations.json": "e1432d365598fdeba9f4b70fe6755c8b4d7a7944dd085511df5660c69580ca5a",
    "report": "ebf52d1f3015328289367bcd328adf917509f835a2562b5b13303e56cf23596f",
}
"""SHA-256 of table 2's files on ``make_project(tmp, n=40)`` with ``tables_params(ablations=True)`` and the FakeBackend,
written by the code before label sets existed (and of ``render_table2`` of that table.json)."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_table2_and_ablations_without_label_sets_are_byte_identical(tmp_path):
    paths = make_project(tmp_path, n=40)
    out = write_table2(tables_params(ablations=True), paths=paths, backend=FakeBackend())
    ab = write_ablations(tables_params(ablations=True), paths=paths, backend=FakeBackend())
    got = {"table2.json": _digest(out.read_bytes()), "runs/table2.json": _digest(paths.metric("runs/table2.json").read_bytes()),
           "ablations.json": _digest(ab.read_bytes()), "report": _digest(render_table2(json.loads(out.read_text())).encode())}
    assert got == BEFORE_SHA256


def test_table2_set_accuracy_and_training_on_the_first_label(tmp_path):
    paths = make_project(tmp_path, n=40)
    # V_c: every kept image also shows the next class, which the stand-in predicts when it errs: set accuracy 100
    _add_sets(paths, "val", {i: [i % K, (i + 1) % K] for i in range(40) if i not in (2, 3)})
    # T_c: three images kept with a label set; training must use the first class (= the true class here)
    train_clean = _add_sets(paths, "train", {0: [0, 3], 1: [1, 2, 0], 9: [1, 3]})
    samples = cleaned_train(train_clean)
    assert list(samples.columns) == ["sample_id", "path", "label", "content_hash"]  # no label set reaches training
    first = {sid: s[0] for sid, s in zip(train_clean["sample_id"], train_clean["labels"])}
    assert all(lab == first[sid] for sid, lab in zip(samples["sample_id"], samples["label"]))
    fake = FakeBackend()
    out = write_table2(tables_params(), paths=paths, backend=fake)
    assert {f[3] for f in fake.fits} == {39, 38}  # T: 39 readable; T_c: the 38 kept, the label-set images included
    row = json.loads(out.read_text())["a1"]
    for t in ("T", "T_c"):
        assert row[t]["val_clean"]["top1_set"] == {"mean": 100.0, "std": 0.0, "n": 3}
        assert row[t]["val_clean"]["top1"]["mean"] < 100.0
        assert set(row[t]["v2_clean"]) == {"top1", "top5"} and set(row[t]["val"]) == {"top1", "top5"}
    assert row["gain"]["val_clean"]["top1_set"]["gain"] == 0.0 and set(row["gain"]["v2_clean"]) == {"top1", "top5"}
    assert row["headline"]["set"] == "val_clean" and row["headline"]["top1_set"]["T_c"] == 100.0
    md = render_table2(json.loads(out.read_text()))
    assert "| 75.44±6.62/100.00±0.00/100.00±0.00 |" in md and "A third figure in a cell is the set accuracy. Set: the ReaL" in md


def test_ablations_train_label_set_images_under_their_first_class(tmp_path):
    """A relabel_set decision is a fix to the first class of the set in the ``fixes`` and ``all`` variants (= T_c)."""
    paths = make_project(tmp_path, n=40)
    dec_path = paths.decisions("train")
    dec = read_table(dec_path)
    dec.loc[dec["sample_id"] == "c1/train_001.png", "action"] = "relabel_set"  # was a fix to class 1
    write_table(dec_path, dec)
    clean = _add_sets(paths, "train", {1: [1, 0]})
    manifest = read_table(paths.manifest("train"))
    fixes = variant_manifest(manifest, dec, {}, variant="fixes").set_index("sample_id")
    assert fixes.loc["c1/train_001.png", "label"] == 1 and fixes.loc["c1/train_001.png", "orig_label"] == 2
    allv = variant_manifest(manifest, dec, merge_map(clean, dec), variant="all")
    expect = placeholder_free(clean)
    assert list(allv["sample_id"]) == list(expect["sample_id"]) and list(allv["label"]) == list(expect["label"])
    out = write_ablations(tables_params(ablations=True, archs=["a1"], seeds=2), paths=paths, backend=FakeBackend())
    assert json.loads(out.read_text())["a1"]["all"]["n_train"] == 38


def test_merge_map_follows_a_label_set_whose_first_class_was_merged():
    clean = pd.DataFrame({"sample_id": ["a", "b", "p"], "label": [0, 1, 3], "orig_label": [2, 1, 3],
                          "action": ["relabel_set", "relabel_set", "placeholder"]})
    dec = pd.DataFrame({"sample_id": ["a", "b"], "new_label": [3, 1]})
    assert merge_map(clean, dec) == {3: 0}


def test_training_samples_and_next_round_manifest_take_the_first_label(tmp_path):
    """What training reads (models.datasets.ImageSamples) and round r+1's manifest: ``label``, the first of the set."""
    from PIL import Image

    from imagenet_clean.evaluate.rounds import round_training_manifest
    from imagenet_clean.models.datasets import ImageSamples

    ids = [f"c{i % K}/t_{i}.png" for i in range(6)]
    for i, sid in enumerate(ids):
        (tmp_path / sid).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / sid)
    manifest = pd.DataFrame({"sample_id": ids, "path": ids, "label": [0, 1, 2, 3, 0, 1], "wnid": [f"n{x}" for x in (0, 1, 2, 3, 0, 1)],
                             "status": ["ok"] * 6})
    clean = pd.DataFrame({"sample_id": ids[:5] + ["__placeholder__/n3.JPEG"], "path": ids[:5] + ["__placeholder__/n3.JPEG"],
                          "label": [0, 2, 2, 3, 0, 3], "wnid": ["n0", "n2", "n2", "n3", "n0", "n3"], "orig_label": [0, 1, 2, 3, 0, 3],
                          "action": ["keep", "relabel_set", "keep", "keep", "relabel_set", "placeholder"],
                          "labels": [[0], [2, 1], [2], [3], [0, 3, 1], [3]]})
    nxt = round_training_manifest(manifest, clean)
    assert list(nxt["label"]) == [0, 2, 2, 3, 0] and list(nxt["wnid"]) == ["n0", "n2", "n2", "n3", "n0"]
    assert "labels" not in nxt.columns and list(nxt.columns) == list(manifest.columns)
    samples = cleaned_train(clean)
    ds = ImageSamples.from_frame(samples, tmp_path, transform=np.asarray)
    assert [ds[i][1] for i in range(len(ds))] == [0, 2, 2, 3, 0]
    direct = ImageSamples.from_frame(clean[clean["action"] != "placeholder"], tmp_path, transform=np.asarray)
    assert direct.labels.tolist() == [0, 2, 2, 3, 0]


def test_report_cleanup_table_shows_label_sets_only_when_counted():
    from imagenet_clean.evaluate.report import render_cleanup

    plain = {"samples": 200, "fix": 10, "remove": 5, "merged": 4, "thresholds_resolved": {"h1": 2.0}, "n_models": 3}
    without = render_cleanup({"val": plain})
    assert "label sets" not in without and "| V | 200 | 10 (5.00 %) | 5 (2.50 %) | 4 (2.00 %) | h1 2" in without
    with_sets = render_cleanup({"val": plain | {"relabel_set": 8}, "v2": plain})
    assert "| merged | label sets | thresholds (models) |" in with_sets
    assert "| V | 200 | 10 (5.00 %) | 5 (2.50 %) | 4 (2.00 %) | 8 (4.00 %) | h1 2" in with_sets
    assert "| V2 | 200 | 10 (5.00 %) | 5 (2.50 %) | 4 (2.00 %) | - | h1 2" in with_sets  # not counted there
