"""Class subsets of ImageNet-1k evaluated with 1000-class models: ImageNet-R (200 classes), ImageNet-A.

timm ships each subset as two aligned files in ``timm/data/_info``:
``<name>_synsets.txt`` (the subset's wnids) and ``<name>_indices.txt`` (their
indices into the 1000 ImageNet classes). A 1000-class model is evaluated on such
a split by restricting its prediction to the subset (Hendrycks et al.): the
probabilities of the other 800 classes are dropped and the rest renormalised,
and the top-5 is taken among the subset only.

Two shapes are offered:

* ``keep_shape=True`` (the prediction-file contract, K = 1000): the probability
  matrix keeps its 1000 columns with zeros outside the subset, so labels stay
  ImageNet-1k indices and every downstream stage works unchanged;
* ``keep_shape=False``: a ``(N, 200)`` matrix in subset order, with
  :func:`to_subset_labels` mapping 1000-class labels onto ``0..199``.

Example:
    >>> probs_r = restrict_probs(pred_probs)                  # (N, 1000), zeros off ImageNet-R
    >>> top5 = restricted_topk(pred_probs, k=5)               # (N, 5) ImageNet-1k indices, all in the subset
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGENET_R = "imagenet_r"
NUM_IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class ClassSubset:
    """A subset of the ImageNet-1k classes.

    Attributes:
        name: Registry key (``imagenet_r``, ``imagenet_a``).
        wnids: The subset's class ids, in subset order.
        indices: Their ImageNet-1k indices, aligned with ``wnids`` (increasing).
    """

    name: str
    wnids: tuple[str, ...]
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.wnids)

    def mask(self, num_classes: int = NUM_IMAGENET_CLASSES) -> np.ndarray:
        """Boolean ``(num_classes,)`` vector, True on the subset's classes."""
        m = np.zeros(num_classes, dtype=bool)
        m[self.indices] = True
        return m


def _timm_info_dir() -> Path:
    import timm.data

    return Path(timm.data.__file__).parent / "_info"


SUBSETS: tuple[str, ...] = ("imagenet_r", "imagenet_a")
"""Subsets whose files timm ships (``<name>_synsets.txt``, ``<name>_indices.txt``)."""


