"""Table 1 on a tiny synthetic project: issue counts and accuracy on original vs cleaned splits.

The project is tests/table_project.py's ``make_project``: manifests, clean
manifests, decisions and predictions of two cleanup models for train/val/v2.
"""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from imagenet_clean.evaluate.table1 import issue_counts, table1, write_table1
from imagenet_clean.io import write_table
from imagenet_clean.predictions import predictions_table, write_predictions
from imagenet_clean.workspace import Workspace
from table_project import MODELS, K, confident_probs, make_project, make_split, skip_split, strict_json

TABLES_PARAMS = (
    "models:\n  m1: {arch: resnet10t}\n  m2: {arch: resnet10t}\n"
    "splits:\n  train: {root: data/raw/train, layout: train}\n  val: {root: data/raw/val}\n"
    "  v2: {root: data/raw/v2, layout: v2}\n  imagenet_r: {root: null, layout: folders}\n"
)


def test_issue_counts_from_flagged_models():
    dec = pd.DataFrame({"flagged_models": [["a"], ["a", "b"], [], None, ["a", "a"]]})
    assert issue_counts(dec, ["a", "b", "c"]) == {"a": 3, "b": 1, "c": 0}
    with pytest.raises(ValueError, match="no 'flagged_models' column"):
        issue_counts(pd.DataFrame({"x": [1]}), ["a"], source="d.parquet")


def test_table1_values(tmp_path):
    paths = make_project(tmp_path)
    t = table1(list(MODELS), ["val", "v2"], paths=paths)
    assert t["m1"]["issues"] == {"val": 3, "v2": 3} and t["m2"]["issues"] == {"val": 1, "v2": 1}
    # V: 11 readable samples (3 is unreadable); m1 predicts the true class, wrong on the mislabeled 1 and 5
    assert t["m1"]["val"] == {"n": 11, "top1": round(100 * 9 / 11, 4), "top5": 100.0, "n_error": 0}
    # V_c: kept/fixed rows (10), cleaned labels = true classes, placeholder excluded
    assert t["m1"]["val_clean"]["n"] == 10 and t["m1"]["val_clean"]["top1"] == 100.0
    # m2 always says class 0: V has labels 0 at i in {0,4,8} (5 is relabelled 1->2, 1 relabelled to 2)
    assert t["m2"]["val"]["top1"] == round(100 * 3 / 11, 4)
    assert t["m2"]["val_clean"]["top1"] == round(100 * 3 / 10, 4)
    assert set(t["m1"]) == {"issues", "val", "val_clean", "v2", "v2_clean"}


def test_write_table1_and_rounds(tmp_path):
    paths = make_project(tmp_path)
    out = write_table1(list(MODELS), ["val"], paths=paths)
    assert out == tmp_path / "metrics" / "table1.json"
    assert json.loads(out.read_text())["m1"]["val_clean"]["top1"] == 100.0
    # round 2: its own clean/decisions/predictions under data/rounds/2, the same original manifests
    r2 = paths.at_round(2)
    make_split(r2, "val")
    out2 = write_table1(list(MODELS), ["val"], paths=r2)
    assert out2 == tmp_path / "metrics" / "rounds" / "2" / "table1.json"


def test_missing_prediction_file_is_reported(tmp_path):
    paths = make_project(tmp_path, splits=("val",))
    with pytest.raises(FileNotFoundError, match="m3.parquet"):
        table1(["m1", "m3"], ["val"], paths=paths)


def test_no_models_or_splits(tmp_path):
    paths = Workspace(tmp_path, 1)
    with pytest.raises(ValueError, match="at least one cleanup model"):
        table1([], ["val"], paths=paths)
    with pytest.raises(ValueError, match="at least one evaluated split"):
        table1(["m1"], [], paths=paths)


