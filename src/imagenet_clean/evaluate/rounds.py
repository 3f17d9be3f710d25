"""Iterated cleaning rounds (issue 6; the paper's first limitation).

Round 1 is the pipeline's own ``fit`` / ``predict`` / ``clean`` / tables stages.
Each further round ``r`` (2 .. params.yaml ``rounds``):

1. derives its training manifest from round ``r - 1``'s clean training manifest
   (:func:`round_training_manifest`: placeholders left out, cleaned labels,
   image paths still relative to the original training root);
2. cross-validates every cleanup model on it (``data/rounds/<r>/models/<m>/``,
   out-of-fold ``data/rounds/<r>/predictions/train/<m>.parquet``);
3. predicts every evaluated split's *original* manifest with the round's full
   models (``weights: train``) or the pretrained source
   (``data/rounds/<r>/predictions/<split>/``);
4. cleans its training manifest and the original val and V2 with the round's
   ensemble (``data/rounds/<r>/{decisions,clean,changes}/``,
   ``metrics/rounds/<r>/cleanup/``);
5. writes tables 1-3 and the ablations of the round into ``metrics/rounds/<r>/``
   (T stays the original training split, T_c is the round's clean one; the
   switches ``tables.*`` apply as in round 1, and retraining runs are shared
   with round 1 through ``data/cache/retrain``).

A round's clean manifest is relative to the manifest it cleaned: its
``orig_label``, ``action`` and change list say what *this* round changed.
Bounding boxes are carried over only where the round's label is the original
label (or its merge target): a box drawn for another class says nothing about
the new one, so a relabelled sample has no box and cannot be CAM-exempted.

``data/rounds`` is meant to be a persistent DVC output: fold checkpoints carry
fingerprints (:mod:`imagenet_clean.models.crossval`), so a rerun retrains only
what changed; everything else of a round is rewritten, and folders of rounds
beyond ``rounds`` are removed.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from ..io import read_metadata, read_table, write_table, write_text
from .accuracy import CLEANED_SPLITS, PLACEHOLDER, TRAIN_SPLIT, RoundPaths

log = logging.getLogger(__name__)

ROUNDS_DIR = "rounds"
"""Folder of rounds >= 2 under the data and metrics folders."""

MARKER = "README.md"
"""File written into ``data/rounds`` and ``metrics/rounds`` so that both exist as DVC outputs."""

MARKER_TEXT = (
    "# Cleaning rounds\n\n"
    "Written by `imagenet-clean rounds`. Round 1 is the pipeline's own outputs; round r >= 2 "
    "(params.yaml `rounds`) lives in the folder `<r>/` here: it retrains the cleanup models on round "
    "r-1's cleaned training set and cleans again.\n"
)


@dataclass(frozen=True)
class RoundLayout:
    """Every folder a round ``r >= 2`` reads and writes.

    Args:
        paths: The round's :class:`~imagenet_clean.evaluate.accuracy.RoundPaths` (round >= 2).
    """

    paths: RoundPaths

    def __post_init__(self):
        if self.paths.round < 2:
            raise ValueError(f"round 1 is the pipeline's own stages; a RoundLayout needs round >= 2, got {self.paths.round}")

    @property
    def round(self) -> int:
        """The round number."""
        return self.paths.round

    def manifest(self, split: str) -> Path:
        """The manifest this round cleans: its own training manifest, the original one for other splits."""
        if split == TRAIN_SPLIT:
            return self.paths.round_data / "manifests" / f"{split}.parquet"
        return self.paths.manifest(split)

    @property
    def previous_clean(self) -> Path:
        """Round ``r - 1``'s clean training manifest, from which this round's training manifest is derived."""
        return self.paths.input(TRAIN_SPLIT)

    @property
    def models(self) -> Path:
        """Parent of this round's model folders."""
        return self.paths.round_data / "models"

    @property
    def predictions(self) -> Path:
        """Parent of this round's per-split prediction folders."""
        return self.paths.round_data / "predictions"

    @property
    def predict_cache(self) -> Path:
        """Resumable prediction shards of this round (not a DVC output)."""
        return self.paths.data / "cache" / "predict" / ROUNDS_DIR / str(self.round)

    def split_paths(self, split: str):
        """The clean stage's :class:`~imagenet_clean.cleanup.stage.SplitPaths` of ``split`` in this round."""
        from ..cleanup.stage import SplitPaths

        d = self.paths.round_data
        return SplitPaths(
            manifest=self.manifest(split),
            predictions=self.predictions / split,
            decisions=self.paths.decisions(split),
            clean=self.paths.clean(split),
            changes=d / "changes" / f"{split}.csv",
            metrics=self.paths.metric(f"cleanup/{split}.json"),
            cam_cache=self.paths.data / "cache" / "cams" / split,  # keyed by model fingerprint: shared by all rounds
        )


