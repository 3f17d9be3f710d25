"""The review app (issue 16): paging, evidence, images by sample id only, tokens, refusals, concurrent tabs, CAMs."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from imagenet_clean.cleanup.verdicts import read_verdicts
from imagenet_clean.review.data import Filter, ReviewData
from imagenet_clean.review.render import CamRenderer
from imagenet_clean.review.server import create_app
from review_browser import free_port
from review_project import make_review_project
from stage_project import CONS_EXEMPT, CONS_REMOVE, WNIDS

CSRF = "test-csrf-token"
HOST = {"Host": "127.0.0.1:8765"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The synthetic split of stage_project, cleaned, with an image file for every row but one."""
    return make_review_project(tmp_path_factory.mktemp("review"))


@pytest.fixture()
def app(project, tmp_path):
    """A fresh app whose reviews file is in ``tmp_path`` (the project's decisions are shared, read-only)."""
    data = ReviewData(project["tmp"], "val")
    data.reviews = tmp_path / "reviews/val.csv"
    return create_app(data, csrf_token=CSRF, reviewer="tester", now=lambda: "2026-11-30T12:00:00+00:00")


def get(client, url, headers=HOST, **kw):
    return client.get(url, headers=headers, **kw)


def post(client, body, token=CSRF, host=HOST):
    return client.post("/api/verdict", json=body, headers={**host, **({"X-CSRF-Token": token} if token else {})})


def changes_of(dec):
    exempt = dec["rules"].map(lambda r: "cam_exempt" in list(r))
    return dec[(dec["action"] != "keep") | exempt]


# ------------------------------------------------------------------ paging and evidence


def test_pages_filter_and_sort_on_the_server(app, project):
    c = app.test_client()
    want = changes_of(project["dec"])
    first = get(c, "/api/changes?limit=7").get_json()
    assert first["total"] == len(want) and len(first["rows"]) == 7
    assert first["progress"] == {"reviewed": 0, "changes": len(want)}
    ids = []
    for off in range(0, first["total"], 7):  # the pages tile the whole selection, in sort order
        ids += [r["sample_id"] for r in get(c, f"/api/changes?limit=7&offset={off}").get_json()["rows"]]
    assert sorted(ids) == sorted(want["sample_id"]) and len(set(ids)) == len(ids)
    nf = dict(zip(want["sample_id"], want["n_flagged"]))
    assert [nf[s] for s in ids] == sorted((nf[s] for s in ids), reverse=True)

    rem = get(c, "/api/changes?action=remove&limit=500").get_json()
    assert rem["total"] == int((want["action"] == "remove").sum()) and {r["action"] for r in rem["rows"]} == {"remove"}
    ex = get(c, "/api/changes?rule=cam_exempt").get_json()
    assert [r["sample_id"] for r in ex["rows"]] == [project["dec"]["sample_id"][CONS_EXEMPT]]
    assert ex["rows"][0]["action"] == "keep"
    cls = get(c, f"/api/changes?cls={WNIDS[2]}&limit=500").get_json()
    assert cls["total"] > 0 and all(2 in (r["label"]["index"], r["new"]["index"]) for r in cls["rows"])
    by_cs = [r["c_s"] for r in get(c, "/api/changes?sort=c_s&limit=500").get_json()["rows"]]
    assert by_cs == sorted(by_cs)
    # margin: mean over the models of top-1 minus the given label's probability, from the prediction files
    app.config["data"].wait_margins(60)
    rows = get(c, "/api/changes?sort=-margin&limit=500").get_json()["rows"]
    assert sorted(r["sample_id"] for r in rows) == sorted(want["sample_id"])
    from imagenet_clean.predictions import read_predictions

    want_m = {}
    for model in ("a", "b", "c"):
        pr = read_predictions(project["tmp"] / f"data/predictions/val/{model}.parquet")
        row = {sid: i for i, sid in enumerate(pr.sample_ids)}
        for sid, lab in zip(want["sample_id"], want["label"]):
            i = row[sid]
            if pr.status[i] == "ok":
                want_m.setdefault(sid, []).append(pr.probs[i].max() - pr.probs[i, lab])
    got_m = [float(np.mean(want_m.get(r["sample_id"], [0.0]))) for r in rows]
    assert np.all(np.diff(got_m) <= 1e-3), got_m  # descending (float16 probabilities: ties within 1e-3)
    assert len(set(np.round(got_m, 2))) > 3
    for bad in ("action=maybe", "rule=nope", "reviewed=perhaps", "sort=size", "cls=n000", "offset=x"):
        r = get(c, "/api/changes?" + bad)
        assert r.status_code == 400 and r.get_json()["error"], bad


