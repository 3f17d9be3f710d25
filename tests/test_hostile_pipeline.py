"""The hostile corpus walked through every stage in turn: ingest, predictions, clean (with real CAMs), apply.

``tests/test_hostile.py`` attacks ingest and predict one at a time; here the
same corpus (``tests/hostile_corpus.py``), grown to eight classes of ordinary
images around the hostile files, goes through the whole chain as a user would
run it (``imagenet-clean ingest``, ``clean``, ``apply``). Between stages the
dataset is tampered with the way a shared file system can be: a CAM candidate
is swapped for a link to a secret outside the root after prediction, and after
the cleanup a kept file changes its bytes and another becomes such a link.

What must hold: every file ends up in every table, used or reported with a
reason; nothing crashes; nothing outside the dataset roots is opened or
listed, and nothing outside the project is written (``sys.addaudithook``);
hostile names reach the cleaned ImageFolder tree byte for byte, and no text
cell of the change list can start a spreadsheet formula.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hostile_corpus import (
    FORMULA_NAME,
    SECRET,
    SYMLINK_OUTSIDE,
    UNICODE_NAME,
    W1,
    W2,
    W3,
    audited,
    build_corpus,
    run_main,
    text_of_tree,
    tiny_checkpoint,
    under,
    voc_xml,
    write_jpeg,
)
from imagenet_clean.classes import ClassList, write_classes
from imagenet_clean.cleanup.changes import TEXT_COLUMNS
from imagenet_clean.io import read_table
from imagenet_clean.predictions import predictions_table, write_predictions

WNIDS = (W1, W2, W3) + tuple(f"n0000000{i}" for i in range(4, 9))
K = len(WNIDS)
MODELS = ("a", "b", "c")
GOOD_PER_CLASS = 6
FIX_TO = 3  # the class every model prefers for the two hostile names
CAM_OK = f"{W1}/{W1}_good.JPEG"  # a consensus-removal candidate whose CAMs run
CAM_SWAPPED = f"{W3}/good_0.JPEG"  # a candidate swapped for a link to the secret after prediction
SPREAD = {f"{W1}/cmyk.JPEG": (4, 5, 6)}  # three models, three candidates: removed by h2


def _grow(corpus) -> None:
    """Eight classes, six ordinary images each, and a box for the candidate that will be swapped."""
    write_classes(corpus.classes_tsv, ClassList(WNIDS, tuple(f"class {i}" for i in range(K))))
    for c, wnid in enumerate(WNIDS):
        for i in range(GOOD_PER_CLASS):
            write_jpeg(corpus.root / wnid / f"good_{i}.JPEG", seed=1000 + 10 * c + i)
    (corpus.boxes / W3).mkdir(parents=True, exist_ok=True)
    (corpus.boxes / W3 / "good_0.xml").write_text(voc_xml(W3, (2, 2, 20, 14)))


def _designed_probs(manifest: pd.DataFrame, model_index: int) -> np.ndarray:
    """Confident, correct predictions except for the designed cases above."""
    n = len(manifest)
    labels = manifest["label"].to_numpy()
    p = np.full((n, K), 0.1 / (K - 1))
    p[np.arange(n), np.clip(labels, 0, K - 1)] = 0.9
    for i, sid in enumerate(manifest["sample_id"]):
        y = labels[i]
        if sid in (f"{W2}/{UNICODE_NAME}", f"{W2}/{FORMULA_NAME}"):
            p[i] = 0.1 / (K - 1)
            p[i, FIX_TO] = 0.9
        elif sid in SPREAD:
            p[i] = 0.1 / (K - 1)
            p[i, SPREAD[sid][model_index]] = 0.9
        elif sid in (CAM_OK, CAM_SWAPPED):
            if model_index < 2:  # the label last: a top-5 miss, and no class above cleanlab's thresholds
                p[i] = (1 - 0.002) / (K - 1)
                p[i, y] = 0.002
            else:  # model c keeps the label on top, but not confidently
                p[i] = 0.7 / (K - 1)
                p[i, y] = 0.3
    return p


def _write_predictions(manifest: pd.DataFrame) -> None:
    """One prediction file per model, carrying ingest's refusals as predict does."""
    ok = manifest["status"].to_numpy() == "ok"
    for mi, m in enumerate(MODELS):
        t = predictions_table(manifest["sample_id"].to_numpy(object), _designed_probs(manifest, mi),
                              status=manifest["status"].to_numpy(object),
                              reason=np.where(ok, "", manifest["reason"].to_numpy(object)))
        write_predictions(f"data/predictions/train/{m}.parquet", t, model=m, arch="test_resnet", split="train",
                          num_classes=K)


