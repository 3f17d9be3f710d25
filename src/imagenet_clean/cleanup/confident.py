"""Confident learning per model (paper section 3.1) and the per-model evidence the rules need.

Each model's out-of-sample probabilities go through cleanlab's
``find_label_issues(filter_by="prune_by_noise_rate", frac_noise=fn)``; a flagged
sample's candidate ``l'`` is the model's highest-probability class other than
the given label. ``fn_scope`` says where ``fn`` applies
(:data:`~imagenet_clean.constants.FN_SCOPES`): cleanlab's own arithmetic,
``floor(fn * count)`` in each cell of the confident joint, or the whole split,
``fn`` times all the model's flags. Everything here works on one model at a
time and keeps only N-sized vectors afterwards (:class:`ModelEvidence`), so the
cleanup of a split needs the memory of one model's probability matrix, not of
the ensemble's.

Classes with no samples: the probability matrix is passed to cleanlab with all
K columns, as cleanlab expects (its noise matrices are K x K and a class with no
given labels simply has an empty row). A sample can then be flagged with a
candidate from an absent class, which is what should happen when a whole class
was mislabelled. cleanlab's "too few examples" warning is captured and the
absent classes are reported in :attr:`ModelEvidence.absent_classes`.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..constants import CONSENSUS_TOPK, FN_SCOPES

ROW_SUM_ATOL = 1e-2
"""Tolerance of ``|sum(row) - 1|``: probabilities stored as float16 (the prediction
contract) sum to 1 within about 5e-4 for K = 1000; 1e-2 leaves room and still
catches logits or unnormalised scores."""

CHUNK_ROWS = 16384
"""Rows processed at once by the chunked checks, so that temporaries stay a few
tens of MB even for ImageNet's 1000 classes."""


@dataclass
class ModelEvidence:
    """What the rules need from one model, as N-vectors (one per sample).

    Attributes:
        flagged: cleanlab flagged the sample as a label issue.
        candidates: the candidate label ``l'`` (highest-probability class other
            than the given label); -1 where not flagged.
        cand_probs: the model's probability of the candidate (0 where not flagged);
            breaks ties between candidates.
        top5_miss: the given label is not in the model's top-5.
        label_probs: the model's probability of the given label.
        absent_classes: classes without any given label in this call.
        top_probs: the model's largest class probability (merged classes summed when
            ``merge_lut`` was given): how sure it is of any one class (label sets' gate).
    """

    flagged: np.ndarray
    candidates: np.ndarray
    cand_probs: np.ndarray
    top5_miss: np.ndarray
    label_probs: np.ndarray
    absent_classes: list[int] = field(default_factory=list)
    top_probs: np.ndarray | None = None

    @property
    def n_issues(self) -> int:
        """Number of label issues cleanlab found (the paper's table 1 column)."""
        return int(self.flagged.sum())


def _where(source: str, model: str) -> str:
    parts = [p for p in (f"file {source}" if source else "", f"model {model!r}" if model else "") if p]
    return (", ".join(parts) + ": ") if parts else ""


def validate_labels(labels, num_classes: int, *, source: str = "", model: str = "") -> np.ndarray:
    """Check labels are a 1-D integer vector with values in ``[0, num_classes)``.

    Returns:
        The labels as int64.

    Raises:
        ValueError: naming the first offending row and value.
    """
    labels = np.asarray(labels)
    where = _where(source, model)
    if labels.ndim != 1:
        raise ValueError(f"{where}labels must be a 1-D vector, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            bad = int(np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))[0]) if np.issubdtype(labels.dtype,
                                                                                                               np.floating) else 0
            raise ValueError(f"{where}labels must be integers, got dtype {labels.dtype} (row {bad}: {labels[bad]!r})")
    labels = labels.astype(np.int64)
    out = (labels < 0) | (labels >= num_classes)
    if out.any():
        row = int(np.flatnonzero(out)[0])
        raise ValueError(
            f"{where}label {labels[row]} at row {row} is out of range [0, {num_classes}) "
            f"({int(out.sum())} rows out of range)"
        )
    return labels


