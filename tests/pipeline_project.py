"""A tiny git + DVC project that runs the repository's whole pipeline (issues 6 and 8).

:func:`write_pipeline_project` copies the repository's ``dvc.yaml``,
``.dvcignore``, ``.gitignore`` and the package source (the stages' code
dependencies) into a folder, writes a ``params.yaml`` derived
from the repository's (:func:`hostile_corpus.write_tiny_project`) shrunk to a
run of a few minutes on 2 CPU cores (:data:`TINY_GENERATE`, two models, two
folds, one epoch, table 2 with two seeds), then runs ``git init``, ``dvc init``
and a first commit, so that ``dvc repro``, ``dvc exp run`` and ``dvc queue``
work. Helpers run DVC as a subprocess, read which stages it ran, and collect the
outputs that two runs must agree on.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from hostile_corpus import tree_bytes, write_tiny_project

REPO = Path(__file__).resolve().parents[1]
TINY_GENERATE = {"n_train": 120, "n_val": 60, "n_v2": 40, "image_size": 32}
"""``generate.*`` of the tiny pipeline: 220 digit images of 32 px."""
TINY_MODELS = ("vgg", "resnet")
"""The two models kept from the repository's ensemble (digits_vgg, digits_resnet)."""
FIXED_MODELS = {"fixed0": 0, "fixed2": 2}
"""Two cleanup models with committed checkpoints (``checkpoints/<name>.safetensors``, :func:`write_fixed_checkpoint`)
that predict one class (0, 2) for every image, exactly, on any CPU: every weight is zero and the classifier's bias
puts 30 logits on that class, so the logits are the bias bit for bit and the stored probabilities are exactly 1 and 0.
They make the CAM exemption's condition certain by construction (issue 28): see :data:`TINY_VAL_THRESHOLDS`."""
TINY_VAL_THRESHOLDS = {"h1": "all", "h2": "all", "h3": 1}
"""``splits.val`` thresholds of the tiny pipeline. With :data:`FIXED_MODELS`, every val image labelled 0 is a CAM
candidate whatever the trained models do: ``fixed2`` misses it (C_s >= 1 = h3: consensus), ``fixed0`` has the label
as its top-1 (a model that still ranks the label: a CAM candidate), and no confident-learning rule can take it
first: ``fixed0`` never flags it (its label is that model's certain class), so ``cl_fix`` (h1: all 4 models) and
``cl_remove`` (h2: 4 distinct candidates among at most 3 flagging models) cannot fire. Every val image has a box
(``LOC_val_solution.csv``), and the seeded generator gives val images of class 0 on every machine: the tests assert
both (``test_pipeline.py``). The trained models' collapse to one class (1 epoch on 120 images) gave 0 candidates on
another CPU family before (issue 28)."""


def write_fixed_checkpoint(path: Path, cls: int, num_classes: int, arch: str = "digits_vgg") -> Path:
    """A checkpoint of ``arch`` whose logits are exactly 30 on ``cls`` and 0 elsewhere for every input (see FIXED_MODELS)."""
    import torch

    from imagenet_clean.config import ModelConfig
    from imagenet_clean.models.factory import build_model, save_checkpoint

    model, _ = build_model(ModelConfig(arch=arch), num_classes=num_classes)
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.zero_()
        head = model.get_classifier()
        head.bias[cls] = 30.0
    save_checkpoint(model, path, metadata={"arch": arch, "fixed_class": cls})
    return path
TINY_PARAMS = {
    # min_accuracy 0: one epoch on 120 images does not learn, and the tiny pipeline tests the plumbing, not the models
    "train": {"folds": 2, "epochs": 1, "batch_size": 16, "parallel": 1, "warmup_epochs": 0, "cooldown_epochs": 0,
              "min_accuracy": 0.0},
    "predict": {"batch_size": 64},
    "tables": {"archs": ["digits_vgg"], "seeds": 2, "epochs": 1},
}
"""Overrides of the repository's params (scalars, or sections updated one level deep) for the tiny pipeline."""
TIMING_KEY = re.compile(r"^seconds$|_s$")
"""Names of metrics keys that measure time: the only values allowed to differ between two runs."""
ENV = {
    **os.environ,
    "IMAGENET_CLEAN_PROGRESS": "0",
    "DVC_NO_ANALYTICS": "1",
    "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
}
RAN = re.compile(r"Running stage '([^']+)'")
SKIPPED = re.compile(r"Stage '([^']+)' (?:didn't change, skipping|is cached - skipping)")


