"""`imagenet-clean table3` writes every declared output, computed or skipped (dvc.yaml stage table3)."""
from imagenet_clean.config import parse_params
from imagenet_clean.evaluate.table3 import write_table3
from table_project import SPLITS_YAML, make_project, run_cli, skip_split, strict_json

OUTS = ("table3.json", "runs/table3.json")


def test_cli_table3_switched_off_writes_both_outputs(tmp_path, monkeypatch):
    res, fake = run_cli(tmp_path, monkeypatch, SPLITS_YAML + "tables: {archs: [a1], resolutions: false}\n", "table3")
    for name in OUTS:
        assert strict_json(tmp_path / "metrics" / name) == {"skipped": True, "why": "tables.resolutions is false"}
    assert "skipped: tables.resolutions is false" in res.output and fake.fits == []


def test_cli_table3_without_archs_skips(tmp_path, monkeypatch):
    run_cli(tmp_path, monkeypatch, SPLITS_YAML + "tables: {archs: [], resolutions: true}\n", "table3")
    for name in OUTS:
        assert strict_json(tmp_path / "metrics" / name)["why"] == "tables.archs is empty"


def test_cli_table3_runs_and_lists_skipped_splits(tmp_path, monkeypatch):
    make_project(tmp_path, splits=("train", "val"), n=40)
    yaml = SPLITS_YAML + "  v2: {root: null, layout: v2}\ntables: {archs: [a1], seeds: 1, input_size: 32, resolutions: true}\n"
    skip_split(parse_params({"splits": {"v2": {"root": None}}}), "v2", tmp_path)
    res, fake = run_cli(tmp_path, monkeypatch, yaml, "table3")
    t = strict_json(tmp_path / "metrics" / "table3.json")
    assert t["skipped_splits"] == {"v2": "splits.v2.root is null"}
    assert t["a1"]["square"]["input_size"] == [3, 32, 32] and "val_clean" in t["a1"]["square"]
    assert set(strict_json(tmp_path / "metrics" / "runs/table3.json")["a1"]) == {"square", *(k for k in t["a1"] if k != "square")}
    assert len(fake.fits) == 5


def test_table3_needs_a_cleaned_evaluated_split(tmp_path):
    paths = make_project(tmp_path, splits=("train", "imagenet_r"), n=40)
    paths.clean("imagenet_r").unlink()  # evaluation-only split: never cleaned
    params = parse_params({"splits": {"train": {"root": "r/train"}, "imagenet_r": {"root": "r/ir", "layout": "folders"}},
                           "tables": {"archs": ["a1"], "resolutions": True}})
    t = strict_json(write_table3(params, paths=paths))
    assert t == {"skipped": True, "why": "no evaluated split has a cleaned version (evaluated: imagenet_r)"}
    assert strict_json(paths.metric("runs/table3.json")) == t


def test_tables_sizes_name_the_papers_landscape_and_portrait_sizes():
    import pytest

    from imagenet_clean.config import ConfigError, parse_params
    from imagenet_clean.evaluate.table3 import named_sizes

    sizes = parse_params({"tables": {"sizes": [[320, 180], [384, 216], [180, 320], [216, 384]]}}).tables.sizes
    assert named_sizes(sizes) == {"320x180 (L)": (3, 180, 320), "384x216 (L)": (3, 216, 384),
                                  "180x320 (P)": (3, 320, 180), "216x384 (P)": (3, 384, 216)}
    with pytest.raises(ConfigError, match="tables.sizes"):
        parse_params({"tables": {"sizes": [[320]]}})
    with pytest.raises(ValueError, match="given twice"):
        named_sizes([[320, 180], [320, 180]])
