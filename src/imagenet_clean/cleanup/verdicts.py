"""Human verdicts on the machine's decisions (``reviews/<split>.csv``), applied by the clean stage.

A reviews file is a small, git-tracked CSV with the columns
:data:`VERDICT_COLUMNS`; ``imagenet-clean review`` writes it, and so can a
person or another tool. One row per sample (when a file holds several, the
last one wins):

* ``accept``: the machine's decision stands;
* ``reject``: the sample is kept with its original label;
* ``relabel``: the sample is fixed to the class ``wnid`` (also a sample the
  machine wanted to remove);
* ``relabel_set``: the sample shows several classes: its action becomes
  ``relabel_set`` with the label set ``wnids`` (docs: /work/notes/LABELSETS.md,
  issue 30), on any decision. On a machine's ``relabel_set`` decision,
  ``accept`` keeps the set, ``reject`` keeps the sample with its original label
  (``labels`` empty) and ``relabel`` fixes it to one class.

The column ``wnids`` (a JSON list of class ids, ``["n01","n02"]``, for a
``relabel_set`` verdict only) follows :data:`VERDICT_COLUMNS`; it is optional: a
file without it reads as before, and a file is written with it only when one of
its verdicts is a set (so a project without sets keeps its file byte for byte).

A verdict whose ``content_hash`` differs from the manifest's (the image
changed after the review), or whose sample is no longer in the split, is not
applied and is reported as stale. Verdicts on unreadable samples are not
applied either. A verdict that changes the outcome (reject, relabel) adds the
rule :data:`RULE_HUMAN` to the decision; every applied verdict fills the
decisions' ``verdict`` column, which exists only when the split has verdicts
(so a project without reviews writes exactly the decisions it wrote before).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import pandas as pd

from ..classes import ClassList
from ..io import write_text
from .rules import ACTION_SET, RULE_LABEL_SET, RULE_UNREADABLE  # noqa: F401 (re-exported for the review app)

VERDICT_COLUMNS = ("sample_id", "content_hash", "verdict", "wnid", "reviewer", "time", "note")
"""Columns of ``reviews/<split>.csv``, in order (then the optional :data:`SET_COLUMN`)."""
SET_COLUMN = "wnids"
"""The optional last column: a ``relabel_set`` verdict's classes, a JSON list of wnids."""
VERDICTS = ("accept", "reject", "relabel", "relabel_set")
RULE_HUMAN = "human"
"""The rule a reviewer's reject, relabel or relabel_set adds to a decision."""
LABELS_COLUMN = "labels"
"""The decisions' label-set column (list<int64>; present only with ``label_sets.enabled``)."""


class VerdictError(ValueError):
    """A reviews file or a verdict is malformed (the message names the file and line)."""


@dataclass(frozen=True)
class Verdict:
    """One reviewer's verdict on one sample."""

    sample_id: str
    content_hash: str
    verdict: str
    wnid: str = ""
    reviewer: str = ""
    time: str = ""
    note: str = ""
    wnids: tuple[str, ...] = ()
    line: int = 0

    def row(self) -> dict[str, str]:
        """The CSV row (without the line number); ``wnids`` as JSON text, empty for a verdict without a set."""
        return {**{c: getattr(self, c) for c in VERDICT_COLUMNS}, SET_COLUMN: format_set(self.wnids)}


def format_set(wnids) -> str:
    """The ``wnids`` cell of a set: compact JSON (``["n01","n02"]``), empty for no set."""
    return json.dumps(list(wnids), separators=(",", ":")) if wnids else ""


def parse_set(text: str, *, where: str = "") -> tuple[str, ...]:
    """The classes of a ``wnids`` cell (JSON list of strings; empty text: none), repeats dropped, order kept.

    Raises:
        VerdictError: malformed JSON, or not a list of non-empty strings (prefixed by ``where``).
    """
    pre = f"{where}: " if where else ""
    text = (text or "").strip()
    if not text:
        return ()
    try:
        got = json.loads(text)
    except ValueError as e:
        raise VerdictError(f"{pre}wnids {text!r} is not JSON ({e.msg})") from None
    if not isinstance(got, list) or not all(isinstance(w, str) and w.strip() for w in got):
        raise VerdictError(f"{pre}wnids {text!r} is not a JSON list of class ids")
    return tuple(dict.fromkeys(w.strip() for w in got))


