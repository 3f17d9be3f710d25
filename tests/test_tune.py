"""imagenet-clean tune (review/tune.py): thresholds replayed from the clean stage's evidence, scored against verdicts.

The project is :mod:`stage_project`'s synthetic split (three models, 160 images, 16 flipped labels), cleaned
by the real clean stage with a stand-in CAM; the reviewer is the stand-in that knows the true labels.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest

from imagenet_clean.cleanup.verdicts import Verdict, format_verdicts
from imagenet_clean.io import read_table
from imagenet_clean.review import standin as S
from imagenet_clean.review import tune as T
from imagenet_clean.stages import clean as clean_stage
from imagenet_clean.workspace import Workspace
from stage_project import WNIDS, FakeCam, make_project


def _project(tmp, **over):
    params, manifest, true = make_project(tmp, **over)
    ws = Workspace(tmp)
    clean_stage.run(params, ws, "val", find_exemptions=FakeCam(), load_model=lambda n, f: None)
    dec = read_table(tmp / "data/decisions/val.parquet")
    truth = pd.DataFrame({"sample_id": manifest["sample_id"], "true_label": true, "problem": ""})
    return params, ws, dec, truth


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """Thresholds stricter than the data needs: a fix needs all three models, consensus all three."""
    tmp = tmp_path_factory.mktemp("strict")
    params, ws, dec, truth = _project(tmp, n=400, h1="all", h2=3, h3=3)
    inputs = T.load_inputs(params, ws, "val")
    verdicts = S.standin_verdicts(dec, truth, WNIDS, inputs.merge_lut, audit=150, seed=0)
    return params, ws, dec, inputs, verdicts


def test_wilson_interval():
    lo, hi = T.wilson_interval(17, 20)
    assert (round(lo, 3), round(hi, 3)) == (0.640, 0.948)  # the textbook example
    assert T.wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = T.wilson_interval(30, 30)
    assert hi == 1.0 and 0.88 < lo < 0.89


def test_replay_at_the_current_thresholds_is_the_clean_stage(strict):
    params, ws, dec, inputs, _ = strict
    got, undecided, _ = T.decide_setting(inputs, inputs.current)
    stored = dec.iloc[inputs.ev.valid_rows]
    assert not undecided.any()
    assert got["action"].tolist() == stored["action"].tolist()
    assert got["new_label"].tolist() == stored["new_label"].tolist()
    assert got["rules"].map(list).tolist() == stored["rules"].map(list).tolist()


def test_a_setting_replays_what_the_clean_stage_would_decide(tmp_path, strict):
    """h1 = 2 replayed from the strict project's evidence = the clean stage run with h1 = 2."""
    params, ws, dec, inputs, _ = strict
    got, _, _ = T.decide_setting(inputs, dataclasses.replace(inputs.current, h1=2))
    _, _, dec2, _ = _project(tmp_path, n=400, h1=2, h2=3, h3=3)
    want = dec2.iloc[inputs.ev.valid_rows]
    assert (got["action"] == "fix").sum() > (dec["action"] == "fix").sum()  # the setting changes something
    assert got["action"].tolist() == want["action"].tolist()
    assert got["new_label"].tolist() == want["new_label"].tolist()


def test_tuned_thresholds_agree_on_held_out_reviews_at_least_as_well(strict):
    params, ws, dec, inputs, verdicts = strict
    tuning, held_out = S.split_halves(verdicts, seed=0)
    assert len(tuning) >= 30 and len(held_out) >= 30
    r = T.tune_split(params, ws, "val", verdicts=tuning, inputs=inputs)
    chosen = T.settings(T.parse_grid("h1,h2,h3", [], current=inputs.current, n_models=3), inputs.current, 3)[r.chosen]
    assert r.line.startswith("dvc exp run -S h")  # the strict thresholds lose to another setting (top-level keys here)
    assert chosen != inputs.current
    held = T.evaluate(inputs, held_out, [inputs.current, chosen])
    assert held.loc[1, "agreement"] >= held.loc[0, "agreement"]
    assert held.loc[1, "wins"] > held.loc[1, "losses"]
    assert r.table.loc[r.chosen, "low"] < r.table.loc[r.chosen, "agreement"] <= r.table.loc[r.chosen, "high"]


