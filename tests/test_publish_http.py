"""A release read over HTTP: push to a folder, serve it on loopback, pull and import from it (issue 17).

The publisher pushes to a local folder and records a different read URL, an
HTTP server on 127.0.0.1 (a thread of this test, stopped at the end) serving
that folder, as a public bucket or a Hugging Face dataset repository would. A
fresh clone then has only the HTTP URL (the push URL stays in the publisher's
git-ignored ``.dvc/config.local``) and pulls; another DVC project imports a
split from it with ``dvc import --rev``; the server's log shows the objects
went over HTTP.
"""
from __future__ import annotations

import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imagenet_clean.publish.release import publish
from release_project import dvc, git, lock_outs, make_release_project, md5


class _Recording(SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        _Recording.requests.append(self.path)


@pytest.fixture
def server(tmp_path):
    """``(folder, base URL, requested paths)`` of a loopback HTTP server; shut down after the test."""
    folder = tmp_path / "srv"
    folder.mkdir()
    _Recording.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Recording, directory=str(folder)))
    httpd.timeout = 10
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{httpd.server_address[1]}", _Recording.requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_http_read_url_clone_pulls_and_another_project_imports(server, tmp_path):
    folder, base, requests = server
    project = make_release_project(tmp_path / "p")
    repo = project.repo
    res = publish(repo, str(folder / "store"), read_url=f"{base}/store", name="public", tag="v1")
    assert res.read_url == f"{base}/store" and len(res.files) == 6
    assert f"url = {base}/store" in (repo / ".dvc/config").read_text()
    assert "srv/store" in (repo / ".dvc/config.local").read_text()  # the push URL stays with the publisher
    assert any(p.startswith("/store/files/md5/") for p in requests), "publish checks the read URL serves the push"
    shutil.rmtree(repo / ".dvc" / "cache")  # nothing may come from the publisher's cache
    locked = lock_outs(repo)

    requests.clear()
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo), str(clone), cwd=tmp_path)
    assert not (clone / ".dvc" / "config.local").exists()
    dvc("pull", "clean", cwd=clone)
    for path in ("data/clean/val.parquet", "data/decisions/v2.parquet", "data/changes/val.csv"):
        assert md5(clone / path) == locked[path]
    served = {p.rsplit("/", 2)[-2] + p.rsplit("/", 1)[-1] for p in requests if p.startswith("/store/files/md5/")}
    assert locked["data/clean/val.parquet"] in served

    consumer = tmp_path / "consumer"
    consumer.mkdir()
    git("init", "-q", cwd=consumer)
    dvc("init", "-q", cwd=consumer)
    requests.clear()
    dvc("import", f"file://{repo}", "data/clean/val.parquet", "--rev", "v1", "-o", "imagenet-val.clean.parquet",
        cwd=consumer)
    assert md5(consumer / "imagenet-val.clean.parquet") == locked["data/clean/val.parquet"]
    assert f"/store/files/md5/{locked['data/clean/val.parquet'][:2]}/{locked['data/clean/val.parquet'][2:]}" in requests
    assert "rev: v1" in (consumer / "imagenet-val.clean.parquet.dvc").read_text()
    got = tmp_path / "got.parquet"
    dvc("get", str(repo), "data/decisions/val.parquet", "--rev", "v1", "-o", str(got), cwd=tmp_path)
    assert md5(got) == locked["data/decisions/val.parquet"]
