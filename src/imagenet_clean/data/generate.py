"""The embedded mini-ImageNet: real handwritten digits in the real ImageNet layouts.

scikit-learn's bundled ``load_digits`` (1,797 real 8x8 handwritten digits) are
upscaled and placed on larger RGB canvases with varied backgrounds, colours,
scales and positions, so every image has a true bounding box (the digit's ink
extent). Eleven classes: ``n90000000``..``n90000009`` for the digits and
``n90000010``, a synonym of digit one that category merging should fold back.

Problems are injected at the ``generate.noise`` rates and recorded in
``truth.parquet`` (which the cleanup never reads): ``flip`` (label changed to a
confusable partner), ``minuscule`` (digit 5-9 px tall), ``bad_quality`` (blur,
noise or low contrast), ``multi_object`` (2-4 digits, one labelled) and
``synonym`` (about half of the digit-one images labelled ``n90000010``).
The truth's ``true_labels`` lists every digit an image shows (the labelled one
first, then the others of a ``multi_object`` scene in increasing order).
With ``generate.noise.exact_copies`` / ``near_copies`` above 0 (both 0 by
default), exact and near copies of originals are added within and across
splits and recorded in the truth (:mod:`imagenet_clean.data.copies`).

Layouts written under ``generate.out`` (default ``data/raw``)::

    train/<wnid>/<wnid>_<n>.JPEG          train_boxes/<wnid>/<wnid>_<n>.xml (VOC, a fraction)
    val/ILSVRC2012_val_XXXXXXXX.JPEG      LOC_val_solution.csv (Kaggle: labels and boxes)
    v2/<class index>/<sha1>.jpeg          (a shifted distribution, no boxes)
    classes.tsv  truth.parquet  generate.json

Everything is a pure function of ``seed`` and the config: a rerun writes
byte-identical files.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..classes import ClassList
from .render import STYLES, render

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SYNONYM_LABEL = 10
SYNONYM_OF = 1
WNID_BASE = 90000000

# Confusable partners a flipped label is drawn from (class-conditional noise).
FLIP_PARTNERS = {0: (6, 8), 1: (7,), 2: (3, 7), 3: (8, 5), 4: (9,), 5: (6, 3), 6: (5, 0), 7: (1, 2), 8: (3, 0), 9: (4, 7)}
PROBLEMS = ("none", "flip", "minuscule", "bad_quality", "multi_object", "synonym")
JPEG_QUALITY = 90
MARKER = "generate.json"


def wnid_of(label: int) -> str:
    """The synthetic ImageNet-format class id of an embedded label (``n90000003``)."""
    return f"n{WNID_BASE + label:08d}"


def embedded_classes(*, synonym: bool = True) -> ClassList:
    """The embedded class list: digits 0-9, plus the synonym class of digit one."""
    names = [f"digit {n}" for n in DIGIT_NAMES]
    if synonym:
        names.append(f"digit {DIGIT_NAMES[SYNONYM_OF]}, variant")
    return ClassList(tuple(wnid_of(i) for i in range(len(names))), tuple(names))


# ------------------------------------------------------------------ splits


@dataclass(frozen=True)
class SplitSpec:
    """A generated split: how many images (config field), which source digits, its style."""

    count_field: str
    pool: tuple[float, float]  # fraction range of the load_digits samples it draws from
    index: int  # seeds the split's generators


SPLITS = {
    "train": SplitSpec("n_train", (0.0, 0.6), 0),
    "val": SplitSpec("n_val", (0.6, 0.8), 1),
    "v2": SplitSpec("n_v2", (0.8, 1.0), 2),
}


def _file_name(split: str, i: int, label: int, seed: int) -> str:
    """The sample_id of sample ``i`` of ``split`` given its (noisy) label."""
    if split == "train":
        return f"{wnid_of(label)}/{wnid_of(label)}_{i}.JPEG"
    if split == "val":
        return f"ILSVRC2012_val_{i + 1:08d}.JPEG"
    return f"{label}/{hashlib.sha1(f'{seed}:{i}'.encode()).hexdigest()}.jpeg"


def assign_problems(n: int, true: np.ndarray, noise, *, synonym: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Problems and given labels for a split.

    About half the digit-one samples become synonyms (when enabled); of the rest,
    exactly ``round(rate * n)`` samples get each other problem, disjointly.

    Returns:
        ``(problem per sample (object array), given label per sample)``.
    """
    problem = np.full(n, "none", dtype=object)
    given = true.copy()
    if synonym:
        ones = np.flatnonzero(true == SYNONYM_OF)
        syn = ones[rng.random(len(ones)) < 0.5]
        problem[syn] = "synonym"
        given[syn] = SYNONYM_LABEL
    free = rng.permutation(np.flatnonzero(problem == "none"))
    start = 0
    for name in ("flip", "minuscule", "bad_quality", "multi_object"):
        k = min(int(round(getattr(noise, name) * n)), len(free) - start)
        idx = free[start : start + k]
        start += k
        problem[idx] = name
        if name == "flip":
            for i in idx:
                partners = FLIP_PARTNERS[int(true[i])]
                given[i] = partners[rng.integers(len(partners))]
    return problem, given