def test_table_counts_unreviewed_changes_and_undecided_cams(strict):
    params, ws, dec, inputs, verdicts = strict
    only_changes = {s: v for s, v in verdicts.items() if (dec.set_index("sample_id").loc[s, "action"] != "keep")}
    low = dataclasses.replace(inputs.current, h1=1)
    t = T.evaluate(inputs, verdicts, [inputs.current, low])
    t2 = T.evaluate(inputs, only_changes, [inputs.current, low])
    assert t.loc[0, "changed_unreviewed"] == 0
    assert t2.loc[1, "changed_unreviewed"] > t.loc[1, "changed_unreviewed"] > 0
    cams = T.evaluate(inputs, verdicts, [inputs.current, dataclasses.replace(inputs.current, h3=1)])
    assert cams.loc[0, "undecided"] == 0
    assert cams.loc[1, "undecided"] > 0  # h3 = 1 makes boxed images CAM candidates the decisions hold no CAM for
    assert cams.loc[1, "reviewed"] == len(verdicts) - cams.loc[1, "undecided_reviewed"]


def test_cams_computes_what_settings_lack(tmp_path):
    params, ws, dec, truth = _project(tmp_path, h1="all", h2=3, h3=3)
    inputs = T.load_inputs(params, ws, "val")
    verdicts = S.standin_verdicts(dec, truth, WNIDS, inputs.merge_lut, audit=80, seed=0)
    cam = FakeCam()
    r = T.tune_split(params, ws, "val", verdicts=verdicts, inputs=inputs, grid=["h3=1,2,3"], param="", cams=True,
                     find_exemptions=cam, load_model=lambda n, f: None)
    assert len(cam.calls) == 1 and len(cam.calls[0]["candidates"]) > 0
    assert r.table["undecided"].sum() == 0


def test_exp_run_line_uses_the_key_the_threshold_comes_from():
    from imagenet_clean.config import Thresholds, parse_params

    raw = {"splits": {"val": {"root": "raw/val", "layout": "val", "h1": "all", "h2": 3, "h3": 3}},
           "models": {m: {"arch": "resnet10t"} for m in "abc"}, "h2": 3}
    params = parse_params(raw)
    cur = params.thresholds("val")
    assert T.exp_run_line(params, "val", cur, dataclasses.replace(cur, h2=2, h3=1)) == \
        "dvc exp run -S h2=2 -S splits.val.h3=1"
    assert T.exp_run_line(params, "val", cur, cur) == ""
    assert isinstance(cur, Thresholds)


# ------------------------------------------------------------------ bad input: one line, naming what is wrong


def _write(ws, verdicts):
    ws.reviews("val").parent.mkdir(parents=True, exist_ok=True)
    ws.reviews("val").write_text(format_verdicts(verdicts))


def _error(tmp, **kw) -> str:
    from imagenet_clean.cli import main

    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        with pytest.raises(SystemExit) as e:
            main(["tune", "--split", "val", *kw.get("args", [])])
    finally:
        os.chdir(cwd)
    assert e.value.code == 1
    return kw["capsys"].readouterr().err.strip()


@pytest.fixture()
def reviewed(tmp_path):
    params, ws, dec, truth = _project(tmp_path, h1="all", h2=3, h3=3)
    lut = np.arange(len(WNIDS))
    return tmp_path, ws, dec, S.standin_verdicts(dec, truth, WNIDS, lut, audit=80, seed=0)


def test_no_reviews(reviewed, capsys):
    tmp, ws, dec, _ = reviewed
    err = _error(tmp, capsys=capsys)
    assert "no verdicts in" in err and "imagenet-clean review --split val" in err and len(err.splitlines()) == 1


def test_too_few_reviews_names_the_count(reviewed, capsys):
    tmp, ws, dec, verdicts = reviewed
    _write(ws, dict(list(verdicts.items())[:12]))
    err = _error(tmp, capsys=capsys)
    assert "12 reviewed samples" in err and "at least 30" in err and len(err.splitlines()) == 1


