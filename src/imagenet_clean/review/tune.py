"""``imagenet-clean tune``: the thresholds that agree best with the reviewers' verdicts.

For one split, from what the clean stage read and wrote (no model is run):

* the evidence is the clean stage's own (:func:`imagenet_clean.stages.clean.split_evidence`: the manifest
  and each model's flags, candidates, candidate probabilities and top-k misses, read from the prediction
  files; the decisions table does not store the candidates' probabilities that break a fix's ties, nor
  which models have the label in their top-k, which decide the CAM candidates);
* each threshold setting's decisions are the project's rules
  (:func:`imagenet_clean.cleanup.rules.decide`, :func:`~imagenet_clean.cleanup.rules.apply_exemptions`,
  :func:`~imagenet_clean.cleanup.ensemble.cam_candidate_mask`);
* the CAM exemptions come from the decisions table (``cam_scores``, ``exempted_by``: the CAMs the clean
  stage ran at the current thresholds). A setting that makes a sample a CAM candidate the decisions hold
  no CAM result for (a lower ``h3``) leaves it **undecided**: counted, never guessed, and a setting with an
  undecided *reviewed* sample is not proposed. ``--cams`` computes those results instead, with the clean
  stage's own CAM function and score cache (``data/cache/cams/<split>/``: what an experiment already
  computed is read, not recomputed, and what ``tune`` computes an experiment reuses);
* the verdicts (``reviews/<split>.csv``) say what each reviewed sample should have become
  (:func:`reviewer_outcomes`), and a decision agrees with a verdict by :data:`AGREES` (the scoring rules
  of ``evaluate/score.py``: a fix agrees when its class is the reviewer's, a removal when the reviewer
  did not keep the image with its label, a keep when the reviewer did). Agreement is measured on the
  reviewed samples only, with a Wilson 95 % interval; a setting that changes unreviewed samples reports
  how many. Kept images that a reviewer relabels (the review app's audit sample, ``--audit``) are the
  misses a setting can recover.

The proposal is the setting with the highest agreement among those that beat the current thresholds on
the reviewed samples where the two disagree (the Wilson lower bound of its wins among those samples above
one half, :data:`~imagenet_clean.constants.TUNE_MIN_WIN_SHARE`); without one, the current thresholds stay.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..cleanup.ensemble import cam_candidate_mask
from ..cleanup.merges import merge_index
from ..cleanup.rules import ACTION_SET, RULE_CONSENSUS, RULE_LABEL_SET, RULE_QUALITY, apply_exemptions
from ..cleanup.verdicts import RULE_HUMAN, Verdict, classify, read_verdicts
from ..config import Params, Thresholds
from ..constants import MIN_TUNE_REVIEWS, TUNE_MIN_WIN_SHARE
from ..io import read_metadata, read_table
from ..workspace import Workspace
from .agreement import (  # noqa: F401 - re-exported: the tune API in one place
    AGREES,
    KEEP,
    RELABEL,
    REMOVE,
    SET,
    TUNABLE,
    TuneError,
    agrees,
    parse_grid,
    parse_value,
    setting_key,
    settings,
    wilson_interval,
)

# ------------------------------------------------------------------ the split's evidence


@dataclass
class TuneInputs:
    """A split's evidence, its decisions table and what the CAMs said, aligned on the usable rows."""

    split: str
    ev: object  # stages.clean.SplitEvidence
    sample_ids: np.ndarray  # of the usable rows
    decisions: pd.DataFrame  # the full decisions table (every manifest row)
    current: Thresholds
    cam: bool  # whether the decisions ran the CAM exemption
    known_cam: dict[str, tuple[str, str]]  # sample_id -> (exempted_by, cam_scores) of the CAM results at hand
    merge_lut: np.ndarray
    quality_fired: np.ndarray | None = None  # usable rows beyond a quality bound (the quality rule on), else None
    label_sets: np.ndarray | None = None  # usable rows the stored decisions gave a label set (rule label_set)

    @property
    def n_models(self) -> int:
        return len(self.ev.names)


def thresholds_from_meta(meta: dict, path: Path) -> Thresholds:
    """The thresholds a decisions table was made with (its ``thresholds`` metadata)."""
    try:
        return Thresholds(**json.loads(meta["thresholds"]))
    except (KeyError, TypeError, ValueError) as e:
        raise TuneError(f"{path}: no readable thresholds in its metadata ({e}); run `dvc repro` first") from None


