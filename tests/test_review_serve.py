"""The review command serves its app with waitress: a real HTTP server, one-line errors for a taken port."""
import socket
import urllib.request

import pytest

from imagenet_clean.review.server import serve_app
from review_browser import review_server
from review_project import make_review_project


def test_the_review_command_serves_with_waitress_and_no_development_server_warning(tmp_path):
    make_review_project(tmp_path)
    with review_server(tmp_path) as url:
        with urllib.request.urlopen(url + "api/meta", timeout=30) as r:
            assert r.status == 200 and r.headers["Server"] == "waitress"
        with urllib.request.urlopen(url, timeout=30) as r:
            assert b"<html" in r.read().lower()
    log = (tmp_path / "review-server.log").read_text()
    assert "development server" not in log.lower() and "reviewing" in log


def test_a_taken_port_is_one_line_error_naming_the_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ValueError, match=rf"^cannot listen on 127.0.0.1:{port}: .*in use"):
            serve_app(lambda environ, start: [], host="127.0.0.1", port=port)
