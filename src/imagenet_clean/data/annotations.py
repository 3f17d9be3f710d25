"""Box and label annotations in the ImageNet formats.

Sources, chosen by :func:`load_annotations` from the path (a registry keyed by
kind, see :data:`ANNOTATION_READERS`):

* ``voc``: a folder of PASCAL-VOC XML files, either ``<wnid>/<stem>.xml`` (the
  ILSVRC bounding-box archives) or flat ``<stem>.xml`` (the validation boxes),
  or a single XML file;
* ``kaggle``: a Kaggle ``LOC_train_solution.csv`` / ``LOC_val_solution.csv``
  (``ImageId,PredictionString`` with ``"wnid xmin ymin xmax ymax ..."``);
* ``labels``: a labels file with one ``<file name> <wnid or class index>`` per
  line (space, tab or comma separated), e.g. the common ``val.txt``.

Every source is keyed by the image file's stem (``n01440764_10026``,
``ILSVRC2012_val_00000001``). XML is parsed with ``defusedxml``: entity
declarations and external references are refused, never expanded or fetched.
A bad file or row never stops the run: it becomes an entry of
:attr:`Annotations.errors` naming the file (and line when known).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..classes import ClassList

Box = list[float]


@dataclass(frozen=True)
class LabelRef:
    """A label given by an annotation source, and where (``file:line``)."""

    wnid: str
    where: str


@dataclass
class Annotations:
    """Boxes and labels keyed by image stem, plus the problems met reading them.

    Attributes:
        boxes: stem -> list of ``(wnid, [xmin, ymin, xmax, ymax])``.
        labels: stem -> :class:`LabelRef` (sources that also give the class).
        where: stem -> where its boxes came from (``file`` or ``file:line``).
        errors: One message per bad file or row, naming the file (and line).
    """

    boxes: dict[str, list[tuple[str, Box]]] = field(default_factory=dict)
    labels: dict[str, LabelRef] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


ANNOTATION_READERS: dict[str, Callable[..., Annotations]] = {}


def register_reader(kind: str):
    """Decorator adding an annotation reader ``fn(path, *, classes) -> Annotations``."""

    def deco(fn):
        ANNOTATION_READERS[kind] = fn
        return fn

    return deco


def annotation_kind(path: str | Path) -> str:
    """The reader kind for ``path``: a folder or ``.xml`` is VOC, ``.csv`` is Kaggle, else a labels file."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".xml":
        return "voc"
    if path.suffix.lower() == ".csv":
        return "kaggle"
    return "labels"


