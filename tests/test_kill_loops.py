"""100 SIGKILLs at seeded random moments over the predict, fit and clean paths, each followed by a rerun (issue 28).

Each loop kills a run at a moment drawn from ``[0, window)`` (``window``: an
uninterrupted run's duration), checks that every output is absent or whole,
reruns to completion on what the kill left, and checks that the rerun's
outputs equal the uninterrupted run's and that no temporary is left anywhere
under the outputs: the rerun itself (the library call or the stage, whichever
the path is) swept the killed writer's temporaries. Renames wait first
(``SLOW_REPLACE``, 0.1 s) so that a good share of kills land inside an atomic
write, the final one included.

The runs are forked from a server that imported torch and the package once
(:class:`kill_loop.ForkServer`): a run is then its compute and its writes, a
fraction of a second, and a loop of 100 kills takes minutes. The reference
outputs come from an ordinary ``python -c`` process, so forking changes
nothing that is compared. ``IMAGENET_CLEAN_KILLS`` sets the count (default 100).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from imagenet_clean.predictions import read_predictions  # noqa: E402
from kill_loop import SLOW_REPLACE, ForkServer, assert_complete_outputs, kill_and_rerun_loop, temporaries  # noqa: E402

pytestmark = pytest.mark.slow

KILLS = [int(os.environ.get("IMAGENET_CLEAN_KILLS", "100"))]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "IMAGENET_CLEAN_PROGRESS": "0", "SLOW_REPLACE_S": "0.1"}


def _plain_run(script: str, argv: list, cwd: Path) -> None:
    """The reference: ``script`` in an ordinary interpreter (no fork server, no slow renames)."""
    res = subprocess.run([sys.executable, "-c", script, *map(str, argv)], cwd=cwd, env={**ENV, "SLOW_REPLACE_S": "0"},
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]


def _loop(tmp_path: Path, preload: str, script: str, argv: list, *, cwd: Path, outputs: Path, kills: int, seed: int,
          check, reset, after_kill=lambda: None):
    """Run the loop for ``script`` (forked after ``preload``); prints the figures (kills, landed in a write, seconds)."""
    with ForkServer(SLOW_REPLACE + preload, env=ENV, log=tmp_path / "runs.log") as server:
        start = lambda: server.start(script, argv, cwd=cwd)  # noqa: E731
        window = float("inf")
        for _ in range(3):  # the first run also reads what the server did not import from disk: the fastest of three
            t0 = time.perf_counter()
            assert start().wait() == 0, (tmp_path / "runs.log").read_text()[-3000:]
            window = min(window, time.perf_counter() - t0)
            check()
            reset()

        def after_rerun():
            check()
            assert not temporaries(outputs), f"a killed write's temporary survived the rerun: {temporaries(outputs)}"
            reset()

        t0 = time.perf_counter()
        loop = kill_and_rerun_loop(start, kills=kills, seed=seed, window=window, outputs=outputs, after_kill=after_kill,
                                   after_rerun=after_rerun)
        seconds = time.perf_counter() - t0
    print(f"\n{kills} kills: one run {window:.2f} s, loop {seconds:.1f} s, {loop.finished} runs finished before their "
          f"kill, {loop.temporaries_after_kill} kills left a temporary (all swept by the rerun)")
    assert loop.temporaries_after_kill > 0, "no kill landed inside an atomic write"
    return loop


# ---------------------------------------------------------------- predict (library: predict_samples + write_predictions)

PREDICT = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from imagenet_clean.config import ModelConfig
    from imagenet_clean.models import predict as P
    from imagenet_clean.models.factory import build_model
    from imagenet_clean.predictions import write_predictions

    root, manifest, ckpt, shards, out = sys.argv[1:6]
    model, cfg = build_model(ModelConfig(arch="test_efficientnet", input_size=(3, 32, 32)), num_classes=3, checkpoint=ckpt)
    t = P.predict_samples(model, cfg, root, pd.read_parquet(manifest), batch_size=2, shard_size=2, workers=0, shard_dir=shards)
    write_predictions(out, t, model="tiny")
    """
)
PRELOAD_TORCH = "import torch, pandas, pyarrow.parquet, timm\nimport imagenet_clean.models.factory, imagenet_clean.models.predict\n"


