"""Predicted probabilities for the rows of a manifest: fast, resumable, shardable.

:func:`predict_samples` runs a model over the manifest's usable rows and returns
the prediction contract table (:mod:`imagenet_clean.predictions`). The work is
cut into fixed shards of ``shard_size`` manifest rows; batches never cross a
shard, so a shard's numbers do not depend on which process computed it or when.
With ``shard_dir`` each finished shard is written atomically and a rerun (after
a crash, a kill, or on another rank) skips it; a shard is reused only when its
fingerprint (model weights, data config, fold and the shard's samples) matches.

Speed: JPEGs are draft-decoded near the size the transform resizes to, decoding
runs in DataLoader worker processes alongside compute, the model and inputs are
channels-last, inference runs under ``torch.inference_mode`` and optionally bf16
autocast on CPU; on GPU it runs under float16 autocast (bf16 if asked) and an
out-of-memory error halves the batch and continues.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..constants import MAX_IMAGE_PIXELS, SKIPPED_WHY
from ..diskspace import check_free_space, prediction_file_bytes
from ..io import read_metadata, write_table
from ..leftovers import sweep_outputs, sweep_temporaries
from ..predictions import predictions_table
from ..progress import progress
from .distributed import barrier, deterministic_cuda

if TYPE_CHECKING:
    import torch

_log = logging.getLogger(__name__)

SHARD_PATTERN = "shard-{:06d}.parquet"


# ---------------------------------------------------------------- decoding


def _load_rgb(path, *, max_pixels: int, draft_size=None, within=None):
    from ..data.images import load_rgb

    return load_rgb(path, max_pixels=max_pixels, draft_size=draft_size, within=within)


class ManifestImages:
    """Map-style dataset: item ``i`` is ``(i, CHW float tensor, reason)``; reason is empty when decoded.

    An image that cannot be read now gives a zero tensor and its reason instead of raising.
    """

    def __init__(self, root: str | Path, paths: list[str], data_cfg: dict, *, max_pixels: int = MAX_IMAGE_PIXELS, draft: bool = True):
        from .transforms import decode_size, eval_transform

        self.root = Path(root)
        self.paths = list(paths)
        self.transform = eval_transform(data_cfg)
        self.shape = tuple(int(v) for v in data_cfg["input_size"])
        self.max_pixels = max_pixels
        self.draft_size = decode_size(data_cfg) if draft else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch

        try:
            img = _load_rgb(self.root / self.paths[i], max_pixels=self.max_pixels, draft_size=self.draft_size,
                           within=self.root)
            return i, self.transform(img), ""
        except Exception as e:  # an image broken since ingestion is a recorded reason, never a crash
            reason = str(e) or type(e).__name__
            if not reason.startswith("unreadable"):
                reason = f"unreadable now: {reason}"
            return i, torch.zeros(self.shape), reason


# ---------------------------------------------------------------- model running


def _device(device) -> "torch.device":
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _Runner:
    """Forward passes with the speed settings; halves the micro-batch on GPU out-of-memory.

    With ``compile``, the model runs through ``torch.compile`` (about 30 s of
    compiling per model and batch shape, then 1.4x faster end to end on CPU
    float32 for EfficientNet-Lite0: benchmarks/README.md); a short last batch
    is padded to the micro-batch so that it does not compile again. If
    compiling fails (no C++ compiler, an unsupported model), prediction
    continues eagerly with a warning.
    """

    def __init__(self, model, *, device, bf16: bool, channels_last: bool, batch_size: int, compile: bool = False):
        import torch

        if device.type == "cuda":
            deterministic_cuda()
        self.device = device
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device=device, memory_format=self.fmt).eval()
        self.forward = torch.compile(self.model, dynamic=False) if compile else self.model
        self.micro = batch_size
        if device.type == "cuda":
            self.autocast = dict(device_type="cuda", dtype=torch.bfloat16 if bf16 else torch.float16)
        elif bf16:
            self.autocast = dict(device_type="cpu", dtype=torch.bfloat16)
        else:
            self.autocast = None

    def _logits(self, x):
        import torch

        n = len(x)
        if self.forward is not self.model and n < self.micro:  # pad: one compiled shape for every batch
            x = torch.cat([x, x.new_zeros((self.micro - n, *x.shape[1:]))]).contiguous(memory_format=self.fmt)
        try:
            return self.forward(x)[:n]
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - any compiler failure: predict eagerly instead
            if self.forward is self.model:
                raise
            _log.warning("torch.compile failed (%s: %s); predicting without it", type(e).__name__, str(e).splitlines()[0][:200])
            self.forward = self.model
            return self.model(x)[:n]

    def __call__(self, x) -> np.ndarray:
        import contextlib

        import torch

        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.fmt)
        outs, i = [], 0
        while i < len(x):
            try:
                ctx = torch.autocast(**self.autocast) if self.autocast else contextlib.nullcontext()
                with torch.inference_mode(), ctx:
                    logits = self._logits(x[i : i + self.micro])
                outs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
                i += self.micro
            except torch.cuda.OutOfMemoryError:
                if self.micro == 1:
                    raise
                self.micro = max(1, self.micro // 2)
                torch.cuda.empty_cache()
                _log.warning("out of memory on %s: batch halved to %d", self.device, self.micro)
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


# ---------------------------------------------------------------- shards


def model_fingerprint(model, data_cfg: dict) -> str:
    """BLAKE2b-128 of the model's tensors (names, dtypes, bytes) and its data config."""
    h = hashlib.blake2b(digest_size=16)
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu").contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch_uint8()).numpy().tobytes() if t.numel() else b"")
    h.update(json.dumps(data_cfg, sort_keys=True, default=list).encode())
    return h.hexdigest()