def test_cli_tables(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imagenet_clean.cli import app

    make_project(tmp_path, splits=("val",))
    (tmp_path / "params.yaml").write_text(
        "models:\n  m1: {arch: resnet10t}\n  m2: {arch: resnet10t}\n"
        "splits:\n  train: {root: data/raw/train, layout: train}\n  val: {root: data/raw/val}\n  v2: {root: null, layout: v2}\n"
    )
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["tables"])
    assert res.exit_code == 0, res.output
    assert "wrote metrics/table1.json" in res.output
    t = json.loads((tmp_path / "metrics" / "table1.json").read_text())
    assert set(t) == {"m1", "m2", "skipped_splits"} and "v2" not in t["m1"]
    assert t["skipped_splits"] == {"v2": "splits.v2.root is null"}
    assert "split v2 skipped: splits.v2.root is null" in res.output
    res = CliRunner().invoke(app, ["tables", "--round", "2"])
    assert res.exit_code != 0 and "beyond rounds" in str(res.exception)


def test_uncleaned_split_is_scored_on_original_labels_only(tmp_path):
    paths = make_project(tmp_path, splits=("val", "imagenet_r"))
    paths.clean("imagenet_r").unlink()
    t = table1(list(MODELS), ["val", "imagenet_r"], paths=paths)
    assert "imagenet_r" in t["m1"] and "imagenet_r_clean" not in t["m1"]
    assert t["m1"]["issues"] == {"val": 3}
    paths.clean("val").unlink()
    with pytest.raises(FileNotFoundError, match="no clean manifest.*clean --split val"):
        table1(list(MODELS), ["val"], paths=paths)


def test_cli_tables_reports_skipped_splits_and_runs_on_the_rest(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imagenet_clean.cli import app
    from imagenet_clean.config import load_params

    paths = make_project(tmp_path, splits=("val", "v2"))
    (tmp_path / "params.yaml").write_text(TABLES_PARAMS)
    skip_split(load_params(tmp_path / "params.yaml"), "imagenet_r", tmp_path)  # empty manifest, skipped decisions/clean
    folder = paths.round_data / "predictions" / "v2"
    shutil.rmtree(folder)
    folder.mkdir()  # predict ran but wrote nothing
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["tables"])
    assert res.exit_code == 0, res.output
    t = strict_json(tmp_path / "metrics" / "table1.json")
    assert set(t["m1"]) == {"issues", "val", "val_clean"}
    assert t["skipped_splits"] == {"v2": "no prediction file in data/predictions/v2", "imagenet_r": "splits.imagenet_r.root is null"}
    assert "split imagenet_r skipped: splits.imagenet_r.root is null" in res.output and "m1: issues" in res.output
    shutil.rmtree(folder)  # predict never ran for it: the same
    assert CliRunner().invoke(app, ["tables"]).exit_code == 0
    assert "v2" in strict_json(tmp_path / "metrics" / "table1.json")["skipped_splits"]


def test_split_with_no_readable_image_is_skipped(tmp_path):
    from imagenet_clean.config import parse_params
    from imagenet_clean.evaluate.splits import usable_splits

    paths = make_project(tmp_path, splits=("val", "v2"))
    manifest = pd.read_parquet(paths.manifest("v2")).assign(status="error")
    write_table(paths.manifest("v2"), manifest, metadata={"root": "r"})
    params = parse_params({"splits": {"train": {"root": "t"}, "val": {"root": "v"}, "v2": {"root": "w"}}})
    assert usable_splits(params, paths) == (["val"], {"v2": f"{paths.manifest('v2')} has no readable image"})


def test_every_split_skipped_writes_a_skipped_table1(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imagenet_clean.cli import app

    (tmp_path / "params.yaml").write_text("models:\n  m1: {arch: resnet10t}\n"
                                          "splits:\n  train: {root: data/raw/train}\n  val: {root: null}\n")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["tables"])
    assert res.exit_code == 0, res.output
    t = strict_json(tmp_path / "metrics" / "table1.json")
    assert t == {"skipped": True, "why": "no evaluated split besides the training split can be used",
                 "skipped_splits": {"val": "splits.val.root is null"}}
    assert "skipped: no evaluated split" in res.output


