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

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..cleanup.ensemble import cam_candidate_mask
from ..cleanup.merges import merge_index
from ..cleanup.rules import RULE_CONSENSUS, apply_exemptions, check_resolved, resolved
from ..cleanup.verdicts import RULE_HUMAN, Verdict, classify, read_verdicts
from ..config import ConfigError, Params, Thresholds, is_threshold
from ..constants import MIN_TUNE_REVIEWS, TUNE_MIN_WIN_SHARE, WILSON_Z
from ..io import read_metadata, read_table
from ..workspace import Workspace
from .data import audit_rank

TUNABLE = ("h1", "h2", "h3")
"""The thresholds ``tune`` varies (``fn`` changes confident learning itself: an experiment, not a replay)."""

# What the reviewer says a sample should become: keep it with its label, give it class ``cls``, or remove it.
KEEP, RELABEL, REMOVE = 0, 1, 2

AGREES: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "keep": lambda new, want, cls: want == KEEP,
    "fix": lambda new, want, cls: (want == RELABEL) & (new == cls),
    "remove": lambda new, want, cls: want != KEEP,
}
"""Per machine action: does a decision (its new label, after merges) agree with what the reviewer wants
(``want``, ``cls`` after merges)? The one place that knows the actions; a new action (issue 30's label
sets) is one entry here."""


class TuneError(ValueError):
    """Inputs ``tune`` refuses (no or too few verdicts, stale verdicts, a bad grid); one line."""


# ------------------------------------------------------------------ statistics


def wilson_interval(k: int, n: int, *, z: float = WILSON_Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n`` (``(0, 1)`` for ``n = 0``)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


# ------------------------------------------------------------------ grid


def parse_value(text: str) -> int | float | str:
    """A threshold value as params.yaml spells it: ``3``, ``0.5`` or ``all``."""
    t = text.strip()
    if t == "all":
        return t
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        raise TuneError(f"grid value {t!r} is not a number or \"all\"") from None


def parse_grid(params_text: str, grid: Sequence[str], *, current: Thresholds, n_models: int) -> dict[str, list]:
    """The values to try per threshold: ``--param h1,h2,h3`` (each: every count 1..|M|) and ``--grid h3=2,3,4``.

    Raises:
        TuneError: an unknown threshold, or a value outside its valid range (the message gives the range).
    """
    names = [p.strip() for p in params_text.split(",") if p.strip()]
    out: dict[str, list] = {}
    for item in grid:
        key, sep, vals = item.partition("=")
        key = key.strip()
        if not sep or not vals.strip():
            raise TuneError(f"--grid {item!r}: expected NAME=V1,V2,... (e.g. h3=2,3,4)")
        if key not in TUNABLE:
            raise TuneError(f"--grid {item!r}: {key!r} is not a threshold tune varies ({', '.join(TUNABLE)})")
        out[key] = [parse_value(v) for v in vals.split(",") if v.strip()]
    for p in names:
        if p not in TUNABLE:
            raise TuneError(f"--param {p!r} is not a threshold tune varies ({', '.join(TUNABLE)})")
        out.setdefault(p, list(range(1, n_models + 1)))
    for key, vals in out.items():
        for v in vals:
            if not is_threshold(v) and v != "all":
                raise TuneError(f"--grid {key}={v!r} is outside the valid range: a count in 1..{n_models}, "
                                f"a fraction in (0, 1) or \"all\"")
            try:
                check_resolved(dataclasses.replace(current, **{key: v}), n_models)
            except ConfigError as e:
                raise TuneError(f"--grid {e}") from None
        out[key] = list(dict.fromkeys(vals))
    if not out:
        raise TuneError(f"nothing to vary: give --param (some of {', '.join(TUNABLE)}) or --grid NAME=V1,V2,...")
    return out


def settings(grid: Mapping[str, list], current: Thresholds, n_models: int) -> list[Thresholds]:
    """Every combination of the grid's values, the other thresholds at their current values; the current first.

    Settings that need the same numbers of models as an earlier one are left out.
    """
    keys = list(grid)
    out = [current]
    seen = {_resolved_key(current, n_models)}
    now = _resolved_key(current, n_models)
    for combo in itertools.product(*(grid[k] for k in keys)):
        t = dataclasses.replace(current, **dict(zip(keys, combo)))
        key = _resolved_key(t, n_models)
        # a value that needs the current number of models keeps the current spelling ("all", not 5)
        t = dataclasses.replace(t, **{k: getattr(current, k) for k, a, b in zip(TUNABLE, key, now) if a == b})
        if key not in seen:  # "all" and |M|, or 0.5 and a count it resolves to, are one setting
            seen.add(key)
            out.append(t)
    return out


def _resolved_key(t: Thresholds, n_models: int) -> tuple:
    r = resolved(t, n_models)
    return tuple(math.ceil(r[k] - 1e-9) for k in TUNABLE)


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
                        cam=json.loads(meta.get("cam") or "true"), known_cam=known, merge_lut=lut)
    check_current(inputs, path)
    return inputs


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
        return dec, np.zeros(len(dec), bool), np.zeros(len(dec), bool)
    cand = cam_candidate_mask(ev.manifest, dec, ev.ens, ev.valid_rows)
    have = np.fromiter((s in inputs.known_cam for s in inputs.sample_ids), bool, len(dec))
    rows = np.flatnonzero(cand & have)
    if len(rows):
        ex = pd.DataFrame([(inputs.sample_ids[i], *inputs.known_cam[inputs.sample_ids[i]]) for i in rows],
                          columns=["sample_id", "exempted_by", "cam_scores"])
        dec = apply_exemptions(dec, ex)
    return dec, cand & ~have, cand


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
    image kept with its label, ``relabel`` its class (kept when that is the label, after merges).
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
        else:
            a, c = "fix", wnid_index[v.wnid]
        if a == "fix" and lut[c] == lut[labels[i]]:
            a = "keep"
        want[j] = {"keep": KEEP, "fix": RELABEL, "remove": REMOVE}[a]
        cls[j] = lut[c] if a == "fix" else -1
    return pos, want, cls


