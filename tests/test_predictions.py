import numpy as np

from imagenet_clean.predictions import predictions_table, read_predictions, top5_of, write_predictions


def test_roundtrip_float16_and_error_rows(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(12), size=6)
    status = ["ok", "error", "ok", "ok", "ok", "ok"]
    t = predictions_table([f"s{i}" for i in range(6)], probs, status=status, reason=["", "truncated", "", "", "", ""])
    write_predictions(tmp_path / "p.parquet", t, model="m", num_classes=12)
    p = read_predictions(tmp_path / "p.parquet")
    assert p.probs.dtype == np.float32 and p.probs.shape == (6, 12)
    assert np.allclose(p.probs[p.ok], probs[p.ok], atol=1e-3)
    assert (p.probs[1] == 0).all() and p.reason[1] == "truncated"
    assert (p.top5[0] == top5_of(probs)[0]).all()
    assert p.meta["model"] == "m"


def test_top5_ties_prefer_smaller_index():
    probs = np.array([[0.2, 0.2, 0.2, 0.2, 0.1, 0.1]])
    assert top5_of(probs).tolist() == [[0, 1, 2, 3, 4]]