def torch_uint8():
    import torch

    return torch.uint8


def _shard_fingerprint(model_fp: str, fold: int, ids: list[str], paths: list[str], status: list[str], numerics: str) -> str:
    """What a shard's numbers depend on: the model, the fold, its samples, and how they were computed
    (``numerics``: autocast, memory format, compile, batch size and device type each change the bits)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{model_fp}|{fold}|{numerics}".encode())
    for s, p, st in zip(ids, paths, status):
        h.update(f"\n{s}\t{p}\t{st}".encode())
    return h.hexdigest()


def shard_paths(shard_dir: str | Path, n_rows: int, shard_size: int) -> list[Path]:
    """Files of the ``ceil(n_rows / shard_size)`` shards under ``shard_dir``."""
    return [Path(shard_dir) / SHARD_PATTERN.format(i) for i in range(math.ceil(n_rows / shard_size))]


def _shard_done(path: Path, fingerprint: str) -> bool:
    if not path.is_file():
        return False
    try:
        return read_metadata(path).get("fingerprint") == fingerprint
    except Exception:  # a damaged file is recomputed
        return False


def rank_shards(n_shards: int, rank: int, world_size: int) -> list[int]:
    """The shards rank ``rank`` of ``world_size`` computes (strided: shard i goes to rank i % world_size)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    return list(range(rank, n_shards, world_size))


# ---------------------------------------------------------------- main entry


