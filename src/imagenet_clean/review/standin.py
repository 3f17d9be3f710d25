"""A stand-in reviewer who knows the embedded default's injected truth, and ``tune`` checked against it on
held-out verdicts (``benchmarks/tune_standin.py``, the slow test in tests/test_embedded_quality.py)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..cleanup.verdicts import Verdict
from ..config import Params
from ..io import read_table
from ..workspace import Workspace
from .agreement import TuneError, setting_key
from .audit import audit_rank
from .tune import TuneInputs, evaluate, load_inputs, tune_split


def standin_verdicts(decisions: pd.DataFrame, truth: pd.DataFrame, wnids: Sequence[str], lut: np.ndarray, *,
                     audit: int = 0, seed: int = 0) -> dict[str, Verdict]:
    """The verdicts a reviewer who knows the injected truth gives (the embedded default's ``truth.parquet``).

    Every change (fix, removal, CAM exemption) is reviewed, and ``audit`` kept images drawn as the review
    app draws them (:func:`~imagenet_clean.review.audit.audit_rank`). The reviewer accepts a right decision, relabels a wrong label to
    the true class, and rejects a fix or removal of a correct label; a problem image (no digit to name)
    whose removal the machine proposed is accepted, else, since no verdict removes an image, its label
    (the true one) is kept. A label set (issue 30) is accepted when the scene shows two or more classes and
    every class of the set is one of them (the truth's ``true_labels``), else judged as a removal. Labels are
    compared after merges.
    """
    cols = ["sample_id", "true_label", "problem"] + (["true_labels"] if "true_labels" in truth.columns else [])
    d = decisions.merge(truth[cols], on="sample_id", how="inner")
    unreadable = np.fromiter(("unreadable" in list(r) for r in d["rules"]), bool, len(d))
    d = d[~unreadable]
    exempt = np.fromiter(("cam_exempt" in list(r) for r in d["rules"]), bool, len(d))
    act = d["action"].to_numpy()
    change = (act != "keep") | exempt
    kept = np.flatnonzero(~change)
    pick = np.zeros(len(d), bool)
    pick[change] = True
    if audit:
        pick[kept[audit_rank(d["sample_id"].to_numpy()[kept], seed)[:audit]]] = True
    out = {}
    problems = {"minuscule", "bad_quality", "multi_object"}
    for r, a in zip(d[pick].itertuples(index=False), act[pick]):
        true, given, new = lut[int(r.true_label)], lut[int(r.label)], lut[int(r.new_label)]
        problem = str(r.problem or "") in problems
        if a == "relabel_set":
            shown = {int(lut[int(c)]) for c in _values(getattr(r, "true_labels", None))}
            labels = {int(lut[int(c)]) for c in _values(getattr(r, "labels", None))}
            a = "accept_set" if len(shown) >= 2 and labels and labels <= shown else "remove"
        if a == "accept_set":
            v = "accept"
        elif a == "remove":
            v = "accept" if problem else "relabel" if true != given else "reject"
        elif a == "fix":
            v = "accept" if true == new and true != given else "relabel" if true != given else "reject"
        else:
            v = "relabel" if true != given else "accept"
        w = wnids[int(r.true_label)] if v == "relabel" else ""
        out[r.sample_id] = Verdict(sample_id=r.sample_id, content_hash=r.content_hash or "", verdict=v, wnid=w,
                                   reviewer="truth")
    return out


def _values(v) -> list:
    """A list cell as read from parquet (a NumPy array, a list or None) as a list."""
    return [] if v is None else list(v)


def split_halves(verdicts: Mapping[str, Verdict], seed: int) -> tuple[dict[str, Verdict], dict[str, Verdict]]:
    """The verdicts cut into a tuning half and a held-out half, by a seeded order of their sample ids."""
    ids = sorted(verdicts)
    order = np.random.default_rng(seed).permutation(len(ids))
    half = len(ids) // 2
    a = {ids[i]: verdicts[ids[i]] for i in sorted(order[:half])}
    b = {ids[i]: verdicts[ids[i]] for i in sorted(order[half:])}
    return a, b


def standin_experiment(params: Params, ws: Workspace, split: str, *, audit: int = 100, seed: int = 0, cams: bool = False,
                       param: str = "h1,h2,h3", grid: Sequence[str] = (), inputs: TuneInputs | None = None) -> dict:
    """Tune on half of a truth-knowing reviewer's verdicts and compare with the current thresholds on the other half.

    The reviewer (:func:`standin_verdicts`) judges every change and ``audit`` kept images; its verdicts are
    cut in two by ``seed`` (:func:`split_halves`); ``tune`` proposes a setting from the tuning half; both
    the proposed and the current thresholds are then scored on the held-out half.

    Returns:
        ``current``/``proposed`` (thresholds), ``line``, ``reviewed`` (all, tuning, held-out) and, for each of
        ``tuning`` and ``held_out``, the agreement, its Wilson interval and counts of both settings.
    """
    inputs = inputs or load_inputs(params, ws, split)
    if not params.dataset.truth:
        raise TuneError("params.yaml dataset.truth names no truth table: there is no stand-in reviewer")
    truth = read_table(ws.resolve(params.dataset.truth))
    truth = truth[truth["split"] == split]
    verdicts = standin_verdicts(inputs.decisions, truth, inputs.ev.classes.wnids, inputs.merge_lut, audit=audit, seed=seed)
    tuning, held = split_halves(verdicts, seed)
    r = tune_split(params, ws, split, param=param, grid=grid, cams=cams, verdicts=tuning, inputs=inputs)
    chosen = r.settings[r.chosen]

    def rows(table: pd.DataFrame) -> dict:
        keys = ("reviewed", "agree", "agreement", "low", "high", "wins", "losses", "changed_unreviewed", "fix", "remove")
        return {name: {k: (float(table.loc[i, k]) if k in ("agreement", "low", "high") else int(table.loc[i, k]))
                       for k in keys} for name, i in (("current", 0), ("proposed", 1))}

    both = [inputs.current, chosen]
    # for comparison: the setting with the best raw agreement on the tuning half (no sign test), on the held-out half
    decided = r.table[r.table["undecided_reviewed"] == 0]
    raw = int(decided.sort_values(["agreement", "changed_unreviewed"], ascending=[False, True], kind="stable").index[0])
    raw_held = rows(evaluate(inputs, held, [inputs.current, r.settings[raw]]))["proposed"]
    return {
        "best_raw": {"setting": setting_key(r.settings[raw]), "held_out": raw_held},
        "split": split, "seed": seed, "audit": audit,
        "current": setting_key(inputs.current), "proposed": setting_key(chosen), "line": r.line,
        "reviewed": {"all": len(verdicts), "tuning": len(tuning), "held_out": len(held)},
        "verdicts": {v: sum(x.verdict == v for x in verdicts.values()) for v in ("accept", "reject", "relabel")},
        "tuning": rows(evaluate(inputs, tuning, both)),
        "held_out": rows(evaluate(inputs, held, both)),
        "text": r.text,
    }