def _voc_xml(stem: str, wnid: str, size: int, box: list[float]) -> str:
    xmin, ymin, xmax, ymax = (int(v) for v in box)
    return (
        "<annotation>\n"
        f"\t<folder>{wnid}</folder>\n\t<filename>{stem}</filename>\n"
        "\t<source>\n\t\t<database>imagenet-clean embedded digits</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{size}</width>\n\t\t<height>{size}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        "\t<segmented>0</segmented>\n"
        f"\t<object>\n\t\t<name>{wnid}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        "\t\t<difficult>0</difficult>\n"
        f"\t\t<bndbox>\n\t\t\t<xmin>{xmin}</xmin>\n\t\t\t<ymin>{ymin}</ymin>\n"
        f"\t\t\t<xmax>{xmax}</xmax>\n\t\t\t<ymax>{ymax}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        "</annotation>\n"
    )


def _generate_split(split: str, cfg, *, seed: int, out: Path, images: np.ndarray, targets: np.ndarray) -> list[dict]:
    from ..progress import progress

    spec = SPLITS[split]
    n = int(getattr(cfg, spec.count_field))
    lo, hi = (int(round(f * len(images))) for f in spec.pool)
    pool_idx, pool_y = np.arange(lo, hi), targets[lo:hi]
    by_class = [pool_idx[pool_y == c] for c in range(10)]
    rng = np.random.default_rng([seed, spec.index, 1_000_003])
    true = rng.permutation(np.arange(n) % 10)
    problem, given = assign_problems(n, true, cfg.noise, synonym=cfg.synonym, rng=rng)
    with_box = np.zeros(n, bool)
    with_box[rng.permutation(n)[: int(round(cfg.box_fraction * n))]] = True
    style, size = STYLES[split], cfg.image_size
    rows = []
    split_dir = out / split
    for i in progress(range(n), desc=f"generate {split}", unit="img"):
        r = np.random.default_rng([seed, spec.index, i])
        t = int(true[i])
        digits = [images[by_class[t][r.integers(len(by_class[t]))]]]
        shown = [t]
        if problem[i] == "multi_object":
            others = r.choice([c for c in range(10) if c != t], size=int(r.integers(1, 4)), replace=False)
            digits += [images[by_class[c][r.integers(len(by_class[c]))]] for c in others]
            shown += sorted(int(c) for c in others)
        pixels, box = render(digits, size=size, style=style, rng=r, problem=problem[i])
        sid = _file_name(split, i, int(given[i]), seed)
        path = split_dir / sid
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, format="JPEG", quality=JPEG_QUALITY)
        wnid = wnid_of(int(given[i]))
        if split == "train" and with_box[i]:
            stem = Path(sid).stem
            xml = out / "train_boxes" / wnid / f"{stem}.xml"
            xml.parent.mkdir(parents=True, exist_ok=True)
            xml.write_text(_voc_xml(stem, wnid, size, box))
        rows.append({"split": split, "sample_id": sid, "true_label": t, "given_label": int(given[i]), "problem": problem[i],
                     "true_labels": shown, "_box": box})
    return rows


def _write_val_solution(out: Path, rows: list[dict]) -> None:
    """val's boxes and labels in the Kaggle ``LOC_val_solution.csv`` layout (rows carry ``_box``)."""
    csv_rows = [f"{Path(r['sample_id']).stem},{wnid_of(r['given_label'])} {' '.join(str(int(v)) for v in r['_box'])}\n"
                for r in rows]
    if csv_rows:
        (out / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "".join(sorted(csv_rows)))


def _tmp_prefix(out: Path, pid: int) -> str:
    return f".{out.name}.tmp-{pid}-"


def _old_name(out: Path, pid: int) -> str:
    return f".{out.name}.old-{pid}"


_LEFTOVER = r"\.{name}\.(?:tmp-(\d+)-[A-Za-z0-9_]+|old-(\d+))"


def _alive(pid: int) -> bool:
    from ..leftovers import pid_alive  # the owner check every stage's sweep uses

    return pid_alive(pid)


