"""The decision rules of paper section 3, as one pure function over per-model evidence.

For a sample with given label ``l``, let ``L'`` be the candidates of the models
that flagged it (one per flagging model, repeats allowed) and ``C_s`` the number
of models whose top-5 misses ``l``. With the thresholds resolved to real numbers
of models (:func:`resolve_threshold`):

* ``cl_fix``: ``|L'| >= h1`` and ``|unique(L')| < 3`` -> the label becomes the
  most frequent candidate; ties go to the larger probability summed over the
  models that proposed it, then to the smaller class index.
* ``cl_remove``: ``|unique(L')| >= h2`` and not fixed.
* ``consensus``: ``C_s >= h3`` and not fixed; may be exempted by the CAMs
  (:func:`apply_exemptions`; ``cam_exempt``), ``cl_remove`` never is.

Fixed samples are never removed; their ``rules`` list only ``cl_fix`` (``c_s``
still records the consensus count).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..constants import FIX_MAX_DISTINCT
from ..thresholds import Thresholds, check_resolved, resolve_threshold, resolved  # noqa: F401 (the rules' thresholds, re-exported)

RULE_FIX = "cl_fix"
RULE_CL_REMOVE = "cl_remove"
RULE_CONSENSUS = "consensus"
RULE_CAM_EXEMPT = "cam_exempt"
RULE_UNREADABLE = "unreadable"
RULE_QUALITY = "quality"  # the optional image-quality rule (cleanup/quality.py), applied by the clean stage
RULE_LABEL_SET = "label_set"  # the optional label-set rule (cleanup/labelsets.py), applied by the clean stage
RULE_DUPLICATE = "duplicate"  # the optional duplicate rule (cleanup/duplicates.py), applied by the clean stage

ACTION_SET = "relabel_set"
"""The action of an image given a label set (``labels``) instead of one label or a removal."""
ACTIONS = ("keep", "fix", "remove", ACTION_SET)


def _check_shapes(labels, flagged, candidates, cand_probs, top5_miss, n_models: int):
    labels = np.asarray(labels, np.int64)
    arrays = {
        "flagged": np.asarray(flagged, bool),
        "candidates": np.asarray(candidates, np.int64),
        "cand_probs": np.asarray(cand_probs, np.float64),
        "top5_miss": np.asarray(top5_miss, bool),
    }
    want = (n_models, len(labels))
    for name, a in arrays.items():
        if a.ndim == 1 and n_models == 1:
            arrays[name] = a = a[None, :]
        if a.shape != want:
            raise ValueError(f"{name} has shape {a.shape}, expected (n_models, N) = {want}")
    bad = arrays["flagged"] & (arrays["candidates"] < 0)
    if bad.any():
        m, i = map(int, np.argwhere(bad)[0])
        raise ValueError(f"model {m} flagged row {i} without a candidate label (candidate {arrays['candidates'][m, i]})")
    same = arrays["flagged"] & (arrays["candidates"] == labels[None, :])
    if same.any():
        m, i = map(int, np.argwhere(same)[0])
        raise ValueError(f"model {m} proposed the given label {labels[i]} as candidate for row {i}")
    return labels, arrays


def count_distinct(cands: np.ndarray) -> np.ndarray:
    """Distinct non-negative values per column of an (M, N) array (-1 = none)."""
    s = np.sort(cands, axis=0)
    new = s >= 0
    new[1:] &= s[1:] != s[:-1]
    return new.sum(axis=0)


def most_frequent_candidate(cands: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per column of (M, N) candidates (-1 = none): the most frequent one.

    Ties: larger summed probability over the models that proposed it, then the
    smaller class index. Columns without any candidate give -1.
    """
    m, n = cands.shape
    best = np.full(n, -1, np.int64)
    best_count = np.zeros(n, np.int64)
    best_psum = np.full(n, -np.inf)
    for i in range(m):
        c = cands[i]
        same = cands == c[None, :]
        count = same.sum(axis=0)
        psum = np.where(same, probs, 0.0).sum(axis=0)
        better = (c >= 0) & (
            (count > best_count)
            | ((count == best_count) & (psum > best_psum))
            | ((count == best_count) & (psum == best_psum) & (c < best))
        )
        best = np.where(better, c, best)
        best_count = np.where(better, count, best_count)
        best_psum = np.where(better, psum, best_psum)
    return best


def _lists(mask: np.ndarray, values: np.ndarray | Sequence) -> list[list]:
    """Row-wise lists, in model order, of the entries where ``mask[m, i]``.

    ``values`` is an (M, N) array (entry ``values[m, i]``) or a length-M
    sequence (entry ``values[m]``, e.g. model names).
    """
    n = mask.shape[1]
    out: list[list] = [[] for _ in range(n)]
    rows, ms = np.nonzero(mask.T)
    vals = values[ms, rows].tolist() if isinstance(values, np.ndarray) else [values[m] for m in ms.tolist()]
    for i, v in zip(rows.tolist(), vals):
        out[i].append(v)
    return out