def load_annotations(path: str | Path, *, classes: ClassList, kind: str | None = None) -> Annotations:
    """Read an annotation source (folder or file) of any supported kind.

    Args:
        path: A VOC XML folder or file, a Kaggle LOC CSV, or a labels file.
        classes: Known classes; rows naming other wnids are reported as errors.
        kind: Force a reader (``voc``, ``kaggle``, ``labels``); default from the path.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``kind`` is not a registered reader, or a CSV or labels
            file is not UTF-8 text (the message names the file and byte).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: annotation source not found")
    kind = kind or annotation_kind(path)
    if kind not in ANNOTATION_READERS:
        raise ValueError(f"unknown annotation kind {kind!r}; known: {', '.join(sorted(ANNOTATION_READERS))}")
    try:
        return ANNOTATION_READERS[kind](path, classes=classes)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file (byte {e.start}: {e.reason})") from None


# ------------------------------------------------------------------ VOC XML


def _number(text: str | None, what: str) -> float:
    if text is None:
        raise ValueError(f"missing <{what}>")
    try:
        v = float(text.strip())
    except ValueError:
        raise ValueError(f"<{what}> is not a number: {text.strip()!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"<{what}> is not finite: {text.strip()!r}")
    return v


def parse_voc_xml(path: str | Path) -> list[tuple[str, Box]]:
    """The ``(wnid, box)`` objects of one PASCAL-VOC XML file.

    Raises:
        ValueError: malformed XML (message has ``file:line``), entity
            declarations or external references (refused, not expanded), or an
            object without a valid box.
    """
    from xml.etree.ElementTree import ParseError

    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    try:
        root = DET.parse(str(path), forbid_dtd=False, forbid_entities=True, forbid_external=True).getroot()
    except ParseError as e:
        line = e.position[0] if getattr(e, "position", None) else "?"
        raise ValueError(f"{path}:{line}: malformed XML: {e}") from None
    except DefusedXmlException as e:
        raise ValueError(f"{path}: unsafe XML refused (not expanded or read): {type(e).__name__}: {e}") from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror or e}") from None
    objects = []
    for i, obj in enumerate(root.iter("object"), 1):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        try:
            if not name:
                raise ValueError("missing <name>")
            if bb is None:
                raise ValueError("missing <bndbox>")
            box = [_number(bb.findtext(k), k) for k in ("xmin", "ymin", "xmax", "ymax")]
            if box[2] < box[0] or box[3] < box[1]:
                raise ValueError(f"empty box {box}")
        except ValueError as e:
            raise ValueError(f"{path}: object {i}: {e}") from None
        objects.append((name, box))
    return objects


def _add_boxes(ann: Annotations, stem: str, objects, where: str, classes: ClassList) -> None:
    unknown = sorted({w for w, _ in objects if w not in classes})
    if unknown:
        ann.errors.append(f"{where}: unknown class id {unknown[0]!r}")
    kept = [(w, b) for w, b in objects if w in classes]
    ann.boxes.setdefault(stem, []).extend(kept)
    ann.where.setdefault(stem, where)


@register_reader("voc")
def read_voc(path: Path, *, classes: ClassList) -> Annotations:
    """A folder of VOC XML files (``<wnid>/<stem>.xml`` or flat ``<stem>.xml``) or one XML file.

    The first object's class also serves as the image's label (validation boxes).
    """
    from ..progress import progress

    ann = Annotations()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in progress(files, desc=f"annotations {path.name}", unit="file"):
        if f.suffix.lower() != ".xml":
            ann.errors.append(f"{f}: not an XML annotation file (ignored)")
            continue
        try:
            objects = parse_voc_xml(f)
        except ValueError as e:
            ann.errors.append(str(e))
            continue
        _add_boxes(ann, f.stem, objects, str(f), classes)
        if objects:
            ann.labels.setdefault(f.stem, LabelRef(objects[0][0], str(f)))
    return ann


# ------------------------------------------------------------------ Kaggle CSV


@register_reader("kaggle")
def read_kaggle_csv(path: Path, *, classes: ClassList) -> Annotations:
    """A Kaggle ``LOC_*_solution.csv``; the first box's wnid is the image's label."""
    ann = Annotations()
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            ann.errors.append(f"{path}:1: expected header 'ImageId,PredictionString', got {header!r}")
            return ann
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != 2:
                ann.errors.append(f"{where}: expected 2 fields, got {len(row)}: {row!r}")
                continue
            stem, tokens = row[0].strip(), row[1].split()
            if not stem or not tokens or len(tokens) % 5:
                ann.errors.append(f"{where}: expected 'ImageId,wnid xmin ymin xmax ymax ...', got {row!r}")
                continue
            try:
                objects = [
                    (tokens[i], [_number(t, k) for t, k in zip(tokens[i + 1 : i + 5], ("xmin", "ymin", "xmax", "ymax"))])
                    for i in range(0, len(tokens), 5)
                ]
            except ValueError as e:
                ann.errors.append(f"{where}: {e}")
                continue
            stem = Path(stem).stem if Path(stem).suffix.lower() in (".jpeg", ".jpg", ".png") else stem
            _add_boxes(ann, stem, objects, where, classes)
            ann.labels.setdefault(stem, LabelRef(objects[0][0], where))
    return ann


# ------------------------------------------------------------------ labels file


@register_reader("labels")
def read_labels_file(path: Path, *, classes: ClassList) -> Annotations:
    """``<file name> <wnid or integer class index>`` per line (``#`` comments allowed)."""
    ann = Annotations()
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        where = f"{path}:{lineno}"
        text = line.split("#", 1)[0].replace(",", " ").split()
        if not text:
            continue
        if len(text) != 2:
            ann.errors.append(f"{where}: expected '<file> <wnid or class index>', got {line!r}")
            continue
        name, cls = text
        if cls.isascii() and cls.isdigit():
            idx = int(cls)
            if idx >= len(classes):
                ann.errors.append(f"{where}: class index {idx} out of range [0, {len(classes)})")
                continue
            cls = classes.wnids[idx]
        elif cls not in classes:
            ann.errors.append(f"{where}: unknown class id {cls!r}")
        ann.labels[Path(name).stem] = LabelRef(cls, where)
    return ann
