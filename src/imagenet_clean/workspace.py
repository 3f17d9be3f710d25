"""Every path of a project on disk, in one place.

A :class:`Workspace` is a project folder and a cleaning round. Round 1 is the
pipeline's own stages (``data/``, ``metrics/``); round ``r >= 2`` of
``imagenet-clean rounds`` writes its own models, predictions and cleanup under
``data/rounds/<r>/`` and ``metrics/rounds/<r>/`` and reads the original
manifests. Rounds are numbered as ``params.yaml``'s ``rounds`` counts them, so
round 1 is the default.

Layout (``<d>`` is ``data/`` in round 1 and ``data/rounds/<r>/`` after, ``<m>``
likewise for ``metrics/``)::

    data/raw/                          generate (params generate.out)
    data/manifests/<split>.parquet     ingest           metrics/ingest/<split>.json
    <d>manifests/train.parquet         rounds >= 2: the round's training manifest
    <d>models/<model>/                 fit              metrics/train/<model>/ (round 1)
    <d>predictions/<split>/<model>.parquet   fit (train), predict (other splits)
    <d>decisions/<split>.parquet       clean            <m>cleanup/<split>.json
    <d>clean/<split>.parquet           clean
    <d>changes/<split>.csv             clean
    <d>extra/predictions/              tables (tables.extra_models)
    <m>table1.json, table2.json, ...   tables, retrain, table3, ablations
    <m>runs/<table>.json               per-seed runs of the retraining tables
    metrics/detection.json             score
    metrics/review.json                review-metrics   reviews/<split>.csv (round 1)
    metrics/report.md                  report           metrics/plots/
    metrics/headline.json              headline         metrics/plots/headline.csv
    data/cache/...                     caches (not DVC outputs): cams, predict, retrain, review

The content-keyed caches (CAM scores, retraining runs: :attr:`Workspace.shared_cache`)
live under :func:`shared_cache_root`: ``data/cache/`` of the project, except inside
a copy DVC made to run a queued or ``--temp`` experiment
(``<repo>/.dvc/tmp/exps/<tmp>/``), where they are the parent project's, so that a
queued threshold variant reuses what the workspace computed; ``IMAGENET_CLEAN_CACHE``
names another folder. The path-keyed caches (prediction shards, the review app's
pages) stay in the project's own ``data/cache/``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "IMAGENET_CLEAN_CACHE"
"""Environment variable naming the folder of the shared (content-keyed) caches; relative to the project folder."""
EXP_TMP_PARTS = (".dvc", "tmp", "exps")
"""Where DVC puts the copies it runs queued and ``--temp`` experiments in: ``<repo>/.dvc/tmp/exps/<tmp>/``."""


def dvc_experiment_parent(root: str | Path) -> Path | None:
    """The project a DVC temporary experiment copy was made from, or None when ``root`` is not inside one.

    ``root`` (made absolute) is ``<repo>/.dvc/tmp/exps/<tmp>/<rel>``; the parent is
    ``<repo>/<rel>`` when that folder exists (the same project in the user's
    workspace). A project in a subfolder of a DVC repository that is itself in a
    subfolder of its git repository is matched by dropping leading parts of ``<rel>``.
    """
    parts = Path(os.path.abspath(root)).parts
    n = len(EXP_TMP_PARTS)
    for i in range(len(parts) - n - 1, 0, -1):
        if parts[i:i + n] == EXP_TMP_PARTS:
            repo, rel = Path(*parts[:i]), parts[i + n + 1:]
            for k in range(len(rel) + 1):
                cand = repo.joinpath(*rel[k:])
                if (cand / "dvc.yaml").is_file() or (cand / "params.yaml").is_file():
                    return cand
            return None
    return None


def shared_cache_root(root: str | Path) -> Path:
    """Folder of the content-keyed caches of the project at ``root`` (see the module docstring).

    ``IMAGENET_CLEAN_CACHE``, when set, wins (relative to ``root``); else the parent
    project's ``data/cache`` inside a DVC experiment copy; else ``root/data/cache``.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        p = Path(env)
        return p if p.is_absolute() else Path(root) / p
    parent = dvc_experiment_parent(root)
    return (parent if parent is not None else Path(root)) / "data" / "cache"

ROUNDS_DIR = "rounds"
"""Folder of rounds >= 2 under the data and metrics folders."""


