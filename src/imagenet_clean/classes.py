"""Class lists: the 1000 ImageNet classes (from timm's ImageNetInfo) or a dataset's own TSV."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGENET_1K = "imagenet-1k"


@dataclass(frozen=True)
class ClassList:
    """Ordered class ids (``wnids``) and human names; a label is an index into them."""

    wnids: tuple[str, ...]
    names: tuple[str, ...]

    def __post_init__(self):
        if len(self.wnids) != len(self.names):
            raise ValueError(f"{len(self.wnids)} class ids but {len(self.names)} names")
        if len(set(self.wnids)) != len(self.wnids):
            dup = sorted({w for w in self.wnids if self.wnids.count(w) > 1})
            raise ValueError(f"duplicate class ids: {dup[:5]}")

    def __len__(self) -> int:
        return len(self.wnids)

    def index(self, wnid: str) -> int:
        """Label index of ``wnid``; raises ``KeyError`` for an unknown class id."""
        try:
            return self._lookup[wnid]
        except KeyError:
            raise KeyError(f"unknown class id {wnid!r}") from None

    def __contains__(self, wnid: str) -> bool:
        return wnid in self._lookup

    @property
    def _lookup(self) -> dict[str, int]:
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = {w: i for i, w in enumerate(self.wnids)}
            object.__setattr__(self, "_cache", cache)
        return cache


def imagenet_classes() -> ClassList:
    """The ILSVRC2012 classes in the standard 1000-class order, from timm."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    wnids = tuple(info.label_names())
    names = tuple(info.label_name_to_description(w) for w in wnids)
    return ClassList(wnids, names)


BUILTIN_CLASS_LISTS = (IMAGENET_1K,)
"""Class specs that name a built-in list rather than a file."""


def resolve_class_spec(spec: str, root: str | Path) -> str:
    """``spec`` with a relative file path made ``root``'s; built-in names and absolute paths pass through."""
    spec = str(spec)
    if spec in BUILTIN_CLASS_LISTS or Path(spec).is_absolute():
        return spec
    return str(Path(root) / spec)


def load_classes(spec: str | Path) -> ClassList:
    """``"imagenet-1k"``, a TSV file of ``wnid<TAB>name`` lines in label order, or a scan JSON.

    A scan JSON (``data/scan/train.json``, written by ``scan@train`` for a
    folder dataset; :mod:`imagenet_clean.data.scan`) lists the class names
    under ``classes``; each name is both the class id and its name.
    """
    if str(spec) == IMAGENET_1K:
        return imagenet_classes()
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: class list not found (dataset.classes in params.yaml)")
    if path.suffix.lower() == ".json":
        import json

        names = json.loads(path.read_text(encoding="utf-8")).get("classes")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{path}: no 'classes' list of names (a scan of a folder dataset's training split)")
        return ClassList(tuple(names), tuple(names))
    wnids, names = [], []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0]:
            raise ValueError(f"{path}:{lineno}: expected 'wnid<TAB>name', got {line!r}")
        wnids.append(parts[0])
        names.append(parts[1])
    return ClassList(tuple(wnids), tuple(names))


def unsafe_class_name(name: str) -> str:
    """Why ``name`` cannot be a folder name that ``apply`` writes ("" when it can): empty, ``.``/``..``, a separator,
    absolute, a control character or a NUL."""
    if not name:
        return "empty"
    if name in (".", ".."):
        return f"{name!r} names a folder above or at the output"
    if "/" in name or "\\" in name:
        return f"{name!r} holds a path separator (or is absolute)"
    if name.startswith("."):
        return f"{name!r} would be a hidden folder"
    if any(ord(ch) < 32 for ch in name):
        return f"{name!r} holds a control character"
    return ""


def write_classes(path: str | Path, classes: ClassList) -> None:
    """Write a class list as TSV (atomically)."""
    from .io import write_text

    write_text(path, "".join(f"{w}\t{n}\n" for w, n in zip(classes.wnids, classes.names)))