def remove_leftovers(out: Path) -> list[Path]:
    """Remove the temporary trees that killed runs of :func:`generate` left beside ``out``.

    Only folders named as generate names them (``.<name>.tmp-<pid>-<random>``,
    ``.<name>.old-<pid>``) whose process is gone are removed: a running
    generate's folders and anything else are left alone.

    Returns:
        The folders removed.
    """
    import re

    pattern = re.compile(_LEFTOVER.format(name=re.escape(out.name)))
    removed = []
    if not out.parent.is_dir():
        return removed
    for p in sorted(out.parent.iterdir()):
        m = pattern.fullmatch(p.name)
        if m is None or not p.is_dir() or p.is_symlink() or _alive(int(m.group(1) or m.group(2))):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the freshly written ``tmp`` onto ``out``, refusing to delete a folder generate did not write."""
    if out.exists():
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise ValueError(f"{out}: refusing to replace a non-empty folder that `generate` did not write (no {MARKER}); "
                             "set generate.out to another folder or empty it")
        old = out.with_name(_old_name(out, os.getpid()))
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            if out.exists():  # another generate got there first: its tree stays
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(old, out)
            raise
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def file_mtime_ns(cfg, *, seed: int) -> int:
    """The modification time (ns) given to every generated file: a function of the seed and config only.

    A fixed time makes two runs' manifests (which record ``mtime_ns``)
    byte-identical; deriving it from the config as well means files of a
    different configuration never share size, name *and* time with the old
    ones (tools caching hashes by ``(inode, mtime, size)``, like DVC, see a change).
    """
    import dataclasses
    import json

    fields = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(vars(cfg))
    fields.pop("out", None)
    noise = fields.get("noise")
    if isinstance(noise, dict):  # copy rates of 0 leave the time a generator without copies gave
        fields["noise"] = {k: v for k, v in noise.items() if not (k in ("exact_copies", "near_copies") and not v)}
    key = json.dumps({"seed": seed, "generate": fields}, sort_keys=True, default=str)
    frac = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % 10**9
    return 946_684_800 * 10**9 + frac  # within the first second of 2000-01-01 UTC


def _pin_mtimes(folder: Path, t: int) -> None:
    for dirpath, _, files in os.walk(folder):
        for f in files:
            os.utime(os.path.join(dirpath, f), ns=(t, t))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def generate(cfg, *, seed: int) -> dict:
    """Write the embedded mini-ImageNet under ``cfg.out`` (replacing a previous one).

    With ``cfg.enabled`` false (real-ImageNet configurations) only the class
    list and the ``generate.json`` marker are written, so the DVC stage stays
    cheap and its output exists.

    Every file gets the modification time :func:`file_mtime_ns`. The tree is
    written to a hidden temporary folder beside ``cfg.out`` and renamed onto
    it, so a killed or failed run leaves the previous tree as it was;
    temporary folders of killed runs are removed at the next start.

    Args:
        cfg: The :class:`~imagenet_clean.config.GenerateConfig`.
        seed: The pipeline seed; the same seed and config give byte-identical files.

    Returns:
        The summary also written to ``<out>/generate.json``: counts per split and problem.

    Raises:
        ValueError: ``cfg.out`` is a non-empty folder not written by ``generate``.
        OutputError: writing failed (full disk, read-only folder, ...); the
            previous tree is untouched and the temporary one removed.
    """
    from sklearn.datasets import load_digits

    from ..classes import write_classes
    from ..io import OutputError, write_json, write_table

    t0 = time.perf_counter()
    out = Path(cfg.out)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(out)
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(out, os.getpid()), dir=out.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
        classes = embedded_classes(synonym=cfg.synonym)
        write_classes(tmp / "classes.tsv", classes)
        summary: dict = {"enabled": bool(cfg.enabled), "seed": seed, "classes": len(classes)}
        if cfg.enabled:
            import pandas as pd

            from . import copies

            digits = load_digits()
            per_split: dict[str, list[dict]] = {}
            rows = []
            for split, spec in SPLITS.items():
                per_split[split] = _generate_split(split, cfg, seed=seed, out=tmp, images=digits.images, targets=digits.target)
                made = []
                if copies.enabled(cfg):
                    made = copies.inject_copies(split, per_split, cfg=cfg, seed=seed, index=spec.index, out=tmp,
                                                file_name=_file_name, wnid_of=wnid_of)
                if split == "val":
                    _write_val_solution(tmp, per_split[split] + made)
                rows += per_split[split] + made
            columns = ["split", "sample_id", "true_label", "given_label", "problem", "true_labels"]
            if copies.enabled(cfg):
                columns += list(copies.TRUTH_COLUMNS)
            truth = pd.DataFrame(rows, columns=columns)
            truth = truth.astype({"true_label": "int64", "given_label": "int64"})
            write_table(tmp / "truth.parquet", truth, metadata={"seed": seed, "image_size": cfg.image_size})
            counts = truth.groupby(["split", "problem"]).size()
            summary["splits"] = {
                s: {"n": int((truth["split"] == s).sum()), "problems": {p: int(v) for p, v in counts[s].items()}}
                for s in SPLITS
            }
            summary["n_train_boxes"] = int(round(cfg.box_fraction * cfg.n_train))
            if copies.enabled(cfg):
                kinds = truth.dropna(subset=["duplicate_kind"]).groupby(["split", "duplicate_kind", "duplicate_of_split"]).size()
                summary["copies"] = {f"{s}<-{src}": {} for s, _, src in kinds.index}
                for (s, kind, src), v in kinds.items():
                    summary["copies"][f"{s}<-{src}"][kind] = int(v)
        write_json(tmp / MARKER, summary)
        _pin_mtimes(tmp, file_mtime_ns(cfg, seed=seed))
        _replace_dir(tmp, out)
    except OSError as e:
        cause = e.__cause__ if isinstance(e, OutputError) and isinstance(e.__cause__, OSError) else e
        raise OutputError(f"cannot write {out}: {cause.strerror or cause}") from e
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary
