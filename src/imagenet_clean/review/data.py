"""What the review app reads: a split's changes, their evidence, and the verdicts so far.

Memory is bounded by the number of changes, not by what is browsed:
:class:`ReviewData` keeps, per change, a few scalars for paging (read at
start-up, and cached in ``data/cache/review/<split>/`` for the next start),
its evidence columns (Arrow, compact), the manifest rows of the changes and of
a few example images per class (both read in a background thread, so that the
first page does not wait for them), and, per model, each change's top-5
classes and probabilities and its margin (read once, in batches, from the
prediction file). Paging, filtering and sorting run on NumPy arrays over the
changes (:meth:`ReviewData.page`), so a 160,000-change split pages in tens of
milliseconds (benchmarks/bench_review.py).
"""
from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..classes import IMAGENET_1K, ClassList, load_classes, resolve_class_spec
from ..cleanup.rules import RULE_CAM_EXEMPT, RULE_CL_REMOVE, RULE_CONSENSUS, RULE_FIX, RULE_QUALITY, RULE_UNREADABLE
from ..cleanup.verdicts import (
    ACTION_SET,
    LABELS_COLUMN,
    RULE_HUMAN,
    RULE_LABEL_SET,
    VERDICTS,
    Verdict,
    VerdictError,
    check_verdict,
    read_verdicts,
    record_verdict,
)
from ..io import read_metadata
from ..workspace import Workspace
from .duplicates import DuplicateIndex, mark_sides, pair_page
from .evidence import (
    quality_view,
    read_cache,
    read_change_top5,
    read_detail_rows,
    read_manifest_rows,
    read_quality_rows,
    scan_changes,
    write_cache,
)
from .setwindows import SetWindows

RULE_BITS = {r: 1 << i for i, r in enumerate((RULE_FIX, RULE_CL_REMOVE, RULE_CONSENSUS, RULE_CAM_EXEMPT,
                                               RULE_UNREADABLE, RULE_HUMAN, RULE_QUALITY, RULE_LABEL_SET))}
ACTIONS = ("fix", "remove", "keep", ACTION_SET)
"""The action filter's values (besides ``audit``)."""
SORTS = ("n_flagged", "-n_flagged", "c_s", "-c_s", "margin", "-margin", "sample_id")
"""Sort keys of a page (``-``: descending); ties keep the decisions' order. ``margin``: the mean over the
models of (top-1 probability - probability of the given label), read from the prediction files in the
background (:meth:`ReviewData.wait_margins`)."""
N_EXAMPLES = 4
BATCH = 65_536
"""Rows per batch when the decisions and the manifest are read (bounds the memory of start-up)."""
PAGE_COLUMNS = ("sample_id", "label", "new_label", "action", "rules", "n_flagged", "c_s")
"""Decision columns read at start-up, for paging (only the changes' rows are kept)."""
DETAIL_COLUMNS = ("sample_id", "path", "label", "new_label", "action", "rules", "n_flagged", "flagged_models",
                  "candidates", "c_s", "cam_scores", "exempted_by", "content_hash")
"""Decision columns of a change's evidence (read in the background)."""
OPTIONAL_DETAIL_COLUMNS = ("reason", LABELS_COLUMN)
"""Decision columns read when the file has them: ``reason`` (why a rule fired: unreadable, the quality
measures beyond their bounds), ``labels`` (the label set of a ``relabel_set`` row; label sets on)."""
MAX_SET_CAMS = 6
"""Classes of a label set shown with CAMs (the set's strongest first)."""
FILE_COLUMNS = ("sample_id", "path", "boxes", "width", "height", "content_hash", "status")


class ReviewError(ValueError):
    """A request the review app refuses (unknown sample or class, bad filter); nothing is written."""


@dataclass(frozen=True)
class Filter:
    """Which changes a page lists."""

    action: str = ""  # fix | remove | keep (CAM-exempted) | relabel_set | audit (the audit sample of kept images) | "" (all)
    rule: str = ""
    cls: int = -1  # given or proposed class index; -1: any
    reviewed: str = ""  # yes | no | ""
    sort: str = "-n_flagged"


