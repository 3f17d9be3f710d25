"""Retraining tables (2, 3, ablations) with a fast stand-in backend; one slow test with real timm training.

The stand-in "model" (tests/table_project.py's ``FakeBackend``) remembers how noisy
its training labels were (the true class of a sample is in its path ``c<k>/...``)
and predicts the true class with a probability that falls with that noise, so
cleaner training sets score higher.
"""
import json

import numpy as np
import pandas as pd
import pytest

from imagenet_clean.config import parse_params
from imagenet_clean.evaluate.ablations import VARIANTS, merge_map, placeholder_free, variant_manifest, write_ablations
from imagenet_clean.evaluate.table2 import (
    load_context,
    original_train,
    paired_gain,
    run_key,
    summarize,
    write_table2,
)
from imagenet_clean.evaluate.table3 import nonsquare_sizes, write_table3
from imagenet_clean.io import read_table
from table_project import SPLITS_YAML, FakeBackend, K, make_project, make_split, run_cli, skip_split, strict_json, tables_params


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path, n=40)


def test_table2_trains_T_and_Tc_per_seed_and_reports_spread(project):
    fake = FakeBackend()
    out = write_table2(tables_params(), paths=project, backend=fake)
    assert len(fake.fits) == 2 * 2 * 3  # archs x {T, T_c} x seeds
    t = json.loads(out.read_text())
    row = t["a1"]
    assert set(row) == {"T", "T_c", "gain", "headline"}
    assert set(row["T"]) == {"val", "val_clean", "v2", "v2_clean"}
    assert row["T"]["val_clean"]["top1"]["n"] == 3
    g = row["gain"]["val_clean"]["top1"]
    assert g["gain"] == pytest.approx(row["T_c"]["val_clean"]["top1"]["mean"] - row["T"]["val_clean"]["top1"]["mean"], abs=1e-3)
    runs = json.loads(project.metric("runs/table2.json").read_text())
    assert set(runs["a1"]["T"]) == {"seed0", "seed1", "seed2"}
    # the gain is paired by seed: the per-seed runs give it back with scipy's one-sample t-interval
    from scipy import stats

    d = [runs["a1"]["T_c"][k]["val_clean"]["top1"] - runs["a1"]["T"][k]["val_clean"]["top1"] for k in ("seed0", "seed1", "seed2")]
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert g["pairs"] == 3 and g["ci95"] == pytest.approx([ci.low, ci.high], abs=1e-3)
    assert g["verdict"] == ("helps" if ci.low > 0 else "hurts" if ci.high < 0 else "not resolved")
    assert g["beyond_noise"] == (g["verdict"] != "not resolved")
    assert g["gain"] > 0  # the stand-in learns better from clean labels
    # T: readable training rows with original labels (40 - 1 unreadable); T_c: 40 - 2 removed
    assert {f[3] for f in fake.fits} == {39, 38}
    # the headline: both means, the paired gain, its interval and the verdict, on V_c, over 3 seeds
    h = row["headline"]
    assert h["set"] == "val_clean" and h["seeds"] == 3
    assert h["top1"] == {"T": row["T"]["val_clean"]["top1"]["mean"], "T_c": row["T_c"]["val_clean"]["top1"]["mean"], **g}
    assert isinstance(h["top1"]["beyond_noise"], bool) and isinstance(h["top5"]["gain"], float)
    assert "skipped_splits" not in t


def test_table2_has_every_paper_cell_and_uses_tables_input_size(project):
    fake = FakeBackend()
    t = json.loads(write_table2(tables_params(archs=["a1"], seeds=2, input_size=48), paths=project, backend=fake).read_text())["a1"]
    for train_set, eval_set in [("T", "val"), ("T", "val_clean"), ("T_c", "val_clean"), ("T", "v2"), ("T_c", "v2"), ("T_c", "v2_clean")]:
        for m in ("top1", "top5"):
            cell = t[train_set][eval_set][m]
            assert cell["n"] == 2 and cell["mean"] is not None and cell["std"] >= 0, (train_set, eval_set, m)
    assert {f[2] for f in fake.fits} == {(3, 48, 48)}