@dataclass(frozen=True)
class Workspace:
    """The files of one project folder in one cleaning round.

    Args:
        root: The project folder (where ``params.yaml`` and ``dvc.yaml`` are).
        round: The cleaning round, 1 for the pipeline's own outputs.
    """

    root: Path = Path(".")
    round: int = 1

    def __post_init__(self):
        if not isinstance(self.round, int) or isinstance(self.round, bool) or self.round < 1:
            raise ValueError(f"round must be an integer >= 1, got {self.round!r}")
        object.__setattr__(self, "root", Path(self.root))

    def at_round(self, r: int) -> "Workspace":
        """The same project in round ``r``."""
        return Workspace(self.root, r)

    # ------------------------------------------------------------ project-level folders
    @property
    def data(self) -> Path:
        """The project's data folder."""
        return self.root / "data"

    @property
    def metrics(self) -> Path:
        """The project's metrics folder."""
        return self.root / "metrics"

    @property
    def round_data(self) -> Path:
        """Folder of this round's cleanup outputs (models, predictions, decisions, clean, changes)."""
        return self.data if self.round == 1 else self.data / ROUNDS_DIR / str(self.round)

    @property
    def round_metrics(self) -> Path:
        """Folder of this round's metrics."""
        return self.metrics if self.round == 1 else self.metrics / ROUNDS_DIR / str(self.round)

    @property
    def rounds_data(self) -> Path:
        """Parent of the folders of rounds >= 2 (the ``rounds`` stage's data output)."""
        return self.data / ROUNDS_DIR

    @property
    def rounds_metrics(self) -> Path:
        """Parent of the metrics of rounds >= 2 (the ``rounds`` stage's metrics output)."""
        return self.metrics / ROUNDS_DIR

    def resolve(self, path: str | Path) -> Path:
        """A path from params.yaml: absolute as given, relative to the project folder otherwise."""
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    @property
    def raw(self) -> Path:
        """The embedded data set's folder (``generate.out``'s default): ``generate`` replaces it as a whole."""
        return self.data / "raw"

    # ------------------------------------------------------------ scans
    @property
    def scans(self) -> Path:
        """Folder of the split listings' fingerprints (``scan@<split>``; round-independent)."""
        return self.root / "data" / "scan"

    def scan(self, split: str) -> Path:
        """``scan@<split>``'s JSON: the listing fingerprint (and, for a folder dataset's train split, its classes)."""
        return self.scans / f"{split}.json"

    # ------------------------------------------------------------ manifests
    @property
    def manifests(self) -> Path:
        """Folder of the original (ingested) manifests."""
        return self.data / "manifests"

    def manifest(self, split: str) -> Path:
        """The original (round-independent) manifest of ``split``."""
        return self.manifests / f"{split}.parquet"

    def quality(self, split: str) -> Path:
        """The image-quality measures of ``split`` (stage ``quality``; round-independent, like the manifest)."""
        return self.data / "quality" / f"{split}.parquet"

    def windows(self, split: str) -> Path:
        """What each of this round's models reads in a grid of windows of ``split``'s images (stage ``windows``; label sets)."""
        return self.round_data / "windows" / f"{split}.parquet"
    @property
    def duplicate_removals(self) -> Path:
        """The duplicates stage's removal list (``data/duplicates/removals.parquet``; round-independent), read by clean."""
        return self.data / "duplicates" / "removals.parquet"

    def round_manifest(self, split: str) -> Path:
        """The manifest this round cleans: its own training manifest in rounds >= 2, the original one otherwise."""
        if self.round > 1 and split == "train":
            return self.round_data / "manifests" / f"{split}.parquet"
        return self.manifest(split)

    def input(self, split: str) -> Path:
        """What this round's T is: the original manifest in round 1, the previous round's clean manifest after."""
        return self.manifest(split) if self.round == 1 else self.at_round(self.round - 1).clean(split)

    def ingest_metrics(self, split: str) -> Path:
        """The ingest stage's statistics of ``split``."""
        return self.metrics / "ingest" / f"{split}.json"

    # ------------------------------------------------------------ models and predictions
    @property
    def models(self) -> Path:
        """Parent of this round's model folders."""
        return self.round_data / "models"

    def model_dir(self, model: str) -> Path:
        """Checkpoints of ``model`` in this round."""
        return self.models / model

    @property
    def live_root(self) -> Path | None:
        """Parent of the models' training curves, ``<live_root>/<model>/`` (round 1 only; None in later rounds)."""
        return self.metrics / "train" if self.round == 1 else None

    @property
    def features(self) -> Path:
        """Parent of the features stage's per-model folders (``data/features/<model>/<split>.parquet``; round-independent)."""
        return self.data / "features"

    @property
    def features_cache(self) -> Path:
        """Resumable feature shards (not a DVC output)."""
        return self.cache / "features"

    @property
    def all_predictions(self) -> Path:
        """Parent of this round's per-split prediction folders."""
        return self.round_data / "predictions"

    def predictions_dir(self, split: str) -> Path:
        """This round's prediction files of ``split``, one per model."""
        return self.all_predictions / split

    def predictions(self, split: str, model: str) -> Path:
        """This round's predictions of cleanup model ``model`` on ``split``."""
        return self.predictions_dir(split) / f"{model}.parquet"

    @property
    def extra_predictions(self) -> Path:
        """Predictions of ``tables.extra_models`` (table 1 only)."""
        return self.round_data / "extra" / "predictions"

    # ------------------------------------------------------------ cleanup outputs
    def decisions(self, split: str) -> Path:
        """This round's decisions of ``split``."""
        return self.round_data / "decisions" / f"{split}.parquet"

    def clean(self, split: str) -> Path:
        """This round's clean manifest of ``split``."""
        return self.round_data / "clean" / f"{split}.parquet"

    def changes(self, split: str) -> Path:
        """This round's change list of ``split``."""
        return self.round_data / "changes" / f"{split}.csv"

    def cleanup_metrics(self, split: str) -> Path:
        """This round's cleanup metrics of ``split``."""
        return self.round_metrics / "cleanup" / f"{split}.json"

    def reviews(self, split: str) -> Path | None:
        """Human verdicts on ``split``'s changes (round 1 only; None in later rounds)."""
        return self.root / "reviews" / f"{split}.csv" if self.round == 1 else None

    @property
    def reviews_dir(self) -> Path:
        """Folder of the human verdicts."""
        return self.root / "reviews"

    # ------------------------------------------------------------ metrics
    def metric(self, name: str) -> Path:
        """A metrics file of this round, e.g. ``table1.json`` or ``runs/table2.json``."""
        return self.round_metrics / name

    @property
    def detection(self) -> Path:
        """Decisions scored against the truth (``score``)."""
        return self.metrics / "detection.json"

    @property
    def review_metrics(self) -> Path:
        """What reviewers found (``review-metrics``)."""
        return self.metrics / "review.json"

    @property
    def report(self) -> Path:
        """The rendered tables (``report``)."""
        return self.metrics / "report.md"

    @property
    def plots(self) -> Path:
        """Plot data (``report``, ``headline``)."""
        return self.metrics / "plots"

    @property
    def headline(self) -> Path:
        """The few figures ``dvc exp show`` compares between variants (``headline``)."""
        return self.metrics / "headline.json"

    @property
    def headline_plot(self) -> Path:
        """The headline figures per cleaned split, the sweep plot's data (``headline``)."""
        return self.plots / "headline.csv"

    # ------------------------------------------------------------ caches (not DVC outputs)
    @property
    def cache(self) -> Path:
        """Parent of the caches of this project folder (prediction shards, review pages)."""
        return self.data / "cache"

    @property
    def shared_cache(self) -> Path:
        """Parent of the content-keyed caches (CAM scores, retraining runs): :func:`shared_cache_root`.

        Safe to share between projects and concurrent runs: every entry is keyed by
        what it was computed from, CAM scores are SQLite rows (writers serialised by
        its lock) and a retraining run's files are written atomically, ``done.json`` last.
        """
        return shared_cache_root(self.root)

    def cam_cache(self, split: str) -> Path:
        """CAM scores of ``split``, keyed by model fingerprint: shared by all rounds (and by DVC's experiment copies)."""
        return self.shared_cache / "cams" / split

    @property
    def predict_cache(self) -> Path:
        """Resumable prediction shards of this round."""
        base = self.cache / "predict"
        return base if self.round == 1 else base / ROUNDS_DIR / str(self.round)

    @property
    def extra_predict_cache(self) -> Path:
        """Resumable prediction shards of ``tables.extra_models``."""
        return self.cache / "predict-extra"

    @property
    def retrain_cache(self) -> Path:
        """Finished retraining runs, shared by all rounds and DVC's experiment copies (keys are content hashes)."""
        return self.shared_cache / "retrain"

    def review_cache(self, split: str) -> Path:
        """The review app's page and CAM caches of ``split``."""
        return self.cache / "review" / split