def test_empty_cleaned_set_has_null_accuracy(tmp_path):
    paths = make_project(tmp_path, splits=("val",))
    clean = pd.read_parquet(paths.clean("val"))
    write_table(paths.clean("val"), clean[clean["action"] == "placeholder"], metadata={"root": "r"})  # everything removed
    out = write_table1(list(MODELS), ["val"], paths=paths)
    t = strict_json(out)
    assert t["m1"]["val_clean"] == {"n": 0, "top1": None, "top5": None, "n_error": 0}
    assert t["m1"]["val"]["n"] == 11


def test_extra_models_are_scored_beside_the_cleanup_models_without_issue_counts(tmp_path):
    """tables.extra_models: the paper's table-1 models 'not used in the clean-up' (accuracies only)."""
    from imagenet_clean.evaluate.report import render_table1

    paths = make_project(tmp_path, splits=("val",))
    truth = make_split(paths, "val")
    folder = paths.extra_predictions
    n = len(truth["ids"])
    table = predictions_table(truth["ids"], confident_probs(truth["true"]), status=truth["status"])
    write_predictions(folder / "val" / "big.parquet", table,
                      model="big", split="val", num_classes=K)
    out = json.loads(write_table1(list(MODELS), ["val"], paths=paths, extra_models=["big"]).read_text())
    assert out["big"]["cleanup"] is False and out["big"]["issues"] == {}
    assert out["big"]["val_clean"] == out["m1"]["val_clean"]  # the same predictions as m1: the same accuracies
    assert out["big"]["val"]["n"] == n - 1  # the unreadable row is not in V
    assert "big (not used in the clean-up)" in render_table1(out)
    with pytest.raises(ValueError, match=r"tables.extra_models \['m1'\] are also cleanup models"):
        write_table1(list(MODELS), ["val"], paths=paths, extra_models=["m1"])


def test_predict_extra_runs_the_real_predictor_on_a_checkpoint(tmp_path, monkeypatch):
    from PIL import Image

    from hostile_corpus import tiny_checkpoint
    from imagenet_clean.config import parse_params
    from imagenet_clean.evaluate.table1 import predict_extra
    from imagenet_clean.predictions import read_predictions

    monkeypatch.chdir(tmp_path)
    paths = Workspace()
    ids = [f"c{i % K}/v_{i}.png" for i in range(6)]
    for s in ids:
        (tmp_path / "raw" / s).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (40 * (int(s[1]) + 1), 0, 0)).save(tmp_path / "raw" / s)
    manifest = pd.DataFrame({"sample_id": ids, "path": ids, "label": [i % K for i in range(6)], "wnid": ["n"] * 6,
                             "status": ["ok"] * 6, "reason": [""] * 6})
    write_table(paths.manifest("val"), manifest, metadata={"root": str(tmp_path / "raw"), "split": "val", "num_classes": K})
    ckpt = tiny_checkpoint(tmp_path / "big.safetensors", arch="test_resnet", num_classes=K, seed=0)
    (tmp_path / "classes.tsv").write_text("".join(f"n{i}\tc{i}\n" for i in range(K)))
    params = parse_params({"dataset": {"classes": "classes.tsv"}, "splits": {"val": {"root": str(tmp_path / "raw")}},
                           "predict": {"batch_size": 4, "workers": 0},
                           "tables": {"extra_models": {"big": {"arch": "test_resnet", "weights": str(ckpt), "input_size": [3, 16, 16]}}}})
    folder = predict_extra(params, ["val"], paths=paths)
    preds = read_predictions(folder / "val" / "big.parquet")
    assert sorted(preds.sample_ids) == sorted(ids) and preds.probs.shape == (6, K)
    assert json.loads((folder / "models.json").read_text()) == {"big": {"arch": "test_resnet", "weights": str(ckpt)}}
    empty = predict_extra(parse_params({}), ["val"], paths=Workspace(Path("w2")))
    assert json.loads((empty / "models.json").read_text()) == {}
