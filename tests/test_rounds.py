"""Iterated cleaning rounds (issue 6): round paths, the derived training manifest, a tiny two-round run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from imagenet_clean.evaluate.rounds import round_training_manifest
from imagenet_clean.stages.rounds import MARKER, remove_stale_rounds
from imagenet_clean.workspace import Workspace


def _manifest(n=6):
    return pd.DataFrame({
        "sample_id": [f"n{i % 3}/img{i}.JPEG" for i in range(n)],
        "path": [f"n{i % 3}/img{i}.JPEG" for i in range(n)],
        "label": np.arange(n, dtype=np.int64) % 3,
        "wnid": [f"n{i % 3}" for i in range(n)],
        "boxes": [[[0.0, 0.0, 4.0, 4.0]] for _ in range(n)],
        "status": ["ok"] * n,
        "reason": [""] * n,
    })


def _clean(manifest, *, labels, drop=(), placeholder=True):
    keep = manifest.drop(index=list(drop))
    rows = pd.DataFrame({"sample_id": keep["sample_id"], "label": labels, "wnid": [f"n{x}" for x in labels], "action": "keep"})
    if placeholder:
        rows = pd.concat([rows, pd.DataFrame({"sample_id": ["__placeholder__/n2.JPEG"], "label": [2], "wnid": ["n2"],
                                              "action": ["placeholder"]})], ignore_index=True)
    return rows.iloc[::-1]  # clean order must not matter


def test_training_manifest_takes_cleaned_labels_and_drops_placeholders_and_removed_rows():
    m = _manifest()
    labels = [0, 1, 1, 0, 2]  # row 5 removed; row 2 relabelled 2 -> 1 (fix); row 4 1 -> 2 (merge target)
    out = round_training_manifest(m, _clean(m, labels=labels, drop=[5]), merged_labels={1: 2})
    assert out["sample_id"].tolist() == m["sample_id"].iloc[:5].tolist()  # original order, placeholder gone
    assert out["label"].tolist() == labels and out["wnid"].tolist() == [f"n{x}" for x in labels]
    assert out["path"].tolist() == m["path"].iloc[:5].tolist()  # still relative to the original root
    assert [len(b) for b in out["boxes"]] == [1, 1, 0, 1, 1]  # the fixed sample loses its box, the merged one keeps it
    assert list(out.columns) == list(m.columns)


def test_training_manifest_rejects_unknown_and_repeated_samples():
    m = _manifest()
    bad = _clean(m, labels=[0, 1, 2, 0, 1, 2], placeholder=False)
    bad.iloc[0, 0] = "elsewhere/x.JPEG"
    with pytest.raises(ValueError, match="not in the original training manifest.*elsewhere/x.JPEG"):
        round_training_manifest(m, bad, source="prev.parquet")
    rep = pd.concat([_clean(m, labels=[0, 1, 2, 0, 1, 2], placeholder=False)] * 2)
    with pytest.raises(ValueError, match="appears more than once"):
        round_training_manifest(m, rep)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['action'\]"):
        round_training_manifest(m, m)


def test_stale_round_folders_are_removed(tmp_path):
    for base in ("data/rounds", "metrics/rounds"):
        for r in ("2", "3", "4"):
            (tmp_path / base / r).mkdir(parents=True)
        (tmp_path / base / MARKER).write_text("x")
    gone = remove_stale_rounds(Workspace(tmp_path), 2)
    assert sorted(p.name for p in gone) == ["3", "3", "4", "4"]
    assert sorted(p.name for p in (tmp_path / "data/rounds").iterdir()) == ["2", MARKER]


# ------------------------------------------------------------------ tiny end-to-end


def _tiny_params(folder: Path, rounds: int) -> Path:
    from hostile_corpus import write_tiny_project

    project = write_tiny_project(folder, n_train=120, n_val=40, n_v2=30, image_size=32)
    p = yaml.safe_load((project / "params.yaml").read_text())
    kw = {"output_stride": 8, "pretrained_cfg_overlay": {"crop_pct": 1.0}}
    p["models"] = {"r32": {"arch": "test_resnet", "weights": "train", "input_size": [3, 32, 32], "kwargs": kw},
                   "r16": {"arch": "test_resnet", "weights": "train", "input_size": [3, 16, 16], "kwargs": kw}}
    p["train"].update(folds=2, epochs=1, parallel=1, threads=1, warmup_epochs=0, cooldown_epochs=0, min_accuracy=0.0)
    p["tables"].update(archs=["test_resnet"], seeds=1, input_size=16)
    p["splits"]["val"]["h2"] = 2  # the paper's 3 distinct candidates would exceed the two models (refused)
    p["rounds"] = rounds
    (project / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return project


def _round_one(p):
    from imagenet_clean.data.generate import generate
    from imagenet_clean.evaluate.splits import usable_splits
    from imagenet_clean.evaluate.table1 import write_table1
    from imagenet_clean.stages import clean as clean_stage
    from imagenet_clean.stages.fit import run as run_fit
    from imagenet_clean.stages.ingest import run as run_ingest
    from imagenet_clean.stages.predict import run as run_predict_split
    from imagenet_clean.stages.quality import run as run_quality
    from imagenet_clean.stages.windows import run as run_windows

    generate(p.generate, seed=p.seed)
    for split in p.splits:
        run_ingest(p, Workspace(), split)
    for m in p.models:
        run_fit(p, Workspace(), m)
    for split in p.splits:
        if split != "train":
            run_predict_split(p, Workspace(), split)
    for split in ("train", "val", "v2"):
        run_quality(p, Workspace(), split)  # read by clean: the embedded default has the quality and label-set rules on
        run_windows(p, Workspace(), split)
        clean_stage.run(p, Workspace(), split)
    paths = Workspace()
    splits, skipped = usable_splits(p, paths, predictions=True)
    write_table1(list(p.models), splits, paths=paths, skipped=skipped)



def test_two_rounds_retrain_on_round_one_clean_set_and_report_each_round(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imagenet_clean.cli import app
    from imagenet_clean.config import load_params
    from imagenet_clean.evaluate.report import write_report
    from imagenet_clean.io import read_metadata, read_table

    project = _tiny_params(tmp_path / "proj", rounds=2)
    monkeypatch.chdir(project)
    p = load_params("params.yaml")
    _round_one(p)
    if "rounds" not in {c.name for c in app.registered_commands}:  # until cli/__init__.py lists the group
        from imagenet_clean.cli import rounds as rounds_cli

        rounds_cli.register(app)
    res = CliRunner().invoke(app, ["rounds"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "round 2:" in res.output

    r2 = Path("data/rounds/2")
    man = read_table(r2 / "manifests/train.parquet")
    prev = read_table("data/clean/train.parquet")
    prev = prev[prev["action"] != "placeholder"].set_index("sample_id")
    assert sorted(man["sample_id"]) == sorted(prev.index)  # round 1's clean training set, no placeholders
    assert (man.set_index("sample_id")["label"] == prev["label"]).all()  # with its cleaned labels
    assert read_metadata(r2 / "manifests/train.parquet")["root"] == read_metadata("data/manifests/train.parquet")["root"]
    for m in p.models:
        assert (r2 / "models" / m / "full.safetensors").is_file()
        oof = read_table(r2 / "predictions/train" / f"{m}.parquet")
        assert oof["sample_id"].tolist() == man["sample_id"].tolist()
        for split in ("val", "v2"):  # the original evaluated manifests, predicted by the round's models
            assert len(read_table(r2 / "predictions" / split / f"{m}.parquet")) == len(read_table(f"data/manifests/{split}.parquet"))
    dec = read_table(r2 / "decisions/train.parquet")
    assert dec["sample_id"].tolist() == man["sample_id"].tolist()
    for split in ("train", "val", "v2"):
        assert (r2 / "clean" / f"{split}.parquet").is_file() and (r2 / "changes" / f"{split}.csv").is_file()
        assert json.loads(Path(f"metrics/rounds/2/cleanup/{split}.json").read_text())["split"] == split
    t1 = json.loads(Path("metrics/rounds/2/table1.json").read_text())
    assert set(p.models) <= set(t1) and {"val", "val_clean", "v2", "v2_clean"} <= set(t1["r32"])
    t2 = json.loads(Path("metrics/rounds/2/table2.json").read_text())
    assert "test_resnet" in t2 and {"T", "T_c"} <= set(t2["test_resnet"])
    assert json.loads(Path("metrics/rounds/2/table3.json").read_text())["skipped"] is True  # switch off

    from imagenet_clean.models import factory
    from imagenet_clean.stages import clean as clean_stage

    seen = []
    monkeypatch.setattr(factory, "load_trained", lambda name, cfg, **kw: seen.append(kw["models_dir"]))
    clean_stage.trained_loader(p, 10, Workspace(round=2).models)("r32", 0)  # the CAMs load the round's fold models
    assert seen == [Path("data/rounds/2/models")]
    monkeypatch.undo()
    monkeypatch.chdir(project)

    ckpt = r2 / "models/r32/fold0.safetensors"
    before = ckpt.stat().st_mtime_ns
    assert CliRunner().invoke(app, ["rounds"]).exit_code == 0  # a rerun resumes: finished folds are not retrained
    assert ckpt.stat().st_mtime_ns == before
    assert read_table(r2 / "decisions/train.parquet").equals(dec)

    report = write_report(["train", "val", "v2"], rounds=2, workspace=Workspace()).read_text()
    assert "# Round 1" in report and "# Round 2" in report
    assert report.count("## Table 1") == 2 and report.count("## Table 2") == 1  # round 1's table 2 was not run here


def test_one_round_writes_only_the_marker_folders(tmp_path, monkeypatch):
    from imagenet_clean.config import load_params
    from imagenet_clean.stages.rounds import run as run_rounds

    project = _tiny_params(tmp_path / "proj", rounds=1)
    monkeypatch.chdir(project)
    (project / "data/rounds/2").mkdir(parents=True)  # left over from an earlier `rounds: 2`
    assert run_rounds(load_params("params.yaml"), Workspace()) == []
    assert sorted(p.name for p in Path("data/rounds").iterdir()) == [MARKER]
    assert sorted(p.name for p in Path("metrics/rounds").iterdir()) == [MARKER, "summary.json"]


def test_a_round_without_the_previous_clean_training_set_names_the_stage_to_run(tmp_path, monkeypatch):
    from imagenet_clean.config import load_params
    from imagenet_clean.io import write_table
    from imagenet_clean.stages.rounds import run_round

    project = _tiny_params(tmp_path / "proj", rounds=2)
    monkeypatch.chdir(project)
    p = load_params("params.yaml")
    with pytest.raises(FileNotFoundError, match=r"data/manifests/train.parquet: missing \(run `imagenet-clean ingest --split train`"):
        run_round(p, Workspace(round=2))
    import pyarrow as pa

    write_table("data/manifests/train.parquet", pa.table({"sample_id": ["a"]}))
    with pytest.raises(FileNotFoundError, match=r"data/clean/train.parquet: missing \(run `imagenet-clean clean --split train`"):
        run_round(p, Workspace(round=2))
    with pytest.raises(FileNotFoundError,
                       match=r"data/rounds/2/clean/train.parquet: missing \(run round 2 \(`imagenet-clean rounds`\) first"):
        run_round(p, Workspace(round=3))
