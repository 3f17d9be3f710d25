"""Drive ``imagenet-clean review`` in a real headless Chromium (selenium + Debian's chromium-driver).

:func:`browser` starts Chromium, or skips the test when Chromium, its driver
or selenium is missing (``apt-get install chromium chromium-driver``);
:func:`review_server` runs the real command in a subprocess on a free port;
:func:`review_three_changes` accepts, rejects and relabels one change each
with the keyboard (and checks undo), and returns what it decided.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver", "chromium-driver")


def _which(names) -> str | None:
    for n in names:
        p = shutil.which(n) or (f"/usr/bin/{n}" if Path(f"/usr/bin/{n}").is_file() else None)
        if p:
            return p
    return None


@contextlib.contextmanager
def browser(width: int = 1500, height: int = 1100) -> Iterator[object]:
    """A headless Chromium WebDriver; skips when Chromium, chromedriver or selenium is not installed."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    chromium, driver = _which(CHROMIUM), _which(DRIVER)
    if not chromium or not driver:
        pytest.skip("Chromium or chromedriver is not installed (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        yield d
    finally:
        d.quit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def review_server(project: Path, split: str = "val", args: tuple[str, ...] = ()) -> Iterator[str]:
    """``imagenet-clean review --split S --port N [args]`` in ``project``; yields its URL."""
    port = free_port()
    env = {**os.environ, "IMAGENET_CLEAN_PROGRESS": "0", "IMAGENET_CLEAN_REVIEWER": "browser-test",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    log = open(project / "review-server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "imagenet_clean", "review", "--split", split, "--port", str(port), *args],
                            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise AssertionError(f"review server exited: {(project / 'review-server.log').read_text()}")
            try:
                urllib.request.urlopen(url + "api/meta", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("review server did not start within 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def api(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=30) as r:
        return json.loads(r.read())


def wait(cond, timeout: float = 120.0, what: str = "condition"):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def current_id(driver) -> str:
    """The sample id of the change the page shows."""
    return driver.execute_script("return document.body.dataset.current || ''")


def press(driver, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def review_three_changes(driver, url: str, reviews: Path, screenshot: Path | None = None) -> dict[str, dict]:
    """Accept, reject and relabel (by class-name search) the first three changes with the keyboard.

    Also checks that undo withdraws a fourth verdict, and that a filter shows
    the reviewed changes. Returns ``sample_id -> {verdict, wnid, label}``.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from imagenet_clean.cleanup.verdicts import read_verdicts

    driver.get(url)
    wait(lambda: driver.find_elements(By.CSS_SELECTOR, "body[data-ready='1']"), what="the page")
    meta = api(url, "api/meta")
    names = {c["wnid"]: c["name"] for c in meta["classes"]}
    done: dict[str, dict] = {}

    def verdict_on_current(keys: str, verdict: str, wnid: str = "") -> None:
        sid = current_id(driver)
        d = api(url, "api/change?id=" + urllib.parse.quote(sid))
        press(driver, keys)
        if verdict == "relabel":
            wait(lambda: driver.find_element(By.ID, "picker").is_displayed(), what="the class picker")
            target = next(w for w in names if w != d["label"]["wnid"] and w != d["new"]["wnid"])
            box = driver.find_element(By.ID, "picker-search")
            box.send_keys(names[target])
            wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#picker-matches li"), what="a class match")
            box.send_keys(Keys.ENTER)
            wnid = target
        try:
            wait(lambda: sid in read_verdicts(reviews), what=f"the {verdict} of {sid} in {reviews}")
        except AssertionError:
            raise AssertionError(f"no {verdict} of {sid} in {reviews}; the page says "
                                 f"{driver.find_element(By.ID, 'status').text!r}") from None
        wait(lambda: current_id(driver) != sid, what="the next change")
        done[sid] = {"verdict": verdict, "wnid": wnid, "label": d["label"]["wnid"], "action": d["action"]}

    verdict_on_current("a", "accept")
    verdict_on_current("r", "reject")
    verdict_on_current("l", "relabel")
    # a fourth verdict, then undo: the file is back to three
    fourth = current_id(driver)
    press(driver, "a")
    wait(lambda: fourth in read_verdicts(reviews), what="the fourth verdict")
    press(driver, "u")
    wait(lambda: fourth not in read_verdicts(reviews), what="undo")
    wait(lambda: current_id(driver) == fourth, what="undo to return to the change")
    assert "3 /" in driver.find_element(By.ID, "progress").text
    # previous / next by keyboard
    press(driver, "k")
    wait(lambda: current_id(driver) in done, what="previous")
    press(driver, "j")
    wait(lambda: current_id(driver) == fourth, what="next")
    if screenshot is not None:
        take_screenshot(driver, url, screenshot)
    return done


def take_screenshot(driver, url: str, path: Path) -> None:
    """A screenshot of the change with the most CAM heatmaps (all loaded), else the first change."""
    from selenium.webdriver.common.by import By

    page = api(url, "api/changes?limit=500")["rows"]
    best = max(page, key=lambda r: (len(api(url, "api/change?id=" + urllib.parse.quote(r["sample_id"]))["cam_models"]),
                                    r["action"] == "keep"), default=None)
    driver.get(url)
    wait(lambda: driver.find_elements(By.CSS_SELECTOR, "body[data-ready='1']"), what="the page")
    if best is not None:
        i = [r["sample_id"] for r in page].index(best["sample_id"])
        for _ in range(i):
            press(driver, "j")
        wait(lambda: current_id(driver) == best["sample_id"], what="the screenshot's change")

    def loaded():
        imgs = driver.find_elements(By.CSS_SELECTOR, "#change img")
        return imgs and all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                            for i in imgs)

    wait(loaded, timeout=300, what="every image and CAM of the change")
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))



def check_applied(project: Path, done: dict[str, dict], split: str = "val") -> dict:
    """After ``dvc repro``: decisions, clean manifest and metrics/review.json follow the verdicts in ``done``."""
    import pyarrow.parquet as pq

    dec = pq.read_table(project / f"data/decisions/{split}.parquet").to_pandas().set_index("sample_id")
    clean = pq.read_table(project / f"data/clean/{split}.parquet").to_pandas().set_index("sample_id")
    assert "verdict" in dec.columns
    assert set(dec.index[dec["verdict"] != ""]) == set(done)
    for sid, v in done.items():
        d = dec.loc[sid]
        assert d["verdict"] == v["verdict"], sid
        if v["verdict"] == "accept":
            assert d["action"] == v["action"] and "human" not in list(d["rules"])
        elif v["verdict"] == "reject":
            assert d["action"] == "keep" and d["new_label"] == d["label"] and list(d["rules"])[-1] == "human"
            assert sid in clean.index and clean.loc[sid, "orig_wnid"] == v["label"]
            assert clean.loc[sid, "action"] in ("keep", "merge")
        else:
            assert d["action"] == "fix" and list(d["rules"])[-1] == "human"
            assert sid in clean.index and clean.loc[sid, "action"] in ("fix", "fix+merge")
            assert clean.loc[sid, "action"] == "fix+merge" or clean.loc[sid, "wnid"] == v["wnid"]
    review = json.loads((project / "metrics/review.json").read_text())
    s = review["splits"][split]
    assert s["reviewed"] == 3 and s["by_verdict"] == {"accept": 1, "reject": 1, "relabel": 1}
    assert s["stale"] == [] and review["reviewed"] == 3
    fixes = sum(1 for v in done.values() if v["action"] == "fix")
    assert s["by_action"]["fix"]["reviewed"] == fixes
    return review


def review_then_repro(project: Path, screenshot: Path) -> dict:
    """The issue-16 scenario on a pipeline project: three keyboard verdicts in Chromium, then ``dvc repro``.

    Returns ``{"done": verdicts made, "ran": stages dvc ran, "review": metrics/review.json}``.
    """
    from imagenet_clean.cleanup.verdicts import read_verdicts
    from pipeline_project import run, stages_run

    reviews = project / "reviews/val.csv"
    assert read_verdicts(reviews) == {}
    with browser() as driver, review_server(project) as url:
        done = review_three_changes(driver, url, reviews, screenshot)
    import pyarrow.parquet as pq

    manifest = pq.read_table(project / "data/manifests/val.parquet").to_pandas().set_index("sample_id")
    got = read_verdicts(reviews)
    assert set(got) == set(done)
    for sid, v in got.items():  # the file: one row per verdict, the manifest's hash, the reviewer's class
        assert (v.verdict, v.wnid, v.reviewer) == (done[sid]["verdict"], done[sid]["wnid"], "browser-test")
        assert v.content_hash == manifest.loc[sid, "content_hash"] and v.time
    res = run(["dvc", "repro"], project)
    ran, _ = stages_run(res.stdout)
    assert {"clean@val", "review"} <= ran and not {"clean@train", "clean@v2"} & ran, sorted(ran)
    assert not [s for s in ran if s.startswith(("fit@", "predict@", "ingest@", "generate"))], sorted(ran)
    return {"done": done, "ran": ran, "review": check_applied(project, done)}