def test_stale_verdicts_name_the_rows(reviewed, capsys):
    tmp, ws, dec, verdicts = reviewed
    sid = sorted(verdicts)[3]
    verdicts[sid] = dataclasses.replace(verdicts[sid], content_hash="0" * 32)
    verdicts["n90000001/gone.JPEG"] = Verdict("n90000001/gone.JPEG", "", "accept")
    _write(ws, verdicts)
    err = _error(tmp, capsys=capsys)
    assert "2 verdicts" in err and "another version of the decisions" in err
    assert sid in err and "n90000001/gone.JPEG (not in the split)" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("grid, want", [
    ("h3=4", "h3 = 4 resolves to 4 models, more than the 3 models of the ensemble (|M| = 3); give a count in 1..3"),
    ("h1=0", "outside the valid range: a count in 1..3, a fraction in (0, 1) or \"all\""),
    ("h2=1.5", "outside the valid range: a count in 1..3"),
    ("fn=0.5", "'fn' is not a threshold tune varies (h1, h2, h3)"),
    ("h3", "expected NAME=V1,V2,..."),
])
def test_grid_outside_the_valid_range_is_refused(reviewed, capsys, grid, want):
    tmp, ws, dec, verdicts = reviewed
    _write(ws, verdicts)
    err = _error(tmp, capsys=capsys, args=["--grid", grid])
    assert want in err and len(err.splitlines()) == 1


def test_nothing_to_vary_is_refused(reviewed, capsys):
    tmp, ws, dec, verdicts = reviewed
    _write(ws, verdicts)
    assert "nothing to vary" in _error(tmp, capsys=capsys, args=["--param", ""])


def test_decisions_out_of_date_are_refused(reviewed, capsys):
    tmp, ws, dec, verdicts = reviewed
    _write(ws, verdicts)
    p = tmp / "params.yaml"
    p.write_text(p.read_text().replace("h3: 3", "h3: 2"))
    err = _error(tmp, capsys=capsys)
    assert "are not the ones" in err and "run `dvc repro` first" in err


def test_decisions_the_predictions_no_longer_give_are_refused(tmp_path):
    import pyarrow as pa

    from imagenet_clean.cleanup.ensemble import DECISIONS_SCHEMA
    from imagenet_clean.io import read_metadata, write_table

    params, ws, dec, _ = _project(tmp_path, h1="all", h2=3, h3=3)
    path = ws.decisions("val")
    meta = read_metadata(path)
    i = int(np.flatnonzero((dec["action"] == "keep").to_numpy() & dec["rules"].map(len).eq(0).to_numpy())[7])
    dec.loc[i, "action"] = "remove"  # as if the predictions had changed since the clean stage ran
    write_table(path, pa.Table.from_pandas(dec, schema=DECISIONS_SCHEMA, preserve_index=False), metadata=meta)
    with pytest.raises(T.TuneError, match=r"1 decisions differ from what the predictions give now, e.g. " + dec.loc[i, "sample_id"]):
        T.load_inputs(params, ws, "val")


def test_cli_prints_the_table_and_the_line(reviewed, capsys):
    from imagenet_clean.cli import main

    tmp, ws, dec, verdicts = reviewed
    _write(ws, verdicts)
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        main(["tune", "--split", "val", "--grid", "h1=1,2,3", "--param", ""])
    except SystemExit as e:
        assert e.code in (0, None)
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert "95% interval" in out and "proposed for val: " in out
    assert "dvc exp run -S splits.val.h1=" in out or "keep the current thresholds" in out


# ------------------------------------------------------------------ issue 30: label sets and the quality rule


