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
"""
from __future__ import annotations

import io as _io
import json
import os
import re
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import pandas as pd

from ..classes import IMAGENET_1K, ClassList, load_classes
from ..io import file_digest, read_metadata, read_table
from ..leftovers import sweep_temporaries
from ..progress import progress
from . import card as _card
from .filelist import CLASSES_FILE, format_file_list, write_if_changed

CLEAN_COLUMNS = ("sample_id", "path", "label", "wnid", "orig_label", "orig_wnid", "action", "size", "content_hash")
ACTIONS = ("keep", "fix", "merge", "fix+merge", "placeholder")
PLACEHOLDER_DIR = "__placeholder__"
PLACEHOLDER_NAME = "__placeholder__.JPEG"
# The paper's placeholder is "a black image"; 224 px is the usual ImageNet training size, so
# loaders that crop/resize treat it like any other sample.
PLACEHOLDER_SIZE = 224
STATE_FILE = ".imagenet-clean-apply.json"
CARD_FILE = "README.md"
TMP_SUFFIX = ".imagenet-clean-tmp"
DEEPAUGMENT_TAGS = ("CAE", "EDSR")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class SourceMismatchError(ValueError):
    """Source files differ from what the clean manifest describes; nothing was written.

    Attributes:
        problems: ``(sample_id, path, problem)`` for every offending file.
    """

    def __init__(self, root: Path, problems: list[tuple[str, str, str]]):
        self.problems = problems
        shown = "; ".join(f"{p} ({why})" for _, p, why in problems[:5])
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        super().__init__(
            f"{len(problems)} source file(s) under {root} are not the ones the clean manifest describes: "
            f"{shown}{more}; refusing to build a wrong dataset"
        )


def format_problems(problems: list[tuple[str, str, str]]) -> str:
    """The problem list as TSV (``sample_id<TAB>path<TAB>problem``) with a header line."""
    return "sample_id\tpath\tproblem\n" + "".join(f"{s}\t{p}\t{why}\n" for s, p, why in problems)


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


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Entry:
    """One file of the cleaned tree.

    Attributes:
        dest: Path relative to ``out`` (``<wnid>/<name>``, POSIX separators).
        label: Clean label.
        wnid: Clean class id (the folder).
        sample_id: The clean manifest's sample id (DeepAugment copies: their own path).
        action: The manifest's action, or ``deepaugment``.
        source: Absolute source path; None for a placeholder.
    """

    dest: str
    label: int
    wnid: str
    sample_id: str
    action: str
    source: Path | None


def load_clean_manifest(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read and validate a clean manifest (see docs/architecture.md, "Clean manifest").

    Returns:
        The rows and the schema metadata.

    Raises:
        FileNotFoundError: no such file.
        ValueError: missing columns, unknown actions, duplicate sample ids, unsafe
            paths or a class id with two labels (quotes the offending rows).
    """
    path = Path(path)
    df = read_table(path)
    meta = read_metadata(path)
    missing = [c for c in CLEAN_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a clean manifest, missing columns {missing}")
    for c in ("sample_id", "path", "wnid", "orig_wnid", "action", "content_hash"):
        df[c] = pd.Series(df[c].tolist(), dtype=object, index=df.index)  # plain str: Arrow strings iterate slowly
    errors: list[str] = []
    bad_action = df[~df["action"].isin(ACTIONS)]
    errors += [f"row {r.sample_id!r}: action {r.action!r} not in {ACTIONS}" for r in bad_action.itertuples()]
    dup = df["sample_id"][df["sample_id"].duplicated()]
    errors += [f"sample_id {s!r} appears more than once" for s in dup]
    if df["label"].isna().any() or df["wnid"].isna().any() or (df["wnid"] == "").any():
        rows = df[df["label"].isna() | df["wnid"].isna() | (df["wnid"] == "")]["sample_id"].tolist()
        errors.append(f"rows without a label or class id: {rows[:5]}")
    for r in df.itertuples():
        p = PurePosixPath(str(r.path))
        is_ph = r.action == "placeholder"
        if p.is_absolute() or ".." in p.parts or "\\" in str(r.path) or str(r.path) in ("", "."):
            errors.append(f"row {r.sample_id!r}: path {r.path!r} is not a plain relative path")
        elif is_ph != (p.parts[0] == PLACEHOLDER_DIR):
            errors.append(f"row {r.sample_id!r}: action {r.action!r} with path {r.path!r}")
        elif "/" in str(r.wnid) or str(r.wnid).startswith("."):
            errors.append(f"row {r.sample_id!r}: class id {r.wnid!r} cannot be a folder name")
    if not errors:
        per_wnid = df.groupby("wnid")["label"].nunique()
        for wnid in per_wnid[per_wnid > 1].index:
            labels = sorted(df.loc[df["wnid"] == wnid, "label"].unique().tolist())
            errors.append(f"class id {wnid!r} has several labels {labels}")
        per_label = df.groupby("label")["wnid"].nunique()
        for label in per_label[per_label > 1].index:
            wnids = sorted(df.loc[df["label"] == label, "wnid"].unique().tolist())
            errors.append(f"label {label} has several class ids {wnids}")
    if errors:
        raise ValueError(f"{path}: invalid clean manifest ({len(errors)} problem(s)): " + "; ".join(errors[:5]))
    df = df.astype({"label": "int64"})
    return df, meta


class _SourceChecker:
    """Checks source files under one root; resolves each folder once (symlinked folders count)."""

    def __init__(self, root: Path, *, check_hash: bool):
        self.root, self.root_real, self.check_hash = root, root.resolve(), check_hash
        self._dirs: dict[str, Path | str] = {}

    def _folder(self, parent: str) -> Path | str:
        hit = self._dirs.get(parent)
        if hit is None:
            try:
                hit = (self.root / parent).resolve(strict=True)
            except FileNotFoundError:
                hit = "missing"
            except (OSError, RuntimeError) as e:
                hit = f"cannot resolve: {e}"
            self._dirs[parent] = hit
        return hit

    def __call__(self, rel: str, size=None, chash=None) -> str | None:
        """The problem with the file at ``rel`` (relative to the root), or None when it matches."""
        parent, _, name = rel.rpartition("/")
        folder = self._folder(parent)
        if isinstance(folder, str):
            return folder
        src = folder / name
        try:
            st = os.lstat(src)
            if stat.S_ISLNK(st.st_mode):
                src = src.resolve(strict=True)
                st = os.stat(src)
        except FileNotFoundError:
            return "missing"
        except (OSError, RuntimeError) as e:
            return f"cannot resolve: {e}"
        if not src.is_relative_to(self.root_real):
            return f"resolves outside the root to {src}"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if size is not None and not pd.isna(size) and int(size) > 0 and st.st_size != int(size):
            return f"size {st.st_size} != manifest {int(size)}"
        if self.check_hash and isinstance(chash, str) and chash:
            try:
                digest = file_digest(src)
            except OSError as e:
                return f"unreadable: {e.strerror}"
            if digest != chash:
                return f"content hash {digest} != manifest {chash}"
        return None


def _parallel_map(fn: Callable, items: list, *, workers: int, desc: str, chunk: int = 512) -> list:
    """``[fn(*item) for item in items]`` on ``workers`` threads, in chunks, with a progress bar."""
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    out: list = []
    with ThreadPoolExecutor(max(1, workers)) as pool, progress(desc=desc, total=len(items), unit="file") as bar:
        for res in pool.map(lambda c: [fn(*a) for a in c], chunks):
            out += res
            bar.update(len(res))
    return out


def verify_sources(
    clean: pd.DataFrame,
    root: str | Path,
    *,
    check_hash: bool = True,
    workers: int = 4,
) -> list[tuple[str, str, str]]:
    """Check each non-placeholder row's file under ``root`` against the manifest.

    A file must exist, be a regular file, not resolve outside ``root``, and
    have the recorded size and (when recorded and ``check_hash``) content hash.

    Args:
        clean: Clean manifest rows (``sample_id``, ``path``, ``size``, ``content_hash``).
        root: The user's copy of the original split.
        check_hash: Also compare content hashes where the manifest records them.
        workers: Threads reading files in parallel.

    Returns:
        ``(sample_id, path, problem)`` per offending file, in manifest order; empty when all match.
    """
    check = _SourceChecker(Path(root), check_hash=check_hash)
    rows = clean[clean["action"] != "placeholder"]
    args = list(zip(rows["path"], rows["size"], rows["content_hash"]))
    for parent in sorted({a[0].rpartition("/")[0] for a in args}):
        check._folder(parent)  # fill the cache before threads share it
    results = _parallel_map(check, args, workers=workers, desc="verify sources")
    return [(s, a[0], why) for s, a, why in zip(rows["sample_id"], args, results) if why is not None]


def find_deepaugment(
    clean: pd.DataFrame,
    root: str | Path,
    *,
    tags: tuple[str, ...] = DEEPAUGMENT_TAGS,
) -> list[tuple[str, str]]:
    """DeepAugment copies beside the manifest's files: ``stem_<TAG>.ext`` next to ``stem.ext``.

    A copy that has its own manifest row follows that row instead.

    Returns:
        ``(copy path, base sample_id)`` pairs, sorted, paths relative to ``root``.
    """
    root = Path(root)
    rows = clean[clean["action"] != "placeholder"]
    own = set(rows["path"])
    listing: dict[str, set[str]] = {}
    found = []
    for sid, rel in zip(rows["sample_id"], rows["path"]):
        p = PurePosixPath(rel)
        parent = str(p.parent)
        if parent not in listing:
            try:
                listing[parent] = {e.name for e in os.scandir(root / parent)}
            except OSError:
                listing[parent] = set()
        for tag in tags:
            name = f"{p.stem}_{tag}{p.suffix}"
            copy = str(p.with_name(name))
            if name in listing[parent] and copy not in own:
                found.append((copy, sid))
    return sorted(found)


def _assign_names(items: list[tuple[str, str, str]]) -> dict[str, str]:
    """``(sample_id, wnid, file name)`` -> ``{sample_id: "<wnid>/<name>"}`` without collisions.

    Collisions (case-insensitive, for case-insensitive file systems) are resolved
    deterministically: in sample_id order the first keeps its name, the others
    are named after their sample_id with ``/`` replaced by ``__``.
    """
    taken: set[str] = set()
    out: dict[str, str] = {}
    pending = []
    for sid, wnid, name in sorted(items):
        key = f"{wnid}/{name}".casefold()
        if key in taken:
            pending.append((sid, wnid))
            continue
        taken.add(key)
        out[sid] = f"{wnid}/{name}"
    for sid, wnid in pending:
        name = sid.replace("/", "__")
        stem, suffix = os.path.splitext(name)
        k = 0
        while f"{wnid}/{name}".casefold() in taken:
            k += 1
            name = f"{stem}~{k}{suffix}"
        taken.add(f"{wnid}/{name}".casefold())
        out[sid] = f"{wnid}/{name}"
    return out


def plan_entries(
    clean: pd.DataFrame,
    root: str | Path,
    *,
    deepaugment: list[tuple[str, str]] = (),
) -> list[Entry]:
    """The files of the cleaned tree, sorted by destination.

    Args:
        clean: Validated clean manifest rows.
        root: The user's copy of the original split (absolute after resolving).
        deepaugment: ``(copy path, base sample_id)`` pairs from :func:`find_deepaugment`.
    """
    root = Path(root).absolute()
    by_sid = {r.sample_id: r for r in clean.itertuples()}
    items = []
    for r in clean.itertuples():
        name = PLACEHOLDER_NAME if r.action == "placeholder" else PurePosixPath(r.path).name
        items.append((r.sample_id, r.wnid, name))
    items += [(copy, by_sid[base].wnid, PurePosixPath(copy).name) for copy, base in deepaugment]
    names = _assign_names(items)
    entries = []
    for r in clean.itertuples():
        src = None if r.action == "placeholder" else root / r.path
        entries.append(Entry(names[r.sample_id], int(r.label), r.wnid, r.sample_id, r.action, src))
    for copy, base in deepaugment:
        b = by_sid[base]
        entries.append(Entry(names[copy], int(b.label), b.wnid, copy, "deepaugment", root / copy))
    return sorted(entries, key=lambda e: e.dest)


def placeholder_bytes(size: int = PLACEHOLDER_SIZE) -> bytes:
    """The black placeholder JPEG (deterministic bytes)."""
    from PIL import Image

    buf = _io.BytesIO()
    Image.new("RGB", (size, size)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


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
    return len(p.parts) == 2 and ".." not in p.parts and not p.is_absolute() and not p.parts[0].startswith(".")


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
    for d in sorted(parents):
        try:
            d.rmdir()  # only when empty
        except OSError:
            pass
    return removed


def _sweep_tmp(out: Path, folders: set[str]) -> None:
    """Remove temporary files an interrupted run left in the class folders."""
    for wnid in sorted(folders):
        for e in os.scandir(out / wnid):
            if e.name.startswith(".") and e.name.endswith(TMP_SUFFIX) and not e.is_dir(follow_symlinks=False):
                os.unlink(e.path)


def _count_images(root: Path) -> int:
    n = 0
    for _, _, files in os.walk(root):
        n += sum(f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".") for f in files)
    return n


def _class_order(clean: pd.DataFrame, meta: dict[str, str], classes: ClassList | None) -> list[str]:
    """Class ids in label order (``""`` for labels no row names)."""
    if classes is None and meta.get("classes") == IMAGENET_1K:
        classes = load_classes(IMAGENET_1K)  # a class TSV path is relative to the pipeline's repo: not read here
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

    Returns:
        Counts: ``kept``, ``relabelled`` (fix and fix+merge), ``merged`` (merge
        and fix+merge), ``placeholders``, ``deepaugment``, ``removed`` (image
        files under ``root`` the tree leaves out), ``source_files``, ``images``
        (files in the tree), ``classes`` (class folders), ``created``,
        ``unchanged``, ``stale_removed``, and ``split``/``mode``.

    Raises:
        SourceMismatchError: a source file is missing or differs; nothing was written.
        ValueError: bad mode, invalid manifest, ``out`` overlapping ``root`` or
            holding foreign files, labels disagreeing with ``classes``.
    """
    if mode not in LINK_MODES:
        raise ValueError(f"mode {mode!r} is not one of {sorted(LINK_MODES)}")
    clean_manifest_path, root, out = Path(clean_manifest_path), Path(root), Path(out)
    if out.is_dir():
        sweep_temporaries(out, recursive=False)  # a killed run's state / file list / card writes (leftovers.py)
    root_real, _ = _check_paths(root, out)
    clean, meta = load_clean_manifest(clean_manifest_path)
    order = _class_order(clean, meta, classes)
    split = meta.get("split") or clean_manifest_path.stem
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", split) or split.startswith("."):
        split = "clean"

    state = _read_state(out)  # cheap refusals before hashing the whole split
    problems = verify_sources(clean, root_real, check_hash=check_hash, workers=workers)
    copies = find_deepaugment(clean, root_real) if deepaugment else []
    check = _SourceChecker(root_real, check_hash=False)
    for copy, _ in copies:
        why = check(copy)
        if why:
            problems.append((copy, copy, why))
    if problems:
        raise SourceMismatchError(root, problems)

    entries = plan_entries(clean, root_real, deepaugment=copies)
    planned = [e.dest for e in entries]
    previous = set(state["entries"])
    if not set(planned) <= previous or not state.get("complete", False):
        out.mkdir(parents=True, exist_ok=True)
        _write_state(out, {"complete": False, "entries": sorted(previous | set(planned)), "mode": mode})
    out_real = out.resolve()
    for wnid in sorted({e.wnid for e in entries}):
        d = out / wnid
        d.mkdir(exist_ok=True)
        if d.resolve() != out_real / wnid:
            raise ValueError(f"{d} is a link to {d.resolve()}; refusing to write through it")

    link, ph = LINK_MODES[mode], placeholder_bytes()
    made = _parallel_map(lambda e: _materialise(e, out, link, ph), [(e,) for e in entries], workers=workers, desc=f"apply ({mode})")
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
    _write_state(out, {"complete": True, "entries": planned, "mode": mode})
    return counts