def run(args: list[str], cwd: str | Path, *, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``args`` in ``cwd`` with :data:`ENV`; with ``check``, fail the test quoting its output."""
    res = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check:
        assert res.returncode == 0, f"{args} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


def write_pipeline_project(folder: str | Path, *, git: bool = True, **generate) -> Path:
    """A git + DVC project with the repository's pipeline on the tiny embedded configuration.

    Args:
        folder: Where to create the project (created; should be empty).
        git: Run ``git init``, ``dvc init`` and commit everything (``dvc exp`` needs a commit).
        **generate: Overrides of ``generate.*`` over :data:`TINY_GENERATE`.
    """
    folder = write_tiny_project(folder, **{**TINY_GENERATE, **generate})
    params_file = folder / "params.yaml"
    p = yaml.safe_load(params_file.read_text())
    p["models"] = {k: p["models"][k] for k in TINY_MODELS}
    from imagenet_clean.data.generate import embedded_classes

    n_classes = len(embedded_classes(synonym=p["generate"].get("synonym", True)).wnids)
    for name, cls in FIXED_MODELS.items():
        rel = f"checkpoints/{name}.safetensors"
        write_fixed_checkpoint(folder / rel, cls, n_classes)
        p["models"][name] = {"arch": "digits_vgg", "weights": rel}
    for key, value in TINY_PARAMS.items():
        if isinstance(value, dict):
            p[key].update(value)
        else:
            p[key] = value
    p["splits"]["val"].update(TINY_VAL_THRESHOLDS)
    params_file.write_text(yaml.safe_dump(p, sort_keys=False))
    return scaffold_project(folder, git=git)


def write_embedded_project(folder: str | Path) -> Path:
    """A git + DVC project with the repository's pipeline and its params.yaml unchanged (the embedded default)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "params.yaml", folder / "params.yaml")
    return scaffold_project(folder, git=True)


def scaffold_project(folder: Path, *, git: bool = True) -> Path:
    """Copy the pipeline definition, verdict files and stage code beside ``folder``'s params.yaml; git and DVC init."""
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy2(REPO / name, folder / name)
    shutil.copytree(REPO / "reviews", folder / "reviews")  # the clean stage's verdict files (header only: none)
    # the stages' code dependencies (the commands run the installed package, which is this source)
    shutil.copytree(REPO / "src" / "imagenet_clean", folder / "src" / "imagenet_clean",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if git:
        run(["git", "init", "-q", "-b", "main"], folder)
        run(["git", "config", "user.name", "pipeline test"], folder)
        run(["git", "config", "user.email", "pipeline@test.invalid"], folder)
        run(["dvc", "init", "-q"], folder)
        run(["dvc", "config", "core.autostage", "true"], folder)
        commit(folder, "pipeline project")
    return folder


def commit(project: str | Path, message: str) -> None:
    """``git add -A`` and commit (no-op when nothing changed)."""
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "--allow-empty", "-m", message], project)


def stages_run(output: str) -> tuple[set[str], set[str]]:
    """``(ran, skipped)``: the stages DVC printed as running, and as unchanged or restored from its run cache."""
    return set(RAN.findall(output)), set(SKIPPED.findall(output))


def without_timing(obj):
    """A metrics value with every key named like a time measurement (:data:`TIMING_KEY`) removed, recursively."""
    if isinstance(obj, dict):
        return {k: without_timing(v) for k, v in obj.items() if not TIMING_KEY.search(str(k))}
    if isinstance(obj, list):
        return [without_timing(v) for v in obj]
    return obj


def metrics_tree(project: str | Path) -> dict[str, object]:
    """Every JSON file under ``metrics/`` (relative path -> value without timing keys)."""
    root = Path(project) / "metrics"
    return {p.relative_to(root).as_posix(): without_timing(json.loads(p.read_text()))
            for p in sorted(root.rglob("*.json"))}


DETERMINISTIC = ("data/manifests", "data/predictions", "data/decisions", "data/clean", "data/changes",
                 "metrics/report.md", "metrics/plots")
"""Outputs (files and folders) that must be byte-identical between two runs with the same params and seed."""


def output_bytes(project: str | Path, folders=DETERMINISTIC) -> dict[str, bytes]:
    """``relative path -> bytes`` of every file of ``folders`` (files or folders) of ``project``."""
    out = {}
    for f in folders:
        path = Path(project) / f
        if path.is_file():
            out[f] = path.read_bytes()
        out.update({f"{f}/{k}": v for k, v in tree_bytes(path).items()})
    return out
