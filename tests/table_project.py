"""A tiny synthetic project for the tables (1, 2, 3, ablations) and the report, and a fast stand-in backend.

:func:`make_project` writes manifests, clean manifests, decisions and
predictions of two cleanup models for train/val/v2 under a temporary folder,
following the data contracts in docs/architecture.md. :class:`FakeBackend`
"trains" by remembering how noisy its training labels were (the true class of a
sample is in its path ``c<k>/...``) and predicts the true class with a
probability that falls with that noise, so cleaner training sets score higher.
"""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from imagenet_clean.config import parse_params
from imagenet_clean.io import write_table
from imagenet_clean.predictions import predictions_table, write_predictions
from imagenet_clean.workspace import Workspace

K = 4
MODELS = ("m1", "m2")


def confident_probs(best: np.ndarray, k: int = K) -> np.ndarray:
    """Probabilities with 0.9 on class ``best[i]`` of row i and the rest spread evenly."""
    p = np.full((len(best), k), 0.1 / (k - 1), np.float32)
    p[np.arange(len(best)), best] = 0.9
    return p


def make_split(paths: Workspace, split: str, *, n: int = 12, seed: int = 0, models=MODELS) -> dict:
    """Write one split; returns the truth used to build it.

    Sample i has true class ``i % K`` (also encoded in its path ``c<k>/<split>_<i>.png``).
    Samples 1 and 5 carry a wrong label and are fixed; sample 2 is removed; sample 3 is
    unreadable (status error, removed); the clean manifest gets one placeholder row.
    Model m1 predicts the true class everywhere; m2 predicts class 0 everywhere.
    m1 flags samples 1, 2, 5; m2 flags sample 2.
    """
    rng = np.random.default_rng(seed)
    ids = [f"c{i % K}/{split}_{i:03d}.png" for i in range(n)]
    true = np.arange(n) % K
    label = true.copy()
    label[[1, 5]] = (true[[1, 5]] + 1) % K
    status = np.array(["ok"] * n, dtype=object)
    status[3] = "error"
    root = paths.data / "raw" / split
    manifest = pd.DataFrame({"sample_id": ids, "path": ids, "label": label.astype("int64"), "wnid": [f"n{x}" for x in label],
                             "status": status, "reason": ["" if s == "ok" else "broken" for s in status],
                             "content_hash": [f"h{i}" for i in range(n)]})
    write_table(paths.manifest(split), manifest, metadata={"root": root, "split": split, "num_classes": K})
    action = np.array(["keep"] * n, dtype=object)
    action[[1, 5]] = "fix"
    action[[2, 3]] = "remove"
    flagged = [[] for _ in range(n)]
    for i in (1, 2, 5):
        flagged[i].append("m1")
    flagged[2].append("m2")
    decisions = pd.DataFrame({"sample_id": ids, "path": ids, "label": label, "wnid": manifest["wnid"], "action": action,
                              "new_label": np.where(action == "fix", true, label).astype("int64"),
                              "flagged_models": flagged, "rules": [[] for _ in range(n)]})
    write_table(paths.decisions(split), decisions)
    kept = action != "remove"
    clean = pd.DataFrame({"sample_id": np.array(ids, dtype=object)[kept], "path": np.array(ids, dtype=object)[kept],
                          "label": true[kept].astype("int64"), "orig_label": label[kept].astype("int64"), "action": action[kept],
                          "content_hash": manifest["content_hash"][kept].to_numpy()})
    ph = pd.DataFrame({"sample_id": ["__placeholder__/n3.JPEG"], "path": ["__placeholder__/n3.JPEG"], "label": [3], "orig_label": [3],
                       "action": ["placeholder"], "content_hash": ["black"]})
    write_table(paths.clean(split), pd.concat([clean, ph], ignore_index=True), metadata={"root": root, "split": split, "num_classes": K})
    for m in models:
        best = true if m == "m1" else np.zeros(n, np.int64)
        probs = confident_probs(best) + rng.uniform(0, 1e-3, (n, K)).astype(np.float32)
        write_predictions(paths.predictions(split, m), predictions_table(ids, probs / probs.sum(1, keepdims=True), status=status),
                          model=m, split=split, num_classes=K)
    return {"ids": ids, "true": true, "label": label, "status": status}


