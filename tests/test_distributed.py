"""torchrun scale-out: 2 gloo processes on CPU produce exactly the single-process predictions."""
from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from imagenet_clean.config import ModelConfig
from imagenet_clean.models.distributed import env_info, relaunch_command
from imagenet_clean.models.factory import build_model, save_checkpoint
from imagenet_clean.models.predict import predict_samples, rank_shards

TINY = ModelConfig(arch="test_efficientnet", input_size=(3, 32, 32))

WORKER = textwrap.dedent(
    """
    import sys
    import pandas as pd
    import pyarrow.parquet as pq
    from imagenet_clean.config import ModelConfig
    from imagenet_clean.models.distributed import process_group
    from imagenet_clean.models.factory import build_model
    from imagenet_clean.models.predict import predict_samples

    root, manifest, ckpt, shards, out = sys.argv[1:6]
    with process_group() as info:
        model, cfg = build_model(ModelConfig(arch="test_efficientnet", input_size=(3, 32, 32)), num_classes=3, checkpoint=ckpt)
        table = predict_samples(model, cfg, root, pd.read_parquet(manifest), batch_size=2, shard_size=2, workers=0,
                                shard_dir=shards, rank=info.rank, world_size=info.world_size, device=info.device)
        assert (table is None) == (info.rank != 0)
        if info.rank == 0:
            pq.write_table(table, out)
    """
)


def test_rank_shards_split_the_work():
    assert rank_shards(5, 0, 2) == [0, 2, 4] and rank_shards(5, 1, 2) == [1, 3]
    assert sorted(rank_shards(7, 0, 3) + rank_shards(7, 1, 3) + rank_shards(7, 2, 3)) == list(range(7))
    with pytest.raises(ValueError, match="rank 2 is not in"):
        rank_shards(5, 2, 2)


def test_env_info(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    info = env_info()
    assert (info.rank, info.world_size, info.is_main) == (1, 2, False)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 is not in"):
        env_info()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="not integers"):
        env_info()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")
