"""Image files: cheap header inspection for ingestion and safe RGB decoding.

:func:`inspect_image` reads only what it needs (the header, the last bytes of the
file, and the whole file when a content hash is asked for) and never decodes
pixels; it turns every problem into a ``reason`` string instead of raising.
:func:`load_rgb` is the one decoder the rest of the package uses: any mode
(CMYK, grayscale, palette, PNG data behind a ``.JPEG`` name) becomes RGB, EXIF
orientation is applied, JPEG draft mode gives a cheap reduced-size decode, and
``within=root`` refuses a file that resolves outside the dataset root (a link
swapped in after ingestion).
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .layouts import SYMLINK_OUTSIDE

# Bytes from the end of a JPEG searched for the end-of-image marker: some real
# ImageNet JPEGs carry a few padding bytes after it.
_JPEG_TAIL = 256
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageInfo:
    """What ingestion records about one file.

    Attributes:
        width: Pixel width, -1 when unreadable.
        height: Pixel height, -1 when unreadable.
        size: File size in bytes (-1 when the file could not be stat-ed).
        mtime_ns: Modification time in ns (-1 when the file could not be stat-ed).
        content_hash: BLAKE2b-128 hex of the bytes, ``None`` when not asked for or unreadable.
        format: PIL format name (``JPEG``, ``PNG``, ...), empty when unknown.
        reason: Empty when the image is usable, else why not (``kind: detail``).
    """

    width: int
    height: int
    size: int
    mtime_ns: int
    content_hash: str | None
    format: str
    reason: str

    @property
    def ok(self) -> bool:
        return not self.reason


def _truncation(fmt: str, tail: bytes) -> str:
    """Empty when the file's last bytes look like a complete ``fmt`` stream, else a reason."""
    check = _TAIL_CHECKS.get(fmt)
    if check is None or check(tail):
        return ""
    return f"truncated file: no {fmt} end marker"


_TAIL_CHECKS = {
    "JPEG": lambda tail: b"\xff\xd9" in tail,
    "MPO": lambda tail: b"\xff\xd9" in tail,
    "PNG": lambda tail: b"IEND" in tail[-16:],
    "GIF": lambda tail: tail.rstrip(b"\x00").endswith(b"\x3b"),
}


def _open_header(fp, max_pixels: int) -> tuple[int, int, str, str]:
    """(width, height, format, reason) from an open file object; never raises."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(fp) as im:
                w, h, fmt = im.size[0], im.size[1], im.format or ""
    except Image.DecompressionBombError as e:
        return -1, -1, "", f"decompression bomb: {e}"
    except UnidentifiedImageError:
        return -1, -1, "", "not an image: unrecognised file format"
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        if isinstance(e, EOFError) or "truncated" in str(e).lower():
            return -1, -1, "", f"truncated file: header cut short ({e})"
        return -1, -1, "", f"unreadable header: {e}"
    if w * h > max_pixels:
        return w, h, fmt, f"decompression bomb: {w}x{h} = {w * h} pixels > max_pixels {max_pixels}"
    if w <= 0 or h <= 0:
        return w, h, fmt, f"unreadable header: size {w}x{h}"
    return w, h, fmt, ""


def inspect_image(path: str | Path, *, max_pixels: int, hash: bool = False) -> ImageInfo:
    """Read an image file's header, size, mtime and (optionally) content hash.

    Pixels are never decoded. A file is rejected (``reason`` set) when it is
    empty, not an image, truncated (JPEG without its end-of-image marker, PNG
    without ``IEND``, GIF without its trailer) or larger than ``max_pixels``.

    Args:
        path: The image file.
        max_pixels: Largest accepted ``width * height`` (decompression-bomb guard).
        hash: Also compute the BLAKE2b-128 content hash (reads the whole file).

    Returns:
        The :class:`ImageInfo`; problems are in its ``reason``, never raised.
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            size, mtime = st.st_size, st.st_mtime_ns
            if size == 0:
                return ImageInfo(-1, -1, 0, mtime, None, "", "empty file: 0 bytes")
            if hash:
                data = f.read()
                digest = hashlib.blake2b(data, digest_size=16).hexdigest()
                w, h, fmt, reason = _open_header(io.BytesIO(data), max_pixels)
                tail = data[-_JPEG_TAIL:]
            else:
                digest = None
                w, h, fmt, reason = _open_header(f, max_pixels)
                f.seek(max(0, size - _JPEG_TAIL))
                tail = f.read()
    except OSError as e:
        return ImageInfo(-1, -1, -1, -1, None, "", f"unreadable file: {e.strerror or e}")
    if not reason:
        reason = _truncation(fmt, tail)
    if reason.startswith(("not an image", "unreadable", "truncated file: header")):
        w = h = -1
    return ImageInfo(w, h, size, mtime, digest, fmt, reason)


@functools.lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    """The real path of a dataset root (an absolute path), resolved once per process (every image of a split shares it)."""
    return os.path.realpath(root)


def resolve_within(path: str | Path, root: str | Path) -> str:
    """The real path of ``path``, which must lie under ``root`` (after resolving every link).

    Ingestion lists a link leaving the root as an error and never opens it; this
    is the same rule for the stages that open files later (prediction, training,
    CAMs), so a file replaced by such a link after ingestion is refused, not read.

    Raises:
        ValueError: ``<path>: symlink outside the dataset root (resolves to <real path>)``.
    """
    real, base = os.path.realpath(path), _real_root(os.path.abspath(os.fspath(root)))  # absolute: the cache outlives a chdir
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        raise ValueError(f"{path}: {SYMLINK_OUTSIDE} (resolves to {real})")
    return real


def load_rgb(path: str | Path, *, max_pixels: int, draft_size: tuple[int, int] | None = None,
             within: str | Path | None = None) -> Image.Image:
    """Decode an image file to an RGB ``PIL.Image``, safely.

    Any colour mode (CMYK, grayscale, palette, RGBA, 16-bit) is converted to RGB,
    the EXIF orientation is applied, and a JPEG is decoded in draft mode (DCT
    scaling, up to 8x cheaper) when ``draft_size`` is given: the result is then
    at least ``draft_size`` in each dimension where the image allows, not exactly it.

    Args:
        path: The image file (the format is detected from the bytes, not the name).
        max_pixels: Refuse images with more pixels than this.
        draft_size: ``(width, height)`` the caller will resize to, or ``None``
            for a full-size decode.
        within: The dataset root ``path`` must resolve under (see
            :func:`resolve_within`), or ``None`` for no check.

    Raises:
        ValueError: the file is not a decodable image, exceeds ``max_pixels`` or
            resolves outside ``within`` (the message names the file).
    """
    source = path if within is None else resolve_within(path, within)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(source)
            w, h = im.size
            if w * h > max_pixels:
                im.close()
                raise ValueError(f"{path}: decompression bomb: {w}x{h} = {w * h} pixels > max_pixels {max_pixels}")
            if draft_size is not None and im.format == "JPEG":
                im.draft("RGB", tuple(draft_size))
            im.load()
    except Image.DecompressionBombError as e:
        raise ValueError(f"{path}: decompression bomb: {e}") from None
    except (OSError, SyntaxError, EOFError) as e:
        raise ValueError(f"{path}: cannot decode image: {e}") from None
    im = ImageOps.exif_transpose(im) or im
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im, mask=im.getchannel("A"))
        return bg
    return im.convert("RGB")