@pytest.fixture
def project(tmp_path, monkeypatch):
    corpus = build_corpus(tmp_path / "c")
    _grow(corpus)
    work = tmp_path / "work"
    work.mkdir()
    ckpt = {m: str(tiny_checkpoint(tmp_path / f"{m}.safetensors", arch="test_resnet", num_classes=K, seed=i))
            for i, m in enumerate(MODELS)}  # real (untrained, seeded) checkpoints for the CAMs
    params = {
        "seed": 0, "fn": 1.0, "h1": 2, "h2": 3, "h3": 2,
        "dataset": {"classes": str(corpus.classes_tsv), "merges": "none", "truth": None},
        "splits": {"train": {"root": str(corpus.root), "layout": "train", "annotations": str(corpus.boxes)}},
        "ingest": {"workers": 1, "max_pixels": 10**8},
        "models": {m: {"arch": "test_resnet", "weights": ckpt[m], "input_size": [3, 32, 32]} for m in MODELS},
        "cam": {"pass_score": 0.01, "batch_size": 4},
    }
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(work)
    monkeypatch.setenv("IMAGENET_CLEAN_TRACEBACK", "0")
    return corpus, work


def _reads_outside(events, corpus) -> list[str]:
    return sorted({p for _, p, _ in events if under(p, corpus.outside)})


def _writes_outside(events, work) -> list[str]:
    return sorted({p for _, p, w in events if w and not under(p, work)})