def round_training_manifest(manifest: pd.DataFrame, clean: pd.DataFrame, *, merged_labels: Mapping[int, int] | None = None,
                            source: str = "clean manifest") -> pd.DataFrame:
    """The training manifest of the next round: a clean training manifest's images with their cleaned labels.

    Args:
        manifest: The original training manifest (the data contract's columns).
        clean: The previous round's clean training manifest (``sample_id``, ``label``,
            ``wnid``, ``action``).
        merged_labels: Category merges (source label -> target label); a merged sample
            keeps its bounding boxes, which show the same object.
        source: Name of ``clean`` for error messages.

    Returns:
        The original manifest's rows of the clean manifest's images (placeholders left
        out), in the original manifest's order (so folds stay stable), with ``label``
        and ``wnid`` replaced by the cleaned ones and ``boxes`` emptied where the label
        is neither the original one nor its merge target.

    Raises:
        ValueError: a column is missing, a sample id repeats, or a clean row has no
            original manifest row.
    """
    for df, cols, name in ((manifest, ("sample_id", "label", "wnid"), "training manifest"),
                           (clean, ("sample_id", "label", "wnid", "action"), source)):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{name}: missing column(s) {missing}; has {list(df.columns)}")
    rows = clean[clean["action"] != PLACEHOLDER]
    ids = pd.Index(rows["sample_id"])
    if ids.has_duplicates:
        raise ValueError(f"{source}: sample_id {ids[ids.duplicated()][0]!r} appears more than once")
    orig = pd.Index(manifest["sample_id"])
    if orig.has_duplicates:
        raise ValueError(f"training manifest: sample_id {orig[orig.duplicated()][0]!r} appears more than once")
    unknown = ids[~ids.isin(orig)]
    if len(unknown):
        raise ValueError(f"{source}: {len(unknown)} sample(s) are not in the original training manifest, e.g. {unknown[0]!r}")
    out = manifest[orig.isin(ids)].reset_index(drop=True).copy()
    new = rows.set_index("sample_id").loc[out["sample_id"]]
    old_label = out["label"].to_numpy(np.int64)
    out["label"] = new["label"].to_numpy(np.int64)
    out["wnid"] = new["wnid"].to_numpy(dtype=object)
    if "boxes" in out.columns:
        merged = merged_labels or {}
        target = np.array([merged.get(int(x), int(x)) for x in old_label], np.int64)
        same = (out["label"].to_numpy() == old_label) | (out["label"].to_numpy() == target)
        out["boxes"] = [b if s else [] for b, s in zip(out["boxes"].tolist(), same)]
    return out


def write_round_manifest(layout: RoundLayout, params) -> Path:
    """Derive and write this round's training manifest (:func:`round_training_manifest`); returns its path.

    Its metadata is the original manifest's (root, layout, classes) plus ``round`` and ``source``.

    Raises:
        FileNotFoundError: the original training manifest or the previous round's clean one is missing.
    """
    from ..cleanup.merges import apply_merges, load_merges
    from ..cleanup.stage import merge_spec, project_classes

    orig_path, prev = layout.paths.manifest(TRAIN_SPLIT), layout.previous_clean
    before = f"`imagenet-clean clean --split {TRAIN_SPLIT}`" if layout.round == 2 else f"round {layout.round - 1} (`imagenet-clean rounds`)"
    for path, how in ((orig_path, f"`imagenet-clean ingest --split {TRAIN_SPLIT}`"), (prev, before)):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (run {how} first)")
    if read_metadata(prev).get("skipped") == "true":
        raise ValueError(f"{prev} was written for a skipped training split: round {layout.round} has nothing to train on")
    meta = read_metadata(orig_path)
    classes = project_classes(meta, params, ".")
    merges = load_merges(merge_spec(params.dataset.merges, "."), classes)
    manifest = read_table(orig_path)
    labels = np.arange(len(classes), dtype=np.int64)
    final, _ = apply_merges(labels, merges, classes)
    merged = {int(a): int(b) for a, b in zip(labels, final) if a != b}
    out = round_training_manifest(manifest, read_table(prev), merged_labels=merged, source=str(prev))
    path = layout.manifest(TRAIN_SPLIT)
    schema = pa.Schema.from_pandas(manifest, preserve_index=False)
    write_table(path, pa.Table.from_pandas(out, schema=schema, preserve_index=False),
                metadata={**meta, "round": str(layout.round), "source": str(prev)})
    return path


def _reset_round(layout: RoundLayout, models: Sequence[str]) -> None:
    """Remove a round's earlier outputs except the checkpoints of configured models (they resume by fingerprint)."""
    d = layout.paths.round_data
    if d.is_dir():
        for child in d.iterdir():
            if child.name != "models":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    if layout.models.is_dir():
        for child in layout.models.iterdir():
            if child.name not in models:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    shutil.rmtree(layout.paths.round_metrics, ignore_errors=True)