def test_detail_has_every_models_top5_rules_candidates_and_examples(app, project):
    c = app.test_client()
    fix = project["dec"][project["dec"]["action"] == "fix"].iloc[0]
    d = get(c, "/api/change", query_string={"id": fix["sample_id"]}).get_json()
    assert set(d["top5"]) == {"a", "b", "c"}
    for m, t in d["top5"].items():
        assert len(t) == 5 and all(0 <= e["prob"] <= 1 for e in t)
        assert [e["prob"] for e in t] == sorted((e["prob"] for e in t), reverse=True)
    assert [f["model"] for f in d["flagged"]] == list(fix["flagged_models"])
    assert d["new"]["index"] == fix["new_label"] and d["new"]["wnid"] == WNIDS[fix["new_label"]]
    assert {c["index"] for c in d["candidates"]} == set(fix["candidates"])
    assert 1 <= len(d["examples"]["label"]) <= 4 and fix["sample_id"] not in d["examples"]["label"]
    assert d["examples"]["new"] and d["image_ok"] and d["cam_models"] == []  # a fix: no CAM could exempt it
    cons = get(c, "/api/change", query_string={"id": project["dec"]["sample_id"][CONS_REMOVE]}).get_json()
    assert cons["c_s"] >= 2 and "consensus" in cons["rules"] and cons["cam_models"] == ["c"]
    for ex in d["examples"]["label"] + d["examples"]["new"]:
        assert get(c, "/image", query_string={"id": ex}).status_code == 200
    assert get(c, "/api/change", query_string={"id": "nope.JPEG"}).status_code == 404
    page = get(c, "/")
    assert page.status_code == 200 and f'content="{CSRF}"'.encode() in page.data
    assert page.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


# ------------------------------------------------------------------ images by sample id only


def test_images_are_served_by_sample_id_only(app, project):
    c = app.test_client()
    sid = project["dec"].loc[project["dec"]["action"] == "fix", "sample_id"].iloc[0]
    ok = get(c, "/image", query_string={"id": sid})
    assert ok.status_code == 200 and ok.mimetype == "image/png" and ok.data[:4] == b"\x89PNG"
    real = project["tmp"] / "raw/val" / sid
    for bad in ("../../etc/passwd", "/etc/passwd", str(real), "raw/val/" + sid, "../val/" + sid, sid + "/..",
                "%2e%2e/%2e%2e/etc/passwd", "", "nope.JPEG"):
        assert get(c, "/image", query_string={"id": bad}).status_code == 404, bad
    for url in ("/image/../../etc/passwd", "/image//etc/passwd", "/static/../server.py", "/static/index.html",
                "/static/%2e%2e%2fserver.py"):
        assert get(c, url).status_code == 404, url
    assert get(c, "/static/review.js").status_code == 200


def test_a_file_swapped_for_a_link_out_of_the_root_is_not_served(project, tmp_path):
    data = ReviewData(project["tmp"], "val")
    sid = project["dec"].loc[project["dec"]["action"] == "fix", "sample_id"].iloc[1]
    path = project["tmp"] / "raw/val" / sid
    keep = path.read_bytes()
    outside = tmp_path / "secret.png"
    outside.write_bytes(keep)
    path.unlink()
    path.symlink_to(outside)
    try:
        c = create_app(data, csrf_token=CSRF).test_client()
        assert get(c, "/image", query_string={"id": sid}).status_code == 404
        assert get(c, "/api/change", query_string={"id": sid}).get_json()["image_ok"] is False
    finally:
        path.unlink()
        path.write_bytes(keep)


