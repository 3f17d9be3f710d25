"""Any subset of the ImageNet splits runs end to end, and `dvc exp run -S h3=...` reaches every cleaned split.

The most common real use: cleaning only validation and ImageNetV2 with
pretrained models (no training split). The real-photo tree of
``tests/imagenet_tree.py`` (``skimage.data`` photographs in the ImageNet
layouts) is given to ``imagenet-clean init imagenet`` with only ``--val`` and
``--v2`` and the three offline EfficientNet-Lite checkpoints; ``dvc repro`` must
run to the end (fit, the training split's cleanup and the retraining tables
write skipped outputs that say why), and a threshold experiment must change the
resolved h3 of every cleaned split.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from imagenet_tree import build_imagenet_tree  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
MODELS = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
SETTINGS = ["predict.batch_size=16", "predict.workers=0", "predict.compile=false", "cam.batch_size=16", "ingest.workers=1"]

pytestmark = pytest.mark.skipif(
    not all(shutil.which(x) for x in ("imagenet-clean", "git", "dvc")), reason="needs the imagenet-clean, git and dvc executables"
)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMAGENET_CLEAN_PROGRESS": "0", "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore", "DVC_NO_ANALYTICS": "1"}
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"`{' '.join(args)}` failed (exit {res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}"
    return res


def _new_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    shutil.copy(PROJECT / "dvc.yaml", path / "dvc.yaml")
    if (PROJECT / "reviews").is_dir():
        shutil.copytree(PROJECT / "reviews", path / "reviews")  # the clean stage's verdict files
    shutil.copytree(PROJECT / "src", path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    if (PROJECT / ".dvcignore").is_file():
        shutil.copy(PROJECT / ".dvcignore", path / ".dvcignore")
    _run(["git", "init", "-q"], path)
    _run(["dvc", "init", "-q"], path)
    return path


def _commit(path: Path) -> None:
    _run(["git", "add", "-A"], path)
    _run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "state"], path)


def _cleanup(repo: Path, split: str) -> dict:
    return json.loads((repo / "metrics" / "cleanup" / f"{split}.json").read_text())


@pytest.mark.slow
def test_val_and_v2_only_runs_to_the_end_and_h3_reaches_every_cleaned_split(tmp_path):
    tree = build_imagenet_tree(tmp_path / "imagenet", n_train=1, n_val=2, n_v2=2)
    repo = _new_repo(tmp_path / "repo")
    args = ["imagenet-clean", "init", "imagenet", "--val", str(tree.val), "--val-labels", str(tree.val_labels), "--v2", str(tree.v2)]
    for m in MODELS:
        args += ["--model", f"{m}:pypi"]
    for s in SETTINGS:
        args += ["--set", s]
    _run(args, repo)
    _commit(repo)
    _run(["dvc", "repro"], repo)

    # the training split is not given: its stages wrote skipped outputs that say why
    for m in MODELS:
        assert json.loads((repo / "data" / "models" / m / "skipped.json").read_text())["skipped"] is True
    assert _cleanup(repo, "train")["skipped"] is True
    t2 = json.loads((repo / "metrics" / "table2.json").read_text())
    assert t2["skipped"] is True and "splits.train.root is null" in t2["why"], t2
    for name in ("table3.json", "ablations.json"):  # switched off in the preset; skipped, with the reason
        assert json.loads((repo / "metrics" / name).read_text())["skipped"] is True
    # validation and V2 were cleaned with the paper's per-split thresholds, scored in table 1 and reported
    before = {s: _cleanup(repo, s) for s in ("val", "v2")}
    assert before["val"]["thresholds"]["h3"] == 0.6666 and before["v2"]["thresholds"] == {"fn": 0.9, "h1": "all", "h2": 0.5, "h3": "all"}
    assert before["val"]["thresholds_resolved"]["h3"] == pytest.approx(0.6666 * 3) and before["v2"]["thresholds_resolved"]["h3"] == 3.0
    assert before["val"]["threshold_sources"]["h3"] == "splits.val.h3"
    t1 = json.loads((repo / "metrics" / "table1.json").read_text())
    assert {"val", "val_clean", "v2", "v2_clean"} <= set(t1["efficientnet_lite0"])
    report = (repo / "metrics" / "report.md").read_text()
    assert "| V |" in report and "| V2 |" in report and "*T: not cleaned (splits.train.root is null).*" in report

    # one top-level threshold reaches every cleaned split
    _commit(repo)
    _run(["dvc", "exp", "run", "-S", "h3=1"], repo)
    for s in ("val", "v2"):
        after = _cleanup(repo, s)
        assert after["thresholds"]["h3"] == 1 and after["thresholds_resolved"]["h3"] == 1.0, (s, after["thresholds"])
        assert after["thresholds_resolved"]["h3"] != before[s]["thresholds_resolved"]["h3"]
        assert after["threshold_sources"]["h3"] == "h3"
        assert after["remove"] >= before[s]["remove"]  # a lower consensus threshold never removes fewer
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], repo).stdout)
    assert '"val.h3": 1' in json.dumps(shown) and '"v2.h3": 1' in json.dumps(shown)  # metrics/headline.json