class ReviewData:
    """A split's changes (fixes, removals, CAM exemptions) with their evidence.

    Args:
        workdir: The project folder (``data/decisions``, ``data/manifests``,
            ``data/predictions``, ``reviews``).
        split: The split.
        classes: The class list (default: the manifest's ``classes`` metadata).
        background: Return as soon as the changes can be paged, and load their
            evidence and manifest rows in a background thread (the server does).
        audit: Add a random sample of this many kept images (not CAM-exempted), so that reviewers
            judge what the machine kept too: a relabelled one is an error it missed
            (``imagenet-clean tune`` counts it). Listed under the action filter ``audit`` only.
        audit_seed: The seed of that sample (:func:`audit_rank`).
    """

    def __init__(self, workdir: str | Path, split: str, classes: ClassList | None = None, *, background: bool = False,
                 audit: int = 0, audit_seed: int = 0):
        self.workdir = Path(workdir)
        self.split = split
        self.workspace = Workspace(self.workdir)
        dec_path = self.workspace.decisions(split)
        man_path = self.workspace.manifest(split)
        for p in (dec_path, man_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: not found (run `dvc repro` first)")
        meta = read_metadata(man_path)
        if classes is None:
            classes = load_classes(resolve_class_spec(meta.get("classes") or IMAGENET_1K, self.workdir))
        self.classes = classes
        self.wnid_index = {w: i for i, w in enumerate(classes.wnids)}
        root = Path(meta.get("root") or ".")
        self.root = root if root.is_absolute() else self.workdir / root
        dec_meta = read_metadata(dec_path)
        self.models = json.loads(dec_meta.get("models") or "[]")
        self.label_sets = LABELS_COLUMN in pq.read_schema(dec_path).names  # label_sets.enabled when the clean stage ran
        self.set_windows = SetWindows(self.workspace.windows(split), dec_meta, classes, self.models,
                                      workdir=self.workdir) if self.label_sets else None
        self.reviews = self.workspace.reviews(split)
        self.duplicates = DuplicateIndex(self.workdir, split)
        self.quality_bounds: dict[str, tuple[float | None, float | None]] = {}  # params quality.thresholds, set by serve()
        self.quality_measures: list[str] = []
        self._quality: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._top5: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._top5_locks: dict[str, threading.Lock] = {}
        self._verdicts: tuple[tuple, dict[str, Verdict], np.ndarray] | None = None  # file key, verdicts, mask
        if audit < 0:
            raise ReviewError(f"audit sample size {audit} is negative")
        self.audit_size, self.audit_seed = int(audit), int(audit_seed)

        # pass 1 over the decisions, in batches: the changes (rows the machine changed, and CAM exemptions)
        # with what paging needs, and every row's label and whether it was kept (for the examples)
        self._dec_path, self._man_path = dec_path, man_path
        cached = self._page_cache(dec_path)
        page = read_cache(cached)
        if page is None:
            page = self._scan_changes(dec_path, audit=self.audit_size, seed=self.audit_seed)
            write_cache(cached, page)
        else:
            self._label_all = self._keep_all = None  # read again in the background, for the examples
        self._rows = page["row"].to_numpy()
        self.ids = np.asarray(page["sample_id"].to_numpy(zero_copy_only=False), dtype=object)
        self.pos = dict(zip(self.ids.tolist(), range(len(self.ids))))
        self.label = page["label"].to_numpy()
        self.new_label = page["new_label"].to_numpy()
        self.action = np.asarray(page["action"].to_numpy(zero_copy_only=False), dtype=object)
        self.n_flagged = page["n_flagged"].to_numpy()
        self.c_s = page["c_s"].to_numpy()
        self.audit = page["audit"].to_numpy() if "audit" in page.column_names else np.zeros(len(self.ids), bool)
        bits = np.zeros(len(self.ids), np.int64)
        if len(self.ids):
            flat = pc.list_flatten(page["rules"].chunk(0))
            parent = np.asarray(pc.list_parent_indices(page["rules"].chunk(0)))
            for rule, bit in RULE_BITS.items():
                np.bitwise_or.at(bits, parent[np.asarray(pc.equal(flat, rule).fill_null(False))], bit)
        self.rule_bits = bits
        del page

        # the evidence of the changes and the manifest rows: read in the background, so that the first page is
        # served at once; a request that needs them waits (:meth:`ready`)
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        self.examples: dict[int, list[str]] = {}
        self._files: pa.Table | None = None  # manifest rows of the changes and examples (FILE_COLUMNS)
        self._file_pos: dict[str, int] = {}
        self.detail = None
        self._margin: np.ndarray | None = None
        self._margin_error = ""
        self._margin_done = threading.Event()
        threading.Thread(target=self._load_evidence, name="review-evidence", daemon=True).start()
        if not background:
            self.ready()

    def _page_cache(self, dec_path: Path) -> Path:
        """The cached paging index of this decisions file (keyed by its size and modification time)."""
        st = dec_path.stat()
        audit = f"-audit{self.audit_size}-{self.audit_seed}" if self.audit_size else ""
        return self.workspace.review_cache(self.split) / f"pages-{st.st_size}-{st.st_mtime_ns}{audit}.parquet"

    def _scan_changes(self, dec_path: Path, *, audit: int = 0, seed: int = 0) -> pa.Table:
        """Pass 1 over the decisions (:func:`~imagenet_clean.review.evidence.scan_changes`); keeps every row's label
        and whether it was kept (for the examples)."""
        page, self._label_all, self._keep_all = scan_changes(dec_path, PAGE_COLUMNS, audit=audit, seed=seed)
        return page

    def _pick_examples(self) -> None:
        """Rows of a few examples of every class for the reviewer to compare with: kept images first."""
        if self._label_all is None:
            t = pq.read_table(self._dec_path, columns=["label", "action"])
            self._label_all = t["label"].to_numpy()
            self._keep_all = np.asarray(pc.equal(t["action"], "keep").fill_null(False))
            del t
        label_all, keep_all = self._label_all, self._keep_all
        order = np.lexsort((~keep_all, label_all))
        lab_sorted = label_all[order]
        starts = np.searchsorted(lab_sorted, np.arange(len(self.classes)))
        self._example_rows = np.concatenate([order[s:s + N_EXAMPLES + 1][lab_sorted[s:s + N_EXAMPLES + 1] == c]
                                             for c, s in enumerate(starts)]) if len(self.classes) else np.array([], np.int64)
        self._example_labels = label_all[self._example_rows]
        del self._label_all, self._keep_all

    def _load_evidence(self) -> None:
        try:
            self._pick_examples()
            detail, ex_ids = read_detail_rows(self._dec_path, self._rows, self._example_rows,
                                              required=DETAIL_COLUMNS, optional=OPTIONAL_DETAIL_COLUMNS)
            examples: dict[int, list[str]] = {}
            for r, lab in zip(self._example_rows.tolist(), self._example_labels.tolist()):
                examples.setdefault(int(lab), []).append(ex_ids[r])
            # manifest rows of the changes and examples: the only images the app serves
            table = read_manifest_rows(self._man_path, self.ids.tolist() + list(ex_ids.values()), FILE_COLUMNS)
            self._file_pos = dict(zip(table["sample_id"].to_pylist(), range(table.num_rows)))
            self.quality_measures, self._quality = read_quality_rows(self.workspace.quality(self.split), self.ids)
            self.detail, self.examples, self._files = detail, examples, table
        except BaseException as e:  # noqa: BLE001 - re-raised by ready() in the request that needs it
            self._load_error = e
        finally:
            self._ready.set()
        try:  # after the evidence, so that opening a change never waits for it
            margins = [self._model_top5(m)[3] for m in self.models]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a change no model predicted: NaN
                self._margin = (np.nan_to_num(np.nanmean(np.stack(margins), axis=0), nan=0.0) if margins
                                else np.zeros(len(self.ids), np.float32))
        except (OSError, ValueError, pa.ArrowException) as e:
            self._margin_error = f"cannot sort by margin: {e}"
        finally:
            self._margin_done.set()

    def wait_margins(self, timeout: float | None = None) -> bool:
        """Wait until the margins are read (True) or ``timeout`` seconds passed (False)."""
        return self._margin_done.wait(timeout)

    def ready(self) -> None:
        """Wait until the changes' evidence and manifest rows are loaded (raise what loading raised)."""
        self._ready.wait()
        if self._load_error is not None:
            raise self._load_error

    # ------------------------------------------------------------------ verdicts

    def verdicts(self) -> dict[str, Verdict]:
        """The reviews file's verdicts (re-read when the file changed: another tab or process wrote it)."""
        try:
            st = self.reviews.stat()
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            key = ()
        with self._lock:
            if self._verdicts is None or self._verdicts[0] != key:
                v = read_verdicts(self.reviews, wnids=set(self.classes.wnids))
                mask = np.zeros(len(self.ids), bool)
                mask[[i for i in map(self.pos.get, v) if i is not None]] = True
                self._verdicts = (key, v, mask)
            return self._verdicts[1]

    def record(self, sample_id: str, verdict: str | None, *, wnid: str = "", reviewer: str = "", note: str = "",
               time: str = "", wnids: tuple[str, ...] | list[str] = ()) -> Verdict | None:
        """Write (``verdict=None``: withdraw) one verdict for a change of this split.

        ``wnids``: the classes of a ``relabel_set`` verdict (the set the reviewer accepted or edited).

        Raises:
            ReviewError: a sample that is not a change of the split, an unreadable
                one, an unknown verdict or class, a set of fewer than 2 distinct
                classes (nothing is written).
        """
        i = self.pos.get(sample_id)
        if i is None:
            raise ReviewError(f"{sample_id!r} is not a change of split {self.split}")
        if self.rule_bits[i] & RULE_BITS[RULE_UNREADABLE]:
            raise ReviewError(f"{sample_id!r} is unreadable; there is nothing to review")
        if verdict is None:
            record_verdict(self.reviews, None, sample_id=sample_id)
            return None
        if verdict not in VERDICTS:
            raise ReviewError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
        if verdict == "relabel" and wnid not in self.wnid_index:
            raise ReviewError(f"unknown class {wnid!r}")
        if verdict == ACTION_SET and not self.label_sets:
            raise ReviewError("label sets are off for this split (label_sets.enabled: false when its decisions were "
                              "made): the clean stage could not apply a relabel_set verdict")
        self.ready()
        h = (self.file(sample_id) or {}).get("content_hash") or ""
        v = Verdict(sample_id=sample_id, content_hash=h, verdict=verdict, wnid=wnid if verdict == "relabel" else "",
                    reviewer=reviewer, time=time, note=note.replace("\n", " ")[:500],
                    wnids=tuple(wnids))
        try:
            v = check_verdict(v, wnids=set(self.classes.wnids))
        except (ValueError, VerdictError) as e:
            raise ReviewError(str(e)) from None
        record_verdict(self.reviews, v)
        return v

    # ------------------------------------------------------------------ paging

    def select(self, f: Filter) -> np.ndarray:
        """Positions of the changes that pass ``f``, in its sort order.

        Raises:
            ReviewError: an unknown action, rule, reviewed value or sort key.
        """
        if f.action == "audit":
            keep = self.audit.copy()
        else:
            keep = ~self.audit
            if f.action:
                if f.action not in ACTIONS:
                    raise ReviewError(f"unknown action {f.action!r}")
                keep &= self.action == f.action
        if f.rule:
            if f.rule not in RULE_BITS:
                raise ReviewError(f"unknown rule {f.rule!r}")
            keep &= (self.rule_bits & RULE_BITS[f.rule]) != 0
        if f.cls >= 0:
            keep &= (self.label == f.cls) | ((self.new_label == f.cls) & np.isin(self.action, ("fix", ACTION_SET)))
        if f.reviewed:
            if f.reviewed not in ("yes", "no"):
                raise ReviewError(f"reviewed must be yes or no, not {f.reviewed!r}")
            done = self.reviewed_mask()
            keep &= done if f.reviewed == "yes" else ~done
        idx = np.flatnonzero(keep)
        if f.sort not in SORTS:
            raise ReviewError(f"unknown sort {f.sort!r}; choose from {', '.join(SORTS)}")
        key = f.sort.lstrip("-")
        if key == "sample_id":
            return idx[np.argsort(self.ids[idx], kind="stable")]
        if key == "margin" and self._margin is None:
            raise ReviewError(self._margin_error or "the margins are still being read from the prediction files; "
                              "try again shortly")
        vals = (self._margin if key == "margin" else getattr(self, key))[idx]
        return idx[np.argsort(-vals if f.sort.startswith("-") else vals, kind="stable")]

    def reviewed_mask(self) -> np.ndarray:
        """Which changes have a verdict."""
        self.verdicts()
        return self._verdicts[2]

    def page(self, f: Filter, offset: int = 0, limit: int = 50) -> dict:
        """One page of changes: ``total`` passing the filter, ``reviewed`` of the split, ``rows``."""
        sel = self.select(f)
        offset = max(0, int(offset))
        limit = max(1, min(int(limit), 500))
        verdicts = self.verdicts()
        rows = [self.summary(int(i), verdicts) for i in sel[offset:offset + limit]]
        done = self.reviewed_mask()
        progress = {"reviewed": int((done & ~self.audit).sum()), "changes": int((~self.audit).sum())}
        if self.audit.any():
            progress.update(audit=int(self.audit.sum()), audit_reviewed=int((done & self.audit).sum()))
        return {"total": int(len(sel)), "offset": offset, "rows": rows, "progress": progress}

    def summary(self, i: int, verdicts: dict | None = None) -> dict:
        """The page row of change ``i``."""
        verdicts = self.verdicts() if verdicts is None else verdicts
        v = verdicts.get(self.ids[i])
        return {
            "sample_id": self.ids[i], "action": self.action[i], "audit": bool(self.audit[i]),
            "label": self._cls(int(self.label[i])), "new": self._cls(int(self.new_label[i])),
            "rules": [r for r, b in RULE_BITS.items() if self.rule_bits[i] & b],
            "n_flagged": int(self.n_flagged[i]), "c_s": int(self.c_s[i]),
            "verdict": v.row() if v else None,
        }

    def _cls(self, c: int) -> dict:
        ok = 0 <= c < len(self.classes)
        return {"index": c, "wnid": self.classes.wnids[c] if ok else "", "name": self.classes.names[c] if ok else ""}

    # ------------------------------------------------------------------ one change's evidence

    def detail_of(self, sample_id: str) -> dict:
        """Everything the page shows for one change.

        Raises:
            ReviewError: not a change of this split.
        """
        i = self.pos.get(sample_id)
        if i is None:
            raise ReviewError(f"{sample_id!r} is not a change of split {self.split}")
        self.ready()
        row = self.detail.slice(i, 1).to_pylist()[0]
        f = self.file(sample_id) or {}
        out = self.summary(i)
        flagged = [{"model": m, "candidate": self._cls(int(c))} for m, c in zip(row["flagged_models"], row["candidates"])]
        cams = json.loads(row["cam_scores"] or "{}")
        top5 = {m: self.top5(m, sample_id) for m in self.models}
        # the CAMs that decided, or could have decided, an exemption: a consensus removal with a box, and the
        # models with its label in their top-5
        cam_models = [m for m, t in top5.items() if t and any(e["class"]["index"] == out["label"]["index"] for e in t)
                      ] if RULE_CONSENSUS in out["rules"] and f.get("boxes") else []
        labels = [int(c) for c in (row.get(LABELS_COLUMN) or [])]
        cand = sorted({int(c) for c in row["candidates"]} | ({int(row["new_label"])} if row["action"] == "fix" else set())
                      | set(labels))
        out.update({
            "path": row["path"], "boxes": f.get("boxes") or [], "width": f.get("width"), "height": f.get("height"),
            "image_ok": self.image_file(sample_id) is not None,
            "flagged": flagged, "cam_scores": cams, "exempted_by": row["exempted_by"], "cam_models": cam_models,
            "candidates": [self._cls(c) for c in cand], "top5": top5,
            "examples": {"label": self._examples(out["label"]["index"], sample_id),
                         "new": self._examples(out["new"]["index"], sample_id) if row["action"] == "fix" else []},
            "reason": row.get("reason") or "",
        })
        # issue 30's evidence: each section only where the project has it
        if LABELS_COLUMN in row:
            out["labels"] = [self._cls(c) for c in labels]
            out["set_cams"] = [self._cls(c) for c in labels[:MAX_SET_CAMS]]
            if labels and self.set_windows is not None:  # where each class was found (review/setwindows.py)
                try:
                    out["set_windows"] = self.set_windows.of(sample_id, labels)
                except (ValueError, OSError) as e:
                    out["set_windows_error"] = str(e)
        q = self._quality.get(sample_id)
        if q is not None:
            out["quality"] = self.quality_of(q)
        if len(self.duplicates):
            out["duplicates"] = [self._dup_row(r) for r in self.duplicates.of(sample_id)]
        return out

    def quality_of(self, q: dict) -> dict:
        """A quality row for the page (:func:`~imagenet_clean.review.evidence.quality_view`)."""
        return quality_view(q, self.quality_measures, self.quality_bounds)

    def _dup_row(self, r: dict) -> dict:
        return mark_sides(r, self.split, self.pos, self.audit, self.action)

    def duplicate_page(self, pair: str = "", kind: str = "", offset: int = 0, limit: int = 50) -> dict:
        """One page of the split's duplicate pairs (:func:`~imagenet_clean.review.duplicates.pair_page`).

        Raises:
            ReviewError: an unknown pair or kind.
        """
        try:
            return pair_page(self.duplicates, self._dup_row, pair=pair, kind=kind, offset=offset, limit=limit)
        except ValueError as e:
            raise ReviewError(str(e)) from None

    def _examples(self, c: int, but: str) -> list[str]:
        return [s for s in self.examples.get(c, []) if s != but][:N_EXAMPLES]

    def file(self, sample_id: str) -> dict | None:
        """The manifest row (:data:`FILE_COLUMNS`) of a change or example, or None."""
        self.ready()
        i = self._file_pos.get(sample_id)
        return None if i is None else self._files.slice(i, 1).to_pylist()[0]

    def image_file(self, sample_id: str) -> Path | None:
        """The file of a change or example image, if it exists under the split root (else None).

        Only sample ids of this split's changes and examples have files; the
        path comes from the manifest, never from the request.
        """
        self.ready()
        f = self.file(sample_id)
        if f is None or f.get("status") != "ok":
            return None
        from ..data.images import resolve_within

        try:
            real = Path(resolve_within(self.root / f["path"], self.root))
        except ValueError:
            return None
        return real if real.is_file() else None

    def top5(self, model: str, sample_id: str) -> list[dict]:
        """A model's top-5 classes and probabilities for a change (empty when it has none)."""
        top, probs, _, _ = self._model_top5(model)
        i = self.pos.get(sample_id)
        if i is None or top[i, 0] < 0:
            return []
        return [{"class": self._cls(int(c)), "prob": round(float(p), 4)} for c, p in zip(top[i], probs[i]) if c >= 0]

    def fold_of(self, model: str, sample_id: str) -> int:
        """The fold model that held the sample out (-1: the full model)."""
        i = self.pos.get(sample_id)
        return -1 if i is None else int(self._model_top5(model)[2][i])

    def _model_top5(self, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(top5, probs, fold, margin)`` of every change, aligned with :attr:`ids` (:func:`.evidence.read_change_top5`),
        read once per model; one lock per model, so reading a prediction file blocks no page and no verdict."""
        with self._lock:
            lock = self._top5_locks.setdefault(model, threading.Lock())
        with lock:
            if model not in self._top5:
                self._top5[model] = read_change_top5(self.workspace.predictions(self.split, model), self.ids, self.label)
            return self._top5[model]