@pytest.mark.parametrize("kills", KILLS)
def test_kills_of_predict_each_rerun_to_the_uninterrupted_predictions_and_leave_no_temporary(tmp_path, kills):
    import torch

    from imagenet_clean.models.factory import build_model, save_checkpoint
    from predict_images import TINY, make_images

    torch.manual_seed(0)
    save_checkpoint(build_model(TINY, num_classes=3)[0], tmp_path / "tiny.safetensors")
    root = tmp_path / "img"
    make_images(root, n=6).to_parquet(tmp_path / "m.parquet")
    work = tmp_path / "work"
    shards, out = work / "shards", work / "out" / "p.parquet"
    argv = [root, tmp_path / "m.parquet", tmp_path / "tiny.safetensors", shards, out]
    _plain_run(PREDICT, argv, tmp_path)
    want, want_bytes = read_predictions(out), out.read_bytes()
    shutil.rmtree(work)

    def check():
        got = read_predictions(out)
        assert np.array_equal(got.probs, want.probs) and np.array_equal(got.top5, want.top5)
        assert out.read_bytes() == want_bytes  # byte-identical, as dvc.lock would see it

    _loop(tmp_path, PRELOAD_TORCH, PREDICT, argv, cwd=tmp_path, outputs=work, kills=kills, seed=28, check=check,
          reset=lambda: shutil.rmtree(work), after_kill=lambda: assert_complete_outputs(work))


# ---------------------------------------------------------------- fit (library: cross_validate's fold checkpoints + OOF write)

FIT = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from imagenet_clean.config import ModelConfig, TrainConfig
    from imagenet_clean.models.crossval import cross_validate
    from imagenet_clean.predictions import write_predictions

    root, manifest, out = sys.argv[1], pd.read_parquet(sys.argv[2]), sys.argv[3]
    cfg = TrainConfig(folds=2, epochs=1, batch_size=8, lr=0.05, warmup_epochs=0, cooldown_epochs=0, threads=1)
    t = cross_validate(manifest, root, model_name="m", arch_cfg=ModelConfig(arch="test_efficientnet", input_size=(3, 32, 32)),
                       num_classes=3, cfg=cfg, seed=0, out_dir=out)
    write_predictions(out + "/oof.parquet", t, model="m")
    """
)


@pytest.mark.parametrize("kills", KILLS)
def test_kills_of_fit_each_rerun_to_the_uninterrupted_checkpoints_and_leave_no_temporary(tmp_path, kills):
    from train_data import make_dataset

    root = tmp_path / "data"
    make_dataset(root, n_per_class=4).to_parquet(tmp_path / "m.parquet")
    out = tmp_path / "out"
    argv = [root, tmp_path / "m.parquet", out]
    _plain_run(FIT, argv, tmp_path)
    want = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert any(k.endswith(".safetensors") for k in want), sorted(want)
    shutil.rmtree(out)

    def check():
        got = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        assert got.keys() == want.keys() and all(got[k] == want[k] for k in want), sorted(k for k in want if got.get(k) != want[k])

    _loop(tmp_path, PRELOAD_TORCH + "import imagenet_clean.models.crossval\n", FIT, argv, cwd=tmp_path, outputs=out,
          kills=kills, seed=28, check=check, reset=lambda: shutil.rmtree(out), after_kill=lambda: assert_complete_outputs(out))


# ---------------------------------------------------------------- clean (the CLI stage: decisions, clean manifest, changes, metrics)

CLEAN = "from imagenet_clean.cli import main\nmain(['clean', '--split', 'val'])\n"


@pytest.mark.parametrize("kills", KILLS)
def test_kills_of_clean_each_rerun_to_the_uninterrupted_outputs_and_leave_no_temporary(tmp_path, kills):
    from hostile_corpus import metrics_without_timing
    from stage_project import CLEAN_OUTPUTS, clean_project

    project = clean_project(tmp_path / "p")
    read = lambda rel: metrics_without_timing(project / rel) if rel.endswith(".json") else (project / rel).read_bytes()  # noqa: E731
    _plain_run(CLEAN, [], project)
    want = {rel: read(rel) for rel in CLEAN_OUTPUTS}

    def reset():
        for rel in CLEAN_OUTPUTS:
            (project / rel).unlink()

    def after_kill():
        for rel in CLEAN_OUTPUTS:
            assert not (project / rel).exists() or read(rel) == want[rel], f"partial {rel} after a kill"

    reset()
    _loop(tmp_path, "import imagenet_clean.cli, imagenet_clean.stages.clean\n", CLEAN, [], cwd=project, outputs=project,
          kills=kills, seed=28, check=lambda: assert_equal(want, {rel: read(rel) for rel in CLEAN_OUTPUTS}), reset=reset,
          after_kill=after_kill)


def assert_equal(want: dict, got: dict) -> None:
    assert got == want, [k for k in want if got.get(k) != want[k]]
