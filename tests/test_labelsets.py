"""Label sets: window geometry (models/windows.py), the rule (cleanup/labelsets.py), the windows stage,
the clean stage with label_sets on and off, and their score (evaluate/score_sets.py)."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from imagenet_clean.cleanup.labelsets import apart, apply_label_sets, class_windows, found_classes, window_iou
from imagenet_clean.config import ConfigError, parse_params
from imagenet_clean.evaluate.score_sets import score_label_sets
from imagenet_clean.io import read_metadata, read_table, write_table
from imagenet_clean.models.windows import window_boxes, windows_per_side
from imagenet_clean.stages import clean as clean_stage
from imagenet_clean.workspace import Workspace
from stage_project import BAD_ROW, FakeCam, make_project

# ------------------------------------------------------------------ geometry

def test_the_default_grid_is_four_by_four_and_touches_every_edge():
    assert windows_per_side(0.4375, 0.1875) == 4
    boxes = window_boxes(64, 64, window=0.4375, stride=0.1875)
    assert len(boxes) == 16 and boxes[0] == (0, 0, 28, 28) and boxes[-1] == (36, 36, 64, 64)
    assert sorted({b[0] for b in boxes}) == [0, 12, 24, 36]


def test_a_wide_image_gets_the_same_count_of_square_windows_spread_over_its_width():
    boxes = window_boxes(200, 100, window=0.5, stride=0.25)
    assert len(boxes) == 9 and {b[2] - b[0] for b in boxes} == {50} and {b[3] - b[1] for b in boxes} == {50}
    assert max(b[2] for b in boxes) == 200 and max(b[3] for b in boxes) == 100
    assert window_boxes(10, 10, window=1.0, stride=0.5) == [(0, 0, 10, 10)]


@pytest.mark.parametrize("window,stride", [(0, 0.2), (1.5, 0.2), (0.5, 0)])
def test_a_grid_outside_its_range_is_refused(window, stride):
    with pytest.raises(ValueError, match="fractions in"):
        windows_per_side(window, stride)


# ------------------------------------------------------------------ the rule

def _evidence(n=3, m=5, w=4, t=3):
    return np.full((n, m, w, t), -1, np.int16), np.zeros((n, m, w, t), np.float32)


def test_a_class_is_found_when_enough_models_vote_for_it_in_one_window():
    cls, prob = _evidence()
    cls[0, :4, 0, 0], prob[0, :4, 0, 0] = 3, 0.9   # 4 models see 3 in window 0
    cls[0, :4, 2, 0], prob[0, :4, 2, 0] = 7, 0.7   # and 7 in window 2
    cls[0, 4, 1, 0], prob[0, 4, 1, 0] = 5, 0.99    # one model alone: not enough
    cls[1, :2, 0, 0], prob[1, :2, 0, 0] = 2, 0.9   # 2 votes in window 0 and 2 in window 1 do not add up
    cls[1, 2:4, 1, 0], prob[1, 2:4, 1, 0] = 2, 0.9
    cls[2, :4, 0, 0], prob[2, :4, 0, 0] = 6, 0.55  # below min_prob
    sets = found_classes(cls, prob, min_prob=0.6, min_models=4)
    assert sets == [[3, 7], [], []]
    assert found_classes(cls, prob, min_prob=0.5, min_models=2) == [[3, 7], [2], [6]]
    assert found_classes(cls, prob, min_prob=0.5, min_models=1) == [[3, 7, 5], [2], [6]]


def test_merged_classes_sum_their_probabilities_and_count_once():
    cls, prob = _evidence(n=1, m=4, w=1)
    cls[0, :, 0, 0], prob[0, :, 0, 0] = 1, 0.4
    cls[0, :, 0, 1], prob[0, :, 0, 1] = 10, 0.35    # the synonym of 1: 0.75 together
    lut = np.arange(11)
    lut[10] = 1
    assert found_classes(cls, prob, min_prob=0.6, min_models=4) == [[]]
    assert found_classes(cls, prob, min_prob=0.6, min_models=4, merge_lut=lut) == [[1]]


def test_class_windows_gives_each_found_class_the_windows_it_is_found_in_whatever_the_chunk(monkeypatch):
    from imagenet_clean.cleanup import labelsets

    cls, prob = _evidence(n=3, w=6)
    cls[0, :4, [0, 1], 0], prob[0, :4, [0, 1], 0] = 3, 0.9  # 3 in windows 0 and 1
    cls[0, :, 5, 0], prob[0, :, 5, 0] = 7, 0.95             # 7 by all five models in window 5: the strongest
    cls[2, :4, 2, 0], prob[2, :4, 2, 0] = 1, 0.8
    cls[2, :4, 4, 0], prob[2, :4, 4, 0] = 2, 0.9             # same votes, more mass: 2 before 1
    found = class_windows(cls, prob, min_prob=0.6, min_models=4)
    assert [list(f) for f in found] == [[7, 3], [], [2, 1]] == found_classes(cls, prob, min_prob=0.6, min_models=4)
    assert found[0][3].tolist() == [0, 1] and found[0][7].tolist() == [5] and found[2][1].tolist() == [2]
    monkeypatch.setattr(labelsets, "FOUND_CHUNK", 1)
    again = class_windows(cls, prob, min_prob=0.6, min_models=4)
    assert [{k: v.tolist() for k, v in f.items()} for f in again] == [{k: v.tolist() for k, v in f.items()} for f in found]
    assert class_windows(*_evidence(n=0), min_prob=0.5, min_models=1) == []


def test_window_iou():
    boxes = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [2, 0, 4, 2]], np.float64)
    iou = window_iou(boxes)
    assert np.allclose(iou, [[1, 1 / 3, 0], [1 / 3, 1, 1 / 3], [0, 1 / 3, 1]])


def test_a_set_needs_two_classes_found_in_windows_apart():
    # a 3 x 3 grid of windows of half the side (stride 0.25) on a 64 x 64 image: windows 0 and 1 overlap by IoU 1/3,
    # windows 0 and 2 touch (IoU 0)
    grid = dict(window=0.5, stride=0.25)
    found = [{1: np.array([0]), 2: np.array([1])},     # neighbours: one object read as two
             {1: np.array([0]), 2: np.array([1, 2])},  # 2 is also found in a window apart from 1's
             {1: np.array([0])},                       # one class: never apart
             {}]
    sizes = np.full((4, 2), 64)
    assert apart(found, sizes, max_overlap=0.0, **grid).tolist() == [False, True, False, False]
    assert apart(found, sizes, max_overlap=0.34, **grid).tolist() == [True, True, False, False]
    assert apart(found, sizes, max_overlap=1.0, **grid).tolist() == [True, True, False, False]  # no check
    # on a wide image the same windows are laid further apart along its width: neighbours no longer overlap
    wide = np.array([[256, 64]] * 4)
    assert apart(found, wide, max_overlap=0.0, **grid).tolist() == [True, True, False, False]


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="same"):
        found_classes(np.zeros((2, 1, 1, 3)), np.zeros((2, 1, 1, 2)), min_prob=0.5, min_models=1)


def test_two_or_more_classes_make_a_set_that_overrides_keep_fix_and_removal_but_not_unreadable():
    dec = pd.DataFrame({"sample_id": list("abcde"), "action": ["keep", "remove", "fix", "remove", "keep"],
                        "new_label": [1, 2, 5, 4, 0], "rules": pd.Series([[], ["consensus"], ["cl_fix"], ["unreadable"], []])})
    ev = pd.DataFrame({"sample_id": list("edcba")})
    out = apply_label_sets(dec, ev, [[0], [4, 6], [5, 2], [2, 3, 9], [1, 8]])
    assert out["action"].tolist() == ["relabel_set", "relabel_set", "relabel_set", "remove", "keep"]
    assert out["labels"].tolist() == [[1, 8], [2, 3, 9], [5, 2], [], []]
    assert out["new_label"].tolist() == [1, 2, 5, 4, 0]
    assert list(out.loc[1, "rules"]) == ["consensus", "label_set"] and list(dec.loc[1, "rules"]) == ["consensus"]
    with pytest.raises(ValueError, match="stale"):
        apply_label_sets(dec, ev.iloc[:4], [[0]] * 4)


# ------------------------------------------------------------------ config

@pytest.mark.parametrize("over,msg", [
    ({"min_prob": 1.5}, "label_sets.min_prob"), ({"min_prob": 0}, "label_sets.min_prob"),
    ({"window": 0}, "label_sets.window"), ({"stride": 2}, "label_sets.stride"),
    ({"min_models": 0}, "label_sets.min_models"), ({"min_models": "most"}, "label_sets.min_models"),
    ({"max_confidence": 0}, "label_sets.max_confidence"), ({"max_confidence": 1.2}, "label_sets.max_confidence"),
    ({"extend_prob": 1.0}, "label_sets.extend_prob"),
    ({"max_overlap": -0.1}, "label_sets.max_overlap"), ({"max_overlap": 1.5}, "label_sets.max_overlap"),
])
def test_a_label_set_setting_outside_its_range_is_a_one_line_config_error(over, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        parse_params({"label_sets": over})
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ the clean stage

def _windows_file(ws, manifest, models, sets: dict[int, list[int]]):
    """A windows file whose evidence finds ``sets[row]`` (every model votes for each class in its own window)."""
    n, m, w, t = len(manifest), len(models), 4, 3
    cls, prob = np.full((n, m, w, t), -1, np.int16), np.zeros((n, m, w, t), np.float32)
    for row, found in sets.items():
        for k, c in enumerate(found):
            cls[row, :, k, 0], prob[row, :, k, 0] = c, 0.9
    df = pd.DataFrame({"sample_id": manifest["sample_id"], "status": "ok", "reason": "", "width": 64, "height": 64,
                       "classes": list(cls.reshape(n, -1)), "probs": list(prob.reshape(n, -1))})
    import pyarrow as pa

    from imagenet_clean.stages.windows import WINDOWS_SCHEMA

    write_table(ws.windows("val"), pa.Table.from_pandas(df, schema=WINDOWS_SCHEMA, preserve_index=False),
                metadata={"shape": f"{m},{w},{t}", "models": json.dumps(list(models)),
                          "window": "0.5", "stride": "0.5"})  # a 2 x 2 grid of disjoint windows


def test_rule_off_gives_byte_identical_outputs_even_with_a_windows_file(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, over in ((a, {}), (b, {"label_sets": {"enabled": False}})):
        d.mkdir()
        params, manifest, _ = make_project(d, **over)
        ws = Workspace(d)
        if over:
            _windows_file(ws, manifest, list(params.models), {10: [1, 2], 11: [3, 4]})
        clean_stage.run(params, ws, "val", find_exemptions=FakeCam(), load_model=lambda n, f: None)
    for out in ("data/decisions/val.parquet", "data/clean/val.parquet", "data/changes/val.csv", "metrics/cleanup/val.json"):
        assert (a / out).read_bytes() == (b / out).read_bytes(), out


def test_rule_on_writes_sets_into_the_decisions_and_the_clean_manifest_after_merges(tmp_path):
    params, manifest, _ = make_project(tmp_path, label_sets={"enabled": True, "min_models": 3, "max_confidence": 1.0})
    ws = Workspace(tmp_path)
    _windows_file(ws, manifest, list(params.models), {10: [7, 2], 11: [3, 4, 5], 12: [6], BAD_ROW: [1, 2]})
    metrics = clean_stage.run(params, ws, "val", find_exemptions=FakeCam(), load_model=lambda n, f: None)
    dec = read_table(ws.decisions("val"))
    # class 7 (n90000010) is merged into class 1 by the embedded merge table: the evidence reads merged classes
    assert dec.loc[10, "action"] == "relabel_set" and list(dec.loc[10, "labels"]) == [1, 2] and dec.loc[10, "new_label"] == 1
    assert list(dec.loc[11, "labels"]) == [3, 4, 5] and "label_set" in list(dec.loc[11, "rules"])
    assert dec.loc[12, "action"] != "relabel_set" and list(dec.loc[12, "labels"]) == []  # one class is no set
    assert list(dec.loc[BAD_ROW, "rules"]) == ["unreadable"] and list(dec.loc[BAD_ROW, "labels"]) == []
    assert metrics["relabel_set"] == 2
    clean = read_table(ws.clean("val")).set_index("sample_id")
    sid = manifest["sample_id"]
    assert list(clean.loc[sid[10], "labels"]) == [1, 2] and clean.loc[sid[10], "label"] == 1
    assert clean.loc[sid[10], "action"] == "relabel_set"
    assert all(len(v) == 1 for v in clean.loc[clean["action"] != "relabel_set", "labels"])
    assert json.loads(read_metadata(ws.decisions("val"))["label_sets"])["min_models"] == 3


def test_max_overlap_keeps_sets_off_images_whose_classes_are_found_in_overlapping_windows(tmp_path):
    params, manifest, _ = make_project(tmp_path, label_sets={"enabled": True, "min_models": 3, "max_confidence": 1.0,
                                                             "max_overlap": 0.25})
    ws = Workspace(tmp_path)
    _windows_file(ws, manifest, list(params.models), {10: [3, 2], 11: [3, 4, 5]})
    clean_stage.run(params, ws, "val", cam=False)
    dec = read_table(ws.decisions("val"))
    assert (dec.loc[[10, 11], "action"] == "relabel_set").all()  # the helper's 2 x 2 grid: disjoint windows
    meta = read_metadata(ws.windows("val"))
    write_table(ws.windows("val"), read_table(ws.windows("val")),
                metadata={**meta, "window": "0.75", "stride": "0.25"})  # the same 4 windows, overlapping (IoU 0.29-0.5)
    clean_stage.run(params, ws, "val", cam=False)
    dec = read_table(ws.decisions("val"))
    assert not (dec["action"] == "relabel_set").any()
    assert json.loads(read_metadata(ws.decisions("val"))["label_sets"])["max_overlap"] == 0.25


def test_a_windows_file_written_before_sizes_were_kept_is_refused_in_one_line(tmp_path):
    from imagenet_clean.cleanup.labelsets import read_windows

    params, manifest, _ = make_project(tmp_path)
    ws = Workspace(tmp_path)
    _windows_file(ws, manifest, list(params.models), {10: [3, 2]})
    meta = read_metadata(ws.windows("val"))
    write_table(ws.windows("val"), read_table(ws.windows("val")).drop(columns=["width", "height"]), metadata=meta)
    with pytest.raises(ValueError, match=r"before the windows' image sizes were kept; rerun `imagenet-clean windows --split val`"):
        read_windows(ws.windows("val"))


def test_the_gate_keeps_sets_off_images_whose_whole_image_the_models_read_with_confidence(tmp_path):
    from imagenet_clean.cleanup.confident import top_probability
    from imagenet_clean.io import read_table as rt

    params, manifest, _ = make_project(tmp_path)
    ws = Workspace(tmp_path)
    def probs(m):
        p = rt(ws.predictions("val", m)).set_index("sample_id").loc[manifest["sample_id"], "probs"]
        return np.stack([np.asarray(v, np.float32) if v is not None and len(v) else np.zeros(8, np.float32) for v in p])

    conf = np.mean([top_probability(probs(m)) for m in params.models], axis=0)
    gate = float(np.median(conf[5:]))  # rows 0-4 carry hand-made evidence
    sure, unsure = np.flatnonzero(conf >= gate), np.flatnonzero(conf < gate)
    sure, unsure = [int(i) for i in sure if i > 4][:2], [int(i) for i in unsure if i > 4][:2]
    params, _, _ = make_project(tmp_path, label_sets={"enabled": True, "min_models": 3, "max_confidence": gate})
    _windows_file(ws, manifest, list(params.models), {i: [1, 2] for i in sure + unsure})
    clean_stage.run(params, ws, "val", cam=False)
    dec = read_table(ws.decisions("val"))
    assert (dec.loc[unsure, "action"] == "relabel_set").all() and not (dec.loc[sure, "action"] == "relabel_set").any()


def test_the_top_probability_sums_merged_classes():
    from imagenet_clean.cleanup.confident import top_probability
    from imagenet_clean.cleanup.labelsets import ambiguous

    probs = np.array([[0.4, 0.35, 0.25], [0.9, 0.05, 0.05]], np.float32)
    assert np.allclose(top_probability(probs), [0.4, 0.9])
    assert np.allclose(top_probability(probs, merge_lut=np.array([0, 1, 1])), [0.6, 0.9])
    assert ambiguous(np.array([[0.4, 0.9], [0.5, 0.8]]), max_confidence=0.5).tolist() == [True, False]
    assert ambiguous(np.array([[0.4, 0.9]]), max_confidence=1.0).tolist() == [True, True]


def test_rule_on_refuses_a_missing_or_stale_windows_file_and_too_many_models(tmp_path):
    params, manifest, _ = make_project(tmp_path, label_sets={"enabled": True, "min_models": 3})
    ws = Workspace(tmp_path)
    with pytest.raises(FileNotFoundError, match="imagenet-clean windows --split val"):
        clean_stage.run(params, ws, "val", cam=False)
    _windows_file(ws, manifest, ["a", "b"], {})
    with pytest.raises(ValueError, match="written by models"):
        clean_stage.run(params, ws, "val", cam=False)
    params, _, _ = make_project(tmp_path, label_sets={"enabled": True, "min_models": 4})
    with pytest.raises(ConfigError, match="label_sets.min_models 4 resolves to 4 models; the ensemble has 3"):
        clean_stage.run(params, ws, "val", cam=False)


# ------------------------------------------------------------------ the windows stage on real images

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from embedded_tiny import embedded_params, full_checkpoint
    from imagenet_clean.stages import generate as generate_stage
    from imagenet_clean.stages import ingest as ingest_stage
    from imagenet_clean.stages import predict as predict_stage

    root = tmp_path_factory.mktemp("windows")
    raw = embedded_params()
    raw["generate"].update(n_train=20, n_val=24, n_v2=10)
    raw["generate"]["noise"].update(exact_copies=0.0, near_copies=0.0, multi_object=0.25)
    raw["label_sets"] = {"enabled": True, "min_models": 1, "max_confidence": 1.0}  # no gate: every image is read
    params = parse_params(raw)
    ws = Workspace(root)
    old = os.getcwd()
    os.chdir(root)
    try:
        generate_stage.run(params, ws)
        ingest_stage.run(params, ws, "val")
        full_checkpoint(params, ws)
        predict_stage.run(params, ws, "val")  # the gate reads the prediction files
    finally:
        os.chdir(old)
    return root, params, ws


def _run_windows(root, params, ws):
    from imagenet_clean.stages import windows as stage

    old = os.getcwd()
    os.chdir(root)
    try:
        return stage.run(params, ws, "val")
    finally:
        os.chdir(old)


def test_windows_stage_reads_every_image_window_by_window_and_records_the_unreadable(tiny, tmp_path):
    from imagenet_clean.cleanup.labelsets import read_windows

    root, params, ws = tiny
    res = _run_windows(root, params, ws)
    assert res == {"split": "val", "skipped": False, "n": 24, "ok": 24, "gated": 0, "error": 0, "windows": 16}
    first = ws.windows("val").read_bytes()
    rows, cls, prob = read_windows(ws.windows("val"))
    assert cls.shape == (24, 1, 16, 3) and (cls >= 0).all() and np.allclose(prob.sum(-1) <= 1.0 + 1e-6, True)
    man = read_table(ws.manifest("val"))
    assert rows["width"].tolist() == man["width"].tolist() and rows["height"].tolist() == man["height"].tolist()
    assert (np.diff(prob, axis=-1) <= 1e-7).all()  # top classes in order
    assert rows["sample_id"].tolist() == read_table(ws.manifest("val"))["sample_id"].tolist()
    assert _run_windows(root, params, ws)["ok"] == 24 and ws.windows("val").read_bytes() == first  # deterministic
    victim = read_table(ws.manifest("val"))["path"].iloc[5]
    path = root / "data/raw/val" / victim
    data = path.read_bytes()
    try:
        path.write_bytes(data[: len(data) // 3])
        res = _run_windows(root, params, ws)
        rows, cls, prob = read_windows(ws.windows("val"))
        assert res["error"] == 1 and rows.loc[5, "status"] == "error" and rows.loc[5, "reason"].startswith("unreadable")
        assert (cls[5] == -1).all() and (prob[5] == 0).all() and rows.loc[5, ["width", "height"]].tolist() == [0, 0]
    finally:
        path.write_bytes(data)


def test_windows_stage_reads_only_the_images_the_whole_image_gate_lets_through(tiny):
    import dataclasses

    from imagenet_clean.cleanup.labelsets import read_windows

    root, params, ws = tiny
    sure = dataclasses.replace(params, label_sets=dataclasses.replace(params.label_sets, max_confidence=0.01))
    res = _run_windows(root, sure, ws)
    rows, cls, _ = read_windows(ws.windows("val"))
    assert res["gated"] == 24 and res["ok"] == 0 and (rows["status"] == "gated").all() and (cls == -1).all()
    assert rows["reason"].str.contains("max_confidence").all()


def test_windows_stage_writes_a_skipped_file_when_off_and_refuses_probe_mode(tiny):
    import dataclasses

    from imagenet_clean.cleanup.labelsets import read_windows

    root, params, ws = tiny
    off = dataclasses.replace(params, label_sets=dataclasses.replace(params.label_sets, enabled=False))
    assert _run_windows(root, off, ws)["skipped"] is True
    with pytest.raises(ValueError, match="label_sets.enabled false"):
        read_windows(ws.windows("val"))
    probe = dataclasses.replace(params, train=dataclasses.replace(params.train, mode="probe"))
    with pytest.raises(ValueError, match="train.mode probe"):
        _run_windows(root, probe, ws)


# ------------------------------------------------------------------ score

def test_label_sets_are_scored_on_the_scenes_that_show_several_classes():
    truth = pd.DataFrame({"sample_id": list("abcde"),
                          "true_labels": [[1, 2, 3], [4, 5], [6], [7, 8], [9]]})
    dec = pd.DataFrame({"sample_id": list("abcde"), "action": ["relabel_set", "keep", "relabel_set", "remove", "keep"],
                        "new_label": [1, 4, 6, 7, 9], "rules": [["label_set"], [], ["label_set"], ["consensus"], []],
                        "labels": [[1, 2], [], [6, 0], [], []]})
    s = score_label_sets(dec, truth)
    # sets: a {1,2} of {1,2,3}: 2 right; c {6,0} of {6}: 1 right -> precision 3/4
    # scenes a, b, d: 2 + 1 (b kept with 4) + 0 (d removed) of 3 + 2 + 2 -> recall 3/7
    assert s["labels"]["precision"] == 0.75 and s["labels"]["recall"] == round(3 / 7, 6)
    assert s["scenes"]["tp"] == 1 and s["scenes"]["predicted"] == 2 and s["scenes"]["actual"] == 3 and s["sets"] == 2
    assert score_label_sets(dec.drop(columns="labels"), truth) is None


def test_a_set_takes_in_the_classes_found_at_the_looser_level_and_a_single_class_stays_alone():
    from imagenet_clean.cleanup.labelsets import extend_sets

    assert extend_sets([[3, 7], [2], []], [[7, 5, 3], [2, 4], [9, 8]]) == [[3, 7, 5], [2], []]


def test_extend_prob_above_min_prob_is_a_one_line_config_error(tmp_path):
    params, manifest, _ = make_project(tmp_path, label_sets={"enabled": True, "min_models": 3, "min_prob": 0.5,
                                                             "extend_prob": 0.7})
    ws = Workspace(tmp_path)
    _windows_file(ws, manifest, list(params.models), {})
    with pytest.raises(ConfigError, match="label_sets.extend_prob 0.7 is above label_sets.min_prob 0.5") as e:
        clean_stage.run(params, ws, "val", cam=False)
    assert "\n" not in str(e.value)