def validate_pred_probs(pred_probs: np.ndarray, *, n_rows: int | None = None, num_classes: int | None = None,
                        source: str = "", model: str = "") -> None:
    """Check a probability matrix: 2-D, expected shape, finite, non-negative, rows summing to 1.

    Works in chunks of :data:`CHUNK_ROWS` rows so that no N x K temporary is made.

    Args:
        pred_probs: (N, K) probabilities.
        n_rows: Expected N (the number of labels), if known.
        num_classes: Expected K, if known.
        source: File the matrix came from, for messages.
        model: Model name, for messages.

    Raises:
        ValueError: naming the file, model and first offending row.
    """
    where = _where(source, model)
    if pred_probs.ndim != 2:
        raise ValueError(f"{where}pred_probs must be 2-D (N, K), got shape {pred_probs.shape}")
    n, k = pred_probs.shape
    if n_rows is not None and n != n_rows:
        raise ValueError(f"{where}pred_probs has {n} rows but there are {n_rows} labels")
    if num_classes is not None and k != num_classes:
        raise ValueError(f"{where}pred_probs has {k} classes but {num_classes} were expected")
    if k < 2:
        raise ValueError(f"{where}pred_probs needs at least 2 classes, got {k}")
    if not np.issubdtype(pred_probs.dtype, np.floating):
        raise ValueError(f"{where}pred_probs must be floating point, got dtype {pred_probs.dtype}")
    first: dict[str, tuple[int, float]] = {}
    count = {"nan": 0, "neg": 0, "sum": 0}
    for start in range(0, n, CHUNK_ROWS):
        chunk = np.asarray(pred_probs[start:start + CHUNK_ROWS], dtype=np.float32)
        sums = chunk.sum(axis=1, dtype=np.float64)  # NaN and inf propagate into the sum: one pass finds them
        finite = np.isfinite(sums)
        neg = chunk.min(axis=1) < 0
        off = finite & ~neg & (np.abs(sums - 1.0) > ROW_SUM_ATOL)
        for key, bad in (("nan", ~finite), ("neg", finite & neg), ("sum", off)):
            if bad.any():
                count[key] += int(bad.sum())
                i = int(np.flatnonzero(bad)[0])
                first.setdefault(key, (start + i, float(chunk[i].min() if key == "neg" else sums[i])))
    if not first:
        return
    of = lambda key: f"({count[key]} of {n} rows)"  # noqa: E731
    if "nan" in first:
        raise ValueError(f"{where}row {first['nan'][0]} of pred_probs has NaN or infinite values {of('nan')}")
    if "neg" in first:
        row, low = first["neg"]
        raise ValueError(f"{where}row {row} of pred_probs has negative values (min {low}) {of('neg')}")
    row, total = first["sum"]
    raise ValueError(f"{where}row {row} of pred_probs sums to {total:.6g}, not 1 (tolerance {ROW_SUM_ATOL}) {of('sum')}; "
                     "pass softmax probabilities, not logits")