@dataclass
class ReviewOutcome:
    """What applying a split's verdicts did."""

    applied: dict[str, str] = field(default_factory=dict)  # sample_id -> verdict
    stale: list[dict] = field(default_factory=list)  # {sample_id, verdict, why}
    ignored: list[dict] = field(default_factory=list)  # verdicts on unreadable samples


def check_verdict(v: Verdict, *, wnids: set[str] | None = None, where: str = "") -> Verdict:
    """Validate one verdict; return it with whitespace stripped from its fields.

    Raises:
        VerdictError: empty sample id, unknown verdict, a relabel without a
            known wnid, a relabel_set without at least 2 distinct known classes
            (or wnids on another verdict), or a time that is not ISO 8601
            (prefixed by ``where``).
    """
    pre = f"{where}: " if where else ""
    given = tuple(dict.fromkeys(w.strip() for w in (v.wnids or ()) if w and w.strip()))
    v = Verdict(**{c: (getattr(v, c) or "").strip() for c in VERDICT_COLUMNS}, wnids=given, line=v.line)
    if not v.sample_id:
        raise VerdictError(f"{pre}empty sample_id")
    if v.verdict not in VERDICTS:
        raise VerdictError(f"{pre}verdict {v.verdict!r} is not one of {', '.join(VERDICTS)}")
    if v.verdict == "relabel":
        if not v.wnid:
            raise VerdictError(f"{pre}relabel of {v.sample_id!r} names no wnid")
        if wnids is not None and v.wnid not in wnids:
            raise VerdictError(f"{pre}relabel of {v.sample_id!r} to unknown class {v.wnid!r}")
    elif v.wnid:
        raise VerdictError(f"{pre}{v.verdict} of {v.sample_id!r} names a wnid ({v.wnid!r}); only relabel does")
    if v.verdict == "relabel_set":
        if len(v.wnids) < 2:
            raise VerdictError(f"{pre}relabel_set of {v.sample_id!r} names {len(v.wnids)} distinct classes "
                               f"({format_set(v.wnids) or 'none'}); a label set needs at least 2")
        unknown = [w for w in v.wnids if wnids is not None and w not in wnids]
        if unknown:
            raise VerdictError(f"{pre}relabel_set of {v.sample_id!r} names unknown class {unknown[0]!r}")
    elif v.wnids:
        raise VerdictError(f"{pre}{v.verdict} of {v.sample_id!r} names wnids ({format_set(v.wnids)}); only relabel_set does")
    if v.time:
        try:
            datetime.fromisoformat(v.time.replace("Z", "+00:00"))
        except ValueError:
            raise VerdictError(f"{pre}time {v.time!r} is not ISO 8601") from None
    return v


def parse_verdicts(text: str, *, source: str = "<reviews>", wnids: set[str] | None = None) -> list[Verdict]:
    """Parse the text of a reviews file, every row checked (:func:`check_verdict`).

    Raises:
        VerdictError: ``<source>, line <n>: <what is wrong>`` for the first bad
            line (wrong header, wrong number of fields, a bad field).
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    out: list[Verdict] = []
    try:
        header = next(reader, None)
        if header is None:
            return out
        header = [h.strip() for h in header]
        columns = (*VERDICT_COLUMNS, SET_COLUMN) if header == [*VERDICT_COLUMNS, SET_COLUMN] else VERDICT_COLUMNS
        if header != list(columns):
            raise VerdictError(f"{source}, line 1: header {','.join(header)!r} is not {','.join(VERDICT_COLUMNS)!r} "
                               f"(optionally followed by {SET_COLUMN!r})")
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(columns):
                raise VerdictError(f"{source}, line {line}: {len(row)} fields, expected {len(columns)} "
                                   f"({','.join(columns)})")
            where = f"{source}, line {line}"
            cells = dict(zip(columns, row))
            sets = parse_set(cells.pop(SET_COLUMN, ""), where=where)
            v = Verdict(**cells, wnids=sets, line=line)
            out.append(check_verdict(v, wnids=wnids, where=where))
    except csv.Error as e:
        raise VerdictError(f"{source}, line {reader.line_num}: {e}") from None
    return out


def read_verdicts(path: str | Path, *, wnids: set[str] | None = None) -> dict[str, Verdict]:
    """The verdicts of a reviews file, last one per sample (a missing file: none).

    Raises:
        VerdictError: a malformed line (see :func:`parse_verdicts`).
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise VerdictError(f"{path}: not UTF-8 text ({e})") from None
    return {v.sample_id: v for v in parse_verdicts(text, source=str(path), wnids=wnids)}


