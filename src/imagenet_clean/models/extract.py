"""Pooled (penultimate) features of a pretrained backbone for the rows of a manifest: streaming, resumable.

:func:`extract_features` decodes the manifest's usable images (draft-decoded
JPEGs, overlapped decoding in DataLoader workers, as :mod:`.predict`), runs the
backbone without its classifier and returns the features contract table
(:mod:`imagenet_clean.features`). Views: ``center`` is the evaluation transform;
``flip`` the same image mirrored left-right (the two run as one batch). The
work is cut into shards of ``shard_size`` rows whose batches never cross a
shard; with ``shard_dir`` each finished shard is written atomically and a
rerun skips those whose fingerprint (weights, data config, views, numerics and
the shard's rows) still matches.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..constants import MAX_IMAGE_PIXELS
from ..features import features_table
from ..io import read_metadata, write_table
from ..leftovers import sweep_temporaries
from ..progress import progress
from .predict import ManifestImages, model_fingerprint, shard_paths, shard_rows
from .speed import Numerics, maybe_compile

_log = logging.getLogger(__name__)

VIEWS = {
    "center": lambda x: x,
    "flip": lambda x: x.flip(3),
}
"""Test-time views: a function of the normalised NCHW batch."""


def backbone(model):
    """The model without its classifier: ``backbone(x)`` gives the pooled penultimate features (timm's ``reset_classifier(0)``)."""
    model.reset_classifier(0)
    return model.eval()


def _fingerprint(model_fp: str, views, numerics: str, ids, paths, status) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{model_fp}|{','.join(views)}|{numerics}".encode())
    for s, p, st in zip(ids, paths, status):
        h.update(f"\n{s}\t{p}\t{st}".encode())
    return h.hexdigest()


def _done(path: Path, fp: str) -> bool:
    try:
        return path.is_file() and read_metadata(path).get("fingerprint") == fp
    except Exception:  # a damaged shard is recomputed
        return False


class _Forward:
    """Forward passes of all views at once with the chosen numerics (compile falls back to eager on failure)."""

    def __init__(self, model, views, numerics: Numerics, batch_size: int):
        import torch

        self.fmt = torch.channels_last
        self.model = model.to(memory_format=self.fmt).eval()
        self.run = maybe_compile(self.model, want=numerics.compile, device_type="cpu", what="extracting")
        self.views = [VIEWS[v] for v in views]
        self.bf16 = numerics.bf16
        self.micro = batch_size

    def __call__(self, x) -> np.ndarray:
        import torch

        n = len(x)
        xs = torch.cat([v(x) for v in self.views]).contiguous(memory_format=self.fmt)
        full = self.micro * len(self.views)
        if self.run is not self.model and len(xs) < full:  # one compiled shape for every batch
            xs = torch.cat([xs, xs.new_zeros((full - len(xs), *xs.shape[1:]))]).contiguous(memory_format=self.fmt)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            try:
                f = self.run(xs)
            except Exception as e:  # noqa: BLE001 - any compiler failure: run eagerly instead
                if self.run is self.model:
                    raise
                _log.warning("torch.compile failed (%s); extracting without it", str(e).splitlines()[0][:200])
                self.run = self.model
                f = self.model(xs)
        f = f.float()[: n * len(self.views)].cpu().numpy()
        return np.concatenate([f[i * n:(i + 1) * n] for i in range(len(self.views))], axis=1)


def extract_features(model, data_cfg: dict, root: str | Path, manifest: pd.DataFrame, *, views=("center",),
                     numerics: Numerics, batch_size: int = 50, workers: int = 1, shard_dir: str | Path | None = None,
                     shard_size: int = 4096, max_pixels: int = MAX_IMAGE_PIXELS, desc: str = "features") -> tuple[pa.Table, int]:
    """Pooled features of every manifest row, in manifest order.

    Rows whose manifest ``status`` is not ``ok`` keep it (and their reason); an
    image unreadable now gets status ``error`` and an ``unreadable now: ...`` reason.

    Args:
        model: A timm classifier; its classifier is removed in place (:func:`backbone`).
        data_cfg: Its data config (:func:`~imagenet_clean.models.factory.build_model`).
        root: Folder the manifest's ``path`` column is relative to.
        manifest: Rows with ``sample_id``, ``path`` and ``status``.
        views: Names from :data:`VIEWS`; the output holds one block of features per view.
        numerics: How to run the forward passes (:func:`~imagenet_clean.models.speed.choose_numerics`).
        batch_size: Images per forward pass (each view adds as many).
        workers: DataLoader worker processes decoding images (0: in this process).
        shard_dir: Folder for finished shards (resumable); None keeps them in memory.
        shard_size: Manifest rows per shard.
        max_pixels: Decompression-bomb guard.
        desc: Progress bar label.

    Returns:
        ``(table, dim)``: the features contract table and the width of one view's features.

    Raises:
        ValueError: an unknown view, missing manifest columns, or sizes < 1.
    """
    import torch

    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise ValueError(f"unknown feature view(s) {unknown or list(views)}; known: {', '.join(VIEWS)}")
    missing = [c for c in ("sample_id", "path", "status") if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks column(s) {missing}; it has {list(manifest.columns)}")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size {batch_size} and shard_size {shard_size} must be >= 1")
    if shard_dir is not None:
        sweep_temporaries(shard_dir)
    model = backbone(model)
    dim = int(model.num_features)
    ids = manifest["sample_id"].astype(str).tolist()
    paths = manifest["path"].astype(str).tolist()
    status = manifest["status"].astype(str).tolist()
    reasons = manifest["reason"].fillna("").astype(str).tolist() if "reason" in manifest.columns else [""] * len(ids)
    n = len(ids)
    bounds = [(i * shard_size, min(n, (i + 1) * shard_size)) for i in range(math.ceil(n / shard_size))]
    model_fp = model_fingerprint(model, data_cfg)
    num = json.dumps({"bf16": numerics.bf16, "compile": numerics.compile, "batch_size": batch_size}, sort_keys=True)
    fps = [_fingerprint(model_fp, views, num, ids[a:b], paths[a:b], status[a:b]) for a, b in bounds]
    files = shard_paths(shard_dir, n, shard_size) if shard_dir is not None else [None] * len(bounds)
    todo = [s for s in range(len(bounds)) if files[s] is None or not _done(files[s], fps[s])]
    if len(todo) < len(bounds):
        _log.info("resuming: %d of %d feature shards already done in %s", len(bounds) - len(todo), len(bounds), shard_dir)
    width = dim * len(views)
    tables = {s: pq.read_table(files[s]).replace_schema_metadata(None) for s in range(len(bounds)) if s not in todo}
    if todo:
        rows = [i for s in todo for i in range(*bounds[s]) if status[i] == "ok"]
        local = {i: j for j, i in enumerate(rows)}
        batches = []
        for s in todo:
            ok = [local[i] for i in range(*bounds[s]) if status[i] == "ok"]
            batches += [ok[j:j + batch_size] for j in range(0, len(ok), batch_size)]
        dataset = ManifestImages(root, [paths[i] for i in rows], data_cfg, max_pixels=max_pixels)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                                             prefetch_factor=4 if workers > 0 else None)
        forward = _Forward(model, views, numerics, batch_size)
        feats, why_now = {}, {}
        pending = {s: sum(1 for i in range(*bounds[s]) if status[i] == "ok") for s in todo}
        shard_of = {i: s for s in todo for i in range(*bounds[s])}

        def finish(s):
            a, b = bounds[s]
            v, st, rs = shard_rows(a, b, status=status, reasons=reasons, read_reason=why_now, values=feats, width=width)
            t = features_table(ids[a:b], v, status=st, reason=rs)
            if files[s] is not None:
                write_table(files[s], t, metadata={"fingerprint": fps[s]})
            tables[s] = t

        for s in todo:
            if pending[s] == 0:
                finish(s)
        bar = progress(desc=desc, total=len(rows), unit="img")
        for idx, x, why in loader:
            idx = [rows[int(j)] for j in idx]
            good = [j for j, r in enumerate(why) if not r]
            for j, r in enumerate(why):
                if r:
                    why_now[idx[j]] = r
            if good:
                f = forward(x[good] if len(good) < len(idx) else x)
                for j, row in zip(good, f):
                    feats[idx[j]] = row
            for i in idx:
                pending[shard_of[i]] -= 1
                if pending[shard_of[i]] == 0:
                    finish(shard_of[i])
            bar.update(len(idx))
        bar.close()
    if not bounds:
        return features_table([], np.zeros((0, width), np.float32)), dim
    return pa.concat_tables([tables[s] for s in range(len(bounds))]).combine_chunks(), dim
