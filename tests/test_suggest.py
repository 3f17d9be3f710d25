"""Merge suggestions: a synonym pair that every model confuses both ways comes first; one-way noise does not."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from imagenet_clean.classes import ClassList, write_classes
from imagenet_clean.cleanup.suggest import confident_counts, confusion_rates, fix_counts, suggest_merges
from imagenet_clean.config import parse_params
from imagenet_clean.io import write_table
from imagenet_clean.predictions import predictions_table, write_predictions
from imagenet_clean.stages import suggest_merges as stage
from imagenet_clean.workspace import Workspace

K = 6
CLASSES = ClassList(tuple(f"n8000000{i}" for i in range(K)), ("zero", "one", "seven", "three", "eight", "one again"))
SYN = (1, 5)        # the same things under two labels
ONE_WAY = (2, 1)    # 20 % of the sevens look like ones to the models, no one looks like a seven


def synthetic(seed: int, n_per_class: int = 60):
    """Labels and three models' probabilities: classes 1 and 5 indistinguishable, some 2s look like 1s."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(K), n_per_class)
    seen = labels.copy()
    sevens = np.flatnonzero(labels == ONE_WAY[0])
    seen[sevens[: n_per_class // 5]] = ONE_WAY[1]
    models = {}
    for m in ("a", "b", "c"):
        logits = rng.normal(scale=0.5, size=(len(labels), K))
        logits[np.arange(len(labels)), seen] += 5.0
        syn = np.isin(labels, SYN)  # either synonym: the mass is shared at random between the two
        share = rng.uniform(0.2, 0.8, syn.sum())
        top = logits[syn].max(axis=1)
        logits[np.flatnonzero(syn), SYN[0]] = top + np.log(share)
        logits[np.flatnonzero(syn), SYN[1]] = top + np.log(1 - share)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        models[m] = p / p.sum(axis=1, keepdims=True)
    return labels, models


def test_the_synonym_pair_comes_first_and_one_way_confusion_is_not_suggested():
    labels, models = synthetic(0)
    counts = np.bincount(labels, minlength=K)
    rates = {m: confusion_rates(confident_counts(labels, p), counts) for m, p in models.items()}
    assert all(r[ONE_WAY] > 0.1 for r in rates.values())  # the models do see sevens as ones ...
    pairs = suggest_merges(rates, CLASSES, min_rate=0.1)
    assert [(p["a"], p["b"]) for p in pairs] == [(CLASSES.wnids[1], CLASSES.wnids[5])]  # ... but not both ways
    top = pairs[0]
    assert top["a_name"] == "one" and top["b_name"] == "one again"
    assert top["score"] == pytest.approx(min(np.sqrt(v["a_to_b"] * v["b_to_a"]) for v in top["models"].values()), abs=1e-3)
    assert top["score"] > 0.2 and top["already_merged"] is False


def test_a_pair_must_be_confused_by_every_model():
    labels, models = synthetic(1)
    models["c"] = np.eye(K)[labels] * 0.9 + 0.1 / K  # one model tells the synonyms apart
    counts = np.bincount(labels, minlength=K)
    rates = {m: confusion_rates(confident_counts(labels, p), counts) for m, p in models.items()}
    assert suggest_merges(rates, CLASSES, min_rate=0.1) == []


def test_fixes_are_reported_and_break_ties_and_merged_pairs_are_marked():
    rates = np.full((K, K), 0.3)
    fixes = fix_counts(np.array([3, 3, 4, 1, 1]), np.array([4, 4, 3, 1, 2]), K)
    assert fixes[3, 4] == 2 and fixes[4, 3] == 1 and fixes[1, 1] == 0 and fixes.sum() == 4
    pairs = suggest_merges({"a": rates}, CLASSES, min_rate=0.3, fixes=fixes, max_pairs=3,
                           merged=[(CLASSES.wnids[4], CLASSES.wnids[3])])
    assert (pairs[0]["a"], pairs[0]["b"]) == (CLASSES.wnids[3], CLASSES.wnids[4])  # the only pair swapped both ways
    assert pairs[0]["fixes"] == {"a_to_b": 2, "b_to_a": 1} and pairs[0]["already_merged"] is True
    assert len(pairs) == 3 and not pairs[1]["already_merged"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(rates_by_model={}), "no models"),
    (dict(rates_by_model={"a": np.zeros((3, 3))}), "model 'a': rates of shape (3, 3), expected (6, 6)"),
    (dict(rates_by_model={"a": np.zeros((K, K))}, min_rate=0.0), "min_rate 0.0 is outside (0, 1]"),
])
def test_bad_input_is_refused_naming_it(kwargs, message):
    kwargs = {"min_rate": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        suggest_merges(classes=CLASSES, **kwargs)


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(ValueError, match="label 7 is outside 0..5"):
        confident_counts(np.array([0, 7]), np.full((2, K), 1 / K))


def test_the_stage_reads_every_model_and_split_and_writes_the_report(tmp_path):
    labels, models = synthetic(2)
    write_classes(tmp_path / "classes.tsv", CLASSES)
    ids = [f"img_{i:04d}.png" for i in range(len(labels))]
    status = np.array(["ok"] * len(ids), object)
    status[0] = "error"  # an unreadable image is left out, not counted
    man = pd.DataFrame({"sample_id": ids, "path": ids, "label": labels.astype(np.int64),
                        "wnid": [CLASSES.wnids[i] for i in labels], "status": status})
    write_table(tmp_path / "data/manifests/val.parquet", man,
                metadata={"root": "raw/val", "layout": "val", "split": "val", "classes": "classes.tsv", "num_classes": K})
    for m, p in models.items():
        order = np.random.default_rng(3).permutation(len(ids))  # files need not share the manifest's order
        write_predictions(tmp_path / f"data/predictions/val/{m}.parquet",
                          predictions_table(np.asarray(ids, object)[order], p[order]), model=m, arch="x", split="val",
                          num_classes=K)
    raw = {"dataset": {"classes": "classes.tsv", "merges": "none", "truth": None},
           "splits": {"val": {"root": "raw/val", "layout": "val"}},
           "models": {m: {"arch": "resnet10t"} for m in models}, "suggest_merges": {"min_rate": 0.1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    res = stage.run(parse_params(raw), Workspace(tmp_path))
    written = json.loads((tmp_path / "metrics/merge_suggestions.json").read_text())
    assert written == res
    assert res["splits"] == ["val"] and res["samples"] == len(ids) - 1 and res["models"] == ["a", "b", "c"]
    assert [(p["a_name"], p["b_name"]) for p in res["pairs"]] == [("one", "one again")]


def test_the_stage_writes_a_skipped_report_without_a_cleaned_split(tmp_path):
    raw = {"splits": {"val": {"root": None}}, "models": {"a": {"arch": "resnet10t"}}}
    res = stage.run(parse_params(raw), Workspace(tmp_path))
    assert res == {"skipped": True, "why": "no cleaned split"}
    assert json.loads((tmp_path / "metrics/merge_suggestions.json").read_text()) == res
