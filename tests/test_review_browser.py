"""The review app in a real headless Chromium (issue 16): keyboard verdicts, undo, a missing image.

Runs `imagenet-clean review` on the synthetic split of stage_project (no pipeline
run: seconds). Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run``
installs them) and selenium (the dev extra); without them it is skipped. The
same scenario on a real pipeline's outputs, followed by ``dvc repro``, is
``test_pipeline.py::test_review_in_chromium_then_repro_applies_the_verdicts`` (slow).
"""
from __future__ import annotations

import pytest

from imagenet_clean.cleanup.verdicts import read_verdicts
from review_browser import api, browser, press, review_server, review_three_changes, wait
from review_project import make_review_project
from stage_project import WNIDS


def test_keyboard_verdicts_undo_and_a_missing_image_in_chromium(tmp_path):
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.common.by import By

    project = make_review_project(tmp_path)
    tmp = project["tmp"]
    reviews = tmp / "reviews/val.csv"
    with browser() as driver, review_server(tmp) as url:
        done = review_three_changes(driver, url, reviews)
        got = read_verdicts(reviews)
        assert {s: (v.verdict, v.wnid) for s, v in got.items()} == {s: (d["verdict"], d["wnid"]) for s, d in done.items()}
        assert all(v.reviewer == "browser-test" and v.content_hash for v in got.values())
        # the missing image: shown as missing, and the page still works
        rows = api(url, "api/changes?limit=500")["rows"]
        i = [r["sample_id"] for r in rows].index(project["missing"])
        driver.get(url)
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, "body[data-ready='1']"), what="the page")
        for _ in range(i):
            press(driver, "j")
        wait(lambda: driver.find_elements(By.ID, "main-image-missing"), what="the missing image notice")
        assert "missing" in driver.find_element(By.ID, "main-image-missing").text
        press(driver, "r")
        wait(lambda: project["missing"] in read_verdicts(reviews), what="a verdict on the missing image")
        logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]
                and "/cam?" not in e["message"] and "/image?" not in e["message"]]
        assert not logs, logs


def test_the_audit_filter_lists_kept_images_and_records_their_verdicts(tmp_path):
    """``review --audit 5``: the action filter 'audit' lists 5 kept images; a key writes the verdict."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from review_browser import current_id

    project = make_review_project(tmp_path)
    tmp = project["tmp"]
    reviews = tmp / "reviews/val.csv"
    with browser() as driver, review_server(tmp, args=("--audit", "5", "--audit-seed", "3")) as url:
        audit = {r["sample_id"] for r in api(url, "api/changes?action=audit&limit=500")["rows"]}
        assert len(audit) == 5
        driver.get(url)
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, "body[data-ready='1']"), what="the page")
        Select(driver.find_element(By.ID, "f-action")).select_by_value("audit")
        wait(lambda: current_id(driver) in audit, what="an audit image")
        wait(lambda: "audit sample" in driver.find_element(By.ID, "change").text, what="the audit wording")
        sid = current_id(driver)
        press(driver, "a")
        wait(lambda: sid in read_verdicts(reviews), what="the verdict on the audit image")
        assert read_verdicts(reviews)[sid].verdict == "accept"
        wait(lambda: "audit 1 / 5" in driver.find_element(By.ID, "progress").text, what="the audit progress")


def _random_checkpoints(project) -> None:
    """Random-weight checkpoints of the project's three models (full and folds), so that the app renders real CAMs."""
    import yaml

    from imagenet_clean.config import parse_params
    from imagenet_clean.models.factory import build_model, save_checkpoint, trained_checkpoint_path

    tmp = project["tmp"]
    raw = yaml.safe_load((tmp / "params.yaml").read_text())
    raw["quality"] = {"enabled": True, "thresholds": {"contrast": {"min": 0.06}, "entropy": {"min": 3.0}}}
    raw["cam"] = {"methods": ["gradcam"]}
    (tmp / "params.yaml").write_text(yaml.safe_dump(raw))
    params = parse_params(raw)
    import torch

    for name, cfg in params.models.items():
        torch.manual_seed(0)
        model, _ = build_model(cfg, num_classes=8)
        for fold in (-1, 0, 1, 2, 3):
            save_checkpoint(model, trained_checkpoint_path(name, fold=fold, models_dir=tmp / "data/models"))


def _images_loaded(driver, css: str) -> bool:
    from selenium.webdriver.common.by import By

    imgs = driver.find_elements(By.CSS_SELECTOR, css)
    return bool(imgs) and all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                              for i in imgs)


