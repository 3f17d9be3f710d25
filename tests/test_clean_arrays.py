"""`imagenet-clean clean-arrays`: the rules on a user's own label and probability arrays."""
import json

import numpy as np
import pytest

from imagenet_clean.cleanup.ensemble import clean_arrays
from imagenet_clean.cli import main
from imagenet_clean.config import Thresholds
from imagenet_clean.io import read_metadata, read_table


def make_arrays(tmp, n=240, k=7, m=3, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    labels = true.copy()
    flip = rng.random(n) < 0.12
    labels[flip] = (labels[flip] + rng.integers(1, k, flip.sum())) % k
    np.save(tmp / "labels.npy", labels)
    files = []
    for i in range(m):
        logits = rng.normal(size=(n, k))
        logits[np.arange(n), true] += 3.5
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        files.append(tmp / f"model{i}.npy")
        np.save(files[-1], p.astype(np.float32))
    return labels, true, files


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_writes_decisions_and_prints_counts(tmp_path, capsys):
    labels, true, files = make_arrays(tmp_path)
    out = tmp_path / "dec.parquet"
    code, stdout, err = run_cli(["clean-arrays", "--labels", str(tmp_path / "labels.npy"), "--pred-probs",
                                 *map(str, files), "--h1", "all", "--h2", "0.5", "--h3", "all", "--out", str(out)], capsys)
    assert code in (0, None), err
    counts = json.loads(stdout.strip().splitlines()[-1])
    dec = read_table(out)
    assert {"sample_id", "label", "action", "new_label", "rules"} <= set(dec.columns)
    assert dec["sample_id"].tolist() == list(range(len(labels)))
    assert counts["fix"] == (dec["action"] == "fix").sum() and counts["remove"] == (dec["action"] == "remove").sum()
    assert set(counts["issues_per_model"]) == {"model0", "model1", "model2"}
    fix = dec["action"] == "fix"
    assert fix.sum() > 5 and (dec.loc[fix, "new_label"] == true[fix]).mean() > 0.8
    assert json.loads(read_metadata(out)["thresholds"]) == {"fn": 1.0, "h1": "all", "h2": 0.5, "h3": "all"}


def test_cli_fn_scope_split_keeps_more_flags_and_records_its_scope(tmp_path, capsys):
    _, _, files = make_arrays(tmp_path, n=120, seed=2)
    base = ["clean-arrays", "--labels", str(tmp_path / "labels.npy"), "--pred-probs", *map(str, files), "--fn", "0.9"]
    issues = {}
    for scope in ("cell", "split"):
        out = tmp_path / f"{scope}.parquet"
        code, stdout, err = run_cli(base + ["--fn-scope", scope, "--out", str(out)], capsys)
        assert code in (0, None), err
        issues[scope] = json.loads(stdout.strip().splitlines()[-1])["issues_per_model"]
        recorded = json.loads(read_metadata(out)["thresholds"])
        assert recorded.get("fn_scope", "cell") == scope and recorded["fn"] == 0.9
    # 17 items per class: cleanlab's per-cell floor drops flags that 0.9 of all the flags keeps
    assert all(issues["split"][m] > issues["cell"][m] for m in issues["cell"]), issues


def test_library_matches_cli_defaults(tmp_path):
    labels, _, files = make_arrays(tmp_path, seed=1)
    d1, c1 = clean_arrays(labels, [np.load(f) for f in files], thresholds=Thresholds())
    d2, c2 = clean_arrays(tmp_path / "labels.npy", files)
    assert d1["action"].tolist() == d2["action"].tolist() and c1["fix"] == c2["fix"]
    assert list(c2["issues_per_model"]) == ["model0", "model1", "model2"]


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    labels, _, files = make_arrays(tmp_path, n=50)
    p = np.load(files[1])
    p[11, 2] = np.nan
    np.save(tmp_path / "nan.npy", p)
    base = ["clean-arrays", "--labels", str(tmp_path / "labels.npy"), "--out", str(tmp_path / "o.parquet")]
    code, _, err = run_cli(base + ["--pred-probs", str(files[0]), str(tmp_path / "nan.npy")], capsys)
    assert code == 1 and "nan.npy, model 'nan': row 11 of pred_probs has NaN" in err
    np.save(tmp_path / "k8.npy", np.full((50, 8), 1 / 8, np.float32))
    code, _, err = run_cli(base + ["--pred-probs", str(files[0]), str(tmp_path / "k8.npy")], capsys)
    assert code == 1 and "8 classes, but the first model has 7" in err
    np.save(tmp_path / "short.npy", np.load(files[0])[:40])
    code, _, err = run_cli(base + ["--pred-probs", str(tmp_path / "short.npy")], capsys)
    assert code == 1 and "40 rows but there are 50 labels" in err
    code, _, err = run_cli(base + ["--pred-probs", str(files[0]), "--h1", "1.0"], capsys)
    assert code == 1 and "h1: 1.0 is out of range" in err
    code, _, err = run_cli(base + ["--pred-probs", str(files[0]), "--fn", "0.9", "--fn-scope", "total"], capsys)
    assert code == 1 and "fn_scope: 'total' is out of range; allowed: 'cell' or 'split'" in err
    code, _, err = run_cli(base + ["--pred-probs", str(tmp_path / "missing.npy")], capsys)
    assert code == 1 and "missing.npy: no such pred_probs file" in err
    assert not (tmp_path / "o.parquet").exists()
