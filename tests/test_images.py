"""Header inspection and safe decoding of image files (data/images.py)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imagenet_clean.data.images import inspect_image, load_rgb, resolve_within
from imagenet_clean.io import file_digest

BIG = 10**8


def test_ok_jpeg_header_size_and_hash(tmp_path, write_image):
    p = write_image(tmp_path / "a.JPEG", size=(40, 30))
    info = inspect_image(p, max_pixels=BIG, hash=True)
    assert info.ok and (info.width, info.height) == (40, 30)
    assert info.size == p.stat().st_size and info.mtime_ns == p.stat().st_mtime_ns
    assert info.content_hash == file_digest(p)
    assert inspect_image(p, max_pixels=BIG, hash=False).content_hash is None


@pytest.mark.parametrize("hash", [True, False])
def test_zero_byte_file(tmp_path, hash):
    p = tmp_path / "empty.JPEG"
    p.write_bytes(b"")
    info = inspect_image(p, max_pixels=BIG, hash=hash)
    assert not info.ok and info.reason.startswith("empty file") and info.size == 0


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("hash", [True, False])
def test_truncated_file(tmp_path, write_image, fmt, hash):
    p = write_image(tmp_path / f"t.{fmt}", size=(64, 64), format=fmt)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    info = inspect_image(p, max_pixels=BIG, hash=hash)
    assert info.reason.startswith("truncated file"), info.reason


def test_non_image_file(tmp_path):
    p = tmp_path / "notes.JPEG"
    p.write_text("this is not an image\n")
    info = inspect_image(p, max_pixels=BIG)
    assert info.reason.startswith("not an image") and info.width == -1


@pytest.mark.parametrize("mode", ["CMYK", "L"])
def test_cmyk_and_grayscale_jpeg_are_valid_and_load_as_rgb(tmp_path, write_image, mode):
    p = write_image(tmp_path / f"{mode}.JPEG", size=(20, 10), mode=mode)
    assert Image.open(p).mode == mode
    assert inspect_image(p, max_pixels=BIG).ok
    im = load_rgb(p, max_pixels=BIG)
    assert im.mode == "RGB" and im.size == (20, 10)


def test_png_behind_jpeg_name_is_valid(tmp_path, write_image):
    p = write_image(tmp_path / "x.JPEG", size=(12, 9), mode="RGBA", format="PNG")
    info = inspect_image(p, max_pixels=BIG)
    assert info.ok and info.format == "PNG" and (info.width, info.height) == (12, 9)
    assert load_rgb(p, max_pixels=BIG).mode == "RGB"


def test_decompression_bomb(tmp_path, write_image):
    p = write_image(tmp_path / "bomb.JPEG", size=(100, 100))
    info = inspect_image(p, max_pixels=9_999)
    assert info.reason.startswith("decompression bomb") and "10000" in info.reason
    with pytest.raises(ValueError, match="decompression bomb"):
        load_rgb(p, max_pixels=9_999)


def test_load_rgb_rejects_garbage_naming_the_file(tmp_path):
    p = tmp_path / "junk.JPEG"
    p.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="junk.JPEG"):
        load_rgb(p, max_pixels=BIG)


def test_load_rgb_draft_mode_decodes_smaller(tmp_path, write_image):
    p = write_image(tmp_path / "big.JPEG", size=(400, 320))
    full = load_rgb(p, max_pixels=BIG)
    small = load_rgb(p, max_pixels=BIG, draft_size=(100, 80))
    assert full.size == (400, 320)
    assert small.mode == "RGB" and 100 <= small.size[0] < 400 and 80 <= small.size[1] < 320


def test_load_rgb_applies_exif_orientation(tmp_path):
    arr = np.zeros((10, 30, 3), np.uint8)
    arr[:, :5] = 255  # white band on the left
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    p = tmp_path / "rot.JPEG"
    im.save(p, exif=exif, quality=95)
    out = load_rgb(p, max_pixels=BIG)
    assert out.size == (10, 30)
    assert np.asarray(out)[:5].mean() > 200  # the band is now at the top


def test_load_rgb_within_the_root_refuses_links_that_leave_it(tmp_path, write_image):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "cls").mkdir(parents=True)
    outside.mkdir()
    write_image(outside / "secret.JPEG", (12, 10))
    write_image(root / "cls" / "real.JPEG", (12, 10))
    (root / "cls" / "inside.JPEG").symlink_to(root / "cls" / "real.JPEG")
    (root / "cls" / "escape.JPEG").symlink_to(outside / "secret.JPEG")
    (root / "linked").symlink_to(outside, target_is_directory=True)  # a folder link leaving the root
    assert load_rgb(root / "cls" / "inside.JPEG", max_pixels=10**6, within=root).size == (12, 10)
    for rel in ("cls/escape.JPEG", "linked/secret.JPEG", "cls/../../outside/secret.JPEG"):
        with pytest.raises(ValueError, match=r"symlink outside the dataset root \(resolves to .*outside/secret\.JPEG\)"):
            load_rgb(root / rel, max_pixels=10**6, within=root)
    assert load_rgb(root / "cls" / "escape.JPEG", max_pixels=10**6).size == (12, 10)  # no root given: no check
    # a root that is itself reached through a link still contains its own files
    (tmp_path / "alias").symlink_to(root, target_is_directory=True)
    assert resolve_within(tmp_path / "alias" / "cls" / "real.JPEG", tmp_path / "alias") == str(root / "cls" / "real.JPEG")
    # a sibling whose name starts with the root's name is outside it
    (tmp_path / "root2").mkdir()
    write_image(tmp_path / "root2" / "x.JPEG", (12, 10))
    with pytest.raises(ValueError, match="outside the dataset root"):
        resolve_within(tmp_path / "root2" / "x.JPEG", root)


def test_a_relative_root_is_resolved_against_the_current_folder_every_time(tmp_path, monkeypatch):
    """The resolved-root cache must not carry a relative root from one project folder to another."""
    from imagenet_clean.data.images import resolve_within

    for name in ("a", "b"):
        (tmp_path / name / "raw").mkdir(parents=True)
        (tmp_path / name / "raw" / "x.jpg").write_bytes(b"x")
    monkeypatch.chdir(tmp_path / "a")
    assert resolve_within("raw/x.jpg", "raw") == str((tmp_path / "a/raw/x.jpg").resolve())
    monkeypatch.chdir(tmp_path / "b")
    assert resolve_within("raw/x.jpg", "raw") == str((tmp_path / "b/raw/x.jpg").resolve())