@functools.lru_cache(maxsize=None)
def load_subset(name: str = IMAGENET_R) -> ClassSubset:
    """The subset ``name`` from timm's files, checked against the ImageNet-1k class order.

    Raises:
        ValueError: ``name`` is not a known subset, or timm's two files disagree
            (different lengths, an index out of range, or a wnid that is not the
            ImageNet-1k class at its index).
        FileNotFoundError: the installed timm lacks the files.
    """
    if name not in SUBSETS:
        raise ValueError(f"unknown class subset {name!r}; known: {', '.join(SUBSETS)}")
    from ..classes import imagenet_classes

    folder = _timm_info_dir()
    syn_path, idx_path = folder / f"{name}_synsets.txt", folder / f"{name}_indices.txt"
    for p in (syn_path, idx_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: not shipped by the installed timm (need timm >= 0.9)")
    wnids = tuple(line.strip() for line in syn_path.read_text().splitlines() if line.strip())
    try:
        indices = np.array([int(line) for line in idx_path.read_text().split()], dtype=np.int64)
    except ValueError as e:
        raise ValueError(f"{idx_path}: not a list of integers: {e}") from None
    if len(wnids) != len(indices):
        raise ValueError(f"{syn_path} has {len(wnids)} wnids but {idx_path} has {len(indices)} indices")
    full = imagenet_classes()
    for w, i in zip(wnids, indices):
        if not 0 <= i < len(full) or full.wnids[i] != w:
            raise ValueError(f"{idx_path}: index {i} of {w} is not that class in the ImageNet-1k order")
    order = np.argsort(indices, kind="stable")
    return ClassSubset(name, tuple(wnids[j] for j in order), indices[order])


def _check_probs(pred_probs: np.ndarray, subset: ClassSubset) -> np.ndarray:
    pred_probs = np.asarray(pred_probs)
    if pred_probs.ndim != 2 or pred_probs.shape[1] != NUM_IMAGENET_CLASSES:
        raise ValueError(
            f"pred_probs must be (N, {NUM_IMAGENET_CLASSES}) ImageNet-1k probabilities to restrict to {subset.name}; "
            f"got shape {pred_probs.shape}"
        )
    return pred_probs


def restrict_probs(pred_probs: np.ndarray, *, subset: str = IMAGENET_R, keep_shape: bool = True, renormalize: bool = True) -> np.ndarray:
    """Restrict ImageNet-1k probabilities to a class subset.

    Args:
        pred_probs: ``(N, 1000)`` probabilities (any float dtype; float32 math).
        subset: A name in :data:`SUBSETS`.
        keep_shape: Return ``(N, 1000)`` with zeros off the subset (the
            prediction-file contract); else ``(N, len(subset))`` in subset order.
        renormalize: Rows sum to 1 over the subset (a row whose subset mass is 0
            becomes uniform over the subset).

    Returns:
        float32 array.

    Raises:
        ValueError: ``pred_probs`` is not ``(N, 1000)``.
    """
    s = load_subset(subset)
    p = _check_probs(pred_probs, s)
    sub = p[:, s.indices].astype(np.float32)
    if renormalize:
        total = sub.sum(axis=1, keepdims=True)
        empty = total[:, 0] <= 0
        sub = np.divide(sub, total, out=np.zeros_like(sub), where=total > 0)
        sub[empty] = 1.0 / len(s)
    if not keep_shape:
        return sub
    out = np.zeros((p.shape[0], NUM_IMAGENET_CLASSES), dtype=np.float32)
    out[:, s.indices] = sub
    return out


def restrict_logits(logits, *, subset: str = IMAGENET_R):
    """Mask the logits off the subset to ``-inf`` (a torch tensor or numpy array, ``(N, 1000)``).

    ``softmax(restrict_logits(x))`` equals ``restrict_probs(softmax(x))``; use it
    inside the model's forward pass to avoid a second pass over the matrix.
    """
    s = load_subset(subset)
    if tuple(logits.shape[-1:]) != (NUM_IMAGENET_CLASSES,):
        raise ValueError(f"logits must end in {NUM_IMAGENET_CLASSES} ImageNet-1k classes to restrict to {subset}; "
                         f"got shape {tuple(logits.shape)}")
    mask = s.mask()
    if isinstance(logits, np.ndarray):
        return np.where(mask, logits, -np.inf).astype(logits.dtype, copy=False)
    import torch

    m = torch.as_tensor(mask, device=logits.device)
    return logits.masked_fill(~m, float("-inf"))


def restricted_topk(pred_probs: np.ndarray, *, subset: str = IMAGENET_R, k: int = 5) -> np.ndarray:
    """The ``k`` most probable subset classes per row, as ImageNet-1k indices (``(N, k)`` int64, best first).

    Ties break towards the lower class index, like a stable argsort.
    """
    s = load_subset(subset)
    p = _check_probs(pred_probs, s)
    if not 1 <= k <= len(s):
        raise ValueError(f"k={k} must be in [1, {len(s)}] for {subset}")
    sub = p[:, s.indices].astype(np.float32)
    order = np.argsort(-sub, axis=1, kind="stable")[:, :k]
    return s.indices[order]


def to_subset_labels(labels, *, subset: str = IMAGENET_R) -> np.ndarray:
    """ImageNet-1k labels -> subset positions ``0..len-1``; -1 for a label outside the subset."""
    s = load_subset(subset)
    labels = np.asarray(labels, dtype=np.int64)
    lut = np.full(NUM_IMAGENET_CLASSES, -1, dtype=np.int64)
    lut[s.indices] = np.arange(len(s))
    out = np.full(labels.shape, -1, dtype=np.int64)
    ok = (labels >= 0) & (labels < NUM_IMAGENET_CLASSES)
    out[ok] = lut[labels[ok]]
    return out


def from_subset_labels(positions, *, subset: str = IMAGENET_R) -> np.ndarray:
    """Subset positions ``0..len-1`` -> ImageNet-1k indices.

    Raises:
        ValueError: a position is out of range (the offending values are quoted).
    """
    s = load_subset(subset)
    positions = np.asarray(positions, dtype=np.int64)
    bad = positions[(positions < 0) | (positions >= len(s))]
    if bad.size:
        raise ValueError(f"positions out of range [0, {len(s)}) for {subset}: {sorted(set(bad.tolist()))[:5]}")
    return s.indices[positions]