def format_verdicts(verdicts: Mapping[str, Verdict] | list[Verdict]) -> str:
    """CSV text of verdicts (header and one row each, sorted by sample id: stable, diffable).

    The :data:`SET_COLUMN` is written only when a verdict has a label set.
    """
    items = list(verdicts.values() if isinstance(verdicts, Mapping) else verdicts)
    columns = [*VERDICT_COLUMNS, SET_COLUMN] if any(v.wnids for v in items) else list(VERDICT_COLUMNS)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for v in sorted(items, key=lambda v: v.sample_id):
        w.writerow(v.row())
    return buf.getvalue()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock for a read-modify-write of the reviews file ``path``.

    The lock file lives in the temporary folder, keyed by the file's real path,
    so that ``reviews/`` (a DVC dependency) holds only the verdicts.
    """
    import fcntl
    import hashlib
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    key = hashlib.blake2b(os.path.realpath(path).encode(), digest_size=8).hexdigest()
    fd = os.open(Path(tempfile.gettempdir()) / f"imagenet-clean-review-{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def record_verdict(path: str | Path, verdict: Verdict | None, *, sample_id: str | None = None) -> dict[str, Verdict]:
    """Set (or with ``verdict=None`` remove) one sample's verdict in a reviews file, atomically.

    The file is read, changed and renamed into place under an exclusive lock,
    so concurrent writers (two browser tabs) lose no verdict and the last one
    per sample wins.

    Returns:
        All verdicts of the file after the change.
    """
    path = Path(path)
    with _locked(path):
        current = read_verdicts(path)
        if verdict is None:
            current.pop(sample_id, None)
        else:
            current[verdict.sample_id] = verdict
        write_text(path, format_verdicts(current))
        return current


def _same_hash(a, b) -> bool:
    norm = lambda h: "" if h is None or (isinstance(h, float) and np.isnan(h)) else str(h)  # noqa: E731
    return norm(a) == norm(b)


def classify(decisions: pd.DataFrame, verdicts: Mapping[str, Verdict]) -> tuple[dict[str, int], ReviewOutcome]:
    """Which verdicts apply to which decision rows, and which are stale or ignored.

    Returns:
        ``(rows, outcome)``: ``sample_id -> row position`` of the applicable
        verdicts, and the outcome with ``applied`` filled for them.
    """
    outcome = ReviewOutcome()
    index = {s: i for i, s in enumerate(decisions["sample_id"].tolist())}
    hashes = decisions["content_hash"].tolist()
    rules = decisions["rules"].tolist()
    rows = {}
    for sid in sorted(verdicts):
        v = verdicts[sid]
        i = index.get(sid)
        if i is None:
            outcome.stale.append({"sample_id": sid, "verdict": v.verdict, "why": "not in the split"})
        elif not _same_hash(v.content_hash, hashes[i]):
            outcome.stale.append({"sample_id": sid, "verdict": v.verdict,
                                  "why": f"content_hash {v.content_hash or '(none)'} != manifest {hashes[i] or '(none)'}"})
        elif RULE_UNREADABLE in list(rules[i]):
            outcome.ignored.append({"sample_id": sid, "verdict": v.verdict, "why": "unreadable image"})
        else:
            rows[sid] = i
            outcome.applied[sid] = v.verdict
    return rows, outcome


def apply_verdicts(decisions: pd.DataFrame, verdicts: Mapping[str, Verdict], classes: ClassList) -> tuple[pd.DataFrame, ReviewOutcome]:
    """Apply verdicts to a decisions table.

    Args:
        decisions: The full decisions table (docs/architecture.md; with the
            ``labels`` column when label sets are on).
        verdicts: ``sample_id -> Verdict`` (:func:`read_verdicts`).
        classes: The class list (a relabel's wnid -> label).

    Returns:
        ``(decisions, outcome)``: with no verdicts, ``decisions`` unchanged (no
        ``verdict`` column); else a copy with a ``verdict`` column (empty where
        none was applied), rejects kept with their label, relabels fixed to
        the reviewer's class, relabel_sets given the reviewer's set (action
        ``relabel_set``, ``new_label`` its first class), :data:`RULE_HUMAN`
        added to all three; a reject or relabel empties the row's ``labels``.
        Applying the same verdicts twice gives the same table.

    Raises:
        VerdictError: a relabel (or a set) naming a class not in ``classes``, or a
            relabel_set verdict on a decisions table without the ``labels`` column
            (label sets are off), naming the line.
    """
    if not verdicts:
        return decisions, ReviewOutcome()
    rows, outcome = classify(decisions, verdicts)
    out = decisions.copy()
    wnid_index = {w: i for i, w in enumerate(classes.wnids)}
    has_sets = LABELS_COLUMN in out.columns
    action = out["action"].to_numpy(dtype=object).copy()
    new_label = out["new_label"].to_numpy(np.int64).copy()
    labels = out["label"].to_numpy(np.int64)
    sets = [list(x) for x in out[LABELS_COLUMN]] if has_sets else None
    rules = [list(r) for r in out["rules"]]
    verdict_col = np.full(len(out), "", dtype=object)

    def index_of(v: Verdict, wnid: str) -> int:
        if wnid not in wnid_index:
            raise VerdictError(f"line {v.line}: {v.verdict} of {v.sample_id!r} to unknown class {wnid!r}")
        return wnid_index[wnid]

    for sid, i in rows.items():
        v = verdicts[sid]
        verdict_col[i] = v.verdict
        if v.verdict == "accept":
            continue
        if v.verdict == "reject":
            action[i], new_label[i] = "keep", labels[i]
        elif v.verdict == "relabel":
            c = index_of(v, v.wnid)
            action[i], new_label[i] = ("keep", labels[i]) if c == labels[i] else ("fix", c)
        else:
            if not has_sets:
                raise VerdictError(f"line {v.line}: relabel_set of {sid!r}, but the decisions have no label sets "
                                   f"(set label_sets.enabled: true in params.yaml, or change the verdict)")
            cls = [index_of(v, w) for w in v.wnids]
            action[i], new_label[i] = ACTION_SET, cls[0]
        if has_sets:
            sets[i] = [index_of(v, w) for w in v.wnids] if v.verdict == "relabel_set" else []
        if RULE_HUMAN not in rules[i]:
            rules[i].append(RULE_HUMAN)
    out["action"] = action
    out["new_label"] = new_label
    out["rules"] = pd.Series(rules, dtype=object, index=out.index)
    if has_sets:
        out[LABELS_COLUMN] = pd.Series(sets, dtype=object, index=out.index)
    out["verdict"] = verdict_col
    return out, outcome


def review_split(decisions: pd.DataFrame, reviews: str | Path | None, classes: ClassList) -> tuple[pd.DataFrame, ReviewOutcome]:
    """Read a split's reviews file (if any) and apply it: the clean stage's one call.

    Raises:
        VerdictError: a malformed line of the reviews file (nothing is written).
    """
    if reviews is None:
        return decisions, ReviewOutcome()
    verdicts = read_verdicts(reviews, wnids=set(classes.wnids))
    return apply_verdicts(decisions, verdicts, classes)