def test_torchrun_two_gloo_ranks_equal_single_process(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "img"
    root.mkdir()
    rows = []
    for i in range(7):
        Image.fromarray((rng.random((30 + i, 40, 3)) * 255).astype(np.uint8)).save(root / f"{i}.png")
        rows.append((f"{i}.png", f"{i}.png", "ok", ""))
    rows[3] = ("3.png", "3.png", "error", "empty file: 0 bytes")
    manifest = pd.DataFrame(rows, columns=["sample_id", "path", "status", "reason"])
    manifest.to_parquet(tmp_path / "m.parquet")
    torch.manual_seed(0)
    model, cfg = build_model(TINY, num_classes=3)
    save_checkpoint(model, tmp_path / "tiny.safetensors")
    (tmp_path / "worker.py").write_text(WORKER)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ["torchrun", "--standalone", "--nproc-per-node", "2", str(tmp_path / "worker.py"),
           str(root), str(tmp_path / "m.parquet"), str(tmp_path / "tiny.safetensors"), str(tmp_path / "shards"),
           str(tmp_path / "out.parquet")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = pq.read_table(tmp_path / "out.parquet")
    assert len(list((tmp_path / "shards").glob("shard-*.parquet"))) == 4  # written by both ranks

    single = predict_samples(model, cfg, root, manifest, batch_size=2, shard_size=2, workers=0)
    assert merged.equals(single)


# ---------------------------------------------------------------- IMAGENET_CLEAN_LAUNCHER

LAUNCH = {"IMAGENET_CLEAN_LAUNCHER": "torchrun --nproc-per-node 8"}


@pytest.mark.parametrize(
    "argv, env, expected",
    [
        (["fit", "--model", "resnet"], LAUNCH, ["torchrun", "--nproc-per-node", "8", "-m", "imagenet_clean", "fit", "--model", "resnet"]),
        (["--traceback", "predict-split", "--split", "val"], LAUNCH,
         ["torchrun", "--nproc-per-node", "8", "-m", "imagenet_clean", "--traceback", "predict-split", "--split", "val"]),
        (["predict", "--out", "a b.parquet"], {"IMAGENET_CLEAN_LAUNCHER": "python -m torch.distributed.run --nproc-per-node '2'"},
         ["python", "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "imagenet_clean", "predict", "--out", "a b.parquet"]),
        (["clean", "--split", "val"], LAUNCH, ["torchrun", "--nproc-per-node", "8", "-m", "imagenet_clean", "clean", "--split", "val"]),
        (["diff", "a", "b"], LAUNCH, None),  # not a distributed command
        (["fit", "--help"], LAUNCH, None),
        (["fit", "--model", "resnet"], {**LAUNCH, "RANK": "0"}, None),  # already under torchrun
        (["fit", "--model", "resnet"], {**LAUNCH, "LOCAL_RANK": "1"}, None),
        (["fit", "--model", "resnet"], {"IMAGENET_CLEAN_LAUNCHER": "  "}, None),
        (["fit", "--model", "resnet"], {}, None),
        ([], LAUNCH, None),
    ],
)
def test_relaunch_command(argv, env, expected):
    assert relaunch_command(argv, env) == expected


def test_a_bad_launcher_is_a_one_line_error(monkeypatch, capsys):
    from imagenet_clean.cli import main

    for var in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    for launcher, match in [("no-such-launcher-1f3a --nproc-per-node 2", "cannot run 'no-such-launcher-1f3a'"),
                            ("torchrun 'unbalanced", "is not a valid command line")]:
        monkeypatch.setenv("IMAGENET_CLEAN_LAUNCHER", launcher)
        with pytest.raises(SystemExit) as e:
            main(["predict-split", "--split", "val"])
        assert e.value.code == 1 and match in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None or shutil.which("imagenet-clean") is None,
                    reason="torchrun or the console script missing")
def test_the_launcher_runs_a_command_under_torchrun_end_to_end(tmp_path):
    import json

    from imagenet_clean.predictions import read_predictions

    rng = np.random.default_rng(4)
    root = tmp_path / "img"
    for i in range(5):
        (root / f"n0000000{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((28 + i, 36, 3)) * 255).astype(np.uint8)).save(root / f"n0000000{i % 2}" / f"{i}.png")
    (tmp_path / "classes.tsv").write_text("n00000000\tzero\nn00000001\tone\nn00000002\ttwo\n")
    torch.manual_seed(0)
    model, cfg = build_model(TINY, num_classes=3)
    save_checkpoint(model, tmp_path / "tiny.safetensors")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"
    def predict(out, **extra_env):
        cmd = ["imagenet-clean", "predict", "--model", "test_efficientnet", "--weights", str(tmp_path / "tiny.safetensors"),
               "--images", str(root), "--classes", str(tmp_path / "classes.tsv"), "--out", str(tmp_path / out),
               "--input-size", "3,32,32", "--batch-size", "2", "--workers", "0", "--shard-dir", str(tmp_path / f"{out}-shards")]
        return subprocess.run(cmd, capture_output=True, text=True, env={**env, **extra_env}, cwd=tmp_path)

    proc = predict("p.parquet", IMAGENET_CLEAN_LAUNCHER="torchrun --standalone --nproc-per-node 2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "IMAGENET_CLEAN_LAUNCHER: running torchrun --standalone --nproc-per-node 2 -m imagenet_clean predict" in proc.stderr
    summaries = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and json.loads(summaries[0])["n"] == 5  # printed by rank 0 only
    single = predict("single.parquet")
    assert single.returncode == 0 and "IMAGENET_CLEAN_LAUNCHER" not in single.stderr
    a, b = read_predictions(tmp_path / "p.parquet"), read_predictions(tmp_path / "single.parquet")
    assert np.array_equal(a.sample_ids, b.sample_ids) and np.allclose(a.probs, b.probs, atol=1e-3)
