"""Turn a clean manifest and a local copy of the original split into a cleaned ImageFolder tree.

``apply_clean`` is what a user who only wants cleaned ImageNet runs after
``dvc pull data/clean``. It builds ``<out>/<wnid>/<file name>`` (file names
kept; merged classes folded into their target; one black placeholder JPEG in
each emptied class), plus the ``path<TAB>label`` file list, ``classes.txt`` and
a dataset card (``README.md``) in ``out``.

Safety, in order:

1. The clean manifest is validated (columns, actions, relative paths without
   ``..``, one label per class id).
2. ``out`` must not overlap ``root`` (resolved, so symlinks count), and must be
   empty, absent, or a tree an earlier ``apply`` made (it holds the state file).
3. Every source file is checked against the manifest before anything is
   written: it exists, is a regular file, does not resolve outside ``root``,
   has the recorded size and (when recorded and ``check_hash``) content hash.
   Any mismatch raises :class:`SourceMismatchError` carrying the full list.
4. Entries are built in place in the final tree, each one atomically (a link
   or copy to a hidden temporary name, then ``os.replace``). An entry that is
   already correct (same link target / same inode / same size and mtime of a
   copy) is skipped, so a second run changes nothing and an interrupted run
   resumes. The state file lists every entry ``apply`` made (written before the
   build when the set grows), so entries a new manifest no longer holds are
   removed; files the user put in ``out`` are never touched.

The source is only ever read: symlinks and copies leave it alone; hard links
share the source's inodes, so do not edit files in a hard-linked tree in place.

Label sets (issue 30; docs/label-sets.md): a ``relabel_set`` row is an image that
plausibly shows several classes. ``label_sets`` (:data:`LABEL_SET_MODES`) says what
the tree does with them: ``csv`` (the default) files each under the first class of
its set and writes every set to ``label_sets.csv`` beside the tree; ``first`` files
them the same way and writes no set; ``drop`` leaves them out like removals. A
manifest without label sets builds the same tree and files as before.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import pandas as pd

from ..classes import BUILTIN_CLASS_LISTS, ClassList, load_classes, unsafe_class_name
from ..data.layouts import NESTED_LAYOUTS
from ..io import read_table
from ..leftovers import sweep_temporaries
from . import card as _card
from .apply_sets import (  # noqa: F401 (callers of apply use them from here)
    DEFAULT_LABEL_SETS,
    LABEL_SET_MODES,
    LABEL_SETS_FILE,
    check_label_sets_mode,
    format_label_sets,
)
from .filelist import CLASSES_FILE, format_file_list, write_if_changed
from .plan import (  # noqa: F401  (CLEAN_COLUMNS, SourceMismatchError, format_problems: callers of apply use them from here)
    ACTION_SET,
    CLEAN_COLUMNS,
    IMAGE_EXTENSIONS,
    LABELS,
    Entry,
    SourceChecker,
    SourceMismatchError,
    find_deepaugment,
    format_problems,
    load_clean_manifest,
    parallel_map,
    placeholder_bytes,
    plan_entries,
    verify_sources,
)

STATE_FILE = ".imagenet-clean-apply.json"
RENAMED_FILE = "renamed.tsv"  # a folder dataset's name clashes: sample_id<TAB>its path in the tree
CARD_FILE = "README.md"
TMP_SUFFIX = ".imagenet-clean-tmp"
# ---------------------------------------------------------------- link modes


@dataclass(frozen=True)
class LinkMode:
    """How an entry of the tree refers to its source file.

    Attributes:
        make: ``make(src, tmp)`` creates the entry at the (absent) path ``tmp``.
        matches: ``matches(src, dest)`` is True when ``dest`` already is a correct entry.
    """

    make: Callable[[Path, Path], None]
    matches: Callable[[Path, Path], bool]


def _make_hardlink(src: Path, tmp: Path) -> None:
    try:
        os.link(src, tmp)
    except OSError as e:
        if e.errno in (18, 1, 95):  # EXDEV, EPERM, EOPNOTSUPP
            raise ValueError(
                f"cannot hard-link {src} into {tmp.parent} ({e.strerror}); source and output must be on one "
                "file system that supports hard links: use --mode symlink or --mode copy"
            ) from None
        raise


def _same_file(src: Path, dest: Path) -> bool:
    try:
        a, b = os.stat(src), os.lstat(dest)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(b.st_mode) and (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def _copy_matches(src: Path, dest: Path) -> bool:
    try:
        a, b = os.stat(src), os.lstat(dest)
    except FileNotFoundError:
        return False
    return (
        stat.S_ISREG(b.st_mode)
        and (a.st_ino, a.st_dev) != (b.st_ino, b.st_dev)
        and (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)
    )


LINK_MODES: dict[str, LinkMode] = {
    "symlink": LinkMode(
        make=lambda src, tmp: os.symlink(src, tmp),
        matches=lambda src, dest: dest.is_symlink() and os.readlink(dest) == str(src),
    ),
    "hardlink": LinkMode(make=_make_hardlink, matches=_same_file),
    "copy": LinkMode(make=lambda src, tmp: shutil.copy2(src, tmp), matches=_copy_matches),
}
"""Registry of ``--mode`` values; symlinks point at the absolute source path."""


# ---------------------------------------------------------------- building


def _check_paths(root: Path, out: Path) -> tuple[Path, Path]:
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: the original split folder does not exist or is not a folder")
    root_real, out_real = root.resolve(), out.resolve()
    if out_real == root_real or out_real.is_relative_to(root_real) or root_real.is_relative_to(out_real):
        raise ValueError(f"--out {out} ({out_real}) overlaps --root {root} ({root_real}); choose a folder outside the source")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    return root_real, out_real


def _read_state(out: Path) -> dict:
    state_path = out / STATE_FILE
    if not state_path.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise ValueError(
                f"{out}: not empty and not made by `imagenet-clean apply` (no {STATE_FILE}); choose a new or empty folder"
            )
        return {"entries": []}
    try:
        state = json.loads(state_path.read_text())
        entries = state["entries"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{state_path}: unreadable apply state ({e}); remove {out} and apply again") from None
    return state | {"entries": [e for e in entries if _is_entry_path(e)]}


def _is_entry_path(rel) -> bool:
    p = PurePosixPath(str(rel))
    return len(p.parts) >= 2 and ".." not in p.parts and not p.is_absolute() and not p.parts[0].startswith(".")


def _write_state(out: Path, state: dict) -> None:
    write_if_changed(out / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def _materialise(entry: Entry, out: Path, mode: LinkMode, placeholder: bytes) -> bool:
    """Create one entry unless it is already correct; True when created."""
    dest = out / entry.dest
    if entry.source is None:
        if dest.is_file() and not dest.is_symlink() and dest.read_bytes() == placeholder:
            return False
    elif mode.matches(entry.source, dest):
        return False
    if dest.is_dir() and not dest.is_symlink():
        raise ValueError(f"{dest}: a folder sits where the image {entry.sample_id!r} goes; remove it")
    dest.parent.mkdir(parents=True, exist_ok=True)  # nested trees (folder datasets): <class>/<sub/path>
    tmp = dest.with_name(f".{dest.name}{TMP_SUFFIX}")
    tmp.unlink(missing_ok=True)
    if entry.source is None:
        tmp.write_bytes(placeholder)
    else:
        mode.make(entry.source, tmp)
    os.replace(tmp, dest)
    return True


def _remove_stale(out: Path, stale: list[str]) -> int:
    removed = 0
    parents = set()
    for rel in stale:
        p = out / rel
        p.with_name(f".{p.name}{TMP_SUFFIX}").unlink(missing_ok=True)
        if p.is_symlink() or p.is_file():
            p.unlink()
            removed += 1
        parents.add(p.parent)
    for d in sorted(parents, key=lambda d: -len(d.parts)):
        while d != out and out in d.parents:
            try:
                d.rmdir()  # only when empty
            except OSError:
                break
            d = d.parent
    return removed


def _sweep_tmp(out: Path, folders: set[str]) -> None:
    """Remove temporary files an interrupted run left in the class folders."""
    for wnid in sorted(folders):
        for dirpath, _, files in os.walk(out / wnid):
            for name in files:
                if name.startswith(".") and name.endswith(TMP_SUFFIX):
                    os.unlink(os.path.join(dirpath, name))


def _count_images(root: Path) -> int:
    n = 0
    for _, _, files in os.walk(root):
        n += sum(f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".") for f in files)
    return n


def _class_order(clean: pd.DataFrame, meta: dict[str, str], classes: ClassList | None) -> list[str]:
    """Class ids in label order (``""`` for labels no row names)."""
    if classes is None and meta.get("classes") in BUILTIN_CLASS_LISTS:
        classes = load_classes(meta["classes"])  # a class file path is relative to the pipeline's repo: not read here
    if classes is not None:
        bad = [
            f"{w!r} has label {lab}, class list says {classes.index(w) if w in classes else 'unknown'}"
            for w, lab in clean.groupby("wnid")["label"].first().items()
            if w not in classes or classes.index(w) != lab
        ]
        if bad:
            raise ValueError(f"clean manifest labels disagree with the class list: {bad[:5]}")
        return list(classes.wnids)
    n = max(int(meta.get("num_classes", 0) or 0), int(clean["label"].max()) + 1 if len(clean) else 0)
    order = [""] * n
    for w, lab in clean.groupby("wnid")["label"].first().items():
        order[lab] = w
    return order


def _check_class_names(names) -> None:
    """Refuse (one line) a class name that would be an unsafe folder name (``..``, ``/``, absolute, hidden)."""
    for name in sorted(set(names)):
        why = unsafe_class_name(str(name))
        if why:
            raise ValueError(f"class {name!r} cannot be a folder of the cleaned tree: {why}; rename the class in your labels")


def _check_keep_removed(keep: Path, *, root: Path, out: Path, decisions) -> None:
    if decisions is None:
        raise ValueError("--keep-removed needs --decisions (data/decisions/<split>.parquet lists the removed files)")
    k, o, r = keep.resolve(), out.resolve(), root.resolve()
    for other, flag in ((o, "--out"), (r, "--root")):
        if k == other or k.is_relative_to(other) or other.is_relative_to(k):
            raise ValueError(f"--keep-removed {keep} ({k}) overlaps {flag} ({other}); choose a folder outside both")


def _keep_removed(keep: Path, decisions: pd.DataFrame, root_real: Path, *, nested: str, mode: str, workers: int) -> int:
    """Put the removed rows' files (those that exist under the root) in ``keep`` as ``<class>/<sub/path>``; their count."""
    from .plan import Entry as PlanEntry
    from .plan import assign_nested_names, below_class_folder

    gone = decisions[decisions["action"] == "remove"]
    rows = []
    for r in gone.itertuples():
        src = root_real / r.path
        cls = r.wnid or "_unlabelled"
        if src.is_file() and src.resolve().is_relative_to(root_real) and not unsafe_class_name(cls):
            rows.append((r.sample_id, cls, below_class_folder(r.path, nested), int(r.label), src))
    names, _ = assign_nested_names([(sid, cls, sub) for sid, cls, sub, _, _ in rows])
    entries = [PlanEntry(names[sid], lab, cls, sid, "remove", src) for sid, cls, _, lab, src in rows]
    state = _read_state(keep)
    keep.mkdir(parents=True, exist_ok=True)
    planned = sorted(e.dest for e in entries)
    _write_state(keep, {"complete": False, "entries": sorted(set(state["entries"]) | set(planned)), "mode": mode})
    link, ph = LINK_MODES[mode], placeholder_bytes()
    parallel_map(lambda e: _materialise(e, keep, link, ph), [(e,) for e in entries], workers=workers, desc="keep removed")
    _remove_stale(keep, sorted(set(state["entries"]) - set(planned)))
    _write_state(keep, {"complete": True, "entries": planned, "mode": mode})
    return len(entries)


