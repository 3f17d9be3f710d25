"""Wall-clock figures stay out of DVC-tracked outputs and go to an untracked log (issue 12)."""
import json

from imagenet_clean.timing import record_timing, split_timing
from imagenet_clean.workspace import Workspace


def test_split_timing_separates_wall_clock_keys():
    kept, timing = split_timing({"n_files": 3, "seconds": 0.5, "files_per_s": 6.0, "split": "val"})
    assert kept == {"n_files": 3, "split": "val"} and timing == {"seconds": 0.5, "files_per_s": 6.0}


def test_record_timing_appends_one_line_per_call_and_can_be_turned_off(tmp_path, monkeypatch):
    log = tmp_path / "logs" / "timing.jsonl"
    record_timing("fit@vgg", {"fold": 0, "train_s": 1.5}, log=log)
    record_timing("fit@vgg", {"fold": 1, "train_s": 2.0}, log=log)
    assert [json.loads(x) for x in log.read_text().splitlines()] == [
        {"stage": "fit@vgg", "fold": 0, "train_s": 1.5}, {"stage": "fit@vgg", "fold": 1, "train_s": 2.0}]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("IMAGENET_CLEAN_TIMING_LOG", "")
    record_timing("ingest@val", {"seconds": 1.0})
    assert len(log.read_text().splitlines()) == 2  # off: nothing written
    monkeypatch.delenv("IMAGENET_CLEAN_TIMING_LOG")
    record_timing("ingest@val", {"seconds": 1.0})  # in a DVC project: its logs/timing.jsonl
    assert json.loads(log.read_text().splitlines()[-1]) == {"stage": "ingest@val", "seconds": 1.0}


def test_ingest_metrics_hold_no_wall_clock_figures(tmp_path, monkeypatch, write_image):
    import yaml

    from imagenet_clean.config import load_params
    from imagenet_clean.stages.ingest import run as run_ingest

    for i in range(2):
        write_image(tmp_path / "val" / f"n00000001/img{i}.JPEG", seed=i)
    (tmp_path / "classes.tsv").write_text("n00000001\tone\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "dataset": {"classes": "classes.tsv"}, "splits": {"val": {"root": "val", "layout": "folders"}}}))
    monkeypatch.chdir(tmp_path)
    run_ingest(load_params("params.yaml"), Workspace(), "val")
    metrics = json.loads((tmp_path / "metrics/ingest/val.json").read_text())
    assert metrics["n_files"] == 2 and not {"seconds", "files_per_s"} & set(metrics)
