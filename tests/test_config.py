import dataclasses
import math

import pytest
import yaml

from imagenet_clean.cleanup.rules import resolve_threshold
from imagenet_clean.config import ConfigError, load_params, parse_params


def test_default_params_file_is_valid():
    p = load_params("params.yaml")
    assert p.thresholds("train").h1 == "all"
    assert p.thresholds("val").h3 == pytest.approx(0.6666)
    assert p.thresholds("v2").fn == 0.9


def test_split_values_are_the_default_and_a_top_level_value_applies_to_every_split():
    splits = {"train": {"root": "t", "h3": "all"}, "val": {"root": "v", "h3": 0.6666}, "v2": {"root": "w"}}
    p = parse_params({"splits": splits})
    assert [p.thresholds(s).h3 for s in ("train", "val", "v2")] == ["all", 0.6666, 0.6666]
    assert p.threshold_sources("val")["h3"] == "splits.val.h3" and p.threshold_sources("v2")["h3"] == "default"
    p = parse_params({"h3": 6, "fn": 0.8, "splits": splits})  # what `dvc exp run -S h3=6 -S fn=0.8` writes
    assert [p.thresholds(s).h3 for s in ("train", "val", "v2")] == [6, 6, 6]
    assert {p.thresholds(s).fn for s in ("train", "val", "v2")} == {0.8}
    assert p.threshold_sources("train") == {"fn": "fn", "h1": "default", "h2": "default", "h3": "h3"}


def test_default_params_resolve_to_the_papers_thresholds_per_split():
    p = dataclasses.replace(load_params("params.yaml"), threshold_floor=False)
    m = len(p.models)
    assert p.resolved_thresholds("val") == {"fn": 1.0, "h1": m / 2, "h2": 3.0, "h3": pytest.approx(0.6666 * m)}
    assert math.ceil(p.resolved_thresholds("val")["h3"]) == math.ceil(2 * m / 3)
    for split, fn in (("train", 1.0), ("v2", 0.9)):
        assert p.resolved_thresholds(split) == {"fn": fn, "h1": float(m), "h2": m / 2, "h3": float(m)}


def test_the_floor_asks_at_least_the_models_the_papers_ensembles_needed():
    p = load_params("params.yaml")
    assert p.threshold_floor and len(p.models) == 5
    # the paper: val h1 = 10/2 = 5, h3 = 2*10/3 -> 7 (capped at the 5 models), train h2 = 8/2 = 4, V2 h2 = 10/2 = 5
    assert p.resolved_thresholds("val") == {"fn": 1.0, "h1": 5.0, "h2": 3.0, "h3": 5.0}
    assert p.resolved_thresholds("train") == {"fn": 1.0, "h1": 5.0, "h2": 4.0, "h3": 5.0}
    assert p.resolved_thresholds("v2") == {"fn": 0.9, "h1": 5.0, "h2": 5.0, "h3": 5.0}
    assert p.thresholds("val").floor_size == 10 and p.thresholds("train").floor_size == 8
    # every split carries the params' fn_scope (V2's fn 0.9 is the only fn below 1)
    assert p.fn_scope == "split" and {p.thresholds(s).fn_scope for s in ("train", "val", "v2")} == {"split"}
    assert parse_params({}).thresholds("v2").fn_scope == "cell"  # cleanlab's own arithmetic unless asked
    # a count stays a count (`dvc exp run -S h3=2` means two models), and a larger ensemble keeps its formula
    assert dataclasses.replace(p, h3=2).resolved_thresholds("val")["h3"] == 2.0
    assert p.resolved_thresholds("val", n_models=20)["h1"] == 10.0


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"splits": {"imagenet_r": {"root": "r", "h3": 2}}}, "splits.imagenet_r.h3: no stage reads it"),
        ({"splits": {"extra": {"root": "r", "fn": 0.5}}}, "splits.extra.fn: no stage reads it"),
        ({"splits": {"train": {"root": None, "h1": 2}}}, "splits.train.h1: no stage reads it: splits.train.root is null"),
    ],
)
def test_threshold_keys_that_no_stage_reads_are_refused(data, needle):
    with pytest.raises(ConfigError) as e:
        parse_params(data)
    assert needle in str(e.value)


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"h3": 6}, "h3 = 6 resolves to 6 models, more than the 4 models"),
        ({"splits": {"val": {"root": "v", "h2": 5}}}, "splits.val.h2 = 5 resolves to 5 models"),
    ],
)
def test_thresholds_outside_one_to_m_models_are_refused_with_the_resolved_number(data, needle):
    models = {f"m{i}": {"arch": "resnet10t"} for i in range(4)}
    p = parse_params({"models": models, "splits": {"val": {"root": "v"}}, **data})
    with pytest.raises(ConfigError) as e:
        p.resolved_thresholds("val")
    assert needle in str(e.value)