def load_inputs(params: Params, ws: Workspace, split: str, *, n_jobs: int | None = 1) -> TuneInputs:
    """Read a split's decisions and the clean stage's evidence, and check that they belong together.

    Raises:
        TuneError: no decisions, params.yaml thresholds that differ from the decisions' (not rerun), or
            decisions that the predictions no longer give (naming the rows).
    """
    from ..stages.clean import split_evidence

    path = ws.decisions(split)
    if not path.is_file():
        raise TuneError(f"{path}: not found (run `dvc repro` first)")
    meta = read_metadata(path)
    if meta.get("skipped"):
        raise TuneError(f"split {split} was skipped by the clean stage: nothing to tune")
    current = thresholds_from_meta(meta, path)
    want = params.thresholds(split)
    if want != current:
        raise TuneError(f"params.yaml's thresholds for {split} ({_fmt(want)}) are not the ones {path} was made with "
                        f"({_fmt(current)}); run `dvc repro` first")
    decisions = read_table(path)
    ev = split_evidence(params, ws, split, n_jobs=n_jobs, check_space=False)
    ids = ev.manifest["sample_id"].to_numpy()[ev.valid_rows]
    if not np.array_equal(decisions["sample_id"].to_numpy(), ev.manifest["sample_id"].to_numpy()):
        raise TuneError(f"{path} does not list the manifest's samples in its order; run `dvc repro` first")
    sub = decisions.iloc[ev.valid_rows]
    known = {}
    for sid, by, scores in zip(ids, sub["exempted_by"].fillna(""), sub["cam_scores"].fillna("{}")):
        if scores and scores != "{}":
            known[sid] = (str(by), str(scores))
    merges = ev.merges
    lut = merge_index(merges, ev.classes) if merges else np.arange(len(ev.classes), dtype=np.int64)
    inputs = TuneInputs(split=split, ev=ev, sample_ids=ids, decisions=decisions, current=current,
                        cam=json.loads(meta.get("cam") or "true"), known_cam=known, merge_lut=lut,
                        quality_fired=_quality_fired(params, ws, split, ids),
                        label_sets=np.fromiter((RULE_LABEL_SET in list(r) for r in sub["rules"]), bool, len(sub)))
    check_current(inputs, path)
    return inputs


def _quality_fired(params: Params, ws: Workspace, split: str, ids: np.ndarray) -> np.ndarray | None:
    """Which usable rows lie beyond a bound of the quality rule (None when the rule is off): the clean stage's test.

    Raises:
        TuneError: the quality file is missing or lacks a sample (stale).
    """
    qc = getattr(params, "quality", None)
    if qc is None or not qc.enabled:
        return None
    from ..cleanup.quality import beyond_bounds, read_quality

    try:
        figures = read_quality(ws.quality(split))
    except FileNotFoundError as e:
        raise TuneError(str(e)) from None
    pos = pd.Index(figures["sample_id"]).get_indexer(ids)
    if (pos < 0).any():
        raise TuneError(f"{ws.quality(split)} lacks sample {ids[pos < 0][0]!r}; run `dvc repro` first")
    return np.array([bool(w) for w in beyond_bounds(figures.iloc[pos].reset_index(drop=True), qc.thresholds)], bool)


def _fmt(t: Thresholds) -> str:
    return ", ".join(f"{k} {getattr(t, k)}" for k in ("fn", "h1", "h2", "h3"))


def decide_setting(inputs: TuneInputs, t: Thresholds) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """One setting's decisions over the usable rows, by the project's rules.

    Returns:
        ``(decisions, undecided, candidates)``: ``decide`` plus the CAM exemptions at hand;
        ``undecided`` marks the CAM candidates without a CAM result (their action is the rules'
        ``remove``, not to be trusted), ``candidates`` every CAM candidate.
    """
    ev = inputs.ev
    dec = ev.ens.decide(ev.labels, t)
    dec.insert(0, "sample_id", inputs.sample_ids)
    dec = apply_exemptions(dec, None)
    if not inputs.cam:
        return apply_overlays(inputs, dec), np.zeros(len(dec), bool), np.zeros(len(dec), bool)
    cand = cam_candidate_mask(ev.manifest, dec, ev.ens, ev.valid_rows)
    have = np.fromiter((s in inputs.known_cam for s in inputs.sample_ids), bool, len(dec))
    rows = np.flatnonzero(cand & have)
    if len(rows):
        ex = pd.DataFrame([(inputs.sample_ids[i], *inputs.known_cam[inputs.sample_ids[i]]) for i in rows],
                          columns=["sample_id", "exempted_by", "cam_scores"])
        dec = apply_exemptions(dec, ex)
    return apply_overlays(inputs, dec), cand & ~have, cand


