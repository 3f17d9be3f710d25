import pytest
import yaml

from imagenet_clean.config import ConfigError, load_params, parse_params, resolve_threshold


def test_default_params_file_is_valid():
    p = load_params("params.yaml")
    assert p.thresholds("train").h1 == "all"
    assert p.thresholds("val").h3 == pytest.approx(0.6666)
    assert p.thresholds("v2").fn == 0.9


def test_split_override_beats_top_level_default():
    p = parse_params({"h3": 6, "splits": {"a": {"root": "x"}, "b": {"root": "y", "h3": 2}}})
    assert p.thresholds("a").h3 == 6
    assert p.thresholds("b").h3 == 2


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"h9": 1}, "unknown key 'h9'"),
        ({"train": {"epochs": "ten"}}, "train.epochs"),
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