def test_table2_rerun_is_cached_and_identical(project):
    write_table2(tables_params(), paths=project, backend=FakeBackend())
    first = project.metric("table2.json").read_bytes()
    again = FakeBackend()
    write_table2(tables_params(), paths=project, backend=again)
    assert again.fits == []
    assert project.metric("table2.json").read_bytes() == first


def test_table2_resumes_after_interruption(project):
    with pytest.raises(KeyboardInterrupt):
        write_table2(tables_params(), paths=project, backend=FakeBackend(fail_after=5))
    assert not project.metric("table2.json").exists()
    rest = FakeBackend()
    write_table2(tables_params(), paths=project, backend=rest)
    assert len(rest.fits) == 12 - 5


def test_threshold_change_on_val_rescores_without_training(project):
    write_table2(tables_params(), paths=project, backend=FakeBackend())
    before = json.loads(project.metric("table2.json").read_text())
    clean = read_table(project.clean("val"))
    from imagenet_clean.io import write_table

    write_table(project.clean("val"), clean.iloc[5:], metadata={"root": "r/val", "num_classes": K})  # a different V_c
    fake = FakeBackend()
    write_table2(tables_params(), paths=project, backend=fake)
    after = json.loads(project.metric("table2.json").read_text())
    assert fake.fits == []
    assert after["a1"]["T"]["val"] == before["a1"]["T"]["val"]
    assert after["a1"]["T"]["val_clean"]["top1"]["n"] == 3


def test_run_key_depends_on_labels_seed_and_size(project):
    ctx = load_context(["val"], paths=project, backend=FakeBackend())
    t = original_train(read_table(project.manifest("train")))
    k = run_key(ctx, t, arch="a", seed=0, input_size=None)
    assert k == run_key(ctx, t.copy(), arch="a", seed=0, input_size=None)
    t2 = t.copy()
    t2.loc[0, "label"] = (t2.loc[0, "label"] + 1) % K
    assert len({k, run_key(ctx, t2, arch="a", seed=0, input_size=None), run_key(ctx, t, arch="a", seed=1, input_size=None),
                run_key(ctx, t, arch="a", seed=0, input_size=(3, 8, 16))}) == 4


def test_parallel_runs_equal_sequential_runs(project, tmp_path):
    from imagenet_clean.evaluate.retrain import seed_runs

    t = original_train(read_table(project.manifest("train")))
    seq = load_context(["val"], paths=project, backend=FakeBackend())
    seq.cache_dir = tmp_path / "seq"
    par = load_context(["val"], paths=project, backend=FakeBackend())
    par.cache_dir, par.workers = tmp_path / "par", 2
    want = seed_runs(seq, t, arch="a1", seeds=[0, 1, 2], label="T")
    got = seed_runs(par, t, arch="a1", seeds=[0, 1, 2], label="T")
    assert got == want
    assert par.backend.fits == []  # trained in the worker processes, then read from the cache
    assert [e["cached"] for e in par.log] == [False] * 3 + [True] * 3
    assert sorted(p.name for p in par.cache_dir.iterdir()) == sorted(p.name for p in seq.cache_dir.iterdir())


def test_empty_archs_and_bad_training_rows(project):
    from imagenet_clean.evaluate.table2 import cached_run, load_context, table2

    ctx = load_context(["val"], paths=project, backend=FakeBackend())
    with pytest.raises(ValueError, match="tables.archs is empty"):
        table2(ctx, [], seeds=[0], train_sets={})

    ctx = load_context(["val"], paths=project, backend=FakeBackend())
    with pytest.raises(ValueError, match="has no samples"):
        cached_run(ctx, pd.DataFrame({"path": [], "label": []}), arch="a", seed=0, label="T_c")
    with pytest.raises(ValueError, match=r"lack column\(s\) \['label'\]"):
        cached_run(ctx, pd.DataFrame({"path": ["x"]}), arch="a", seed=0, label="T_c")


