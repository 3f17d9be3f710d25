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