def apply_overlays(inputs: TuneInputs, dec: pd.DataFrame) -> pd.DataFrame:
    """The rules the clean stage applies after the thresholds' rules, on one setting's decisions.

    * label sets (issue 30): the rows the stored decisions gave a set get it in every setting (the
      thresholds h1-h3 do not decide which images show several classes), with the stored first class;
    * the quality rule (on in params.yaml): a row beyond a quality bound is removed unless the setting
      fixes it, as :func:`imagenet_clean.cleanup.quality.apply_quality_rule` does.
    """
    sets, fired = inputs.label_sets, inputs.quality_fired
    if (sets is None or not sets.any()) and (fired is None or not fired.any()):
        return dec
    dec = dec.copy()
    action = dec["action"].to_numpy(dtype=object).copy()
    new_label = dec["new_label"].to_numpy(np.int64).copy()
    rules = [list(r) for r in dec["rules"]]
    if sets is not None and sets.any():
        stored = inputs.decisions.iloc[inputs.ev.valid_rows]["new_label"].to_numpy(np.int64)
        for i in np.flatnonzero(sets):
            action[i], new_label[i] = ACTION_SET, stored[i]
            rules[i].append(RULE_LABEL_SET)
    if fired is not None:
        for i in np.flatnonzero(fired & (action != "fix")):
            action[i] = "remove"
            rules[i].append(RULE_QUALITY)
    dec["action"], dec["new_label"] = action, new_label
    dec["rules"] = pd.Series(rules, dtype=object, index=dec.index)
    return dec


def check_current(inputs: TuneInputs, path: Path) -> None:
    """The current thresholds' recomputed decisions must be the stored ones (rows no reviewer changed).

    Raises:
        TuneError: naming how many rows differ and a few of them (predictions or models changed since).
    """
    dec, undecided, _ = decide_setting(inputs, inputs.current)
    stored = inputs.decisions.iloc[inputs.ev.valid_rows]
    human = np.fromiter((RULE_HUMAN in list(r) for r in stored["rules"]), bool, len(stored))
    diff = ((dec["action"].to_numpy() != stored["action"].to_numpy())
            | (dec["new_label"].to_numpy() != stored["new_label"].to_numpy())) & ~human
    diff |= undecided  # the clean stage ran the CAMs of every candidate of its thresholds
    if diff.any():
        bad = inputs.sample_ids[diff]
        raise TuneError(f"{path}: {int(diff.sum())} decisions differ from what the predictions give now, e.g. "
                        f"{', '.join(map(str, bad[:3]))}; run `dvc repro` first")


# ------------------------------------------------------------------ verdicts


def reviewed_verdicts(inputs: TuneInputs, verdicts: Mapping[str, Verdict], *, source: str = "the reviews",
                      min_reviews: int = MIN_TUNE_REVIEWS) -> dict[str, Verdict]:
    """The verdicts ``tune`` measures against, checked.

    Raises:
        TuneError: no verdicts; verdicts for another version of the decisions (content hash or sample gone;
            naming the rows); fewer than ``min_reviews`` usable ones (naming the count).
    """
    if not verdicts:
        raise TuneError(f"no verdicts in {source}: review the changes first (imagenet-clean review --split {inputs.split})")
    _, outcome = classify(inputs.decisions, verdicts)
    if outcome.stale:
        rows = "; ".join(f"{s['sample_id']} ({s['why']})" for s in outcome.stale[:5])
        more = f" and {len(outcome.stale) - 5} more" if len(outcome.stale) > 5 else ""
        raise TuneError(f"{len(outcome.stale)} verdicts in {source} are for another version of the decisions: "
                        f"{rows}{more}; review them again or remove them")
    ids = set(inputs.sample_ids.tolist())
    usable = {s: verdicts[s] for s in outcome.applied if s in ids}
    if len(usable) < min_reviews:
        raise TuneError(f"{len(usable)} reviewed samples in {source}; tune needs at least {min_reviews} "
                        f"(constants.MIN_TUNE_REVIEWS) to tell settings apart")
    return usable