def test_a_missing_image_is_shown_as_missing(app, project):
    c = app.test_client()
    sid = project["missing"]
    d = get(c, "/api/change", query_string={"id": sid})
    assert d.status_code == 200 and d.get_json()["image_ok"] is False
    assert get(c, "/image", query_string={"id": sid}).status_code == 404
    assert post(c, {"sample_id": sid, "verdict": "reject"}).status_code == 200  # it can still be judged


# ------------------------------------------------------------------ tokens and refusals


def test_state_changes_need_the_csrf_token_and_the_right_host(app, project, tmp_path):
    c = app.test_client()
    sid = project["dec"].loc[project["dec"]["action"] == "remove", "sample_id"].iloc[0]
    reviews = tmp_path / "reviews/val.csv"
    assert post(c, {"sample_id": sid, "verdict": "accept"}, token=None).status_code == 403
    assert post(c, {"sample_id": sid, "verdict": "accept"}, token="guess").status_code == 403
    assert post(c, {"sample_id": sid, "verdict": "accept"}, host={"Host": "evil.example:8765"}).status_code == 403
    assert get(c, "/", headers={"Host": "evil.example"}).status_code == 403  # no DNS rebinding
    r = c.post("/api/verdict", data=f"sample_id={sid}&verdict=accept", headers=HOST,
               content_type="application/x-www-form-urlencoded")  # what a cross-site form could send
    assert r.status_code == 403
    assert not reviews.exists()
    r = post(c, {"sample_id": sid, "verdict": "accept"})
    assert r.status_code == 200 and r.get_json()["progress"]["reviewed"] == 1
    v = read_verdicts(reviews)[sid]
    assert (v.verdict, v.reviewer, v.time) == ("accept", "tester", "2026-11-30T12:00:00+00:00")
    assert v.content_hash == project["dec"].set_index("sample_id").loc[sid, "content_hash"]


def test_an_access_token_guards_a_server_off_loopback(project):
    data = ReviewData(project["tmp"], "val")
    c = create_app(data, csrf_token=CSRF, access_token="acc", hosts=None).test_client()
    other = {"Host": "10.1.2.3:8765"}
    assert c.get("/", headers=other).status_code == 403
    assert c.get("/api/meta?token=wrong", headers=other).status_code == 403
    r = c.get("/?token=acc", headers=other)
    assert r.status_code == 200 and "imagenet_clean_review=acc" in r.headers["Set-Cookie"]
    assert "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Strict" in r.headers["Set-Cookie"]
    assert c.get("/api/meta", headers=other).status_code == 200  # the cookie now carries it


def test_refusals_write_nothing(app, project, tmp_path):
    c = app.test_client()
    reviews = tmp_path / "reviews/val.csv"
    dec = project["dec"]
    sid = dec.loc[dec["action"] == "fix", "sample_id"].iloc[0]
    kept = dec.loc[(dec["action"] == "keep") & dec["rules"].map(lambda r: len(r) == 0), "sample_id"].iloc[0]
    unreadable = dec.loc[dec["rules"].map(lambda r: "unreadable" in list(r)), "sample_id"].iloc[0]
    cases = [
        {"sample_id": sid, "verdict": "relabel", "wnid": "n99999999"},  # unknown class
        {"sample_id": sid, "verdict": "relabel"},  # no class
        {"sample_id": "other/split.JPEG", "verdict": "accept"},  # not in the split
        {"sample_id": kept, "verdict": "reject"},  # in the split, but not a change
        {"sample_id": unreadable, "verdict": "accept"},  # nothing to look at
        {"sample_id": sid, "verdict": "delete"},
        {"sample_id": sid, "verdict": 3},
        {"verdict": "accept"},
    ]
    for body in cases:
        r = post(c, body)
        assert r.status_code == 400 and r.get_json()["error"], body
    r = c.post("/api/verdict", data="not json", headers={**HOST, "X-CSRF-Token": CSRF})
    assert r.status_code == 400
    assert not reviews.exists()
    # a reviews file broken by hand while the server runs: pages and verdicts say so, and nothing is written
    reviews.parent.mkdir(parents=True, exist_ok=True)
    reviews.write_text("sample_id,content_hash,verdict,wnid,reviewer,time,note\nx,h,maybe,,,,\n")
    for r in (get(c, "/api/changes"), post(c, {"sample_id": sid, "verdict": "accept"})):
        assert r.status_code == 409 and "line 2" in r.get_json()["error"]
    assert "maybe" in reviews.read_text() and sid not in reviews.read_text()