def _with_label_sets(tmp, dec):
    """Rewrite the decisions as label sets on would: two kept rows and one removal get a set (rule label_set)."""
    import pyarrow as pa

    from imagenet_clean.cleanup.ensemble import DECISIONS_SCHEMA
    from imagenet_clean.io import read_metadata, write_table

    path = tmp / "data/decisions/val.parquet"
    meta = read_metadata(path)
    plain = dec.index[(dec["action"] == "keep") & dec["rules"].map(lambda r: len(r) == 0)].tolist()[:2]
    rem = dec.index[(dec["action"] == "remove") & dec["rules"].map(lambda r: "unreadable" not in list(r))].tolist()[:1]
    labels = [[] for _ in range(len(dec))]
    dec = dec.copy()
    for i in plain + rem:
        lab = int(dec.at[i, "label"])
        labels[i] = [(lab + 3) % 8, lab]
        dec.at[i, "action"], dec.at[i, "new_label"] = "relabel_set", labels[i][0]
        dec.at[i, "rules"] = [*dec.at[i, "rules"], "label_set"]
    dec["labels"] = labels
    schema = pa.schema([*DECISIONS_SCHEMA, pa.field("labels", pa.list_(pa.int64()))])
    write_table(path, pa.Table.from_pandas(dec[schema.names], schema=schema, preserve_index=False), metadata=meta)
    return dec, [dec.at[i, "sample_id"] for i in plain + rem]


def test_tune_counts_label_sets_and_an_accepted_set_agrees(tmp_path):
    params, ws, dec, truth = _project(tmp_path, n=400, h1="all", h2=3, h3=3)
    dec, sets = _with_label_sets(tmp_path, dec)
    inputs = T.load_inputs(params, ws, "val")  # the stored sets replay: no "decisions differ" refusal
    got, _, _ = T.decide_setting(inputs, inputs.current)
    stored = dec.iloc[inputs.ev.valid_rows]
    assert got["action"].tolist() == stored["action"].tolist() and got["new_label"].tolist() == stored["new_label"].tolist()
    verdicts = S.standin_verdicts(dec, truth, WNIDS, inputs.merge_lut, audit=60, seed=0)
    h = dict(zip(dec["sample_id"], dec["content_hash"]))
    fix = next(s for s, a in zip(dec["sample_id"], dec["action"]) if a == "fix")
    verdicts[sets[0]] = Verdict(sets[0], h[sets[0]], "accept")
    verdicts[sets[1]] = Verdict(sets[1], h[sets[1]], "reject")
    verdicts[sets[2]] = Verdict(sets[2], h[sets[2]], "relabel_set", wnids=(WNIDS[1], WNIDS[2]))
    verdicts[fix] = Verdict(fix, h[fix], "relabel_set", wnids=(WNIDS[3], WNIDS[4]))
    _write(ws, list(verdicts.values()))
    res = T.tune_split(params, ws, "val", grid=["h3=2,3"], param="", inputs=inputs)  # read back from the file
    assert res.table["relabel_set"].tolist() == [3, 3] and " sets " in res.text.splitlines()[0]
    machine, _, _ = T.decide_setting(inputs, inputs.current)
    usable = T.reviewed_verdicts(inputs, T.read_verdicts(ws.reviews("val")), min_reviews=1)
    pos, want, cls = T.reviewer_outcomes(inputs, usable, machine)
    ok = dict(zip(inputs.sample_ids[pos], T.agrees(machine, pos, want, cls, inputs.merge_lut)))
    assert ok[sets[0]] and not ok[sets[1]] and ok[sets[2]] and not ok[fix]
    wanted = dict(zip(inputs.sample_ids[pos], want))
    assert (wanted[sets[0]], wanted[sets[1]], wanted[fix]) == (T.SET, T.KEEP, T.SET)


def test_without_label_sets_the_table_text_is_unchanged(strict):
    params, ws, dec, inputs, verdicts = strict
    table = T.evaluate(inputs, verdicts, [inputs.current])
    assert table["relabel_set"].tolist() == [0]
    assert T.format_table(table, n_models=3).splitlines()[0].split() == [
        "h1", "h2", "h3", "fix", "remove", "agree", "agreement", "95%", "interval", "wins", "losses", "unreviewed", "undecided"]