def reviewer_outcomes(inputs: TuneInputs, verdicts: Mapping[str, Verdict], machine: pd.DataFrame
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What each reviewed sample should become: ``(positions, want, cls)`` over the usable rows.

    ``accept`` wants the machine's decision at the current thresholds (``machine``), ``reject`` the
    image kept with its label, ``relabel`` its class (kept when that is the label, after merges),
    ``relabel_set`` (and ``accept`` of a machine's set) a label set.
    """
    lut = inputs.merge_lut
    wnid_index = {w: i for i, w in enumerate(inputs.ev.classes.wnids)}
    pos_of = {s: i for i, s in enumerate(inputs.sample_ids.tolist())}
    pos = np.array(sorted(pos_of[s] for s in verdicts), np.int64)
    want = np.zeros(len(pos), np.int64)
    cls = np.full(len(pos), -1, np.int64)
    labels = inputs.ev.labels
    act, new = machine["action"].to_numpy(), machine["new_label"].to_numpy()
    for j, i in enumerate(pos):
        v = verdicts[inputs.sample_ids[i]]
        if v.verdict == "accept":
            a, c = act[i], int(new[i])
        elif v.verdict == "reject":
            a, c = "keep", int(labels[i])
        elif v.verdict == ACTION_SET:
            a, c = ACTION_SET, -1
        else:
            a, c = "fix", wnid_index[v.wnid]
        if a == "fix" and lut[c] == lut[labels[i]]:
            a = "keep"
        want[j] = {"keep": KEEP, "fix": RELABEL, "remove": REMOVE, ACTION_SET: SET}[a]
        cls[j] = lut[c] if a == "fix" else -1
    return pos, want, cls


# ------------------------------------------------------------------ the table


def evaluate(inputs: TuneInputs, verdicts: Mapping[str, Verdict], grid_settings: Sequence[Thresholds]) -> pd.DataFrame:
    """One row per setting: counts, agreement with the reviewers and its interval, unreviewed changes.

    Columns: ``h1``, ``h2``, ``h3`` (as params.yaml spells them, text), ``fix``, ``remove``, ``relabel_set`` (over the split),
    ``reviewed`` (reviewed samples
    the setting decides), ``agree``, ``agreement``, ``low``, ``high`` (Wilson), ``wins``/``losses``
    (reviewed samples where it agrees and the current thresholds do not, and the reverse),
    ``changed_unreviewed`` (samples it decides otherwise than the current thresholds, without a verdict,
    undecided ones aside),
    ``undecided`` (CAM candidates without a CAM result) and ``undecided_reviewed``, ``current``.
    """
    machine, _, _ = decide_setting(inputs, inputs.current)
    pos, want, cls = reviewer_outcomes(inputs, verdicts, machine)
    base_ok = agrees(machine, pos, want, cls, inputs.merge_lut)
    reviewed = np.zeros(len(inputs.sample_ids), bool)
    reviewed[pos] = True
    cur_act, cur_new = machine["action"].to_numpy(), machine["new_label"].to_numpy()
    rows = []
    for t in grid_settings:
        dec, undecided, _ = decide_setting(inputs, t)
        ok = agrees(dec, pos, want, cls, inputs.merge_lut)
        dec_rev = ~undecided[pos]
        n, k = int(dec_rev.sum()), int((ok & dec_rev).sum())
        lo, hi = wilson_interval(k, n)
        changed = (dec["action"].to_numpy() != cur_act) | (dec["new_label"].to_numpy() != cur_new)
        act = dec["action"].to_numpy()
        rows.append({
            **{k: str(v) for k, v in setting_key(t).items()}, "fix": int((act == "fix").sum()), "remove": int((act == "remove").sum()),
            "relabel_set": int((act == ACTION_SET).sum()),
            "reviewed": n, "agree": k, "agreement": k / n if n else float("nan"), "low": lo, "high": hi,
            "wins": int((ok & ~base_ok & dec_rev).sum()), "losses": int((~ok & base_ok & dec_rev).sum()),
            "changed_unreviewed": int((changed & ~reviewed & ~undecided).sum()),
            "undecided": int(undecided.sum()), "undecided_reviewed": int((undecided & reviewed).sum()),
            "current": t == inputs.current,
        })
    return pd.DataFrame(rows)


def propose(table: pd.DataFrame, *, min_win_share: float = TUNE_MIN_WIN_SHARE) -> int:
    """The row of the setting to propose: the current one unless a setting beats it clearly.

    A setting qualifies when it decides every reviewed sample (no undecided one) and, on the reviewed
    samples where it and the current thresholds disagree, the Wilson lower bound of its share of wins
    exceeds ``min_win_share``. Among those, the highest agreement; ties go to fewer changed unreviewed
    samples, then to the earlier row.
    """
    cur = int(np.flatnonzero(table["current"].to_numpy())[0])
    ok = []
    for i, r in table.iterrows():
        if r["current"] or r["undecided_reviewed"] or r["wins"] + r["losses"] == 0:
            continue
        if wilson_interval(int(r["wins"]), int(r["wins"] + r["losses"]))[0] > min_win_share:
            ok.append(i)
    if not ok:
        return cur
    best = table.loc[ok].sort_values(["agreement", "changed_unreviewed"], ascending=[False, True], kind="stable")
    return int(best.index[0])


def exp_run_line(params: Params, split: str, current: Thresholds, chosen: Thresholds) -> str:
    """The ``dvc exp run -S ...`` line that sets ``chosen`` (the keys params.yaml takes them from)."""
    sources = params.threshold_sources(split)
    sets = []
    for k in TUNABLE:
        v = getattr(chosen, k)
        if v != getattr(current, k):
            key = k if sources.get(k) == k else f"splits.{split}.{k}"
            sets.append(f"-S {key}={v}")
    return "dvc exp run " + " ".join(sets) if sets else ""


def format_table(table: pd.DataFrame, *, n_models: int, top: int = 15, chosen: int | None = None) -> str:
    """The agreement table as text: the ``top`` settings by agreement, plus the current and the chosen one."""
    order = table.sort_values(["agreement", "changed_unreviewed"], ascending=[False, True], kind="stable").index.tolist()
    show = order[:top]
    for extra in (int(np.flatnonzero(table["current"].to_numpy())[0]), chosen):
        if extra is not None and extra not in show:
            show.append(extra)
    sets = "relabel_set" in table.columns and bool(table["relabel_set"].any())  # the column only with label sets
    head = (f"{'':2}{'h1':>5} {'h2':>5} {'h3':>5} {'fix':>5} {'remove':>6} " + (f"{'sets':>5} " if sets else "")
            + f"{'agree':>11} {'agreement':>9} {'95% interval':>14} {'wins':>4} {'losses':>6} {'unreviewed':>10} {'undecided':>9}")
    lines = [head]
    for i in show:
        r = table.loc[i]
        mark = "* " if r["current"] else "> " if i == chosen else "  "
        agr = "-" if not r["reviewed"] else f"{r['agreement']:.3f}"
        lines.append(f"{mark}{r['h1']!s:>5} {r['h2']!s:>5} {r['h3']!s:>5} {r['fix']:>5} {r['remove']:>6} "
                     + (f"{r['relabel_set']:>5} " if sets else "") +
                     f"{r['agree']:>5}/{r['reviewed']:<5} {agr:>9} [{r['low']:.3f}, {r['high']:.3f}] {r['wins']:>4} "
                     f"{r['losses']:>6} {r['changed_unreviewed']:>10} {r['undecided']:>4} ({r['undecided_reviewed']})")
    lines.append(f"* current thresholds, > proposed; agreement on reviewed samples (Wilson 95 %); wins/losses: reviewed "
                 f"samples where the setting agrees and the current does not, and the reverse; unreviewed: samples "
                 f"decided otherwise than now without a verdict; undecided: CAM candidates without a CAM result "
                 f"(reviewed ones in brackets). Counts are of models (|M| = {n_models}).")
    return "\n".join(lines)


# ------------------------------------------------------------------ CAMs on demand


def run_missing_cams(params: Params, ws: Workspace, inputs: TuneInputs, grid_settings: Sequence[Thresholds], *,
                     find_exemptions=None, load_model=None) -> int:
    """Compute (or read from the score cache) the CAM results the settings lack, as the clean stage would.

    Uses :func:`imagenet_clean.cleanup.cam.find_exemptions` with the clean stage's model loader and the
    split's score cache, so the results are the clean stage's and an experiment reuses them.

    Args:
        find_exemptions, load_model: As the clean stage's (:func:`imagenet_clean.stages.clean.run`; for tests).

    Returns:
        How many samples got a CAM result.
    """
    from ..cleanup.ensemble import cam_candidates
    from ..stages.clean import trained_loader
    from ..stages.common import split_root

    ev = inputs.ev
    union = np.zeros(len(inputs.sample_ids), bool)
    for t in grid_settings:
        union |= decide_setting(inputs, t)[1]
    if not union.any():
        return 0
    # the missing samples as consensus-only removals: cam_candidates orders their models as the stage does
    marks = pd.DataFrame({"rules": pd.Series([[RULE_CONSENSUS] if u else [] for u in union], dtype=object)})
    cands = cam_candidates(ev.manifest, marks, ev.ens, ev.valid_rows)
    root = split_root(ev.meta, params, inputs.split, ws)
    extra = {}
    if find_exemptions is None:
        from ..cleanup.cam import find_exemptions

        extra["max_pixels"] = params.ingest.max_pixels
    loader = load_model or trained_loader(params, len(ev.classes), ws.models)
    ex = find_exemptions(cands, root=root, load_model=loader, cfg=params.cam, cache_dir=ws.cam_cache(inputs.split), **extra)
    for sid, by, scores in zip(ex["sample_id"], ex["exempted_by"], ex["cam_scores"]):
        inputs.known_cam[sid] = (str(by), str(scores))
    return int(len(ex))


# ------------------------------------------------------------------ the command


@dataclass
class TuneResult:
    """What :func:`tune_split` found: the table (one row per setting of ``settings``), the proposed row."""

    table: pd.DataFrame
    settings: list[Thresholds]
    chosen: int
    line: str
    text: str
    n_reviewed: int


def tune_split(params: Params, ws: Workspace, split: str, *, param: str = "h1,h2,h3", grid: Sequence[str] = (),
               cams: bool = False, top: int = 15, verdicts: Mapping[str, Verdict] | None = None,
               min_reviews: int = MIN_TUNE_REVIEWS, inputs: TuneInputs | None = None, find_exemptions=None,
               load_model=None) -> TuneResult:
    """The agreement table of a split's threshold settings and the proposed ``dvc exp run`` line.

    Args:
        params: The validated params (the ones the decisions were made with).
        ws: The project.
        split: A cleaned split.
        param: The thresholds to vary, comma-separated (each over every count 1..|M| unless ``grid`` names it).
        grid: ``NAME=V1,V2,...`` items: the values to try for a threshold.
        cams: Compute the CAM results that settings lack (else those samples are undecided).
        top: Settings shown in the text table.
        verdicts: The verdicts (default: ``reviews/<split>.csv``).
        min_reviews: The fewest reviewed samples ``tune`` works with.
        inputs: Evidence already loaded (:func:`load_inputs`).
        find_exemptions, load_model: The CAM function and model loader of ``cams`` (default: the clean stage's).

    Raises:
        TuneError: see :func:`load_inputs`, :func:`reviewed_verdicts`, :func:`parse_grid`.
    """
    inputs = inputs or load_inputs(params, ws, split)
    source = str(ws.reviews(split))
    if verdicts is None:
        verdicts = read_verdicts(ws.reviews(split), wnids=set(inputs.ev.classes.wnids))
    usable = reviewed_verdicts(inputs, verdicts, source=source, min_reviews=min_reviews)
    values = parse_grid(param, grid, current=inputs.current, n_models=inputs.n_models)
    todo = settings(values, inputs.current, inputs.n_models)
    if cams and inputs.cam:
        run_missing_cams(params, ws, inputs, todo, find_exemptions=find_exemptions, load_model=load_model)
    table = evaluate(inputs, usable, todo)
    chosen = propose(table)
    line = exp_run_line(params, split, inputs.current, todo[chosen])
    text = format_table(table, n_models=inputs.n_models, top=top, chosen=chosen)
    r = table.loc[chosen]
    if line:
        text += (f"\nproposed for {split}: {line}   (agreement {r['agreement']:.3f} [{r['low']:.3f}, {r['high']:.3f}] "
                 f"on {r['reviewed']} reviewed, {r['wins']} wins / {r['losses']} losses against the current; "
                 f"{r['changed_unreviewed']} unreviewed samples change)")
    else:
        text += (f"\nproposed for {split}: keep the current thresholds (no setting beats them clearly on "
                 f"{len(usable)} reviewed samples)")
    blocked = int((table["undecided_reviewed"] > 0).sum())
    if blocked:
        text += (f"\n{blocked} settings make reviewed samples CAM candidates without a CAM result and were not "
                 f"proposed; `--cams` computes them (cached in {ws.cam_cache(split)})")
    return TuneResult(table=table, settings=todo, chosen=chosen, line=line, text=text, n_reviewed=len(usable))