def predict_samples(
    model,
    data_cfg: dict,
    root: str | Path,
    manifest: pd.DataFrame,
    *,
    batch_size: int,
    bf16: bool = False,
    channels_last: bool = True,
    compile: bool = False,
    workers: int = 1,
    shard_dir: str | Path | None = None,
    shard_size: int = 4096,
    rank: int = 0,
    world_size: int = 1,
    fold: int = -1,
    device=None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    desc: str = "predict",
) -> pa.Table | None:
    """Predict every manifest row: full probability vector and top-5 per usable image.

    Rows whose manifest ``status`` is not ``ok`` keep their status and reason;
    images unreadable now get status ``error`` and an ``unreadable now: ...``
    reason. The output has one row per manifest row, in manifest order.

    Args:
        model: A classifier returning logits (N, K); it is moved to ``device``
            and channels-last in place.
        data_cfg: Its data config (:func:`~imagenet_clean.models.factory.build_model`).
        root: Folder the manifest's ``path`` column is relative to.
        manifest: Rows with ``sample_id``, ``path`` and ``status`` (manifest contract).
        batch_size: Images per forward pass (the starting size on GPU).
        bf16: bfloat16 autocast (CPU) / bfloat16 instead of float16 autocast (GPU).
        channels_last: Run the model and inputs in channels-last memory format.
        compile: Run the model through ``torch.compile`` (pays off on long runs; see ``_Runner``).
        workers: DataLoader worker processes decoding images (0: in this process).
        shard_dir: Folder for finished shards (resumable); None keeps them in memory.
        shard_size: Manifest rows per shard.
        rank: This process's rank; it computes shards ``rank, rank + world_size, ...``.
        world_size: Number of processes sharing the work (needs ``shard_dir`` when > 1).
        fold: Value of the ``fold`` column (-1: model not trained by cross-validation).
        device: torch device; default CUDA when available, else CPU.
        max_pixels: Decompression-bomb guard passed to the decoder.
        desc: Progress bar label.

    Returns:
        The predictions table; with ``world_size > 1`` only rank 0 returns it
        (after a barrier when torch.distributed is initialised), others return None.

    Raises:
        ValueError: missing manifest columns, ``world_size > 1`` without ``shard_dir``,
            or a model whose output width is unknown.
    """
    if shard_dir is not None:
        sweep_temporaries(shard_dir)  # shards a killed run was writing (leftovers.py)
    missing = [c for c in ("sample_id", "path", "status") if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks column(s) {missing}; it has {list(manifest.columns)}")
    if world_size > 1 and shard_dir is None:
        raise ValueError(f"world_size {world_size} > 1 needs a shard_dir shared by all ranks")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size {batch_size} and shard_size {shard_size} must be >= 1")
    k = int(getattr(model, "num_classes", 0) or 0)
    if k < 1:
        raise ValueError("model has no num_classes attribute (use a timm model or set model.num_classes)")

    ids = manifest["sample_id"].astype(str).tolist()
    paths = manifest["path"].astype(str).tolist()
    status = manifest["status"].astype(str).tolist()
    reasons = manifest["reason"].fillna("").astype(str).tolist() if "reason" in manifest.columns else [""] * len(ids)
    n = len(ids)
    n_shards = math.ceil(n / shard_size)
    bounds = [(i * shard_size, min(n, (i + 1) * shard_size)) for i in range(n_shards)]

    device = _device(device)
    model_fp = model_fingerprint(model, data_cfg)
    numerics = json.dumps({"bf16": bf16, "channels_last": channels_last, "compile": compile, "batch_size": batch_size,
                           "device": device.type}, sort_keys=True)
    fps = [_shard_fingerprint(model_fp, fold, ids[a:b], paths[a:b], status[a:b], numerics) for a, b in bounds]
    files = shard_paths(shard_dir, n, shard_size) if shard_dir is not None else [None] * n_shards
    mine = rank_shards(n_shards, rank, world_size)
    todo = [s for s in mine if files[s] is None or not _shard_done(files[s], fps[s])]
    if shard_dir is not None and len(todo) < len(mine):
        _log.info("resuming: %d of %d shards already done in %s", len(mine) - len(todo), len(mine), shard_dir)

    tables: dict[int, pa.Table] = {}
    if todo:
        tables = _run_shards(
            model, data_cfg, root, todo, bounds, ids, paths, status, reasons, k,
            batch_size=batch_size, bf16=bf16, channels_last=channels_last, compile=compile, workers=workers,
            device=device, max_pixels=max_pixels, fold=fold, files=files, fps=fps, desc=desc,
        )

    if world_size > 1:
        barrier()
        if rank != 0:
            return None
    if n_shards == 0:
        return predictions_table([], np.zeros((0, k), np.float32), fold=np.zeros(0, np.int32))
    parts = []
    for s in range(n_shards):
        if s in tables:
            parts.append(tables[s])
        else:
            parts.append(_read_shard(files[s], fps[s]))
    return pa.concat_tables(parts).combine_chunks()


def _read_shard(path: Path | None, fingerprint: str) -> pa.Table:
    if path is None or not _shard_done(path, fingerprint):
        raise RuntimeError(f"shard {path} is missing or stale: did every rank finish?")
    return pq.read_table(path).replace_schema_metadata(None)


def _run_shards(model, data_cfg, root, todo, bounds, ids, paths, status, reasons, k, *, batch_size, bf16, channels_last,
                compile, workers, device, max_pixels, fold, files, fps, desc):
    """Compute the shards in ``todo``; write each one as soon as it is complete."""
    import torch

    # only usable rows are decoded; batches are formed inside each shard
    rows = [i for s in todo for i in range(*bounds[s]) if status[i] == "ok"]
    local = {i: j for j, i in enumerate(rows)}
    batches = []
    for s in todo:
        ok = [local[i] for i in range(*bounds[s]) if status[i] == "ok"]
        batches += [ok[j : j + batch_size] for j in range(0, len(ok), batch_size)]
    dataset = ManifestImages(root, [paths[i] for i in rows], data_cfg, max_pixels=max_pixels)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    runner = _Runner(model, device=device, bf16=bf16, channels_last=channels_last, batch_size=batch_size, compile=compile)

    probs = {}
    read_reason = {}
    pending = {s: sum(1 for i in range(*bounds[s]) if status[i] == "ok") for s in todo}
    shard_of = {i: s for s in todo for i in range(*bounds[s])}
    tables = {}
    # shards with no usable rows are complete at once
    for s in todo:
        if pending[s] == 0:
            tables[s] = _finish_shard(s, bounds, ids, status, reasons, probs, read_reason, k, fold, files, fps)
    bar = progress(desc=desc, total=len(rows), unit="img")
    for idx, x, why in loader:
        idx = [rows[int(j)] for j in idx]
        good = [j for j, r in enumerate(why) if not r]
        for j, r in enumerate(why):
            if r:
                read_reason[idx[j]] = r
        if good:
            p = runner(x[good] if len(good) < len(idx) else x)
            for j, row in zip(good, p):
                probs[idx[j]] = row
        for i in idx:
            s = shard_of[i]
            pending[s] -= 1
            if pending[s] == 0:
                tables[s] = _finish_shard(s, bounds, ids, status, reasons, probs, read_reason, k, fold, files, fps)
        bar.update(len(idx))
    bar.close()
    return tables


def _finish_shard(s, bounds, ids, status, reasons, probs, read_reason, k, fold, files, fps) -> pa.Table:
    a, b = bounds[s]
    p = np.zeros((b - a, k), np.float32)
    st, rs = [], []
    for j, i in enumerate(range(a, b)):
        if status[i] != "ok":
            st.append("error")
            rs.append(reasons[i] or status[i])
        elif i in read_reason:
            st.append("error")
            rs.append(read_reason.pop(i))
        else:
            p[j] = probs.pop(i)
            st.append("ok")
            rs.append("")
    table = predictions_table(ids[a:b], p, status=st, reason=rs, fold=np.full(b - a, fold, np.int32))
    if files[s] is not None:
        _write_shard(files[s], table, fps[s])
    return table


def _write_shard(path: Path, table: pa.Table, fingerprint: str) -> None:
    """Write one finished shard atomically (a kill leaves either no shard or a whole one)."""
    write_table(path, table, metadata={"fingerprint": fingerprint})


# ---------------------------------------------------------------- stage and command entry points


def accuracy_summary(table: pa.Table, labels) -> dict:
    """``n`` (predicted rows), ``n_error``, and ``top1``/``top5`` fractions over rows with a known label (>= 0)."""
    status = np.asarray(table["status"].to_pylist(), dtype=object)
    ok = status == "ok"
    out = {"n": int(ok.sum()), "n_error": int((~ok).sum())}
    labels = np.asarray(labels, np.int64)
    known = ok & (labels >= 0)
    if known.any():
        top5 = np.asarray([t for t, k in zip(table["top5"].to_pylist(), known) if k], np.int64)
        y = labels[known]
        out["n_labelled"] = int(known.sum())
        out["top1"] = round(float((top5[:, 0] == y).mean()), 6)
        out["top5"] = round(float((top5 == y[:, None]).any(axis=1).mean()), 6)
    return out


def folder_manifest(images: str | Path, *, classes, max_pixels: int = MAX_IMAGE_PIXELS) -> pd.DataFrame:
    """A manifest for any image folder: ``<wnid>/`` class folders (labelled) and/or flat files (label -1).

    Raises:
        FileNotFoundError: ``images`` does not exist.
        ValueError: the folder holds no files.
    """
    from ..data.ingest import ingest_split

    df, _ = ingest_split(images, layout="val", classes=classes, hash=False, max_pixels=max_pixels)
    if df.empty:
        raise ValueError(f"{images}: no files found")
    # label problems are not read problems here: predict unlabelled images too
    label_issue = df["reason"].str.startswith(("no label", "not in a class folder", "unknown class")) & (df["width"] > 0)
    df.loc[label_issue, ["status", "reason"]] = ["ok", ""]
    df.loc[label_issue, "label"] = -1
    return df


def predict_to_file(
    cfg,
    *,
    out: str | Path,
    manifest: str | Path | None = None,
    images: str | Path | None = None,
    classes: str = "imagenet-1k",
    root: str | Path | None = None,
    batch_size: int = 64,
    bf16: bool = False,
    compile: bool = False,
    workers: int = 1,
    shard_dir: str | Path | None = None,
) -> dict:
    """Predict a manifest or an image folder with one model and write the prediction file.

    Args:
        cfg: The :class:`~imagenet_clean.config.ModelConfig` (arch + weights).
        out: Destination ``.parquet`` (written atomically, by rank 0 under torchrun).
        manifest: A manifest parquet; its images lie under ``root`` (default: its ``root`` metadata).
        images: An image folder instead (``<wnid>/`` class folders or flat files).
        classes: ``imagenet-1k`` or a class TSV (labels of ``images`` and the model's class count).
        batch_size: Images per forward pass.
        bf16: bfloat16 autocast.
        compile: ``torch.compile`` the model (worth its ~30 s on thousands of images).
        workers: Decoding worker processes.
        shard_dir: Keep finished shards here so an interrupted run resumes.

    Returns:
        A JSON-able summary: ``n``, ``n_error``, ``top1``/``top5`` (when labels are known), ``seconds``, ``images_per_s``.
    """
    import time

    from ..classes import load_classes
    from ..io import read_table
    from ..predictions import write_predictions
    from .distributed import process_group
    from .factory import build_model, check_model

    sweep_outputs([out])
    if (manifest is None) == (images is None):
        raise ValueError("give exactly one of a manifest file or an image folder")
    class_list = load_classes(classes)
    k = len(class_list)
    check_model(cfg, num_classes=k)
    if manifest is not None:
        df = read_table(manifest)
        meta = read_metadata(manifest)
        if meta.get("num_classes") and int(meta["num_classes"]) != k:
            raise ValueError(f"{manifest} has {meta['num_classes']} classes but --classes {classes} has {k}")
        root = root or meta.get("root")
        if not root:
            raise ValueError(f"{manifest}: no root in its metadata; pass the image root")
    else:
        df = folder_manifest(images, classes=class_list)
        root = images
    check_free_space({Path(out).parent: prediction_file_bytes(len(df), k) * (2 if shard_dir else 1)}, what=f"predict {out}")
    with process_group() as info:
        model, data_cfg = build_model(cfg, num_classes=k)
        t0 = time.perf_counter()
        table = predict_samples(
            model, data_cfg, root, df, batch_size=batch_size, bf16=bf16, compile=compile, workers=workers,
            shard_dir=shard_dir, rank=info.rank, world_size=info.world_size, device=info.device,
        )
        seconds = time.perf_counter() - t0
        if table is None:
            return {}
        write_predictions(out, table, model=cfg.arch, arch=cfg.arch, split=Path(str(manifest or images)).stem, num_classes=k,
                          weights=cfg.weights)
    summary = accuracy_summary(table, df["label"] if "label" in df.columns else np.full(len(df), -1))
    summary.update(seconds=round(seconds, 3), images_per_s=round(summary["n"] / seconds, 2) if seconds > 0 else None)
    return summary


SPLIT_SUBSETS: dict[str, str] = {"imagenet_r": "imagenet_r"}
"""Splits whose images cover a class subset (:mod:`imagenet_clean.data.imagenet_r`): their
predictions are restricted to it (zeros elsewhere, renormalised, top-5 among the subset)."""


def restrict_table(table: pa.Table, *, subset: str) -> pa.Table:
    """A predictions table with its probabilities and top-5 restricted to a class subset of ImageNet-1k.

    Error rows keep their status and reason (and null probabilities).

    Raises:
        ValueError: the table's probabilities are not 1000-wide, or ``subset`` is unknown.
    """
    from ..data.imagenet_r import restrict_probs

    n, k = table.num_rows, table.schema.field("probs").type.list_size
    status = np.asarray(table["status"].to_pylist(), dtype=object)
    probs = np.zeros((n, k), np.float32)
    ok = status == "ok"
    if ok.any():
        col = table["probs"].combine_chunks()
        flat = col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, k)
        probs[ok] = flat[ok] if len(flat) == n else flat
    probs = restrict_probs(probs, subset=subset, keep_shape=True, renormalize=True)
    return predictions_table(table["sample_id"].to_pylist(), probs, status=status, reason=table["reason"].to_pylist(),
                             fold=table["fold"].to_numpy())