def test_tune_replays_the_quality_rule(tmp_path):
    """With the quality rule on, the replay removes what the clean stage removed, and a setting that fixes such an
    image keeps the fix (the rule never removes a fixed image)."""
    from imagenet_clean.io import write_table

    quality = {"enabled": True, "thresholds": {"contrast": {"min": 0.06}}}
    params, manifest, true = make_project(tmp_path, n=400, h1="all", h2=3, h3=3, quality=quality)
    ws = Workspace(tmp_path)
    rng = np.random.default_rng(3)
    contrast = rng.uniform(0.1, 0.4, len(manifest))
    low = rng.choice(np.arange(10, len(manifest)), 40, replace=False)
    flipped = np.flatnonzero(manifest["label"].to_numpy() != true)  # images a loose setting fixes
    contrast[low] = contrast[flipped] = 0.02
    q = pd.DataFrame({"sample_id": manifest["sample_id"], "contrast": contrast, "status": "ok", "reason": ""})
    write_table(ws.quality("val"), q)
    clean_stage.run(params, ws, "val", find_exemptions=FakeCam(), load_model=lambda n, f: None)
    dec = read_table(tmp_path / "data/decisions/val.parquet")
    assert dec["rules"].map(lambda r: "quality" in list(r)).sum() > 20
    inputs = T.load_inputs(params, ws, "val")
    got, _, _ = T.decide_setting(inputs, inputs.current)
    stored = dec.iloc[inputs.ev.valid_rows]
    assert got["action"].tolist() == stored["action"].tolist()
    assert got["rules"].map(list).tolist() == stored["rules"].map(list).tolist()
    loose, _, _ = T.decide_setting(inputs, dataclasses.replace(inputs.current, h1=1))
    fired = inputs.quality_fired
    act = loose["action"].to_numpy()
    assert (act[fired] != "keep").all() and set(act[fired]) <= {"fix", "remove"}
    assert ((act == "fix") & fired).any()  # fixed at h1=1: the rule leaves it


def test_the_truth_reviewer_accepts_a_set_of_classes_the_scene_shows():
    dec = pd.DataFrame({"sample_id": ["s0", "s1", "s2"], "label": [1, 1, 2], "new_label": [1, 3, 2],
                        "action": ["relabel_set"] * 3, "rules": [["label_set"]] * 3, "content_hash": ["h0", "h1", "h2"],
                        "labels": [[1, 4], [3, 1], [2, 5]]})
    truth = pd.DataFrame({"sample_id": ["s0", "s1", "s2"], "true_label": [1, 3, 2], "problem": ["multi_object", "", ""],
                          "true_labels": [[1, 4, 6], [3], [2, 5]]})
    v = S.standin_verdicts(dec, truth, WNIDS, np.arange(8))
    # s0: both classes shown; s1: a one-digit image whose label is wrong (relabel); s2: both shown
    assert {s: (x.verdict, x.wnid) for s, x in v.items()} == {"s0": ("accept", ""), "s1": ("relabel", WNIDS[3]),
                                                               "s2": ("accept", "")}


def test_the_stand_in_reviewer_judges_label_sets_read_from_parquet(tmp_path):
    """Sets and the truth's ``true_labels`` come back from parquet as arrays: a right set is accepted, a wrong one not."""
    import pandas as pd

    from imagenet_clean.review.standin import standin_verdicts

    dec = pd.DataFrame({"sample_id": ["a", "b", "c"], "label": [1, 2, 3], "new_label": [1, 2, 3],
                        "action": ["relabel_set", "relabel_set", "keep"], "rules": [["label_set"], ["label_set"], []],
                        "labels": [[1, 4], [2, 9], []], "content_hash": ["h1", "h2", "h3"]})
    truth = pd.DataFrame({"split": "val", "sample_id": ["a", "b", "c"], "true_label": [1, 2, 3], "given_label": [1, 2, 3],
                          "problem": ["multi_object", "multi_object", "none"], "true_labels": [[1, 4], [2, 5], [3]]})
    dec.to_parquet(tmp_path / "d.parquet")
    truth.to_parquet(tmp_path / "t.parquet")
    dec, truth = pd.read_parquet(tmp_path / "d.parquet"), pd.read_parquet(tmp_path / "t.parquet")
    wnids = [f"n{i:08d}" for i in range(10)]
    v = standin_verdicts(dec, truth, wnids, np.arange(10), audit=0, seed=0)
    assert v["a"].verdict == "accept" and v["b"].verdict == "accept" and "c" not in v  # b: a multi-object scene, removal accepted
