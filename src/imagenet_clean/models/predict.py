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

from ..constants import MAX_IMAGE_PIXELS
from ..io import read_metadata, write_table
from ..leftovers import sweep_temporaries
from ..predictions import predictions_table
from ..progress import progress
from .distributed import barrier, deterministic_cuda
from .speed import maybe_compile

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
    continues eagerly with a warning. On CPU with ``ATEN_CPU_CAPABILITY`` set
    it runs eagerly too (:func:`~.speed.compile_blocked`).
    """

    def __init__(self, model, *, device, bf16: bool, channels_last: bool, batch_size: int, compile: bool = False):
        import torch

        if device.type == "cuda":
            deterministic_cuda()
        self.device = device
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device=device, memory_format=self.fmt).eval()
        self.forward = maybe_compile(self.model, want=compile, device_type=device.type, what="predicting")
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
    return _as_built(pq.read_table(path).replace_schema_metadata(None))


def _as_built(table: pa.Table) -> pa.Table:
    """A shard read back from parquet typed as :func:`predictions_table` built it.

    Parquet names a list's child ``element`` where Arrow builds ``item``; the
    prediction file records the name in its schema, so a run resumed from
    shards would write other bytes than an uninterrupted one (issue 28's kill
    loop found it).
    """
    fields = [pa.field(f.name, pa.list_(f.type.value_type, f.type.list_size), f.nullable)
              if pa.types.is_fixed_size_list(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


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


def shard_rows(a: int, b: int, *, status, reasons, read_reason: dict, values: dict, width: int):
    """Rows ``a..b`` of a shard: their vectors (float32 (b - a, width), zeros where not ok), status and reason.

    A row is an error when the manifest says so (its reason) or when it could not be read now
    (``read_reason``, popped); otherwise its vector is popped from ``values``.
    """
    v = np.zeros((b - a, width), np.float32)
    st, rs = [], []
    for j, i in enumerate(range(a, b)):
        if status[i] != "ok":
            st.append("error")
            rs.append(reasons[i] or status[i])
        elif i in read_reason:
            st.append("error")
            rs.append(read_reason.pop(i))
        else:
            v[j] = values.pop(i)
            st.append("ok")
            rs.append("")
    return v, st, rs


def _finish_shard(s, bounds, ids, status, reasons, probs, read_reason, k, fold, files, fps) -> pa.Table:
    a, b = bounds[s]
    p, st, rs = shard_rows(a, b, status=status, reasons=reasons, read_reason=read_reason, values=probs, width=k)
    table = predictions_table(ids[a:b], p, status=st, reason=rs, fold=np.full(b - a, fold, np.int32))
    if files[s] is not None:
        _write_shard(files[s], table, fps[s])
    return table


def _write_shard(path: Path, table: pa.Table, fingerprint: str) -> None:
    """Write one finished shard atomically (a kill leaves either no shard or a whole one)."""
    write_table(path, table, metadata={"fingerprint": fingerprint})