def test_two_tabs_lose_no_verdict_and_the_last_one_wins(app, project, tmp_path):
    ch = changes_of(project["dec"])
    ids = [s for s, r in zip(ch["sample_id"], ch["rules"]) if "unreadable" not in list(r)]
    unreadable = [s for s in ch["sample_id"] if s not in ids]  # listed, but cannot be judged
    errors = []

    def tab(name, verdict):
        c = app.test_client()
        for s in ids:
            r = post(c, {"sample_id": s, "verdict": verdict})
            if r.status_code != 200:
                errors.append((name, s, r.status_code))

    tabs = [threading.Thread(target=tab, args=(f"tab{k}", v)) for k, v in enumerate(("accept", "reject"))]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join()
    assert not errors
    got = read_verdicts(tmp_path / "reviews/val.csv")
    assert set(got) == set(ids) and {v.verdict for v in got.values()} <= {"accept", "reject"}
    c = app.test_client()
    post(c, {"sample_id": ids[0], "verdict": "relabel", "wnid": WNIDS[3]})
    assert read_verdicts(tmp_path / "reviews/val.csv")[ids[0]].wnid == WNIDS[3]
    post(c, {"sample_id": ids[0], "verdict": None})  # undo to unreviewed
    assert ids[0] not in read_verdicts(tmp_path / "reviews/val.csv")
    page = get(c, "/api/changes?reviewed=no").get_json()
    assert sorted(r["sample_id"] for r in page["rows"]) == sorted([ids[0], *unreadable])
    assert get(c, "/api/changes?reviewed=yes").get_json()["total"] == len(ids) - 1


def test_an_audit_sample_of_kept_images_is_reviewed_into_the_same_file(project, tmp_path):
    """--audit N: N kept images drawn by a seed, listed under the action filter 'audit' only; their verdicts
    go to the reviews file like any other (a relabelled one is an error the machine missed)."""
    dec = project["dec"]
    plain = dec.loc[(dec["action"] == "keep") & dec["rules"].map(lambda r: len(r) == 0), "sample_id"]
    n_changes = len(changes_of(dec))

    def audit_ids(seed):
        data = ReviewData(project["tmp"], "val", audit=12, audit_seed=seed)
        return data, {r["sample_id"] for r in data.page(Filter(action="audit"), 0, 500)["rows"]}

    data, ids = audit_ids(0)
    assert len(ids) == 12 and ids <= set(plain)
    assert audit_ids(0)[1] == ids  # the same seed, the same images (also from the page cache)
    assert audit_ids(1)[1] != ids
    page = data.page(Filter(), 0, 500)
    assert page["total"] == n_changes and not ids & {r["sample_id"] for r in page["rows"]}  # changes only by default
    assert page["progress"] == {"reviewed": 0, "changes": n_changes, "audit": 12, "audit_reviewed": 0}
    data.reviews = tmp_path / "reviews/val.csv"
    app = create_app(data, csrf_token=CSRF, reviewer="tester", now=lambda: "2026-11-30T12:00:00+00:00")
    c = app.test_client()
    sid = sorted(ids)[0]
    d = get(c, "/api/change?" + urllib.parse.urlencode({"id": sid})).get_json()
    assert d["audit"] and d["action"] == "keep" and d["rules"] == [] and len(d["top5"]) == 3
    r = post(c, {"sample_id": sid, "verdict": "relabel", "wnid": WNIDS[5]})
    assert r.status_code == 200 and r.get_json()["progress"]["audit_reviewed"] == 1
    assert read_verdicts(tmp_path / "reviews/val.csv")[sid].wnid == WNIDS[5]
    rows = get(c, "/api/changes?action=audit&reviewed=yes").get_json()["rows"]
    assert [r["sample_id"] for r in rows] == [sid]
    outside = sorted(set(plain) - ids)[0]
    assert post(c, {"sample_id": outside, "verdict": "accept"}).status_code == 400  # a kept image not drawn


