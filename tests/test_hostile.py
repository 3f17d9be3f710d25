"""Hostile dataset files through ingestion and decoding (issue 8).

The corpus (tests/hostile_corpus.py) holds one file per kind of trouble. Each
must come out of ``imagenet-clean ingest`` either usable or reported with a
reason; nothing may crash, and nothing outside the dataset roots may be read
(audited with ``sys.addaudithook``) or written.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hostile_corpus import (
    CLASSES,
    FORMULA,
    FORMULA_NAME,
    SECRET,
    SYMLINK_OUTSIDE,
    UNICODE_NAME,
    W1,
    W2,
    audited,
    build_corpus,
    run_main,
    text_of_tree,
    tiny_checkpoint,
    under,
)
from imagenet_clean.cli import app
from imagenet_clean.data.images import inspect_image, load_rgb
from imagenet_clean.data.ingest import ingest_split
from imagenet_clean.io import read_table

BIG = 10**8

# ------------------------------------------------------------------ fixtures


@pytest.fixture
def corpus(tmp_path):
    return build_corpus(tmp_path / "c")


@pytest.fixture
def workdir(tmp_path, corpus, monkeypatch):
    """A project folder whose params.yaml points at the corpus; the cwd of the test."""
    work = tmp_path / "work"
    work.mkdir()
    params = {
        "dataset": {"classes": str(corpus.classes_tsv), "truth": None},
        "splits": {
            "train": {"root": str(corpus.root), "layout": "train", "annotations": str(corpus.boxes)},
            "val": {"root": str(corpus.val_root), "layout": "val", "annotations": str(corpus.val_csv)},
        },
        "ingest": {"workers": 1, "max_pixels": BIG},
    }
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(work)
    return work


def _ingest(split: str):
    res = CliRunner().invoke(app, ["ingest", "--split", split])
    assert res.exit_code == 0, res.output
    return read_table(f"data/manifests/{split}.parquet"), res.output


def _rows(df):
    return {r.sample_id: r for r in df.itertuples()}


# ------------------------------------------------------------------ ingest: every item accounted for


def test_every_train_file_is_usable_or_reported_with_a_reason(corpus, workdir):
    df, out = _ingest("train")
    r = _rows(df)
    for sid, exp in corpus.train.items():
        assert sid in r, f"{sid} was dropped from the manifest"
        assert r[sid].status == exp.status, (sid, r[sid].reason)
        if exp.status == "error":
            assert r[sid].reason.startswith(exp.reason), (sid, r[sid].reason)
            assert r[sid].label in (0, 1) and r[sid].wnid in (W1, W2)  # the label is kept for the record
        else:
            assert r[sid].reason == "" and r[sid].width > 0 and r[sid].height > 0
    assert "errors:" in out and "truncated file 1" in out and "decompression bomb 1" in out


def test_file_names_with_spaces_unicode_and_formulas_survive_exactly(corpus, workdir):
    df, _ = _ingest("train")
    ids = set(df["sample_id"])
    assert f"{W2}/{UNICODE_NAME}" in ids and f"{W2}/{FORMULA_NAME}" in ids
    r = _rows(df)
    # the path column is the relative path on disk, byte for byte: it opens the same file
    for name in (UNICODE_NAME, FORMULA_NAME):
        assert (corpus.root / r[f"{W2}/{name}"].path).is_file()
    assert load_rgb(corpus.root / W2 / UNICODE_NAME, max_pixels=BIG).size == (24, 16)


def test_usable_hostile_images_decode_to_rgb_of_the_displayed_size(corpus):
    for sid, exp in corpus.train.items():
        if exp.status == "ok":
            im = load_rgb(corpus.root / sid, max_pixels=BIG)
            assert im.mode == "RGB" and im.size == exp.rgb_size, sid


def test_exif_rotation_swaps_width_and_height_in_decoding_not_in_the_header(corpus, workdir):
    path = corpus.root / W1 / "rotated.JPEG"
    info = inspect_image(path, max_pixels=BIG)
    assert (info.width, info.height) == (30, 10)  # the manifest records the stored size
    im = load_rgb(path, max_pixels=BIG)
    assert im.size == (10, 30)  # decoding applies orientation 6 (90 degrees clockwise)
    arr = np.asarray(im)
    assert arr[:5].mean() > 200 and arr[10:].mean() < 30  # the left band is now on top


def test_sixteen_bit_png_is_scaled_not_saturated(corpus):
    arr = np.asarray(load_rgb(corpus.root / W1 / "deep.png", max_pixels=BIG)).astype(int)
    assert arr[:, 0].max() <= 1 and arr[:, -1].min() >= 254  # the full 0..65535 ramp maps to 0..255
    assert 100 < arr.mean() < 156
    assert (np.diff(arr[0, :, 0]) >= 0).all()  # still a ramp


def test_animated_gif_gives_its_first_frame(corpus):
    from PIL import Image

    path = corpus.root / W1 / "anim.gif"
    with Image.open(path) as im:
        assert getattr(im, "n_frames", 1) == 3
        first = np.asarray(im.convert("RGB"))
    assert np.array_equal(np.asarray(load_rgb(path, max_pixels=BIG)), first)


def test_decompression_bomb_is_refused_from_its_header(corpus):
    path = corpus.root / W1 / "bomb.png"
    assert path.stat().st_size < 200  # a tiny file declaring 60000 x 60000 pixels
    for max_pixels in (BIG, 10**12):  # PIL's own guard still holds when max_pixels is set huge
        info = inspect_image(path, max_pixels=max_pixels, hash=True)
        assert info.reason.startswith("decompression bomb") and (info.width, info.height) == (-1, -1)
    with pytest.raises(ValueError, match="bomb.png: decompression bomb"):
        load_rgb(path, max_pixels=BIG)


@pytest.mark.parametrize("name", ["trunc.JPEG", "zero.JPEG", "magic.JPEG", "script.JPEG"])
def test_unusable_files_refuse_to_decode_naming_the_file(corpus, name):
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        load_rgb(corpus.root / W1 / name, max_pixels=BIG)


# ------------------------------------------------------------------ hostile annotations


def test_hostile_voc_xml_is_refused_and_reported_never_expanded(corpus, workdir):
    df, _ = _ingest("train")
    r = _rows(df)
    errors = read_json("metrics/ingest/train.json")["annotation_errors"]
    refused = [e for e in errors if "unsafe XML refused" in e]
    assert sorted(Path(e.split(":", 1)[0]).name for e in refused) == ["cmyk.xml", "trunc.xml"]
    assert len(r[f"{W1}/cmyk.JPEG"].boxes) == 0 and len(r[f"{W1}/trunc.JPEG"].boxes) == 0
    assert [list(b) for b in r[f"{W1}/{W1}_good.JPEG"].boxes] == [[1, 2, 10, 12]]  # the good file still counts
    assert "lollollol" not in Path("metrics/ingest/train.json").read_text()


def test_csv_with_formulas_and_unknown_ids_is_reported_row_by_row(corpus, workdir):
    df, _ = _ingest("val")
    r = _rows(df)
    for sid, exp in corpus.val.items():
        assert r[sid].status == exp.status and r[sid].reason.startswith(exp.reason), (sid, r[sid].reason)
    stats = read_json("metrics/ingest/val.json")
    errs = "\n".join(stats["annotation_errors"])
    assert stats["n_annotation_errors"] == 5
    for line in (3, 4, 5, 6, 7):
        assert f"LOC_val_solution.csv:{line}:" in errs
    assert FORMULA in errs  # named in the report (JSON, not a spreadsheet cell)


def test_secret_outside_the_root_never_reaches_any_output(corpus, workdir):
    outputs = []
    for split in ("train", "val"):
        _, out = _ingest(split)
        outputs.append(out.encode())
    blob = text_of_tree(workdir) + b"".join(outputs)
    assert SECRET.encode() not in blob


def test_ingest_writes_only_its_outputs_and_reads_nothing_outside_the_roots(corpus, workdir):
    """Writes stay in the project; XML external entities are never fetched; links leaving the root are not opened."""
    _ingest("train")  # warm up lazy imports
    with audited() as events:
        _ingest("train")
        _ingest("val")
    written = sorted({p for _, p, w in events if w})
    assert written and all(under(p, workdir) for p in written), [p for p in written if not under(p, workdir)]
    assert sorted({p for _, p, _ in events if under(p, corpus.outside)}) == []


# ------------------------------------------------------------------ symlinks leaving the root

def test_symlinks_leaving_the_root_are_reported_not_followed(corpus, workdir):
    _ingest("train")  # warm up lazy imports
    with audited() as events:
        df, _ = _ingest("train")
    r = _rows(df)
    touched = sorted({p for _, p, _ in events if under(p, corpus.outside)})
    assert touched == [], f"read outside the dataset root: {touched}"
    for sid in corpus.escaping:
        assert sid in r and r[sid].status == "error" and r[sid].reason.startswith(SYMLINK_OUTSIDE), sid
    assert not any(s.startswith(f"{W2}/escape_dir/") for s in r)
    secret_hash = hashlib.blake2b((corpus.outside / "secret.JPEG").read_bytes(), digest_size=16).hexdigest()
    assert secret_hash not in set(df["content_hash"].dropna())


def test_dangling_symlink_is_reported_not_dropped(corpus, workdir):
    df, _ = _ingest("train")
    r = _rows(df)
    assert f"{W2}/dangling.JPEG" in r
    assert r[f"{W2}/dangling.JPEG"].status == "error"


def test_symlink_inside_the_root_is_a_normal_file(corpus):
    df, _ = ingest_split(corpus.root, layout="train", classes=CLASSES, max_pixels=BIG)
    r = _rows(df)
    assert r[f"{W2}/inside_link.JPEG"].status == "ok"
    assert r[f"{W2}/inside_link.JPEG"].content_hash == r[f"{W1}/{W1}_good.JPEG"].content_hash


def read_json(path):
    import json

    return json.loads(Path(path).read_text())


# ------------------------------------------------------------------ prediction over the corpus, untrusted checkpoints


class _Evil:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("where", ["top", "nested"])
def test_code_executing_checkpoint_is_refused_by_the_predict_command(tmp_path, corpus, workdir, capsys, monkeypatch, where):
    import torch

    monkeypatch.setenv("IMAGENET_CLEAN_TRACEBACK", "0")
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save(_Evil(marker) if where == "top" else {"state_dict": {"w": _Evil(marker)}}, evil)
    code, _, err = run_main(["predict", "--model", "resnet10t", "--weights", str(evil), "--images", str(corpus.root),
                          "--classes", str(corpus.classes_tsv), "--out", "p.parquet", "--input-size", "3,32,32"], capsys)
    assert code == 1 and err.startswith("imagenet-clean: error:") and err.count("\n") == 1, err
    assert "refusing to load checkpoint" in err and "evil.pth" in err
    assert not marker.exists()
    assert not Path("p.parquet").exists()


def test_predict_over_the_hostile_manifest_gives_a_row_per_sample_and_reads_nothing_outside(corpus, workdir, tmp_path):
    """Every manifest row gets a prediction row; rows ingest refused keep their status and reason."""
    import pyarrow.parquet as pq

    from imagenet_clean.config import ModelConfig
    from imagenet_clean.models.predict_run import predict_to_file

    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    df, _ = _ingest("train")
    ok = df[df["status"] == "ok"]
    cfg = ModelConfig(arch="resnet10t", weights=str(ckpt), input_size=(3, 32, 32))
    with audited() as events:
        predict_to_file(cfg, out="pred.parquet", manifest="data/manifests/train.parquet",
                        classes=str(corpus.classes_tsv), batch_size=4, workers=0)
    pred = pq.read_table("pred.parquet").to_pandas()
    assert list(pred["sample_id"]) == list(df["sample_id"])
    p = pred.set_index("sample_id")
    for sid in ok["sample_id"]:
        assert p.loc[sid, "status"] == "ok", (sid, p.loc[sid, "reason"])
        assert abs(float(np.sum(p.loc[sid, "probs"])) - 1) < 1e-2
    for sid, exp in corpus.train.items():
        if exp.status == "error":
            assert p.loc[sid, "status"] != "ok" and p.loc[sid, "reason"].startswith(exp.reason), sid
    written = {q for _, q, w in events if w}
    assert all(under(q, workdir) for q in written), sorted(q for q in written if not under(q, workdir))
    assert sorted({q for _, q, _ in events if under(q, corpus.outside)}) == []  # links leaving the root: never opened


def test_a_file_swapped_for_a_link_after_ingest_is_refused_by_predict_and_training(corpus, workdir, tmp_path):
    """Ingest checked the file; a link to a secret put in its place later is never opened by later stages."""
    import pyarrow.parquet as pq

    from imagenet_clean.config import ModelConfig
    from imagenet_clean.models.datasets import ImageSamples
    from imagenet_clean.models.predict_run import predict_to_file

    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    df, _ = _ingest("train")
    sid = f"{W1}/{W1}_good.JPEG"
    swapped = corpus.root / sid
    swapped.unlink()
    swapped.symlink_to(corpus.outside / "secret.JPEG")
    cfg = ModelConfig(arch="resnet10t", weights=str(ckpt), input_size=(3, 32, 32))
    samples = ImageSamples.from_frame(df[df["sample_id"] == sid], corpus.root, transform=lambda im: im)
    with audited() as events:
        predict_to_file(cfg, out="pred.parquet", manifest="data/manifests/train.parquet",
                        classes=str(corpus.classes_tsv), batch_size=4, workers=0)
        image, reason, _ = samples[0]
    assert sorted({q for _, q, _ in events if under(q, corpus.outside)}) == []
    p = pq.read_table("pred.parquet").to_pandas().set_index("sample_id")
    assert p.loc[sid, "status"] != "ok" and SYMLINK_OUTSIDE in p.loc[sid, "reason"], p.loc[sid, "reason"]
    assert image is None and SYMLINK_OUTSIDE in reason
    # inside_link.JPEG points at the swapped file, so it now leaves the root too; every other usable file is predicted
    assert SYMLINK_OUTSIDE in p.loc[f"{W2}/inside_link.JPEG", "reason"]
    assert (p["status"] == "ok").sum() == (df["status"] == "ok").sum() - 2
