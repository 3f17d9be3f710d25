"""Training data: manifest rows as a torch dataset, and seeded, distributed-aware loaders.

A sample that cannot be decoded at training time (it became unreadable after
ingestion) is dropped from its batch by :func:`collate_skip_errors` and counted,
never a crash. Loaders are reproducible: the shuffling generator and every
worker's Python / NumPy / torch random state derive from the seed alone.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..constants import MAX_IMAGE_PIXELS


def _load_image(path: Path, draft_size: tuple[int, int] | None, root: Path):
    """Decode with the data package's safe decoder, refusing files that resolve outside ``root``."""
    from ..data.images import load_rgb

    # the decoding guard for training images; the manifest already rejected larger ones
    return load_rgb(path, max_pixels=MAX_IMAGE_PIXELS, draft_size=draft_size, within=root)


class ImageSamples:
    """Images of a manifest subset, transformed, as ``(image, label, row)`` triples.

    A torch map-style dataset (duck-typed, so this module imports without torch).

    Args:
        paths: Image paths relative to ``root``.
        labels: Integer labels aligned with ``paths``.
        root: The split's image root.
        transform: Callable turning a PIL RGB image into a tensor.
        draft_size: ``(width, height)`` for a cheaper reduced-size JPEG decode, or ``None``.
        cache: Keep each decoded image in memory after its first use, so later
            epochs skip decoding (small datasets only: about width x height x 3
            bytes per image; with loader workers each worker keeps its own copy).
    """

    def __init__(
        self,
        paths,
        labels,
        root: str | Path,
        *,
        transform: Callable,
        draft_size: tuple[int, int] | None = None,
        cache: bool = False,
    ):
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")
        self.root = Path(root)
        self.transform = transform
        self.draft_size = draft_size
        self._cache: dict[int, object] | None = {} if cache else None

    @classmethod
    def from_frame(cls, samples: pd.DataFrame, root: str | Path, **kwargs) -> "ImageSamples":
        """Build from a frame with ``path`` and ``label`` columns (e.g. manifest rows)."""
        missing = [c for c in ("path", "label") if c not in samples.columns]
        if missing:
            raise ValueError(f"samples frame lacks column(s) {missing}; has {list(samples.columns)}")
        return cls(samples["path"].tolist(), samples["label"].to_numpy(), root, **kwargs)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        """``(tensor, label, i)``, or ``(None, reason, i)`` when the image cannot be decoded."""
        img = self._cache.get(i) if self._cache is not None else None
        if img is None:
            try:
                img = _load_image(self.root / self.paths[i], self.draft_size, self.root)
            except (ValueError, OSError) as e:
                return None, str(e), i
            if self._cache is not None:
                self._cache[i] = img
        return self.transform(img), int(self.labels[i]), i


def collate_skip_errors(batch):
    """Stack the decodable samples of a batch; return ``(images, labels, rows, n_dropped)``.

    ``images`` is ``None`` when no sample of the batch could be decoded.
    """
    import torch

    good = [b for b in batch if b[0] is not None]
    dropped = len(batch) - len(good)
    if not good:
        return None, None, None, dropped
    images = torch.stack([b[0] for b in good])
    labels = torch.tensor([b[1] for b in good], dtype=torch.long)
    rows = torch.tensor([b[2] for b in good], dtype=torch.long)
    return images, labels, rows, dropped


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global random states (augmentations use all three)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    import torch

    s = torch.initial_seed() % 2**32  # set by the loader from its seeded generator
    random.seed(s)
    np.random.seed(s)


def make_loader(dataset, *, batch_size: int, shuffle: bool, seed: int, workers: int = 0, drop_last: bool = False):
    """A reproducible ``DataLoader``; under torch.distributed, each rank reads its own shard.

    Args:
        dataset: A map-style dataset such as :class:`ImageSamples`.
        batch_size: Samples per batch per process.
        shuffle: Reshuffle every epoch (call ``loader.sampler.set_epoch`` under DDP;
            :func:`set_epoch` does it for either case).
        seed: Seeds the shuffling order and the workers' random states.
        workers: Decoding worker processes (0 decodes in the main process).
        drop_last: Drop a last incomplete batch (keeps batch-norm statistics sane).
    """
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler

    gen = torch.Generator()
    gen.manual_seed(seed)
    sampler = None
    if dist.is_available() and dist.is_initialized():
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        shuffle = False
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skip_errors,
        worker_init_fn=_seed_worker,
        generator=gen,
        drop_last=drop_last,
        persistent_workers=workers > 0,
    )


def set_epoch(loader, epoch: int) -> None:
    """Tell a distributed sampler which epoch it is (no-op for a single process)."""
    if hasattr(loader, "set_epoch"):  # models.batchaug.BatchLoader
        loader.set_epoch(epoch)
        return
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
