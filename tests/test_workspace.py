from pathlib import Path

import pytest

from imagenet_clean.workspace import Workspace, dvc_experiment_parent, shared_cache_root


def test_round_one_is_the_pipelines_own_folders():
    r1 = Workspace()
    assert r1.clean("val") == Path("data/clean/val.parquet")
    assert r1.decisions("val") == Path("data/decisions/val.parquet")
    assert r1.changes("val") == Path("data/changes/val.csv")
    assert r1.predictions("val", "m") == Path("data/predictions/val/m.parquet")
    assert r1.cleanup_metrics("val") == Path("metrics/cleanup/val.json")
    assert r1.metric("table1.json") == Path("metrics/table1.json")
    assert r1.input("train") == Path("data/manifests/train.parquet")
    assert r1.round_manifest("train") == r1.manifest("train") == Path("data/manifests/train.parquet")
    assert r1.reviews("val") == Path("reviews/val.csv")
    assert r1.live_root == Path("metrics/train")
    assert r1.cam_cache("val") == Path("data/cache/cams/val")  # docs/architecture.md names this folder


def test_round_paths():
    r1, r3 = Workspace(round=1), Workspace(round=3)
    assert r3.clean("val") == Path("data/rounds/3/clean/val.parquet")
    assert r3.predictions("val", "m") == Path("data/rounds/3/predictions/val/m.parquet")
    assert r3.metric("table2.json") == Path("metrics/rounds/3/table2.json")
    assert r3.manifest("val") == Path("data/manifests/val.parquet")
    assert r3.input("train") == Path("data/rounds/2/clean/train.parquet")
    assert Workspace(round=2).input("train") == Path("data/clean/train.parquet")
    assert r1.retrain_cache == r3.retrain_cache
    with pytest.raises(ValueError, match="round must be an integer >= 1, got 0"):
        Workspace(round=0)


def test_round_layout_reads_previous_round_and_writes_its_own_folders(tmp_path):
    lay = Workspace(tmp_path, 3)
    assert lay.input("train") == tmp_path / "data/rounds/2/clean/train.parquet"
    assert Workspace(tmp_path, 2).input("train") == tmp_path / "data/clean/train.parquet"
    assert lay.round_manifest("train") == tmp_path / "data/rounds/3/manifests/train.parquet"
    assert lay.round_manifest("val") == tmp_path / "data/manifests/val.parquet"  # evaluated splits: the original manifests
    assert lay.predictions_dir("val") == tmp_path / "data/rounds/3/predictions/val"
    assert lay.decisions("val") == tmp_path / "data/rounds/3/decisions/val.parquet"
    assert lay.clean("val") == tmp_path / "data/rounds/3/clean/val.parquet"
    assert lay.changes("val") == tmp_path / "data/rounds/3/changes/val.csv"
    assert lay.cleanup_metrics("val") == tmp_path / "metrics/rounds/3/cleanup/val.json"
    assert lay.models == tmp_path / "data/rounds/3/models"
    assert lay.cam_cache("val") == Workspace(tmp_path).cam_cache("val")  # keyed by model fingerprint: shared by rounds
    assert lay.reviews("val") is None and lay.live_root is None  # verdicts and training curves are round 1's
    assert lay.predict_cache == tmp_path / "data/cache/predict/rounds/3"


def test_params_paths_resolve_against_the_project(tmp_path):
    ws = Workspace(tmp_path)
    assert ws.resolve("data/raw") == tmp_path / "data/raw"
    assert ws.resolve("/abs/x") == Path("/abs/x")
    assert ws.at_round(2).round_data == tmp_path / "data/rounds/2"


# ------------------------------------------------------------------ shared caches in DVC's experiment copies


def _project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dvc.yaml").write_text("stages: {}\n")
    return folder


def test_content_keyed_caches_are_the_parent_projects_inside_a_dvc_experiment_copy(tmp_path, monkeypatch):
    monkeypatch.delenv("IMAGENET_CLEAN_CACHE", raising=False)
    repo = _project(tmp_path / "repo")
    copy = _project(repo / ".dvc/tmp/exps/tmpab12cd")  # where `dvc queue start` runs an experiment
    ws = Workspace(copy)
    assert ws.cam_cache("val") == repo / "data/cache/cams/val"
    assert ws.retrain_cache == repo / "data/cache/retrain"
    # path-keyed caches stay the copy's own: concurrent experiments with other models must not share them
    assert ws.predict_cache == copy / "data/cache/predict"
    assert ws.review_cache("val") == copy / "data/cache/review/val"
    # the workspace itself and any other folder: their own data/cache
    assert Workspace(repo).cam_cache("val") == repo / "data/cache/cams/val"
    assert Workspace(tmp_path / "elsewhere").retrain_cache == tmp_path / "elsewhere/data/cache/retrain"


def test_a_relative_workspace_inside_an_experiment_copy_resolves_from_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("IMAGENET_CLEAN_CACHE", raising=False)
    repo = _project(tmp_path / "repo")
    copy = _project(repo / ".dvc/tmp/exps/tmpab12cd")
    monkeypatch.chdir(copy)  # DVC runs each stage command in the copy: Workspace(Path("."))
    assert Workspace().retrain_cache.resolve() == (repo / "data/cache/retrain").resolve()
    assert Workspace().predict_cache == Path("data/cache/predict")


def test_a_project_in_a_subfolder_maps_to_the_same_subfolder_of_the_parent(tmp_path, monkeypatch):
    monkeypatch.delenv("IMAGENET_CLEAN_CACHE", raising=False)
    repo = tmp_path / "repo"
    parent = _project(repo / "projects/digits")
    copy = _project(repo / ".dvc/tmp/exps/tmp1/projects/digits")
    assert dvc_experiment_parent(copy) == parent
    # a copy whose parent folder is gone (or not a project) keeps its own caches
    orphan = _project(repo / ".dvc/tmp/exps/tmp2/other")
    assert dvc_experiment_parent(orphan) is None
    assert Workspace(orphan).cam_cache("v2") == orphan / "data/cache/cams/v2"


def test_imagenet_clean_cache_names_the_shared_cache_folder(tmp_path, monkeypatch):
    repo = _project(tmp_path / "repo")
    copy = _project(repo / ".dvc/tmp/exps/tmpab12cd")
    monkeypatch.setenv("IMAGENET_CLEAN_CACHE", str(tmp_path / "shared"))
    assert Workspace(copy).cam_cache("val") == tmp_path / "shared/cams/val"
    monkeypatch.setenv("IMAGENET_CLEAN_CACHE", "data/cache")  # relative: the project's own (the behaviour before)
    assert Workspace(copy).retrain_cache == copy / "data/cache/retrain"
    assert shared_cache_root(copy) == copy / "data/cache"