def run_round(r: int, params, *, data: str | Path = "data", metrics: str | Path = "metrics", cam: bool | None = None,
              n_jobs: int | None = 1) -> dict:
    """Run cleaning round ``r >= 2``: retrain on round ``r - 1``'s clean training set, predict, clean, tables.

    Args:
        r: The round.
        params: Loaded params.
        data: Data folder.
        metrics: Metrics folder.
        cam: Run the CAM exemption (default: ``params.cam.enabled``).
        n_jobs: cleanlab's worker processes (None: all cores).

    Returns:
        ``{"round", "n_train", "fit": {model: top-1}, "clean": {split: counts}, "tables": [paths]}``.

    Raises:
        ValueError: ``r < 2``, no models, or see the stages' own errors.
        FileNotFoundError: round ``r - 1``'s clean training manifest is missing.
    """
    from ..cleanup.stage import clean_split
    from ..models.crossval import run_fit
    from ..models.predict import run_predict_split
    from .ablations import write_ablations
    from .splits import usable_splits
    from .table1 import write_table1
    from .table2 import write_table2
    from .table3 import write_table3

    if not params.models:
        raise ValueError("params.yaml lists no models; a cleaning round needs at least one")
    layout = RoundLayout(RoundPaths(r, Path(data), Path(metrics)))
    paths = layout.paths
    models = list(params.models)
    _reset_round(layout, models)
    manifest = write_round_manifest(layout, params)
    n_train = int(len(read_table(manifest, columns=["sample_id"])))
    log.info("round %d: %d training images from %s", r, n_train, layout.previous_clean)

    fit = {}
    for m in models:
        s = run_fit(m, params, manifest=manifest, models_dir=layout.models, predictions_dir=layout.predictions / TRAIN_SPLIT,
                    live_root=None)
        fit[m] = None if s is None else s.get("top1")
    for split in params.splits:
        if split != TRAIN_SPLIT:
            run_predict_split(split, params, manifests_dir=paths.data / "manifests", models_dir=layout.models,
                              out_dir=layout.predictions, cache_dir=layout.predict_cache)
    cleaned = {}
    for split in (TRAIN_SPLIT, *CLEANED_SPLITS):
        res = clean_split(split, params, paths=layout.split_paths(split), models_dir=layout.models, cam=cam, n_jobs=n_jobs)
        cleaned[split] = {k: res.get(k) for k in ("samples", "keep", "fix", "remove", "skipped") if k in res}

    splits, skipped = usable_splits(params, paths, predictions=True)
    tables = [write_table1(models, splits, paths=paths, skipped=skipped)]
    for write in (write_table2, write_table3, write_ablations):
        tables.append(write(params, paths=paths))
    return {"round": r, "n_train": n_train, "fit": fit, "clean": cleaned, "tables": [str(t) for t in tables]}


def remove_stale_rounds(rounds: int, *, data: str | Path = "data", metrics: str | Path = "metrics") -> list[Path]:
    """Delete the folders of rounds beyond ``rounds`` (from an earlier, larger setting); returns them."""
    gone = []
    for base in (Path(data) / ROUNDS_DIR, Path(metrics) / ROUNDS_DIR):
        if not base.is_dir():
            continue
        for child in sorted(base.iterdir()):
            if child.is_dir() and child.name.isdigit() and int(child.name) > rounds:
                shutil.rmtree(child)
                gone.append(child)
    return gone


def run_rounds(params, *, data: str | Path = "data", metrics: str | Path = "metrics", cam: bool | None = None,
               n_jobs: int | None = 1) -> list[dict]:
    """The ``rounds`` stage: rounds 2 .. ``params.rounds`` one after another (none when ``rounds`` is 1).

    Always writes ``<data>/rounds/README.md`` and ``<metrics>/rounds/README.md`` (so that
    both DVC outputs exist) and removes folders of rounds beyond ``rounds``.

    Returns:
        One :func:`run_round` summary per round (empty for ``rounds: 1``); also written
        to ``<metrics>/rounds/summary.json``.

    Raises:
        ValueError: ``params.rounds < 1``.
    """
    from ..io import write_json

    rounds = int(params.rounds)
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {params.rounds!r}")
    for base in (Path(data) / ROUNDS_DIR, Path(metrics) / ROUNDS_DIR):
        write_text(base / MARKER, MARKER_TEXT)
    for p in remove_stale_rounds(rounds, data=data, metrics=metrics):
        log.info("removed %s (rounds is %d)", p, rounds)
    out = [run_round(r, params, data=data, metrics=metrics, cam=cam, n_jobs=n_jobs) for r in range(2, rounds + 1)]
    write_json(Path(metrics) / ROUNDS_DIR / "summary.json", {"rounds": rounds, "per_round": out})
    return out


__all__ = ["RoundLayout", "round_training_manifest", "write_round_manifest", "run_round", "run_rounds", "remove_stale_rounds"]