def agrees(decisions: pd.DataFrame, pos: np.ndarray, want: np.ndarray, cls: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Whether each reviewed sample's decision agrees with the reviewer (:data:`AGREES`)."""
    act = decisions["action"].to_numpy()[pos]
    new = lut[decisions["new_label"].to_numpy(np.int64)[pos]]
    label = lut[decisions["label"].to_numpy(np.int64)[pos]]
    act = np.where((act == "fix") & (new == label), "keep", act)  # a fix to a merge partner changes nothing
    out = np.zeros(len(pos), bool)
    for a in np.unique(act):
        if a not in AGREES:
            raise TuneError(f"tune does not know how to score the action {a!r} (review/tune.py AGREES)")
        m = act == a
        out[m] = AGREES[a](new[m], want[m], cls[m])
    return out


# ------------------------------------------------------------------ the table


def setting_key(t: Thresholds) -> dict:
    return {k: getattr(t, k) for k in TUNABLE}


def evaluate(inputs: TuneInputs, verdicts: Mapping[str, Verdict], grid_settings: Sequence[Thresholds]) -> pd.DataFrame:
    """One row per setting: counts, agreement with the reviewers and its interval, unreviewed changes.

    Columns: ``h1``, ``h2``, ``h3`` (as params.yaml spells them, text), ``fix``, ``remove`` (over the split), ``reviewed`` (reviewed samples
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
    head = (f"{'':2}{'h1':>5} {'h2':>5} {'h3':>5} {'fix':>5} {'remove':>6} {'agree':>11} {'agreement':>9} "
            f"{'95% interval':>14} {'wins':>4} {'losses':>6} {'unreviewed':>10} {'undecided':>9}")
    lines = [head]
    for i in show:
        r = table.loc[i]
        mark = "* " if r["current"] else "> " if i == chosen else "  "
        agr = "-" if not r["reviewed"] else f"{r['agreement']:.3f}"
        lines.append(f"{mark}{r['h1']!s:>5} {r['h2']!s:>5} {r['h3']!s:>5} {r['fix']:>5} {r['remove']:>6} "
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


# ------------------------------------------------------------------ a stand-in reviewer (the embedded truth)


def standin_verdicts(decisions: pd.DataFrame, truth: pd.DataFrame, wnids: Sequence[str], lut: np.ndarray, *,
                     audit: int = 0, seed: int = 0) -> dict[str, Verdict]:
    """The verdicts a reviewer who knows the injected truth gives (the embedded default's ``truth.parquet``).

    Every change (fix, removal, CAM exemption) is reviewed, and ``audit`` kept images drawn as the review
    app draws them (:func:`~imagenet_clean.review.data.audit_rank`). The reviewer accepts a right decision, relabels a wrong label to
    the true class, and rejects a fix or removal of a correct label; a problem image (no digit to name)
    whose removal the machine proposed is accepted, else, since no verdict removes an image, its label
    (the true one) is kept. Labels are compared after merges.
    """
    d = decisions.merge(truth[["sample_id", "true_label", "problem"]], on="sample_id", how="inner")
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
        if a == "remove":
            v = "accept" if problem else "relabel" if true != given else "reject"
        elif a == "fix":
            v = "accept" if true == new and true != given else "relabel" if true != given else "reject"
        else:
            v = "relabel" if true != given else "accept"
        w = wnids[int(r.true_label)] if v == "relabel" else ""
        out[r.sample_id] = Verdict(sample_id=r.sample_id, content_hash=r.content_hash or "", verdict=v, wnid=w,
                                   reviewer="truth")
    return out


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