def test_duplicate_pairs_quality_and_a_label_set_with_cams_in_chromium(tmp_path):
    """Issue 30's evidence in the browser: a leakage pair side by side, a label set with a CAM per class (edited
    with the keyboard into a relabel_set verdict), a quality removal with its measures. Screenshots go to
    ``$IMAGENET_CLEAN_SCREENSHOTS`` when set (else the test's folder)."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
    import os
    from pathlib import Path

    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    from review_browser import current_id
    from review_project import add_issue30_evidence

    project = make_review_project(tmp_path)
    ev = add_issue30_evidence(project)
    _random_checkpoints(project)
    tmp = project["tmp"]
    shots = Path(os.environ.get("IMAGENET_CLEAN_SCREENSHOTS") or tmp / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    reviews = tmp / "reviews/val.csv"
    with browser() as driver, review_server(tmp) as url:
        driver.get(url)
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, "body[data-ready='1']"), what="the page")
        # the leakage pair, side by side
        Select(driver.find_element(By.ID, "f-dup")).select_by_value("train-val")
        wait(lambda: driver.find_elements(By.ID, "pair-reason"), what="the pair")
        assert "leakage: the same image in train and val" in driver.find_element(By.ID, "pair-reason").text
        wait(lambda: _images_loaded(driver, ".pair img") and len(driver.find_elements(By.CSS_SELECTOR, ".pair img")) == 2,
             what="both copies")
        a, b = (driver.find_element(By.ID, i).text for i in ("copy-a", "copy-b"))
        assert a.startswith(f"train {ev['leak'][0]}") and b.startswith(f"val {ev['leak'][1]}") and "review this change" in b
        driver.save_screenshot(str(shots / "review-duplicate-pair.png"))
        # the label set: a CAM per class and model
        Select(driver.find_element(By.ID, "f-dup")).select_by_value("")
        Select(driver.find_element(By.ID, "f-action")).select_by_value("relabel_set")
        wait(lambda: current_id(driver) == ev["sets"][1] or (current_id(driver) in ev["sets"] and press(driver, "j")),
             what="the three-class set")
        wait(lambda: current_id(driver) == ev["sets"][1], what="the three-class set")
        wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#label-set img[src^='cam?']")) == 9,
             what="9 CAMs (3 classes x 3 models)")
        wait(lambda: _images_loaded(driver, "#label-set img"), timeout=300, what="every CAM of the set and its windows")
        heads = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#label-set h4")]
        assert heads == [f"class {c} ({WNIDS[c]})" for c in ev["set_labels"][1]]
        # where each class was found: one window each in the fixture's 2 x 2 grid (class 7 is merged away: none)
        frames = driver.find_elements(By.CSS_SELECTOR, "#label-set .win-frame")
        assert [len(f.find_elements(By.CSS_SELECTOR, ".window-box")) for f in frames] == [1, 1, 0]
        img = frames[0].find_element(By.TAG_NAME, "img").rect
        box = frames[0].find_element(By.CSS_SELECTOR, ".window-box").rect
        assert abs(box["width"] - img["width"] / 2) <= 2 and abs(box["x"] - img["x"]) <= 1  # the top-left quarter
        caps = [f.text for f in driver.find_elements(By.CSS_SELECTOR, "#label-set figure.windows figcaption")]
        assert caps == ["found in 1 window", "found in 1 window", "not found in a window"]
        driver.execute_script("document.getElementById('label-set').previousElementSibling.scrollIntoView()")
        driver.save_screenshot(str(shots / "review-label-set.png"))
        # the other set has a near copy: shown on its page
        press(driver, "k")
        wait(lambda: current_id(driver) == ev["sets"][0] and driver.find_elements(By.ID, "duplicates"), what="its duplicates")
        wait(lambda: _images_loaded(driver, "#duplicates img"), what="the copy's thumbnail")
        assert "near copy: cosine distance 0.0123" in driver.find_element(By.ID, "duplicates").text
        press(driver, "j")
        wait(lambda: current_id(driver) == ev["sets"][1], what="back to the three-class set")
        # edit the set: drop the last class, add class 7, save with Enter
        press(driver, "s")
        wait(lambda: driver.find_element(By.ID, "setpicker").is_displayed(), what="the set editor")
        box = driver.find_element(By.ID, "set-search")
        box.send_keys(Keys.BACKSPACE)
        box.send_keys("class 7")
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#set-matches li"), what="a class match")
        box.send_keys(Keys.ENTER)
        box.send_keys(Keys.ENTER)
        sid = ev["sets"][1]
        wait(lambda: sid in read_verdicts(reviews), what="the relabel_set verdict")
        want = tuple(WNIDS[c] for c in ev["set_labels"][1][:2]) + (WNIDS[7],)
        got = read_verdicts(reviews)[sid]
        assert (got.verdict, got.wnids) == ("relabel_set", want)
        # the quality removal: its reason and measures beyond their bounds
        Select(driver.find_element(By.ID, "f-action")).select_by_value("")
        Select(driver.find_element(By.ID, "f-rule")).select_by_visible_text("quality")
        wait(lambda: current_id(driver) == ev["quality"] and driver.find_elements(By.ID, "quality"), what="the quality removal")
        assert driver.find_element(By.ID, "reason").text.startswith("image quality: contrast 0.0312 < min 0.06")
        beyond = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#quality td.beyond")]
        assert beyond == ["0.0312", "2.1"]
        driver.execute_script("document.getElementById('quality').scrollIntoView()")
        driver.save_screenshot(str(shots / "review-quality.png"))
        logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        assert not logs, logs