def _skip_reason(split: str, params, manifest_path: Path) -> str | None:
    """Why ``split`` is skipped (null root in params.yaml, or no manifest rows, as ``ingest`` writes then); None when it is not."""
    sc = params.splits.get(split)
    if sc is not None and not sc.root:
        return f"splits.{split}.root is null"
    if not manifest_path.is_file():
        return "not configured in params.yaml splits and no manifest" if sc is None else None
    if pq.ParquetFile(manifest_path).metadata.num_rows == 0:
        return f"{manifest_path} has no rows"
    return None


def _write_skipped(split: str, params, names: list[str], *, why: str, manifest_path: Path, out_dir: Path) -> dict:
    """One empty prediction file per model (the contract schema, ``skipped`` metadata) for a skipped split."""
    from ..classes import load_classes
    from ..predictions import write_predictions
    from .distributed import env_info

    meta = read_metadata(manifest_path) if manifest_path.is_file() else {}
    k = int(meta.get("num_classes") or 0) or len(load_classes(params.dataset.classes))
    summaries = {}
    if env_info().rank != 0:
        return summaries
    empty = predictions_table([], np.zeros((0, k), np.float32))
    for name in names:
        write_predictions(out_dir / split / f"{name}.parquet", empty, model=name, arch=params.models[name].arch, split=split,
                          num_classes=k, skipped="true", **{SKIPPED_WHY: why})
        summaries[name] = {"n": 0, "n_error": 0, "skipped": why}
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    _log.info("split %s skipped (%s): wrote %d empty prediction files", split, why, len(names))
    return summaries