# ------------------------------------------------------------------ CAMs on demand


def test_cams_are_computed_on_demand_and_cached(project, tmp_path):
    import timm
    import torch

    loads = []

    def load(name, fold):
        loads.append((name, fold))
        torch.manual_seed(0)
        m = timm.create_model("test_resnet", num_classes=8)
        return m, {**timm.data.resolve_data_config({}, model=m), "input_size": (3, 32, 32)}

    data = ReviewData(project["tmp"], "val")
    cams = CamRenderer(load, tmp_path / "cams")
    c = create_app(data, csrf_token=CSRF, cams=cams, cam_methods=("gradcam", "gradcam++")).test_client()
    sid = project["dec"]["sample_id"][CONS_REMOVE]
    q = {"id": sid, "model": "c", "method": "gradcam"}
    r = get(c, "/cam", query_string=q)
    assert r.status_code == 200 and r.data[:4] == b"\x89PNG"
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(r.data))
    assert min(im.size) >= 256
    assert len(list((tmp_path / "cams").glob("*.png"))) == 1
    assert get(c, "/cam", query_string=q).data == r.data and loads == [("c", 1)]  # cached: no second computation
    assert get(c, "/cam", query_string={**q, "method": "gradcam++"}).status_code == 200 and len(loads) == 1
    for bad in ({**q, "method": "scorecam"}, {**q, "model": "zz"}, {**q, "id": "../x"}):
        assert get(c, "/cam", query_string=bad).status_code == 404, bad


# ------------------------------------------------------------------ the command


def test_review_command_off_loopback_prints_an_access_token(project):
    port = free_port()
    env = {**os.environ, "IMAGENET_CLEAN_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "imagenet_clean", "review", "--split", "val", "--port", str(port),
                             "--host", "0.0.0.0"], cwd=project["tmp"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        for _ in range(50):
            line = proc.stdout.readline()
            if "?token=" in line:
                break
        token = re.search(r"\?token=(\S+)", line).group(1)
        url = f"http://127.0.0.1:{port}/api/meta"
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "?token=" + token, timeout=2).read()
                break
            except urllib.error.HTTPError:
                raise
            except OSError:
                time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=2)
        assert e.value.code == 403
    finally:
        proc.terminate()
        proc.wait(10)
    bad = subprocess.run([sys.executable, "-m", "imagenet_clean", "review", "--split", "nope"], cwd=project["tmp"],
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("imagenet-clean: error: ") and "nope.parquet" in bad.stderr


# ------------------------------------------------------------------ the read-only export


def test_export_writes_self_contained_pages_of_every_change(project, tmp_path, monkeypatch):
    import imagenet_clean.review.export as export

    monkeypatch.setattr(export, "PER_PAGE", 10)
    data = ReviewData(project["tmp"], "val")
    r = export.export_html(data, tmp_path / "report")
    want = changes_of(project["dec"])
    assert r["changes"] == len(want) and r["pages"] == -(-len(want) // 10)
    pages = sorted((tmp_path / "report").glob("page-*.html"))
    assert len(pages) == r["pages"]
    text = "".join(p.read_text() for p in pages)
    for sid in want["sample_id"]:
        assert f"<b>{sid}</b>" in text
    # a thumbnail for every change but the missing file and the row the manifest lists as unreadable
    assert text.count('src="data:image/png;base64,') == len(want) - 2
    assert "image file missing" in text
    assert "/image?" not in text and "http" not in text.replace("http-equiv", "")  # no server, no network
    index = (tmp_path / "report/index.html").read_text()
    assert f"{len(want)} changes" in index and all(p.name in index for p in pages)
    # the command
    res = subprocess.run([sys.executable, "-m", "imagenet_clean", "review", "--split", "val", "--export",
                          str(tmp_path / "cli")], cwd=project["tmp"], capture_output=True, text=True,
                         env={**os.environ, "IMAGENET_CLEAN_PROGRESS": "0"})
    assert res.returncode == 0 and (tmp_path / "cli/index.html").is_file(), res.stderr
