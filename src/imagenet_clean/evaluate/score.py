"""Score the cleanup against the truth: the embedded default's injected problems, or ImageNet ReaL.

Embedded default (``dataset.truth``: a parquet with ``split``, ``sample_id``,
``true_label``, ``given_label``, ``problem``):

* fixes: a fix is right when its new label is the true label; recall is over
  all samples whose given label is wrong;
* removals: a removal is right when the image is a known problem image
  (:data:`PROBLEMS`) or carries a wrong label; recall is over those samples,
  less the wrong labels that were fixed correctly;
* ``detected``: any action other than keep, against the same positives;
* a ``multi_object`` scene given a label set (action ``relabel_set``) is remedied:
  it leaves the removal recall's positives (:mod:`~imagenet_clean.evaluate.score_sets`
  scores the sets themselves);
* images of the synonym class (problem ``synonym``) are left out: the merge is their remedy;
* labels are compared after the category merges (``merge_lut``): a fix to a
  merge partner (digit one -> its synonym class, or back) changes nothing once
  the classes are merged, so it is counted under ``merge_fixes`` and scored as
  neither a right nor a wrong fix;
* problem images carry their true label (a problem is injected instead of a
  flip, never with it), so a fix of a problem image changes a correct label: it
  is a wrong fix, and the image still counts as a missed removal;
* ``baseline``: each model's cleanlab output alone (its flagged samples are
  its fixes, with its candidate, and its removals), the bar the ensemble must clear.

Unreadable rows (rule ``unreadable``) are left out of the scores and counted.

Real ImageNet (``dataset.real_labels: true``): the validation split's fixes and
removals against the ReaL labels that timm ships, and each model's ReaL
accuracy on V and on V_c (the kept and fixed images).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..cleanup.confident import merge_candidates

PROBLEMS = ("minuscule", "bad_quality", "multi_object")
SYNONYM = "synonym"
"""Truth ``problem`` of images given the synonym class: the category merge, not a fix
or removal, is their remedy, so they are left out of the fix/removal scores and counted apart."""
REAL_SPLIT = "val"
_VAL_RE = re.compile(r"ILSVRC2012_val_(\d{8})")


def prf(tp: int, predicted: int, actual: int) -> dict:
    """Precision, recall and F1 (0 where undefined) with the counts they come from."""
    p = tp / predicted if predicted else 0.0
    r = tp / actual if actual else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 6), "recall": round(r, 6), "f1": round(f, 6),
            "tp": int(tp), "predicted": int(predicted), "actual": int(actual)}


def _join_truth(decisions: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    need = {"sample_id", "true_label", "given_label", "problem"}
    if need - set(truth.columns):
        raise ValueError(f"truth table lacks columns {sorted(need - set(truth.columns))}")
    d = decisions.merge(truth[list(need)], on="sample_id", how="inner")
    mism = d["given_label"].to_numpy() != d["label"].to_numpy()
    if mism.any():
        r = d[mism].iloc[0]
        raise ValueError(f"the truth's given_label {r['given_label']} of {r['sample_id']!r} differs from the decisions' "
                         f"label {r['label']} ({int(mism.sum())} rows): truth and decisions come from different data")
    return d


def score_decisions(decisions: pd.DataFrame, truth: pd.DataFrame, *, merge_lut: np.ndarray | None = None) -> dict:
    """Precision/recall/F1 of the fixes, removals and all detections of one split, plus per-model baselines.

    Args:
        decisions: The split's decisions table.
        truth: The truth rows of that split.
        merge_lut: ``label -> label after merges`` (:func:`~imagenet_clean.cleanup.merges.merge_index`);
            None compares labels as they are.
    """
    unreadable = np.array(["unreadable" in list(r) for r in decisions["rules"]], bool)
    d = _join_truth(decisions[~unreadable], truth)
    syn = d["problem"].fillna("").astype(str).to_numpy() == SYNONYM
    synonyms = {a: int(((d["action"] == a) & syn).sum()) for a in ("keep", "fix", "remove")}
    d = d[~syn]

    def merged(col: str) -> np.ndarray:
        v = d[col].to_numpy(np.int64)
        return v if merge_lut is None else merge_lut[v]

    true, given, new = merged("true_label"), merged("label"), merged("new_label")
    wrong = true != given
    problem = d["problem"].fillna("").astype(str).isin(PROBLEMS).to_numpy()
    bad = wrong | problem
    act = d["action"].to_numpy()
    merge_fix = (act == "fix") & (new == given)  # to a merge partner: a no-op once the classes are merged
    act = np.where(merge_fix, "keep", act)
    fix = act == "fix"
    fix_ok = fix & (new == true)
    remove = act == "remove"
    # a multi-class scene given a label set is remedied, not a missed removal (evaluate/score_sets.py scores the sets)
    set_ok = (act == "relabel_set") & (d["problem"].fillna("").astype(str).to_numpy() == "multi_object")
    out = {
        "samples": int(len(d)),
        "unreadable": int(unreadable.sum()),
        "unscored": int((~unreadable).sum() - len(d) - syn.sum()),
        "synonyms": synonyms,
        "merge_fixes": int(merge_fix.sum()),
        "rates": {"fix": round(float(fix.mean()), 6) if len(d) else 0.0, "remove": round(float(remove.mean()), 6) if len(d) else 0.0},
        "wrong_labels": int(wrong.sum()),
        "problem_images": int(problem.sum()),
        "fix": prf(fix_ok.sum(), fix.sum(), wrong.sum()),
        "remove": prf((remove & bad).sum(), remove.sum(), (bad & ~fix_ok & ~set_ok).sum()),
        "detected": prf(((act != "keep") & bad).sum(), (act != "keep").sum(), bad.sum()),
        "baseline": {},
    }
    models = sorted({m for ms in d["flagged_models"] for m in ms}) if "flagged_models" in d else []
    for m in models:
        flagged = np.zeros(len(d), bool)
        cand = np.full(len(d), -1, np.int64)
        for i, (ms, cs) in enumerate(zip(d["flagged_models"], d["candidates"])):
            for mm, c in zip(ms, cs):
                if mm == m:
                    flagged[i], cand[i] = True, c
        cand_m = cand
        if merge_lut is not None:  # read as the cleanup's flags_merged reads them: a merge partner proposes nothing
            flagged, cand_m = merge_candidates(given, flagged, np.maximum(cand, 0), merge_lut)
        good_fix = flagged & (cand_m == true)
        out["baseline"][m] = {
            "fix": prf(good_fix.sum(), flagged.sum(), wrong.sum()),
            "remove": prf((flagged & bad).sum(), flagged.sum(), bad.sum()),
        }
    if models:
        out["beats_baseline_f1"] = {
            "fix": bool(all(out["fix"]["f1"] >= b["fix"]["f1"] for b in out["baseline"].values())),
            "detected": bool(all(out["detected"]["f1"] >= b["remove"]["f1"] for b in out["baseline"].values())),
        }
    return out


# ------------------------------------------------------------------ ReaL


def real_labels_path() -> Path:
    """timm's bundled ImageNet ReaL labels (Beyer et al. 2020), 50000 lists in validation order."""
    import timm

    return Path(timm.__file__).parent / "data" / "_info" / "imagenet_real_labels.json"