def test_missing_training_manifest(tmp_path):
    paths = make_project(tmp_path, splits=("val",))
    with pytest.raises(FileNotFoundError, match="train.parquet"):
        write_table2(tables_params(), paths=paths, backend=FakeBackend())


def test_summarize():
    assert summarize([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert summarize([5.0]) == {"mean": 5.0, "std": 0.0, "n": 1}
    assert summarize([])["n"] == 0


def test_paired_gain_uses_the_pairing():
    # seeds move T and T_c together by several points; the difference is +1 +- 0.1 on every seed
    t = [90.0, 94.0, 87.0, 92.0, 89.0]
    tc = [91.1, 94.9, 88.0, 93.1, 89.9]
    g = paired_gain(t, tc)
    assert g["verdict"] == "helps" and g["beyond_noise"] is True and g["pairs"] == 5
    assert g["gain"] == pytest.approx(1.0) and g["ci95"][0] > 0.8 and g["ci95"][1] < 1.2
    # the old unpaired rule (gain above the larger seed std, ~2.7) said no to the same figures
    assert g["gain"] < max(summarize(t)["std"], summarize(tc)["std"])
    assert paired_gain(tc, t)["verdict"] == "hurts" and paired_gain(tc, t)["ci95"] == [-g["ci95"][1], -g["ci95"][0]]


def test_paired_gain_interval_is_scipys_t_interval():
    from scipy import stats

    t, tc = [95.6, 95.2, 96.0, 95.8, 95.4], [96.6, 95.0, 96.8, 96.2, 95.2]
    d = np.subtract(tc, t)
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    g = paired_gain(t, tc)
    assert g["ci95"] == [round(lo, 4), round(hi, 4)] and lo < 0 < hi
    assert g["verdict"] == "not resolved" and g["beyond_noise"] is False and g["sd"] == pytest.approx(d.std(ddof=1), abs=1e-4)
    # a wider confidence only widens the interval
    g99 = paired_gain(t, tc, confidence=0.99)
    assert g99["ci95"][0] < g["ci95"][0] and g99["ci95"][1] > g["ci95"][1]


def test_paired_gain_edge_cases():
    # equal differences on every seed: a zero-width interval at the gain
    assert paired_gain([1, 2, 3], [2, 3, 4]) == {"gain": 1.0, "ci95": [1.0, 1.0], "pairs": 3, "sd": 0.0, "verdict": "helps",
                                                  "beyond_noise": True}
    assert paired_gain([1, 2], [1, 2])["verdict"] == "not resolved"
    # a pair with a missing side (an empty evaluation set) is left out
    assert paired_gain([1, None, 3, float("nan")], [2, 5, 4, 1])["pairs"] == 2
    one = paired_gain([90.0], [91.0])
    assert one["verdict"] == "not computed" and one["ci95"] is None and one["beyond_noise"] is None and one["gain"] == 1.0
    assert "needs at least 2 seed pairs" in one["why"]
    assert paired_gain([], [])["gain"] is None


def test_paired_gain_bad_input():
    with pytest.raises(ValueError, match="one per seed on both sides; got 3 and 2"):
        paired_gain([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\); got 95"):
        paired_gain([1, 2], [2, 3], confidence=95)


def test_table2_with_one_seed_is_written_with_the_verdict_not_computed(project, tmp_path, monkeypatch):
    t = json.loads(write_table2(tables_params(archs=["a1"], seeds=1), paths=project, backend=FakeBackend()).read_text())["a1"]
    for s in ("val", "val_clean", "v2", "v2_clean"):
        g = t["gain"][s]["top1"]
        assert g["verdict"] == "not computed" and g["pairs"] == 1 and g["ci95"] is None
        assert g["why"] == "a confidence interval needs at least 2 seed pairs (T and T_c with the same seed); got 1"
    assert t["T"]["val_clean"]["top1"]["n"] == 1 and t["headline"]["top1"]["verdict"] == "not computed"
    from imagenet_clean.evaluate.table2 import headline, verdict_line

    line = verdict_line(headline({"a1": t})["a1"])
    assert line.startswith("T_c - T top-1 on val_clean:") and "verdict not computed: a confidence interval needs at least 2" in line


# ------------------------------------------------------------------ ablations


def _train_files(paths):
    return read_table(paths.manifest("train")), read_table(paths.decisions("train")), read_table(paths.clean("train"))


def test_variant_manifests(project):
    manifest, decisions, clean = _train_files(project)
    none = variant_manifest(manifest, decisions, {}, variant="none")
    assert len(none) == 39 and (none["label"] == none["orig_label"]).all()
    fixes = variant_manifest(manifest, decisions, {}, variant="fixes")
    fixed = fixes.set_index("sample_id")
    assert fixed.loc["c1/train_001.png", "label"] == 1 and fixed.loc["c1/train_001.png", "orig_label"] == 2
    assert len(fixes) == 39
    removals = variant_manifest(manifest, decisions, {}, variant="removals")
    assert "c2/train_002.png" not in set(removals["sample_id"]) and len(removals) == 38
    merges = variant_manifest(manifest, decisions, {3: 0}, variant="merges")
    assert not (merges["label"] == 3).any() and len(merges) == 39
    allv = variant_manifest(manifest, decisions, merge_map(clean, decisions), variant="all")
    expect = placeholder_free(clean)
    assert list(allv["sample_id"]) == list(expect["sample_id"]) and list(allv["label"]) == list(expect["label"])


def test_variant_manifest_bad_input(project):
    manifest, decisions, _ = _train_files(project)
    with pytest.raises(ValueError, match="unknown ablation variant 'fix'"):
        variant_manifest(manifest, decisions, {}, variant="fix")
    with pytest.raises(ValueError, match="no decision for manifest sample 'c0/train_000.png'"):
        variant_manifest(manifest, decisions.iloc[1:], {}, variant="all")
    bad = decisions.copy()
    bad.loc[0, "action"] = "delete"
    with pytest.raises(ValueError, match=r"unknown action\(s\) \['delete'\]"):
        variant_manifest(manifest, bad, {}, variant="all")
    with pytest.raises(ValueError, match="appears more than once"):
        variant_manifest(manifest, pd.concat([decisions, decisions.iloc[:1]]), {}, variant="all")
    with pytest.raises(ValueError, match="missing column"):
        variant_manifest(manifest.drop(columns="path"), decisions, {}, variant="all")


def test_merge_map():
    clean = pd.DataFrame({"sample_id": ["a", "b", "c", "p"], "label": [0, 0, 0, 3], "orig_label": [3, 3, 1, 3],
                          "action": ["merge", "merge", "fix+merge", "placeholder"]})
    dec = pd.DataFrame({"sample_id": ["a", "b", "c"], "new_label": [3, 3, 3]})
    assert merge_map(clean, dec) == {3: 0}
    clean.loc[1, "label"] = 2
    with pytest.raises(ValueError, match="class 3 is merged into both 0 and 2"):
        merge_map(clean)


def test_ablations_switch(project):
    out = write_ablations(tables_params(), paths=project, backend=FakeBackend())
    assert json.loads(out.read_text()) == {"skipped": True, "why": "tables.ablations is false"}
    assert json.loads(project.metric("runs/ablations.json").read_text())["skipped"] is True
    fake = FakeBackend()
    out = write_ablations(tables_params(ablations=True, archs=["a1"], seeds=2), paths=project, backend=fake)
    t = json.loads(out.read_text())["a1"]
    assert set(t) == set(VARIANTS)
    assert t["none"]["d_top1"] == 0.0 and t["none"]["n_train"] == 39 and t["all"]["n_train"] == 38
    assert t["all"]["d_top1"] > 0
    # 'fixes' and 'all' differ from 'none' and from each other; 'merges' has no merges here = 'none' (cached)
    assert len(fake.fits) == 2 * 4


# ------------------------------------------------------------------ table 3


def test_nonsquare_sizes_match_the_paper_at_224():
    s = nonsquare_sizes(224)
    assert s == {"296x168 (L)": (3, 168, 296), "384x216 (L)": (3, 216, 384), "168x296 (P)": (3, 296, 168), "216x384 (P)": (3, 384, 216)}
    assert 384 * 216 / 224**2 == pytest.approx(1.65, abs=0.01)
    small = nonsquare_sizes(32)
    assert all(h % 8 == 0 and w % 8 == 0 for _, h, w in small.values())
    with pytest.raises(ValueError, match="side=0"):
        nonsquare_sizes(0)


def test_table3_switch_and_differences(project):
    out = write_table3(tables_params(), paths=project, backend=FakeBackend())
    assert json.loads(out.read_text()) == {"skipped": True, "why": "tables.resolutions is false"}
    assert json.loads(project.metric("runs/table3.json").read_text())["skipped"] is True
    # the square T_c runs are table 2's: computed first, then reused from the cache
    write_table2(tables_params(archs=["a1"], seeds=2), paths=project, backend=FakeBackend())
    fake = FakeBackend()
    out = write_table3(tables_params(resolutions=True, archs=["a1"], seeds=2), paths=project, backend=fake)
    t = json.loads(out.read_text())["a1"]
    assert t["square"]["input_size"] == [3, 32, 32]
    assert set(t) == {"square", "40x24 (L)", "56x32 (L)", "24x40 (P)", "32x56 (P)"}
    assert len(fake.fits) == 4 * 2  # only the non-square runs
    big = t["56x32 (L)"]
    assert big["pixels"] == pytest.approx(56 * 32 / 32**2, abs=1e-3)
    assert big["d_top1"] == pytest.approx(big["val_clean"]["top1"]["mean"] - t["square"]["val_clean"]["top1"]["mean"], abs=1e-3)


def test_table3_uses_tables_input_size(project):
    fake = FakeBackend()
    out = write_table3(tables_params(resolutions=True, archs=["a1"], seeds=1, input_size=64), paths=project, backend=fake)
    t = json.loads(out.read_text())["a1"]
    assert t["square"]["input_size"] == [3, 64, 64] and "112x64 (L)" in t
    assert {f[2] for f in fake.fits} >= {(3, 64, 64), (3, 64, 112)}


def test_round_two_uses_its_own_clean_training_set(tmp_path):
    paths = make_project(tmp_path, n=40)
    r2 = paths.at_round(2)
    for s in ("train", "val", "v2"):
        make_split(r2, s, n=40)
    fake = FakeBackend()
    out = write_table2(tables_params(archs=["a1"], seeds=1), paths=r2, backend=fake)
    assert out == tmp_path / "metrics" / "rounds" / "2" / "table2.json"


# ------------------------------------------------------------------ real training


@pytest.mark.slow
def test_table2_with_real_timm_training(tmp_path):
    """Two tiny resnet10t runs on real pixels: T vs T_c, one epoch, 16 px."""
    pytest.importorskip("imagenet_clean.models.train")
    from PIL import Image

    paths = make_project(tmp_path, n=24)
    rng = np.random.default_rng(0)
    for split in ("train", "val", "v2"):
        m = read_table(paths.manifest(split))
        root = paths.data / "raw" / split
        for p in m["path"]:
            k = int(p[1])
            img = (rng.uniform(0, 60, (16, 16, 3)) + np.eye(4)[k].repeat(4)[:, None, None].reshape(16, 1, 1) * 180).astype(np.uint8)
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / p)
    params = parse_params({
        "splits": {"train": {"root": str(paths.data / "raw/train"), "layout": "train"}, "val": {"root": str(paths.data / "raw/val")}},
        "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0, "cooldown_epochs": 0, "auto_augment": None, "reprob": 0.0},
        "predict": {"batch_size": 16, "workers": 0},
        "tables": {"archs": ["resnet10t"], "seeds": 1, "input_size": 16},
    })
    from imagenet_clean.evaluate.table2 import TimmBackend

    backend = TimmBackend(train=params.train, batch_size=16)
    out = write_table2(params, paths=paths, backend=backend)
    t = json.loads(out.read_text())["resnet10t"]
    assert 0 <= t["T_c"]["val_clean"]["top1"]["mean"] <= 100
    assert t["T"]["val"]["top1"]["n"] == 1


def test_cli_retrain_table3_ablations(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from imagenet_clean.cli import app
    from imagenet_clean.evaluate import table2 as t2

    make_project(tmp_path, n=40)
    monkeypatch.setitem(t2.BACKENDS, "timm", lambda **kw: FakeBackend())
    (tmp_path / "params.yaml").write_text(
        "splits:\n  train: {root: data/raw/train, layout: train}\n  val: {root: data/raw/val}\n"
        "tables: {archs: [a1], seeds: 2, epochs: 1, ablations: true, resolutions: false}\n"
    )
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["retrain"])
    assert res.exit_code == 0, res.output
    assert "a1: T_c - T top-1 on val_clean:" in res.output and "paired over 2 seed(s), 95 % interval [" in res.output
    assert "wrote metrics/table2.json" in res.output
    res = runner.invoke(app, ["table3"])
    assert res.exit_code == 0 and json.loads((tmp_path / "metrics/table3.json").read_text())["skipped"]
    res = runner.invoke(app, ["ablations"])
    assert res.exit_code == 0, res.output
    assert set(json.loads((tmp_path / "metrics/ablations.json").read_text())["a1"]) == set(VARIANTS)


def test_run_key_changes_with_image_content(project):
    ctx = load_context(["val"], paths=project, backend=FakeBackend())
    t = original_train(read_table(project.manifest("train"))).assign(content_hash="h")
    t2 = t.copy()
    t2.loc[3, "content_hash"] = "other"
    assert run_key(ctx, t, arch="a", seed=0, input_size=None) != run_key(ctx, t2, arch="a", seed=0, input_size=None)


def test_ablation_baselines_reuse_table2_runs(project):
    write_table2(tables_params(archs=["a1"], seeds=2), paths=project, backend=FakeBackend())
    fake = FakeBackend()
    write_ablations(tables_params(archs=["a1"], seeds=2, ablations=True), paths=project, backend=fake)
    # 'none' is T and 'all' is T_c (cached by table 2); 'merges' has no merges here, so it is 'none'
    assert len(fake.fits) == 2 * 2 and {f[3] for f in fake.fits} == {39, 38}


# ------------------------------------------------------------------ skipped inputs


def test_cli_retrain_without_archs_skips_cleanly(tmp_path, monkeypatch):
    res, fake = run_cli(tmp_path, monkeypatch, SPLITS_YAML + "tables: {archs: []}\n", "retrain")  # no data at all
    for name in ("table2.json", "runs/table2.json"):
        assert strict_json(tmp_path / "metrics" / name) == {"skipped": True, "why": "tables.archs is empty"}
    assert "skipped: tables.archs is empty" in res.output and fake.fits == []


def test_retrain_leaves_out_skipped_splits(tmp_path, monkeypatch):
    paths = make_project(tmp_path, n=40)
    params = parse_params({
        "splits": {"train": {"root": "data/raw/train", "layout": "train"}, "val": {"root": "data/raw/val"},
                   "v2": {"root": None, "layout": "v2"}, "imagenet_r": {"root": None, "layout": "folders"}},
        "tables": {"archs": ["a1"], "seeds": 2},
    })
    for split in ("v2", "imagenet_r"):
        skip_split(params, split, tmp_path)  # the real ingest/clean outputs of a skipped split
    fake = FakeBackend()
    t = strict_json(write_table2(params, paths=paths, backend=fake))
    assert set(t["a1"]["T"]) == {"val", "val_clean"} and t["a1"]["headline"]["set"] == "val_clean"
    assert t["skipped_splits"] == {"v2": "splits.v2.root is null", "imagenet_r": "splits.imagenet_r.root is null"}
    assert len(fake.fits) == 2 * 2


def test_retrain_skips_when_the_training_split_is_skipped_or_emptied(tmp_path, monkeypatch):
    paths = make_project(tmp_path, splits=("val", "v2"), n=40)
    params = parse_params({"splits": {"train": {"root": None, "layout": "train"}, "val": {"root": "data/raw/val"}},
                           "tables": {"archs": ["a1"]}})
    skip_split(params, "train", tmp_path)
    t = strict_json(write_table2(params, paths=paths, backend=FakeBackend()))
    assert t == {"skipped": True, "why": "training split skipped: splits.train.root is null"}
    # T_c with no image (only placeholders left): nothing to train on
    make_split(paths, "train", n=40)
    from imagenet_clean.io import write_table

    clean = read_table(paths.clean("train"))
    write_table(paths.clean("train"), clean[clean["action"] == "placeholder"])
    t = strict_json(write_table2(tables_params(), paths=paths, backend=FakeBackend()))
    assert t["skipped"] is True and t["why"].endswith("has no training image (T_c is empty)")
    assert strict_json(paths.metric("runs/table2.json"))["skipped"] is True


def test_timm_backend_gets_the_tables_recipe_size_and_model_kwargs(project):
    from imagenet_clean.evaluate.table2 import make_backend, train_config

    params = parse_params({
        "models": {"r": {"arch": "test_resnet", "kwargs": {"output_stride": 8, "pretrained_cfg_overlay": {"crop_pct": 1.0}}}},
        "train": {"epochs": 15, "opt": "adamw", "cache_images": True, "scale": [0.6, 1.0], "hflip": 0.0, "threads": 1},
        "tables": {"archs": ["test_resnet", "resnet10t"], "epochs": 2, "input_size": 32},
    })
    backend = make_backend(params)
    assert backend.train == train_config(params) and backend.train.epochs == 2
    assert (backend.train.opt, backend.train.cache_images, backend.train.scale, backend.train.hflip) == ("adamw", True, (0.6, 1.0), 0.0)
    cfg = backend._cfg("test_resnet", (3, 32, 32))
    assert cfg.kwargs == {"output_stride": 8, "pretrained_cfg_overlay": {"crop_pct": 1.0}} and cfg.input_size == (3, 32, 32)
    assert backend._cfg("resnet10t", None).kwargs == {}
    # speed-only fields do not change the run cache key; recipe fields do
    import dataclasses

    from imagenet_clean.evaluate.table2 import BACKENDS

    faster = BACKENDS["timm"](train=dataclasses.replace(backend.train, threads=8, cache_images=False, workers=2), kwargs=backend.kwargs)
    assert faster.fingerprint == backend.fingerprint
    assert BACKENDS["timm"](train=dataclasses.replace(backend.train, opt="sgd"), kwargs=backend.kwargs).fingerprint != backend.fingerprint


def test_timm_backend_passes_the_recipe_to_train_model(project, monkeypatch):
    from imagenet_clean.evaluate.table2 import make_backend
    from imagenet_clean.models import train as train_mod

    seen = {}
    monkeypatch.setattr(train_mod, "train_model", lambda samples, root, **kw: seen.update(kw) or "model")
    params = parse_params({"train": {"opt": "adamw", "cache_images": True}, "tables": {"archs": ["a1"], "epochs": 3}})
    assert make_backend(params).fit(pd.DataFrame({"path": ["x"], "label": [0]}), "r", arch="a1", num_classes=K, seed=5,
                                    input_size=(3, 16, 16)) == "model"
    assert seen["cfg"].epochs == 3 and seen["cfg"].opt == "adamw" and seen["cfg"].cache_images is True
    assert seen["seed"] == 5 and seen["input_size"] == (3, 16, 16) and seen["num_classes"] == K