def apply_clean(
    clean_manifest_path: str | Path,
    root: str | Path,
    out: str | Path,
    *,
    mode: str = "symlink",
    classes: ClassList | None = None,
    deepaugment: bool = False,
    check_hash: bool = True,
    decisions: str | Path | None = None,
    workers: int = 4,
    revision: str | None = None,
    keep_removed: str | Path | None = None,
    label_sets: str = DEFAULT_LABEL_SETS,
) -> dict:
    """Build the cleaned ImageFolder tree of one split from its clean manifest.

    Args:
        clean_manifest_path: ``data/clean/<split>.parquet``.
        root: The user's copy of the original split (the layout ingestion read).
        out: The new dataset folder (absent, empty, or made by an earlier apply).
        mode: One of :data:`LINK_MODES` (``symlink``, ``hardlink``, ``copy``).
        classes: The class list the labels index (checked against every row);
            default: timm's ImageNet-1k list when the manifest's ``classes``
            metadata is ``imagenet-1k``, else the manifest's own wnid/label pairs.
        deepaugment: Also take ``<stem>_CAE.<ext>`` / ``<stem>_EDSR.<ext>``
            copies of each kept file, with its decision.
        check_hash: Compare content hashes where the manifest records them
            (sizes are always compared).
        decisions: Optional ``data/decisions/<split>.parquet`` for per-rule counts in the card.
        workers: Threads for hashing and linking.
        revision: Where the manifest came from, for the card (default: the git revision
            of the repository holding ``clean_manifest_path``).
        keep_removed: Also put the removed files (``decisions`` rows with action
            ``remove`` whose file exists) in this separate tree, under their
            original class, outside ``out`` and ``root``.
        label_sets: What to do with the images kept with a label set (action
            ``relabel_set``), one of :data:`LABEL_SET_MODES`: ``csv`` (default)
            keeps them under the first label and writes ``<out>/label_sets.csv``
            (``path,labels,wnids``), ``first`` keeps them under the first label
            only, ``drop`` leaves them out (counted as removed).

    A folder dataset (manifest layout ``imagefolder`` or ``csv``) keeps each
    file's path below its class folder: ``<out>/<class>/<sub/path>``; a fix that
    lands on a path its new class already holds is renamed ``<stem>~<k><suffix>``
    and listed under ``renamed`` (and in ``<out>/renamed.tsv``).

    Returns:
        Counts: ``kept``, ``relabelled`` (fix and fix+merge), ``merged`` (merge
        and fix+merge), ``placeholders``, ``deepaugment``, ``removed`` (image
        files under ``root`` the tree leaves out), ``source_files``, ``images``
        (files in the tree), ``classes`` (class folders), ``created``,
        ``unchanged``, ``stale_removed``, and ``split``/``mode``. A manifest with
        label sets (a ``labels`` column or ``relabel_set`` rows) adds
        ``label_sets`` (rows with a set), ``label_sets_mode`` and
        ``label_sets_dropped``.

    Raises:
        SourceMismatchError: a source file is missing or differs; nothing was written.
        ValueError: bad mode, invalid manifest, ``out`` overlapping ``root`` or
            holding foreign files, labels disagreeing with ``classes``.
    """
    if mode not in LINK_MODES:
        raise ValueError(f"mode {mode!r} is not one of {sorted(LINK_MODES)}")
    check_label_sets_mode(label_sets)
    clean_manifest_path, root, out = Path(clean_manifest_path), Path(root), Path(out)
    if out.is_dir():
        sweep_temporaries(out, recursive=False)  # a killed run's state / file list / card writes (leftovers.py)
    root_real, _ = _check_paths(root, out)
    clean, meta = load_clean_manifest(clean_manifest_path)
    _check_class_names(clean["wnid"])
    is_set = (clean["action"] == ACTION_SET).to_numpy()
    has_sets = LABELS in clean.columns or bool(is_set.any())
    set_of = {}
    if LABELS in clean.columns:
        set_of = {sid: s for sid, s, flag in zip(clean["sample_id"], clean[LABELS], is_set) if flag and len(s)}
    set_of.update({sid: (int(lab),) for sid, lab, flag in zip(clean["sample_id"], clean["label"], is_set)
                   if flag and sid not in set_of})
    all_rows = clean
    if label_sets == "drop":
        clean = clean[~is_set].reset_index(drop=True)
    nested = meta.get("layout") if meta.get("layout") in NESTED_LAYOUTS else None
    if keep_removed is not None:
        _check_keep_removed(Path(keep_removed), root=root, out=out, decisions=decisions)
    order = _class_order(all_rows, meta, classes)
    split = meta.get("split") or clean_manifest_path.stem
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", split) or split.startswith("."):
        split = "clean"

    state = _read_state(out)  # cheap refusals before hashing the whole split
    problems = verify_sources(clean, root_real, check_hash=check_hash, workers=workers)
    copies = find_deepaugment(clean, root_real) if deepaugment else []
    check = SourceChecker(root_real, check_hash=False)
    for copy, _ in copies:
        why = check(copy)
        if why:
            problems.append((copy, copy, why))
    if problems:
        raise SourceMismatchError(root, problems)

    clashes: dict[str, str] = {}
    entries = plan_entries(clean, root_real, deepaugment=copies, nested=nested, clashes=clashes)
    planned = [e.dest for e in entries]
    previous = set(state["entries"])
    if not set(planned) <= previous or not state.get("complete", False):
        out.mkdir(parents=True, exist_ok=True)
        _write_state(out, {"complete": False, "entries": sorted(previous | set(planned)), "mode": mode,
                           **({"label_sets_file": True} if state.get("label_sets_file") else {})})
    out_real = out.resolve()
    for wnid in sorted({e.wnid for e in entries}):
        d = out / wnid
        d.mkdir(exist_ok=True)
        if d.resolve() != out_real / wnid:
            raise ValueError(f"{d} is a link to {d.resolve()}; refusing to write through it")

    link, ph = LINK_MODES[mode], placeholder_bytes()
    made = parallel_map(lambda e: _materialise(e, out, link, ph), [(e,) for e in entries], workers=workers, desc=f"apply ({mode})")
    stale_removed = _remove_stale(out, sorted(previous - set(planned)))
    _sweep_tmp(out, {e.wnid for e in entries})

    actions = clean["action"].value_counts()
    n_src = _count_images(root_real)
    used = int((clean["action"] != "placeholder").sum()) + len(copies)
    counts = {
        "split": split,
        "mode": mode,
        "source_files": n_src,
        "images": len(entries),
        "classes": len({e.wnid for e in entries}),
        "kept": int(actions.get("keep", 0)),
        "relabelled": int(actions.get("fix", 0) + actions.get("fix+merge", 0)),
        "merged": int(actions.get("merge", 0) + actions.get("fix+merge", 0)),
        "placeholders": int(actions.get("placeholder", 0)),
        "deepaugment": len(copies),
        "removed": max(n_src - used, 0),
        "created": int(sum(made)),
        "unchanged": int(len(made) - sum(made)),
        "stale_removed": stale_removed,
    }
    if has_sets:
        counts.update(label_sets=int(is_set.sum()), label_sets_mode=label_sets,
                      label_sets_dropped=int(is_set.sum()) if label_sets == "drop" else 0)
    if nested:
        counts["renamed"] = len(clashes)
        write_if_changed(out / RENAMED_FILE, "".join(f"{sid}\t{dest}\n" for sid, dest in sorted(clashes.items())))
    if keep_removed is not None:
        counts["kept_removed"] = _keep_removed(Path(keep_removed), read_table(decisions), root_real,
                                               nested=nested or "imagefolder", mode=mode, workers=workers)

    list_name = f"{split}.txt"
    write_if_changed(out / list_name, format_file_list([(e.dest, e.label) for e in entries]))
    write_if_changed(out / CLASSES_FILE, "".join(f"{w}\n" for w in order))
    dec = read_table(decisions) if decisions is not None else None
    text = _card.render_card(
        clean,
        meta,
        counts,
        split=split,
        manifest_path=clean_manifest_path,
        file_list=list_name,
        class_order=order,
        decisions=dec,
        revision=revision,
    )
    write_if_changed(out / CARD_FILE, text)
    sets_file = out / LABEL_SETS_FILE
    if has_sets and label_sets == "csv":
        if not state.get("label_sets_file"):  # recorded before the file exists, so a killed run's file is still ours
            _write_state(out, {"complete": False, "entries": sorted(previous | set(planned)), "mode": mode, "label_sets_file": True})
        base_of = {copy: base for copy, base in copies}
        entry_sets = {e.sample_id: set_of[base_of.get(e.sample_id, e.sample_id)] for e in entries
                      if base_of.get(e.sample_id, e.sample_id) in set_of}
        write_if_changed(sets_file, format_label_sets(entries, entry_sets, order))
    elif state.get("label_sets_file") and sets_file.is_file():
        sets_file.unlink()  # an earlier apply wrote it; this tree has no sets file
    final_state = {"complete": True, "entries": planned, "mode": mode}
    if has_sets and label_sets == "csv":
        final_state["label_sets_file"] = True
    _write_state(out, final_state)
    return counts