def load_real_labels(path: str | Path | None = None) -> list[list[int]]:
    """The ReaL label sets, index i for ``ILSVRC2012_val_{i+1:08d}``."""
    path = Path(path) if path else real_labels_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ImageNet ReaL labels not found (they ship with timm)")
    return json.loads(path.read_text())


def real_index(sample_ids) -> np.ndarray:
    """Index into the ReaL list for each validation sample id (-1 when the name has no ILSVRC2012_val number)."""
    out = np.full(len(sample_ids), -1, np.int64)
    for i, s in enumerate(sample_ids):
        m = _VAL_RE.search(str(s))
        if m:
            out[i] = int(m.group(1)) - 1
    return out


def _real_sets(sample_ids, real: list[list[int]]) -> list[set | None]:
    idx = real_index(sample_ids)
    if (idx >= len(real)).any():
        raise ValueError(f"sample {list(sample_ids)[int(np.flatnonzero(idx >= len(real))[0])]!r} is beyond the "
                         f"{len(real)} ReaL validation images")
    return [set(real[i]) if i >= 0 else None for i in idx]


def score_real(decisions: pd.DataFrame, *, real: list[list[int]], top1: dict[str, pd.Series] | None = None,
               clean_ids=None) -> dict:
    """Validation decisions against ReaL, and ReaL accuracy of each model on V and V_c.

    Args:
        decisions: The validation split's decisions.
        real: ReaL label sets (:func:`load_real_labels`).
        top1: Per model, its top-1 class indexed by sample id.
        clean_ids: Sample ids of V_c (the clean manifest without placeholders).
    """
    sets = _real_sets(decisions["sample_id"].tolist(), real)
    has = np.array([s is not None for s in sets])
    labels = decisions["label"].to_numpy(np.int64)
    new = decisions["new_label"].to_numpy(np.int64)
    act = decisions["action"].to_numpy()
    fix_ok = [(s is not None and n in s and lab not in s) for s, lab, n in zip(sets, labels, new)]
    rem_ok = [(s is not None and (not s or lab not in s)) for s, lab in zip(sets, labels)]
    fix = (act == "fix") & has
    rem = (act == "remove") & has
    out = {
        "matched": int(has.sum()),
        "fixes": int(fix.sum()),
        "fix_confirmed": round(float(np.mean(np.asarray(fix_ok)[fix])) if fix.any() else 0.0, 6),
        "removals": int(rem.sum()),
        "removal_confirmed": round(float(np.mean(np.asarray(rem_ok)[rem])) if rem.any() else 0.0, 6),
        "accuracy": {},
    }
    by_id = dict(zip(decisions["sample_id"], sets))
    vc = set(clean_ids) if clean_ids is not None else set()
    for m, t in (top1 or {}).items():
        res = {}
        for name, ids in (("V", list(by_id)), ("V_c", [i for i in by_id if i in vc])):
            ok = [(t[i] in by_id[i]) for i in ids if by_id[i] and i in t.index]
            res[name] = round(float(np.mean(ok)), 6) if ok else None
            res[f"{name}_n"] = len(ok)
        out["accuracy"][m] = res
    return out