def test_hostile_corpus_through_ingest_clean_and_apply(project, capsys, tmp_path):
    corpus, work = project
    code, out, err = run_main(["ingest", "--split", "train"], capsys)
    assert code == 0, err
    manifest = read_table("data/manifests/train.parquet")
    rows = manifest.set_index("sample_id")
    refused = set(manifest.loc[manifest["status"] != "ok", "sample_id"])
    assert {s for s, e in corpus.train.items() if e.status == "error"} <= refused
    assert {s for s in corpus.escaping} <= refused
    _write_predictions(manifest)

    # after prediction, a CAM candidate becomes a link to the secret image outside the root
    swapped = corpus.root / CAM_SWAPPED
    swapped.unlink()
    swapped.symlink_to(corpus.outside / "secret.JPEG")

    import cleanlab.filter  # noqa: F401, E401  (their import-time caches are not the pipeline's)

    with audited() as events:  # the first run: a cached CAM score must not hide a read
        code, out, err = run_main(["clean", "--split", "train"], capsys)
    assert code == 0, err
    assert _reads_outside(events, corpus) == [] and _writes_outside(events, work) == []

    dec = read_table("data/decisions/train.parquet").set_index("sample_id")
    assert list(dec.index) == list(manifest["sample_id"])  # one decision per file: nothing lost
    for sid in refused:  # ingest's reason travels to the decision
        assert dec.loc[sid, "action"] == "remove" and list(dec.loc[sid, "rules"]) == ["unreadable"]
        assert dec.loc[sid, "reason"] == rows.loc[sid, "reason"] != ""
    for name in (UNICODE_NAME, FORMULA_NAME):
        assert dec.loc[f"{W2}/{name}", "action"] == "fix" and dec.loc[f"{W2}/{name}", "new_label"] == FIX_TO
    cm = f"{W1}/cmyk.JPEG"
    assert dec.loc[cm, "action"] == "remove" and "cl_remove" in list(dec.loc[cm, "rules"])
    # both consensus candidates went to the CAMs: one scored by model c, one refused with the reason
    scores = json.loads(dec.loc[CAM_OK, "cam_scores"])
    assert set(scores) == {"c"} and set(scores["c"]) >= {"gradcam", "gradcam++"}
    assert all(0 <= v <= 1 for v in scores["c"].values())
    bad = json.loads(dec.loc[CAM_SWAPPED, "cam_scores"])
    assert SYMLINK_OUTSIDE in bad["error"] and dec.loc[CAM_SWAPPED, "action"] == "remove"
    cleanup = json.loads(Path("metrics/cleanup/train.json").read_text())
    assert cleanup["cam_candidates"] == 2

    changes = pd.read_csv("data/changes/train.csv", dtype=str, keep_default_na=False)
    text = changes[list(TEXT_COLUMNS)]  # numbers (new_label -1 of a removal) stay numbers
    assert not text.map(lambda v: v.startswith(("=", "+", "-", "@"))).any().any()
    assert f"{W2}/{FORMULA_NAME}" in set(changes["file"])  # inside a class folder: no escape needed
    clean = read_table("data/clean/train.parquet")
    assert len(clean) + int((dec["action"] == "remove").sum()) == len(manifest)
    swapped.unlink()
    write_jpeg(swapped, seed=1000 + 20)  # put the file back (it is removed; apply must not need it)

    # after the cleanup, a kept file changes its bytes (same size) and another becomes a link leaving the root
    changed, escaped = corpus.root / W1 / "anim.gif", corpus.root / W1 / "deep.png"
    original = {p: p.read_bytes() for p in (changed, escaped)}
    data = bytearray(original[changed])
    data[-4] ^= 0xFF
    changed.write_bytes(bytes(data))
    escaped.unlink()
    escaped.symlink_to(corpus.outside / "secret.JPEG")
    dest = work / "cleaned"
    apply_args = ["apply", "--clean", "data/clean/train.parquet", "--root", str(corpus.root), "--out", str(dest),
                  "--mode", "copy", "--workers", "1"]
    with audited() as events:
        code, out, err = run_main(apply_args, capsys)
    assert code == 1 and err.startswith("imagenet-clean: error:") and err.count("\n") == 1, err
    assert not dest.exists()  # refused before writing anything
    problems = Path(str(dest) + ".refused.tsv").read_text()
    assert "anim.gif" in problems and "content hash" in problems
    assert "deep.png" in problems and "resolves outside the root" in problems
    assert _reads_outside(events, corpus) == [] and _writes_outside(events, work) == []

    for p, b in original.items():
        p.unlink()
        p.write_bytes(b)
    with audited() as events:
        code, out, err = run_main(apply_args, capsys)
    assert code == 0, err
    assert _reads_outside(events, corpus) == [] and _writes_outside(events, work) == []
    counts = json.loads(out.strip().splitlines()[-1])
    assert counts["images"] == len(clean) and counts["relabelled"] == 2
    tree = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file() and p.parent != dest}
    assert len(tree) == len(clean)
    # fixed: under the new class, file names byte for byte (the formula's " /C " makes it a file in a
    # sub-folder "=cmd|' " of the class folder; ImageFolder trees are flat, so the file keeps its own name)
    for name in (UNICODE_NAME, FORMULA_NAME):
        flat = Path(name).name
        assert f"{WNIDS[FIX_TO]}/{flat}" in tree
        assert (dest / WNIDS[FIX_TO] / flat).read_bytes() == (corpus.root / W2 / name).read_bytes()
    removed = set(dec.index[dec["action"] == "remove"])
    assert not {f"{sid.split('/')[0]}/{sid.split('/')[-1]}" for sid in removed} & tree
    secret_image = (corpus.outside / "secret.JPEG").read_bytes()
    assert all((dest / f).read_bytes() != secret_image for f in tree)
    blob = text_of_tree(work) + out.encode() + err.encode()
    assert SECRET.encode() not in blob
    assert not any(n.endswith(".tmp") for n in os.listdir(dest))
