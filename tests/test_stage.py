"""The clean stage end to end on a tiny synthetic split with three models and a fake CAM."""
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from imagenet_clean.cleanup.ensemble import DECISIONS_SCHEMA
from imagenet_clean.io import read_table, write_table
from imagenet_clean.predictions import predictions_table, write_predictions
from imagenet_clean.stages import clean as clean_stage
from imagenet_clean.workspace import Workspace
from stage_project import BAD_PRED_ROW, BAD_ROW, CONS_EXEMPT, CONS_NOBOX, CONS_REMOVE, MODELS, FakeCam, K, make_project


@pytest.fixture()
def project(tmp_path):
    params, manifest, true = make_project(tmp_path)
    cam = FakeCam()
    metrics = clean_stage.run(params, Workspace(tmp_path), "val", find_exemptions=cam, load_model=lambda n, f: None)
    dec = read_table(tmp_path / "data/decisions/val.parquet")
    return dict(tmp=tmp_path, params=params, manifest=manifest, true=true, cam=cam, metrics=metrics, dec=dec)


def test_decisions_follow_the_contract(project):
    dec, manifest = project["dec"], project["manifest"]
    schema = pq.read_schema(project["tmp"] / "data/decisions/val.parquet")
    assert schema.names == DECISIONS_SCHEMA.names
    assert dec["sample_id"].tolist() == manifest["sample_id"].tolist()
    assert set(dec["action"]) <= {"keep", "fix", "remove"}
    assert (dec["content_hash"] == manifest["content_hash"]).all()
    nf = dec[dec["action"] != "fix"]
    assert (nf["new_label"] == nf["label"]).all()


def test_fixes_find_flipped_labels(project):
    dec, true = project["dec"], project["true"]
    fix = dec["action"] == "fix"
    assert fix.sum() >= 5
    assert (dec.loc[fix, "new_label"].to_numpy() == true[fix.to_numpy()]).mean() > 0.8
    assert all(len(f) == 3 for f in dec.loc[fix, "flagged_models"])  # h1 = all


def test_unreadable_rows_are_removed_with_their_reason(project):
    dec = project["dec"]
    assert dec.loc[BAD_ROW, "rules"].tolist() == ["unreadable"] and dec.loc[BAD_ROW, "action"] == "remove"
    assert dec.loc[BAD_ROW, "reason"] == "truncated JPEG"
    assert dec.loc[BAD_PRED_ROW, "rules"].tolist() == ["unreadable"]
    assert dec.loc[BAD_PRED_ROW, "reason"] == "model b: decode failed"


def test_cam_exemption_path(project):
    dec, cam = project["dec"], project["cam"]
    assert len(cam.calls) == 1
    cands = cam.calls[0]["candidates"]
    sids = dec["sample_id"]
    assert sids[CONS_EXEMPT] in set(cands["sample_id"]) and sids[CONS_REMOVE] in set(cands["sample_id"])
    assert sids[CONS_NOBOX] not in set(cands["sample_id"])  # no box: no CAM, removed
    row = cands.set_index("sample_id").loc[sids[CONS_EXEMPT]]
    assert row["models"] == ["c"] and row["folds"] == [CONS_EXEMPT % 4]  # only models with the label in top-5
    assert row["boxes"] == [[1.0, 1.0, 30.0, 30.0]] and row["content_hash"] == f"h{CONS_EXEMPT:04d}"
    assert str(cam.calls[0]["root"]).endswith("raw/val")
    assert dec.loc[CONS_EXEMPT, "action"] == "keep"
    assert dec.loc[CONS_EXEMPT, "rules"].tolist() == ["consensus", "cam_exempt"]
    assert dec.loc[CONS_EXEMPT, "exempted_by"] == "c"
    assert json.loads(dec.loc[CONS_EXEMPT, "cam_scores"]) == {"c": {"gradcam": 0.5}}
    for r in (CONS_REMOVE, CONS_NOBOX):
        assert dec.loc[r, "action"] == "remove" and dec.loc[r, "rules"].tolist() == ["consensus"]
        assert dec.loc[r, "c_s"] == 2
    assert project["metrics"]["cam_exempted"] == 1


def test_cam_off_leaves_consensus_removals(tmp_path):
    params, _, _ = make_project(tmp_path)
    cam = FakeCam()
    clean_stage.run(params, Workspace(tmp_path), "val", cam=False, find_exemptions=cam)
    dec = read_table(tmp_path / "data/decisions/val.parquet")
    assert cam.calls == []
    assert dec.loc[CONS_EXEMPT, "action"] == "remove"


def test_clean_manifest_merges_and_placeholder(project):
    clean = read_table(project["tmp"] / "data/clean/val.parquet")
    dec = project["dec"]
    kept = dec[dec["action"] != "remove"]
    assert len(clean) == len(kept) + 1
    assert not (clean["wnid"] == "n90000010").any() or (clean.loc[clean["wnid"] == "n90000010", "action"] == "placeholder").all()
    ph = clean[clean["action"] == "placeholder"]
    assert ph["path"].tolist() == ["__placeholder__/n90000010.JPEG"]
    merged = clean[clean["action"].isin(["merge", "fix+merge"])]
    assert len(merged) and (merged["wnid"] == "n90000001").all() and (merged["label"] == 1).all()
    assert set(clean["action"]) <= {"keep", "fix", "merge", "fix+merge", "placeholder"}