def candidate_labels(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The highest-probability class other than the given label, and its probability.

    Ties go to the smaller class index (``argmax``). Chunked; no N x K temporary.

    Returns:
        ``(candidates int32 (N,), cand_probs float32 (N,))``.
    """
    n = len(labels)
    cand = np.empty(n, np.int32)
    cprob = np.empty(n, np.float32)
    for start in range(0, n, CHUNK_ROWS):
        chunk = np.array(pred_probs[start:start + CHUNK_ROWS], dtype=np.float32, copy=True)
        rows = np.arange(len(chunk))
        chunk[rows, labels[start:start + CHUNK_ROWS]] = -np.inf
        best = chunk.argmax(axis=1)
        cand[start:start + len(chunk)] = best
        cprob[start:start + len(chunk)] = chunk[rows, best]
    return cand, cprob


def label_in_topk(labels: np.ndarray, pred_probs: np.ndarray, *, k: int = CONSENSUS_TOPK,
                  merge_lut: np.ndarray | None = None) -> np.ndarray:
    """Whether the given label is among the ``k`` most probable classes.

    Ties are ordered as :func:`imagenet_clean.predictions.top5_of` orders them
    (equal probability: smaller class index first). Chunked.

    Args:
        labels: (N,) given labels.
        pred_probs: (N, K) probabilities.
        k: How many classes count.
        merge_lut: (K,) ``class -> class after the category merges``
            (:func:`~imagenet_clean.cleanup.merges.merge_index`); classes merged
            into one are ranked as one, with their probabilities summed. None:
            every class on its own.
    """
    n = len(labels)
    out = np.empty(n, bool)
    merged = None if merge_lut is None else np.flatnonzero(merge_lut != np.arange(len(merge_lut)))
    for start in range(0, n, CHUNK_ROWS):
        chunk = np.asarray(pred_probs[start:start + CHUNK_ROWS], dtype=np.float32)
        lab = labels[start:start + len(chunk)]
        if merged is not None and len(merged):
            chunk = chunk.copy()
            for src in merged:  # a few synonym pairs: add each merged class into its target, then drop it
                chunk[:, merge_lut[src]] += chunk[:, src]
            chunk[:, merged] = -np.inf
            lab = merge_lut[lab]
        p_l = chunk[np.arange(len(chunk)), lab][:, None]
        above = (chunk > p_l).sum(axis=1)
        ties_before = ((chunk == p_l) & (np.arange(chunk.shape[1])[None, :] < lab[:, None])).sum(axis=1)
        out[start:start + len(chunk)] = (above + ties_before) < k
    return out


def merge_candidates(labels: np.ndarray, flagged: np.ndarray, candidates: np.ndarray,
                     merge_lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confident-learning flags read in merged classes.

    A flag whose candidate merges with the given label (digit one proposed for
    its synonym class, or back) says nothing the category merge does not
    already settle, so it is dropped; any other candidate is replaced by the
    class it merges into, so that two synonyms proposed for one sample count as
    one candidate.

    Args:
        labels: (N,) given labels.
        flagged: (N,) bool, cleanlab's flags.
        candidates: (N,) each sample's best class other than its label.
        merge_lut: (K,) ``class -> class after the category merges``.

    Returns:
        ``(flagged, candidates)`` as new arrays.
    """
    lut = np.asarray(merge_lut, np.int64)
    cand = lut[np.asarray(candidates, np.int64)]
    keep = np.asarray(flagged, bool) & (cand != lut[np.asarray(labels, np.int64)])
    return keep, cand.astype(np.int32)


def find_candidates(labels, pred_probs: np.ndarray, *, frac_noise: float = 1.0, fn_scope: str = "cell",
                    n_jobs: int | None = 1, source: str = "", model: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Confident learning for one model: flagged samples and their candidate labels.

    Args:
        labels: (N,) given labels.
        pred_probs: (N, K) out-of-sample probabilities of one model.
        frac_noise: cleanlab's ``frac_noise`` (the paper's ``fn``), in (0, 1].
        fn_scope: Where ``frac_noise`` applies, a key of :data:`~imagenet_clean.constants.FN_SCOPES`.
        n_jobs: cleanlab's worker processes (None: all cores).
        source: File the probabilities came from, for error messages.
        model: Model name, for error messages.

    Returns:
        ``(flagged bool (N,), candidates int32 (N,))`` with candidate -1 where
        not flagged.

    Raises:
        ValueError: bad labels or probabilities (see :func:`validate_pred_probs`).
    """
    ev = model_evidence(labels, pred_probs, frac_noise=frac_noise, fn_scope=fn_scope, n_jobs=n_jobs, source=source,
                        model=model)
    return ev.flagged, ev.candidates


def cleanlab_issues(labels: np.ndarray, pred_probs: np.ndarray, *, frac_noise: float = 1.0, fn_scope: str = "cell",
                    n_jobs: int | None = 1) -> tuple[np.ndarray, list[int]]:
    """The bare cleanlab call (no validation): issue mask and the classes without samples.

    With ``fn_scope="split"`` and ``frac_noise < 1``, cleanlab runs at
    ``frac_noise=1`` and :func:`keep_least_confident` keeps ``frac_noise`` of its flags.
    """
    from cleanlab.filter import find_label_issues

    if not 0.0 < frac_noise <= 1.0:
        raise ValueError(f"frac_noise must be in (0, 1], got {frac_noise!r}")
    if fn_scope not in FN_SCOPES:
        raise ValueError(f"fn_scope must be one of {', '.join(map(repr, FN_SCOPES))}, got {fn_scope!r}")
    per_split = fn_scope == "split" and frac_noise < 1.0
    absent = np.flatnonzero(np.bincount(labels, minlength=pred_probs.shape[1]) == 0).tolist()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*too few examples.*")
            mask = find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate",
                                     frac_noise=1.0 if per_split else frac_noise, n_jobs=n_jobs, verbose=False)
    finally:
        _release_cleanlab_globals()
    mask = np.asarray(mask, bool)
    if per_split:
        mask = keep_least_confident(labels, pred_probs, mask, fraction=frac_noise)
    return mask, absent


def keep_least_confident(labels: np.ndarray, pred_probs: np.ndarray, flagged: np.ndarray, *, fraction: float) -> np.ndarray:
    """The ``round(fraction * flags)`` flagged samples whose given label is least probable (the rest unflagged).

    Ranked by self-confidence, ``pred_probs[i, labels[i]]`` (cleanlab's default
    ranking of label issues), lowest first; ties go to the lower row. Half a
    flag rounds up.
    """
    rows = np.flatnonzero(flagged)
    keep = int(math.floor(fraction * len(rows) + 0.5))
    confidence = np.asarray(pred_probs[rows, labels[rows]], np.float64)
    out = np.zeros(len(flagged), bool)
    out[rows[np.argsort(confidence, kind="stable")[:keep]]] = True
    return out


def _release_cleanlab_globals() -> None:
    """Drop the by-class copy of ``pred_probs`` that cleanlab keeps in module globals after the call.

    ``cleanlab.filter.find_label_issues`` (2.x, ``n_jobs=1`` or fork) stores
    ``pred_probs`` split by class in the module global ``pred_probs_by_class``
    and leaves it there: a second copy of the last model's matrix (5 GB at
    ImageNet train size) alive while the next model's is read. Results are
    unaffected (the next call rebinds it).
    """
    import cleanlab.filter as cl_filter

    for name in ("pred_probs_by_class", "prune_count_matrix_cols"):
        if getattr(cl_filter, name, None) is not None:
            setattr(cl_filter, name, None)


def model_evidence(labels, pred_probs: np.ndarray, *, frac_noise: float = 1.0, fn_scope: str = "cell",
                   top5: np.ndarray | None = None, topk: int = CONSENSUS_TOPK, merge_lut: np.ndarray | None = None,
                   candidate_lut: np.ndarray | None = None, n_jobs: int | None = 1,
                   validate: bool = True, source: str = "", model: str = "") -> ModelEvidence:
    """Everything the rules need from one model, keeping only N-vectors.

    Args:
        labels: (N,) given labels.
        pred_probs: (N, K) probabilities (float32 preferred; float16 is upcast per chunk).
        frac_noise: cleanlab's ``frac_noise``.
        fn_scope: Where ``frac_noise`` applies, a key of :data:`~imagenet_clean.constants.FN_SCOPES`.
        top5: (N, 5) top-5 classes as stored in a prediction file; computed
            from ``pred_probs`` when omitted.
        topk: The consensus rule's k (paper: 5): ``top5_miss`` says whether the
            label is outside the model's ``topk`` most probable classes.
        merge_lut: Rank merged classes as one in that top-k (see
            :func:`label_in_topk`); the stored ``top5`` is then not used.
        candidate_lut: (K,) ``class -> class after the category merges`` for
            confident learning's candidates (:func:`merge_candidates`): a flag
            whose candidate is the label's merge partner proposes nothing and is
            dropped; the others name the merged class. None: as cleanlab gives them.
        n_jobs: cleanlab's worker processes.
        validate: Check labels and probabilities first.
        source: File, for error messages.
        model: Model name, for error messages.
    """
    if validate:
        if pred_probs.ndim != 2:
            raise ValueError(f"{_where(source, model)}pred_probs must be 2-D (N, K), got shape {pred_probs.shape}")
        labels = validate_labels(labels, pred_probs.shape[1], source=source, model=model)
        validate_pred_probs(pred_probs, n_rows=len(labels), source=source, model=model)
    labels = np.asarray(labels, np.int64)
    if len(labels) == 0:  # nothing usable (e.g. every image unreadable): no issues, nothing to rank
        e = np.zeros(0)
        return ModelEvidence(e.astype(bool), e.astype(np.int32), e.astype(np.float32), e.astype(bool), e.astype(np.float32))
    probs = pred_probs if pred_probs.dtype in (np.float32, np.float64) else pred_probs.astype(np.float32)
    flagged, absent = cleanlab_issues(labels, probs, frac_noise=frac_noise, fn_scope=fn_scope, n_jobs=n_jobs)
    cand, cprob = candidate_labels(labels, probs)
    if candidate_lut is not None:
        flagged, cand = merge_candidates(labels, flagged, cand, candidate_lut)
    cand = np.where(flagged, cand, -1).astype(np.int32)
    cprob = np.where(flagged, cprob, 0.0).astype(np.float32)
    if top5 is not None and merge_lut is None:
        top5 = np.asarray(top5)
        if top5.shape != (len(labels), CONSENSUS_TOPK):
            raise ValueError(f"{_where(source, model)}top5 has shape {top5.shape}, expected ({len(labels)}, {CONSENSUS_TOPK})")
        miss = ~(top5[:, :topk] == labels[:, None]).any(axis=1)
    else:
        miss = ~label_in_topk(labels, probs, k=topk, merge_lut=merge_lut)
    label_probs = np.empty(len(labels), np.float32)
    for start in range(0, len(labels), CHUNK_ROWS):
        stop = start + CHUNK_ROWS
        label_probs[start:stop] = probs[start:stop][np.arange(min(stop, len(labels)) - start), labels[start:stop]]
    return ModelEvidence(flagged=flagged, candidates=cand, cand_probs=cprob, top5_miss=miss,
                         label_probs=label_probs, absent_classes=absent, top_probs=top_probability(probs, merge_lut=merge_lut))


def top_probability(probs: np.ndarray, *, merge_lut: np.ndarray | None = None) -> np.ndarray:
    """Per row, the largest class probability; with ``merge_lut``, of the merged classes (their probabilities summed)."""
    out = np.empty(len(probs), np.float32)
    k = probs.shape[1]
    onehot = None
    if merge_lut is not None:
        onehot = np.zeros((k, k), np.float32)
        onehot[np.arange(k), np.asarray(merge_lut)[:k]] = 1.0
    for start in range(0, len(probs), CHUNK_ROWS):
        chunk = np.asarray(probs[start:start + CHUNK_ROWS], np.float32)
        out[start:start + len(chunk)] = (chunk if onehot is None else chunk @ onehot).max(axis=1)
    return out


def rank_issues(labels, pred_probs: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """Indices of the flagged samples, most likely issue first, by cleanlab's normalised margin.

    This is the order the paper uses when showing issues (``rank_by="normalized_margin"``).
    """
    from cleanlab.rank import order_label_issues

    return np.asarray(order_label_issues(np.asarray(flagged, bool), np.asarray(labels, np.int64), pred_probs,
                                         rank_by="normalized_margin"))