def run_predict_split(
    split: str,
    params,
    *,
    manifests_dir: str | Path,
    models_dir: str | Path,
    out_dir: str | Path,
    cache_dir: str | Path,
    models: list[str] | None = None,
) -> dict:
    """The ``predict@split`` stage: every configured model predicts one split, one model at a time.

    Which weights predict (:func:`~imagenet_clean.models.factory.resolve_checkpoint`):
    a ``weights: train`` model loads ``<models_dir>/<model>/full.safetensors``; other
    sources predict with their pretrained weights, as in the paper. Every model is
    checked before the first prediction starts. Shards go to
    ``<cache_dir>/<split>/<model>/`` (resumable) and are removed once the model's
    file ``<out_dir>/<split>/<model>.parquet`` is written. Works under torchrun.

    A split whose root is null in params.yaml, or whose manifest has no rows (what
    ``ingest`` writes for a skipped split), is skipped: one empty prediction file
    per model (metadata ``skipped``: ``true``, ``why``), so that DVC finds the
    stage's output; ``clean`` and ``tables`` skip such splits by params.yaml. A split in :data:`SPLIT_SUBSETS`
    (``imagenet_r``) has its probabilities restricted to its classes.

    Returns:
        ``{model: summary}`` (see :func:`accuracy_summary`; a skipped split's
        summaries hold ``skipped``: why), on rank 0; ``{}`` on other ranks.

    Raises:
        ModelError: a model is misconfigured or its checkpoint is missing or does not fit.
        FileNotFoundError: the split's manifest is missing.
        ValueError: unknown model names, no image root, or a subset split whose
            class list is not ImageNet-1k.
    """
    import shutil
    import time

    from ..io import read_table
    from ..predictions import write_predictions
    from .distributed import process_group
    from .factory import build_model, check_model, resolve_checkpoint
    from .weights import ModelError

    sweep_temporaries(Path(out_dir) / split, Path(cache_dir) / split)  # what killed runs' atomic writes left
    names = list(params.models) if models is None else list(models)
    unknown = [n for n in names if n not in params.models]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; params.yaml models: {', '.join(params.models)}")
    manifest_path = Path(manifests_dir) / f"{split}.parquet"
    why = _skip_reason(split, params, manifest_path)
    if why is not None:
        return _write_skipped(split, params, names, why=why, manifest_path=manifest_path, out_dir=Path(out_dir))
    df = read_table(manifest_path)
    meta = read_metadata(manifest_path)
    root = meta.get("root") or (params.splits[split].root if split in params.splits else None)
    if not root:
        raise ValueError(f"{manifest_path}: no root in its metadata and no splits.{split}.root in params.yaml")
    if meta.get("num_classes"):
        k = int(meta["num_classes"])
    else:
        from ..classes import load_classes

        k = len(load_classes(params.dataset.classes))
    subset = SPLIT_SUBSETS.get(split)
    if subset is not None:
        from ..data.imagenet_r import NUM_IMAGENET_CLASSES

        if k != NUM_IMAGENET_CLASSES:
            raise ValueError(f"split {split!r} is evaluated on the {subset} subset of the {NUM_IMAGENET_CLASSES} ImageNet-1k classes, "
                             f"but {manifest_path} has {k} classes (dataset.classes {params.dataset.classes!r})")
    checkpoints = {}
    for name in names:  # fail before any long work
        cfg = params.models[name]
        try:
            checkpoints[name] = resolve_checkpoint(name, cfg, models_dir=models_dir)
            check_model(cfg, num_classes=k, checkpoint=checkpoints[name])
        except ModelError as e:
            msg = str(e)
            raise ModelError(msg if msg.startswith(f"model {name!r}") else f"model {name!r}: {msg}") from None

    file_bytes = prediction_file_bytes(len(df), k)  # one model's shards and file exist at once; the files add up
    check_free_space({Path(out_dir) / split: len(names) * file_bytes, Path(cache_dir) / split: file_bytes},
                     what=f"predict@{split}")
    pc = params.predict
    summaries = {}
    with process_group() as info:
        for name in names:
            cfg = params.models[name]
            model, data_cfg = build_model(cfg, num_classes=k, checkpoint=checkpoints[name])
            shard_dir = Path(cache_dir) / split / name
            t0 = time.perf_counter()
            table = predict_samples(
                model, data_cfg, root, df, batch_size=pc.batch_size, bf16=pc.bf16, channels_last=pc.channels_last,
                compile=pc.compile, workers=pc.workers, shard_dir=shard_dir, shard_size=pc.shard_size, rank=info.rank,
                world_size=info.world_size, device=info.device, max_pixels=params.ingest.max_pixels, desc=f"{split}/{name}",
            )
            seconds = time.perf_counter() - t0
            if info.is_main:
                if subset is not None:
                    table = restrict_table(table, subset=subset)
                write_predictions(Path(out_dir) / split / f"{name}.parquet", table, model=name, arch=cfg.arch, split=split, num_classes=k,
                                  **({"subset": subset} if subset else {}))
                shutil.rmtree(shard_dir, ignore_errors=True)
                s = accuracy_summary(table, df["label"] if "label" in df.columns else np.full(len(df), -1))
                s.update(seconds=round(seconds, 3))
                summaries[name] = s
            del model, table
            barrier()
    return summaries