def decide(labels, flagged, candidates, cand_probs, top5_miss, *, n_models: int, thresholds: Thresholds,
           model_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Apply the fix / remove / consensus rules to per-model evidence.

    Args:
        labels: (N,) given labels.
        flagged: (M, N) bool, model m's confident learning flagged sample i.
        candidates: (M, N) int, model m's candidate label for sample i (any value where not flagged).
        cand_probs: (M, N) float, model m's probability of its candidate (tie-break).
        top5_miss: (M, N) bool, model m's top-5 misses the given label.
        n_models: The ensemble size |M| (thresholds are resolved against it).
        thresholds: ``h1``, ``h2``, ``h3`` (``fn`` is used by confident learning, not here).
        model_names: Names for ``flagged_models`` (default ``m0``, ``m1``, ...).

    Returns:
        One row per sample: ``label``, ``action`` (keep / fix / remove),
        ``new_label``, ``rules`` (list of rule names), ``n_flagged``,
        ``n_distinct``, ``flagged_models``, ``candidates`` (aligned with
        ``flagged_models``), ``c_s``. Consensus-only removals (the ones the
        CAMs may exempt) are the rows whose ``rules`` are exactly ``["consensus"]``.

    Raises:
        ValueError: arrays of mismatched shapes, or a flagged sample without a candidate.
    """
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1, got {n_models}")
    labels, a = _check_shapes(labels, flagged, candidates, cand_probs, top5_miss, n_models)
    names = list(model_names) if model_names is not None else [f"m{i}" for i in range(n_models)]
    if len(names) != n_models:
        raise ValueError(f"{len(names)} model names for {n_models} models")
    h = resolved(thresholds, n_models)
    fl = a["flagged"]
    cands = np.where(fl, a["candidates"], -1)
    probs = np.where(fl, a["cand_probs"], 0.0)

    n_flagged = fl.sum(axis=0)
    n_distinct = count_distinct(cands)
    c_s = a["top5_miss"].sum(axis=0)

    fix = (n_flagged >= 1) & (n_flagged >= h["h1"]) & (n_distinct < FIX_MAX_DISTINCT)
    cl_remove = ~fix & (n_distinct >= 1) & (n_distinct >= h["h2"])
    consensus = ~fix & (c_s >= h["h3"])

    new_label = labels.copy()
    if fix.any():
        new_label[fix] = most_frequent_candidate(cands[:, fix], probs[:, fix])

    action = np.full(len(labels), "keep", dtype=object)
    action[fix] = "fix"
    action[cl_remove | consensus] = "remove"

    code = fix * 1 + cl_remove * 2 + consensus * 4
    table = {0: (), 1: (RULE_FIX,), 2: (RULE_CL_REMOVE,), 4: (RULE_CONSENSUS,), 6: (RULE_CL_REMOVE, RULE_CONSENSUS)}
    rules = [list(table[c]) for c in code.tolist()]

    return pd.DataFrame({
        "label": labels,
        "action": action,
        "new_label": new_label,
        "rules": pd.Series(rules, dtype=object),
        "n_flagged": n_flagged.astype(np.int64),
        "n_distinct": n_distinct.astype(np.int64),
        "flagged_models": pd.Series(_lists(fl, names), dtype=object),
        "candidates": pd.Series(_lists(fl, cands), dtype=object),
        "c_s": c_s.astype(np.int64),
    })


def consensus_only(decisions: pd.DataFrame) -> np.ndarray:
    """Rows removed by the consensus rule alone: the ones an explainability exemption can save."""
    return np.array([r == [RULE_CONSENSUS] for r in decisions["rules"]], bool)


def apply_exemptions(decisions: pd.DataFrame, exemptions: pd.DataFrame) -> pd.DataFrame:
    """Keep the consensus-only removals that a model's CAMs exempted.

    Args:
        decisions: Output of :func:`decide` with a ``sample_id`` column.
        exemptions: ``sample_id``, ``exempted_by`` (model name or ``""``) and
            ``cam_scores`` (JSON) per CAM candidate.

    Returns:
        A copy with ``exempted_by`` and ``cam_scores`` filled in; exempted rows
        become ``keep`` with rules ``["consensus", "cam_exempt"]``.

    Raises:
        ValueError: an exemption names a sample that is not a consensus-only removal.
    """
    out = decisions.copy()
    if "exempted_by" not in out:
        out["exempted_by"] = ""
    if "cam_scores" not in out:
        out["cam_scores"] = "{}"
    if exemptions is None or len(exemptions) == 0:
        return out
    missing = {"sample_id", "exempted_by", "cam_scores"} - set(exemptions.columns)
    if missing:
        raise ValueError(f"exemption table lacks columns {sorted(missing)}")
    pos = pd.Index(out["sample_id"]).get_indexer(exemptions["sample_id"])
    if (pos < 0).any():
        raise ValueError(f"exemption for unknown sample {exemptions['sample_id'].iloc[int(np.flatnonzero(pos < 0)[0])]!r}")
    eligible = consensus_only(out)
    if not eligible[pos].all():
        bad = exemptions["sample_id"].iloc[int(np.flatnonzero(~eligible[pos])[0])]
        raise ValueError(f"sample {bad!r} got CAM scores but is not a consensus-only removal")
    by = exemptions["exempted_by"].fillna("").astype(str).to_numpy()
    cols = {c: out.columns.get_loc(c) for c in ("exempted_by", "cam_scores", "action", "rules")}
    for p, b, s in zip(pos, by, exemptions["cam_scores"].astype(str)):
        out.iat[p, cols["cam_scores"]] = s
        if b:
            out.iat[p, cols["exempted_by"]] = b
            out.iat[p, cols["action"]] = "keep"
            out.iat[p, cols["rules"]] = [RULE_CONSENSUS, RULE_CAM_EXEMPT]
    return out