def make_project(tmp: Path, *, splits=("train", "val", "v2"), round: int = 1, n: int = 12) -> Workspace:
    """:func:`make_split` for each of ``splits`` (seed = its position) under ``tmp``; returns the round's paths."""
    paths = Workspace(tmp, round)
    for i, s in enumerate(splits):
        make_split(paths, s, n=n, seed=i)
    return paths


def skip_split(params, split: str, workdir: Path) -> None:
    """Write what the real `ingest` and `clean` stages write for a split params.yaml skips (root null)."""
    from imagenet_clean.stages import clean as clean_stage
    from imagenet_clean.stages.ingest import run as run_ingest

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        run_ingest(params, Workspace(), split)
    finally:
        os.chdir(cwd)
    clean_stage.run(params, Workspace(workdir), split)


def strict_json(path: Path):
    """Parse a metrics file as strict JSON (NaN/Infinity rejected, as DVC and browsers do)."""
    def no_constant(name):
        raise ValueError(f"{path}: non-standard JSON constant {name}")

    return json.loads(Path(path).read_text(), parse_constant=no_constant)


def _true(paths: pd.Series) -> np.ndarray:
    return paths.str.extract(r"^c(\d+)/")[0].astype(int).to_numpy()


class FakeBackend:
    """A stand-in training backend whose accuracy falls with the label noise of its training set."""

    fingerprint = {"backend": "fake"}

    def __init__(self, fail_after: int | None = None):
        self.fits = []
        self.fail_after = fail_after

    def fit(self, samples, root, *, arch, num_classes, seed, input_size):
        if self.fail_after is not None and len(self.fits) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.fits.append((arch, seed, input_size, len(samples)))
        noise = float((_true(samples["path"]) != samples["label"].to_numpy()).mean())
        bonus = 0.0 if input_size is None else 0.02 * (input_size[1] * input_size[2] / 1024 - 1)
        return {"noise": noise, "seed": seed, "bonus": bonus, "k": num_classes}

    def predict(self, model, manifest, root, *, arch, num_classes, input_size):
        true = _true(manifest["path"])
        rng = np.random.default_rng(model["seed"] + 100 * len(arch))
        correct = rng.uniform(size=len(true)) >= 0.15 + 2 * model["noise"] - model["bonus"]
        best = np.where(correct, true, (true + 1) % K)
        probs = np.full((len(true), K), 0.05, np.float32)
        probs[np.arange(len(true)), best] = 0.85
        return predictions_table(manifest["sample_id"], probs, status=manifest["status"])

    def default_input_size(self, arch, *, num_classes):
        return (3, 32, 32)


def tables_params(**tables):
    """Params of a two-model, three-split project with ``tables`` settings (archs a1, a22; 3 seeds) overridden."""
    return parse_params({
        "seed": 0,
        "models": {"m1": {"arch": "resnet10t"}, "m2": {"arch": "resnet10t"}},
        "splits": {"train": {"root": "r/train", "layout": "train"}, "val": {"root": "r/val"}, "v2": {"root": "r/v2", "layout": "v2"}},
        "tables": {"archs": ["a1", "a22"], "seeds": 3, **tables},
    })

SPLITS_YAML = "splits:\n  train: {root: data/raw/train, layout: train}\n  val: {root: data/raw/val}\n"
"""A params.yaml ``splits`` section with a train and a val split, for :func:`run_cli`."""


def run_cli(tmp_path, monkeypatch, params_yaml: str, command: str):
    """Run ``imagenet-clean <command>`` in ``tmp_path`` with ``params_yaml`` and a :class:`FakeBackend`; returns ``(result, backend)``."""
    from typer.testing import CliRunner

    from imagenet_clean.cli import app
    from imagenet_clean.evaluate import table2 as t2

    fake = FakeBackend()
    monkeypatch.setitem(t2.BACKENDS, "timm", lambda **kw: fake)
    (tmp_path / "params.yaml").write_text(params_yaml)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, [command])
    assert res.exit_code == 0, (res.output, res.exception)
    return res, fake