# ------------------------------------------------------------------ issue 30's evidence: duplicates, the optional rules

QUALITY_PROBLEMS = ("minuscule", "bad_quality")
"""The truth problems the quality rule is meant to catch (its recall gain is reported on them)."""


def score_duplicates(pairs: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """The duplicates stage's pairs against the injected copies of the truth.

    Returns:
        ``{group: {found, true, hit, precision, recall}}`` for ``all``, ``exact``,
        ``near``, ``within``, ``across``, ``near_within``, ``near_across``
        (:func:`~imagenet_clean.cleanup.duplicates.score_pairs_detail`).
    """
    from ..cleanup.duplicates import score_pairs_detail, truth_pairs

    return score_pairs_detail(pairs, truth_pairs(truth))


def _removed_without_rule(rules: list, rule: str) -> bool:
    """Would the row be removed if ``rule`` had not fired? (the paper's rules, another optional rule, unreadable)."""
    from ..cleanup.rules import RULE_CAM_EXEMPT, RULE_CL_REMOVE, RULE_CONSENSUS, RULE_DUPLICATE, RULE_QUALITY, RULE_UNREADABLE

    others = {RULE_QUALITY, RULE_DUPLICATE} - {rule}
    return bool(RULE_CL_REMOVE in rules or RULE_UNREADABLE in rules or (RULE_CONSENSUS in rules and RULE_CAM_EXEMPT not in rules)
                or others & set(rules))


def without_rule(decisions: pd.DataFrame, rule: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The decisions as they would be without an optional removal rule, and the rows it removed.

    A row counts as removed by ``rule`` when the rule fired, the row is removed,
    no other rule removes it and no reviewer decided it (rule ``human``); those
    rows go back to ``keep``.
    """
    rules = [list(r) for r in decisions["rules"]]
    added = np.array([a == "remove" and rule in r and "human" not in r and not _removed_without_rule(r, rule)
                      for a, r in zip(decisions["action"], rules)], bool)
    off = decisions.copy()
    off.loc[added, "action"] = "keep"
    return off, added


def _truth_kind(d: pd.DataFrame) -> np.ndarray:
    """Per joined row: its truth problem, ``wrong_label`` for a flipped label, ``clean`` otherwise."""
    prob = d["problem"].fillna("").astype(str).to_numpy()
    wrong = d["true_label"].to_numpy(np.int64) != d["given_label"].to_numpy(np.int64)
    return np.where(np.isin(prob, (*PROBLEMS, SYNONYM)), prob, np.where(wrong, "wrong_label", "clean")).astype(object)


def score_quality_rule(decisions: pd.DataFrame, truth: pd.DataFrame, *, merge_lut: np.ndarray | None = None) -> dict:
    """What the optional quality rule (cleanup/quality.py) adds to one split's removals, against the truth.

    Returns:
        ``removed_by_rule`` (rows only the rule removes) per truth kind (a problem,
        ``wrong_label``, ``clean``); ``recall`` of removals on the minuscule and
        bad-quality images without and with the rule, and its gain; ``clean_removed``
        (images without a problem or a wrong label that are removed) without and
        with; the split's ``remove`` scores (:func:`score_decisions`) without and with.
    """
    unreadable = np.array(["unreadable" in list(r) for r in decisions["rules"]], bool)
    dec = decisions[~unreadable].reset_index(drop=True)
    off, added = without_rule(dec, "quality")
    d = _join_truth(dec.assign(_added=added, _off=off["action"].to_numpy()), truth)
    kind = _truth_kind(d)
    on_rm, off_rm = d["action"].to_numpy() == "remove", d["_off"].to_numpy() == "remove"
    rec = {}
    for name, sel in [*((p, kind == p) for p in QUALITY_PROBLEMS), ("+".join(QUALITY_PROBLEMS), np.isin(kind, QUALITY_PROBLEMS))]:
        n = int(sel.sum())
        r_off = round(float(off_rm[sel].mean()), 6) if n else None
        r_on = round(float(on_rm[sel].mean()), 6) if n else None
        rec[name] = {"images": n, "removed_off": int(off_rm[sel].sum()), "removed_on": int(on_rm[sel].sum()),
                     "recall_off": r_off, "recall_on": r_on, "gain": round(r_on - r_off, 6) if n else None}
    clean = kind == "clean"
    added_j = d["_added"].to_numpy(bool)
    s_on = score_decisions(decisions, truth, merge_lut=merge_lut)
    s_off = score_decisions(pd.concat([off, decisions[unreadable]]), truth, merge_lut=merge_lut)
    return {
        "removed_by_rule": int(added_j.sum()),
        "removed_by_rule_per_truth": {k: int((added_j & (kind == k)).sum()) for k in sorted(set(kind[added_j]))},
        "recall": rec,
        "clean_images": int(clean.sum()),
        "clean_removed": {"off": int((off_rm & clean).sum()), "on": int((on_rm & clean).sum()),
                          "by_rule": int((added_j & clean).sum())},
        "remove": {"off": s_off["remove"], "on": s_on["remove"],
                   "recall_gain": round(s_on["remove"]["recall"] - s_off["remove"]["recall"], 6),
                   "precision_change": round(s_on["remove"]["precision"] - s_off["remove"]["precision"], 6)},
    }


def score_duplicate_rule(decisions: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """The optional duplicate rule's removals of one split against the injected copies.

    A removal is right when the removed image and the kept member its reason
    names (``duplicate of <id>``) are a true pair. Recall is over the redundant
    true copies of the split: each true group within it (connected by the
    truth's pairs) less one member.
    """
    from ..cleanup.duplicate_rule import DUPLICATE_REASON
    from ..cleanup.duplicates import representatives, truth_pairs

    prefix = DUPLICATE_REASON.split("{")[0]
    split = str(truth["split"].iloc[0]) if len(truth) else ""
    tp = truth_pairs(truth)
    inside = tp[(tp["split_a"] == split) & (tp["split_b"] == split)]
    true = {frozenset(p) for p in zip(inside["sample_id_a"], inside["sample_id_b"])}
    rm = [(s, r[len(prefix):]) for s, a, rs, r in zip(decisions["sample_id"], decisions["action"], decisions["rules"], decisions["reason"])
          if a == "remove" and "duplicate" in list(rs) and str(r).startswith(prefix)]
    right = sum(frozenset((s, k)) in true for s, k in rm)
    rep = representatives(inside, split)
    redundant = sum(1 for u, r in rep.items() if u != r)
    return {"removed": len(rm), "right": int(right), "redundant_copies": int(redundant),
            "precision": round(right / len(rm), 6) if rm else None, "recall": round(right / redundant, 6) if redundant else None}
