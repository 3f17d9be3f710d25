"""What ``apply`` will build: the clean manifest read and checked, the sources verified, one entry per output file.

:func:`plan_entries` maps every clean-manifest row to its destination (class
folders of wnids, clashing names made unique, placeholders for emptied classes);
:func:`verify_sources` checks the user's copy of the split against the manifest
(size and content hash) before anything is written.
"""
from __future__ import annotations

import io as _io
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

import pandas as pd

from ..cleanup.rules import ACTION_SET
from ..io import file_digest, read_metadata, read_table
from ..progress import progress

CLEAN_COLUMNS = ("sample_id", "path", "label", "wnid", "orig_label", "orig_wnid", "action", "size", "content_hash")
ACTIONS = ("keep", "fix", "merge", "fix+merge", "placeholder", "relabel_set")
LABELS = "labels"
"""The optional label-set column of a clean manifest (list of class indices after merges; ``[label]`` on other rows)."""
PLACEHOLDER_DIR = "__placeholder__"
PLACEHOLDER_NAME = "__placeholder__.JPEG"
# The paper's placeholder is "a black image"; 224 px is the usual ImageNet training size, so
# loaders that crop/resize treat it like any other sample.
PLACEHOLDER_SIZE = 224
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
    if not errors and LABELS in df.columns:
        df[LABELS], set_errors = _label_sets(df)
        errors += set_errors
    if errors:
        raise ValueError(f"{path}: invalid clean manifest ({len(errors)} problem(s)): " + "; ".join(errors[:5]))
    df = df.astype({"label": "int64"})
    return df, meta


def _label_sets(df: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """The ``labels`` column as tuples of ints, and its problems: a set must start with the row's ``label``."""
    out, errors = [], []
    for sid, label, action, labels in zip(df["sample_id"], df["label"], df["action"], df[LABELS]):
        try:
            the_set = tuple(int(x) for x in (labels if labels is not None else ()))
        except (TypeError, ValueError):
            errors.append(f"row {sid!r}: labels {labels!r} is not a list of class indices")
            out.append(())
            continue
        if action == ACTION_SET and not the_set:
            errors.append(f"row {sid!r}: action {ACTION_SET!r} with an empty label set")
        elif the_set and the_set[0] != int(label):
            errors.append(f"row {sid!r}: label set {list(the_set)} does not start with its label {int(label)}")
        elif any(x < 0 for x in the_set) or len(set(the_set)) != len(the_set):
            errors.append(f"row {sid!r}: label set {list(the_set)} holds a negative or repeated class")
        out.append(the_set)
    return pd.Series(out, index=df.index, dtype=object), errors


class SourceChecker:
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


def parallel_map(fn: Callable, items: list, *, workers: int, desc: str, chunk: int = 512) -> list:
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
    check = SourceChecker(Path(root), check_hash=check_hash)
    rows = clean[clean["action"] != "placeholder"]
    args = list(zip(rows["path"], rows["size"], rows["content_hash"]))
    for parent in sorted({a[0].rpartition("/")[0] for a in args}):
        check._folder(parent)  # fill the cache before threads share it
    results = parallel_map(check, args, workers=workers, desc="verify sources")
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


def below_class_folder(path: str, layout: str) -> str:
    """The part of a sample's path kept under its class folder in a nested tree: below the first-level class folder
    (``imagefolder``), or the whole path (``csv``, whose paths need not hold a class folder)."""
    return path.partition("/")[2] if layout == "imagefolder" and "/" in path else path


def assign_nested_names(items: list[tuple[str, str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """``(sample_id, class, path below the class folder)`` -> ``({sample_id: "<class>/<path>"}, {sample_id: dest})``.

    The second mapping lists the name clashes (a fix landing on a path its new
    class already holds; compared case-insensitively): in sample_id order the
    first keeps the path, the others get ``<stem>~<k><suffix>`` in the same folder.
    """
    taken: set[str] = set()
    out: dict[str, str] = {}
    pending = []
    for sid, cls, sub in sorted(items):
        dest = f"{cls}/{sub}"
        if dest.casefold() in taken:
            pending.append((sid, dest))
            continue
        taken.add(dest.casefold())
        out[sid] = dest
    clashes = {}
    for sid, dest in pending:
        stem, suffix = os.path.splitext(dest)
        k, name = 1, f"{stem}~1{suffix}"
        while name.casefold() in taken:
            k += 1
            name = f"{stem}~{k}{suffix}"
        taken.add(name.casefold())
        out[sid] = clashes[sid] = name
    return out, clashes


def plan_entries(
    clean: pd.DataFrame,
    root: str | Path,
    *,
    deepaugment: list[tuple[str, str]] = (),
    nested: str | None = None,
    clashes: dict[str, str] | None = None,
) -> list[Entry]:
    """The files of the cleaned tree, sorted by destination.

    Args:
        clean: Validated clean manifest rows.
        root: The user's copy of the original split (absolute after resolving).
        deepaugment: ``(copy path, base sample_id)`` pairs from :func:`find_deepaugment`.
        nested: A folder dataset's layout (``imagefolder`` or ``csv``): entries go to
            ``<class>/<path below the class folder>`` (:func:`below_class_folder`)
            instead of ``<class>/<file name>``.
        clashes: Filled with ``sample_id -> dest`` of the renamed entries (``nested`` only).
    """
    root = Path(root).absolute()
    if nested:
        names, renamed = assign_nested_names([(r.sample_id, r.wnid, below_class_folder(r.path, nested))
                                              for r in clean.itertuples() if r.action != "placeholder"])
        if clashes is not None:
            clashes.update(renamed)
        return sorted((Entry(names[r.sample_id], int(r.label), r.wnid, r.sample_id, r.action, root / r.path)
                       for r in clean.itertuples() if r.action != "placeholder"), key=lambda e: e.dest)
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
