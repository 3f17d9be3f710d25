"""`imagenet-clean ablations` writes every declared output, computed or skipped (dvc.yaml stage ablations)."""
from imagenet_clean.config import parse_params
from imagenet_clean.evaluate.ablations import VARIANTS
from table_project import SPLITS_YAML, make_project, run_cli, skip_split, strict_json

OUTS = ("ablations.json", "runs/ablations.json")


def test_cli_ablations_switched_off_writes_both_outputs(tmp_path, monkeypatch):
    res, fake = run_cli(tmp_path, monkeypatch, SPLITS_YAML + "tables: {archs: [a1], ablations: false}\n", "ablations")
    for name in OUTS:
        assert strict_json(tmp_path / "metrics" / name) == {"skipped": True, "why": "tables.ablations is false"}
    assert "skipped: tables.ablations is false" in res.output and fake.fits == []


def test_cli_ablations_with_a_skipped_training_split(tmp_path, monkeypatch):
    make_project(tmp_path, splits=("val",), n=40)
    skip_split(parse_params({"splits": {"train": {"root": None, "layout": "train"}}}), "train", tmp_path)
    yaml = "splits:\n  train: {root: null, layout: train}\n  val: {root: data/raw/val}\ntables: {archs: [a1], ablations: true}\n"
    res, fake = run_cli(tmp_path, monkeypatch, yaml, "ablations")
    for name in OUTS:
        assert strict_json(tmp_path / "metrics" / name) == {"skipped": True, "why": "training split skipped: splits.train.root is null"}
    assert fake.fits == []


def test_cli_ablations_runs_and_lists_skipped_splits(tmp_path, monkeypatch):
    make_project(tmp_path, splits=("train", "val"), n=40)
    skip_split(parse_params({"splits": {"v2": {"root": None}}}), "v2", tmp_path)
    yaml = SPLITS_YAML + "  v2: {root: null, layout: v2}\ntables: {archs: [a1], seeds: 1, ablations: true}\n"
    run_cli(tmp_path, monkeypatch, yaml, "ablations")
    t = strict_json(tmp_path / "metrics" / "ablations.json")
    assert set(t["a1"]) == set(VARIANTS) and t["skipped_splits"] == {"v2": "splits.v2.root is null"}
    assert set(strict_json(tmp_path / "metrics" / "runs/ablations.json")["a1"]) == set(VARIANTS)