def test_change_list_and_metrics(project):
    changes = pd.read_csv(project["tmp"] / "data/changes/val.csv", keep_default_na=False)
    assert list(changes.columns) == ["file", "old_label", "old_wnid", "old_name", "new_label", "new_wnid", "new_name", "action", "reason"]
    dec = project["dec"]
    assert (changes["action"].str.startswith("fix")).sum() == (dec["action"] == "fix").sum()
    assert (changes["action"] == "remove").sum() == (dec["action"] == "remove").sum()
    assert "placeholder" in set(changes["action"]) and "merge" in set(changes["action"])
    row = changes[changes["file"] == dec.loc[CONS_REMOVE, "path"]].iloc[0]
    assert "top-5 consensus: 2 of 3" in row["reason"]
    m = json.loads((project["tmp"] / "metrics/cleanup/val.json").read_text())
    assert set(m["issues_per_model"]) == set(MODELS) and all(v > 0 for v in m["issues_per_model"].values())
    assert m["fix"] + m["remove"] + m["keep"] == m["samples"] == len(dec)
    assert m["unreadable"] == 2 and m["thresholds_resolved"]["h1"] == 3.0


def test_mismatched_predictions_are_rejected(tmp_path):
    params, _, _ = make_project(tmp_path)
    f = tmp_path / "data/predictions/val/b.parquet"
    t = pq.read_table(f)
    pq.write_table(t.slice(0, t.num_rows - 1), f)
    with pytest.raises(ValueError, match="b.parquet: 1 manifest samples have no prediction"):
        clean_stage.run(params, Workspace(tmp_path), "val", cam=False)


def test_bad_probabilities_name_file_model_row_and_sample(tmp_path):
    params, manifest, _ = make_project(tmp_path)
    p = np.full((len(manifest), K), 1.0 / K)
    p[7, 0] = np.nan
    write_predictions(tmp_path / "data/predictions/val/c.parquet", predictions_table(manifest["sample_id"].to_numpy(object), p),
                      model="c", arch="x", split="val", num_classes=K)
    with pytest.raises(ValueError, match=r"c.parquet, model 'c': row \d+ of pred_probs has NaN.*img_0007"):
        clean_stage.run(params, Workspace(tmp_path), "val", cam=False)


def test_wrong_class_count_is_rejected(tmp_path):
    params, manifest, _ = make_project(tmp_path)
    p = np.full((len(manifest), K + 1), 1.0 / (K + 1))
    write_predictions(tmp_path / "data/predictions/val/a.parquet", predictions_table(manifest["sample_id"].to_numpy(object), p),
                      model="a", arch="x", split="val", num_classes=K + 1)
    with pytest.raises(ValueError, match="model 'a': 9 classes, but the class list has 8"):
        clean_stage.run(params, Workspace(tmp_path), "val", cam=False)


def test_unconfigured_split_writes_empty_outputs_and_no_models_fails(tmp_path):
    params, _, _ = make_project(tmp_path)
    m = clean_stage.run(params, Workspace(tmp_path), "train")
    assert m["skipped"] and "not configured" in m["why"]
    assert read_table(tmp_path / "data/decisions/train.parquet").empty
    assert pq.read_schema(tmp_path / "data/decisions/train.parquet").names == DECISIONS_SCHEMA.names
    assert (tmp_path / "data/changes/train.csv").read_text().startswith("file,old_label")
    params2, _, _ = make_project(tmp_path, models={})
    with pytest.raises(ValueError, match="no models"):
        clean_stage.run(params2, Workspace(tmp_path), "val")


def test_models_are_streamed_one_at_a_time(tmp_path, monkeypatch):
    import weakref

    params, _, _ = make_project(tmp_path)
    live = []
    real = clean_stage.read_model_rows

    def reading(path, rows):
        assert all(r() is None for r in live), "a previous model's probabilities are still alive"
        preds = real(path, rows)
        live.append(weakref.ref(preds.probs))
        return preds

    monkeypatch.setattr(clean_stage, "read_model_rows", reading)
    clean_stage.run(params, Workspace(tmp_path), "val", cam=False)
    assert len(live) == 3


def test_cli_clean_and_diff(tmp_path, monkeypatch, capsys):
    from imagenet_clean.cli import main

    params, _, _ = make_project(tmp_path)
    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "h1": "all", "h2": 3, "h3": 2, "dataset": {"classes": "classes.tsv", "merges": "embedded"},
        "splits": {"val": {"root": "raw/val", "layout": "val"}}, "models": {m: {"arch": "resnet10t"} for m in MODELS}}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["clean", "--split", "val", "--no-cam"])
    assert e.value.code in (0, None), capsys.readouterr().err
    assert "fixes" in capsys.readouterr().out
    a = tmp_path / "a.parquet"
    (tmp_path / "data/decisions/val.parquet").rename(a)
    with pytest.raises(SystemExit):
        main(["clean", "--split", "val", "--no-cam"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["diff", str(a), "data/decisions/val.parquet"])
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1]) == {"changed": 0}
    with pytest.raises(SystemExit) as e:
        main(["clean", "--split", "nope"])
    assert "split nope skipped" in capsys.readouterr().out


def test_empty_split_gives_empty_outputs(tmp_path):
    params, manifest, _ = make_project(tmp_path)
    empty = manifest.iloc[:0]
    write_table(tmp_path / "data/manifests/val.parquet", empty,
                metadata={"root": "raw/val", "layout": "val", "split": "val", "classes": "classes.tsv", "num_classes": K})
    for m in MODELS:
        write_predictions(tmp_path / f"data/predictions/val/{m}.parquet",
                          predictions_table(np.array([], object), np.zeros((0, K))), model=m, arch="x", split="val", num_classes=K)
    metrics = clean_stage.run(params, Workspace(tmp_path), "val", cam=False)
    assert metrics["samples"] == 0 and metrics["fix"] == 0
    assert read_table(tmp_path / "data/decisions/val.parquet").empty
    assert (read_table(tmp_path / "data/clean/val.parquet")["action"] == "placeholder").all()