def test_a_threshold_needing_fewer_than_one_model_is_refused():
    from imagenet_clean.cleanup.rules import check_resolved
    from imagenet_clean.config import Thresholds

    with pytest.raises(ConfigError, match="h1"):
        check_resolved(Thresholds(h1=0), 4)
    # a fraction needs ceil(h |M|) models: 0.5 of one model is that model, within range
    assert check_resolved(Thresholds(h1=0.5, h2=0.5, h3="all"), 1) == {"fn": 1.0, "h1": 0.5, "h2": 0.5, "h3": 1.0}


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"h9": 1}, "unknown key 'h9'"),
        ({"train": {"epochs": "ten"}}, "train.epochs"),
        ({"topk_merged": "maybe"}, "topk_merged: 'maybe' has the wrong type; expected bool"),
        ({"flags_merged": 1}, "flags_merged: 1 has the wrong type; expected bool"),
        ({"threshold_floor": "yes"}, "threshold_floor: 'yes' has the wrong type; expected bool"),
        ({"fn_scope": "total"}, "fn_scope: 'total' is out of range; allowed: 'cell' or 'split'"),
        ({"fn_scope": 0.9}, "fn_scope: 0.9 has the wrong type"),
        ({"train": {"rotate": -5}}, "train.rotate"),
        ({"train": {"rotate": 270}}, "train.rotate"),
        ({"train": {"smoothing": 1.0}}, "train.smoothing"),
        ({"topk": 6}, "topk"),
        ({"h1": 1.5}, "h1: 1.5 is out of range"),
        ({"h1": 0}, "h1: 0 is out of range"),
        ({"fn": 0}, "fn"),
        ({"splits": {"val": {"layout": "weird"}}}, "splits.val.layout"),
        ({"models": {"m": {"weights": "train"}}}, "models.m.arch"),
        ({"models": {"m": {"arch": "x", "colour": 1}}}, "unknown key models.m.'colour'"),
        ({"generate": {"noise": {"flip": 2.0}}}, "generate.noise.flip"),
    ],
)
def test_bad_values_name_the_key(data, needle):
    with pytest.raises(ConfigError) as e:
        parse_params(data)
    assert needle in str(e.value)


def test_threshold_resolution():
    assert resolve_threshold(3, 10) == 3.0
    assert resolve_threshold(0.5, 5) == 2.5
    assert resolve_threshold("all", 7) == 7.0
    # floored at the paper's ensemble size, capped at |M|: max(2.5, min(5, 0.5 * 8)) = 4
    assert resolve_threshold(0.5, 5, floor_size=8) == 4.0
    assert resolve_threshold(0.6666, 5, floor_size=10) == 5.0
    assert resolve_threshold(0.5, 20, floor_size=10) == 10.0  # more models than the paper: the formula
    assert resolve_threshold(3, 5, floor_size=10) == 3.0 and resolve_threshold("all", 5, floor_size=10) == 5.0
    with pytest.raises(ConfigError):
        resolve_threshold(True, 3)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="no such params file"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("h1: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_shipped_embedded_preset_equals_params_yaml():
    from imagenet_clean.presets import embedded_params_text

    assert yaml.safe_load(embedded_params_text()) == yaml.safe_load(open("params.yaml"))
