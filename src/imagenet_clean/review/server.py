"""The review web app (Flask): pages of changes, one change's evidence, images, CAMs, verdicts.

Security (the app serves a dataset and writes a git-tracked file):

* it binds 127.0.0.1 unless told otherwise; any other host needs an access
  token, printed at start, passed once as ``?token=`` (then kept in a cookie);
* requests must name the host the app listens on (no DNS rebinding);
* every state-changing request (``POST /api/verdict``) needs the per-session
  CSRF token that only the app's own page knows (header ``X-CSRF-Token``);
* images are served by sample id from the manifest only (``/image?id=``); an
  id that is not a change or example of the split, a path, ``../``, gets a 404;
  ``/image?split=S&id=`` serves the copies of a duplicate pair the split lists
  (any split's image of a listed pair, from that split's manifest), nothing else;
* a verdict for a sample that is not a change of the split, or a relabel to an
  unknown class, is refused and nothing is written.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Callable

from flask import Flask, Response, abort, jsonify, render_template_string, request

from ..cleanup.verdicts import VerdictError
from ..workspace import Workspace
from .data import Filter, ReviewData, ReviewError
from .render import CamRenderer, image_with_boxes

ACCESS_COOKIE = "imagenet_clean_review"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _static(name: str) -> str:
    return resources.files("imagenet_clean.review").joinpath("static", name).read_text(encoding="utf-8")


def parse_class(data: ReviewData, text: str) -> int:
    """A class index from a wnid, an index or an exact name (-1 for empty).

    Raises:
        ReviewError: no such class.
    """
    text = (text or "").strip()
    if not text:
        return -1
    if text in data.wnid_index:
        return data.wnid_index[text]
    if text.isdigit() and int(text) < len(data.classes):
        return int(text)
    for i, n in enumerate(data.classes.names):
        if n == text:
            return i
    raise ReviewError(f"unknown class {text!r}")


def default_reviewer() -> str:
    """The reviewer name written with each verdict (``$IMAGENET_CLEAN_REVIEWER``, else the login name)."""
    import getpass

    try:
        return os.environ.get("IMAGENET_CLEAN_REVIEWER") or getpass.getuser()
    except (KeyError, OSError):
        return ""


def create_app(data: ReviewData, *, csrf_token: str | None = None, access_token: str | None = None,
               hosts: tuple[str, ...] | None = LOOPBACK, cams: CamRenderer | None = None, cam_methods: tuple[str, ...] = (),
               reviewer: str | None = None, now: Callable[[], str] | None = None) -> Flask:
    """The Flask app over one split's :class:`ReviewData`.

    Args:
        data: The split's changes and verdicts.
        csrf_token: The per-session token state-changing requests must send
            (default: a new random one; the app's page carries it).
        access_token: When set, every request must carry it (``?token=`` once,
            then a cookie): for a server reachable from other machines.
        hosts: Host names requests may address (the ``Host`` header; None: any).
        cams: The CAM renderer (None: no CAM heatmaps).
        cam_methods: The CAM methods to offer.
        reviewer: The name written with each verdict (default: the login name).
        now: The verdict time as ISO 8601 (default: the current UTC time).
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.config["data"] = data
    csrf = csrf_token or secrets.token_urlsafe(32)
    reviewer = default_reviewer() if reviewer is None else reviewer
    now = now or (lambda: datetime.now(timezone.utc).replace(microsecond=0).isoformat())
    page = _static("index.html")

    @app.before_request
    def _guard():
        host = request.host[1:].split("]")[0] if request.host.startswith("[") else request.host.rsplit(":", 1)[0]
        if hosts is not None and host not in hosts:
            abort(403, "unknown host")
        if access_token:
            given = request.args.get("token") or request.cookies.get(ACCESS_COOKIE) or ""
            if not hmac.compare_digest(given, access_token):
                abort(403, "access token required (see the URL the server printed)")
        if request.method not in ("GET", "HEAD"):
            if not hmac.compare_digest(request.headers.get("X-CSRF-Token", ""), csrf):
                abort(403, "missing or wrong CSRF token")

    @app.after_request
    def _headers(resp: Response):
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                                   "frame-ancestors 'none'; form-action 'none'")
        if access_token and request.args.get("token") == access_token:
            resp.set_cookie(ACCESS_COOKIE, access_token, httponly=True, samesite="Strict")
        return resp

    @app.errorhandler(ReviewError)
    def _refused(e: ReviewError):
        return jsonify(error=str(e)), 400

    @app.errorhandler(VerdictError)
    def _bad_file(e: VerdictError):  # the reviews file was edited by hand into something malformed
        return jsonify(error=f"fix the reviews file first: {e}"), 409

    @app.get("/")
    def index():
        return render_template_string(page, csrf=csrf, split=data.split)

    @app.get("/static/<name>")
    def static_file(name: str):
        types = {"review.js": "text/javascript", "review.css": "text/css"}
        if name not in types:
            abort(404)
        return Response(_static(name), mimetype=types[name])

    @app.get("/api/meta")
    def meta():
        return jsonify(split=data.split, models=data.models, cam_methods=list(cam_methods) if cams else [],
                       classes=[{"index": i, "wnid": w, "name": n}
                                for i, (w, n) in enumerate(zip(data.classes.wnids, data.classes.names))],
                       reviewer=reviewer, duplicates=data.duplicates.summary(), label_sets=data.label_sets)

    @app.get("/api/duplicates")
    def duplicates():
        a = request.args
        try:
            offset, limit = int(a.get("offset", 0)), int(a.get("limit", 50))
        except ValueError:
            raise ReviewError("offset and limit must be integers") from None
        return jsonify(data.duplicate_page(a.get("pair", ""), a.get("kind", ""), offset, limit))

    @app.get("/api/changes")
    def changes():
        a = request.args
        f = Filter(action=a.get("action", ""), rule=a.get("rule", ""), cls=parse_class(data, a.get("cls", "")),
                   reviewed=a.get("reviewed", ""), sort=a.get("sort", "-n_flagged"))
        try:
            offset, limit = int(a.get("offset", 0)), int(a.get("limit", 50))
        except ValueError:
            raise ReviewError("offset and limit must be integers") from None
        return jsonify(data.page(f, offset, limit))

    @app.get("/api/change")
    def change():
        sid = request.args.get("id", "")
        if sid not in data.pos:
            abort(404)
        return jsonify(data.detail_of(sid))

    @app.get("/image")
    def image():
        sid, split = request.args.get("id", ""), request.args.get("split", "")
        path = data.image_file(sid) if split in ("", data.split) else None
        if path is not None:
            f, root = data.file(sid), data.root
        elif split:  # a copy of a duplicate pair the split lists (this split's or another's)
            path, f, root = data.duplicates.image_file(split, sid), data.duplicates.file(split, sid), data.duplicates.root(split)
        if path is None:
            abort(404)
        boxes = (f.get("boxes") or []) if request.args.get("boxes", "1") == "1" else []
        try:
            body = image_with_boxes(path, boxes, within=root)
        except ValueError:
            abort(404)
        return Response(body, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/cam")
    def cam():
        sid, model, method, cls = (request.args.get(k, "") for k in ("id", "model", "method", "cls"))
        if cams is None or sid not in data.pos or model not in data.models or method not in cam_methods:
            abort(404)
        if cls and not (cls.isdigit() and int(cls) < len(data.classes)):  # a class of a label set; default: the given label
            abort(404)
        path = data.image_file(sid)
        if path is None:
            abort(404)
        f = data.file(sid)
        try:
            body = cams.render(path, root=data.root, content=f.get("content_hash") or sid, boxes=f.get("boxes") or [],
                               label=int(cls) if cls else int(data.label[data.pos[sid]]), model=model,
                               fold=data.fold_of(model, sid),
                               method=method)
        except (ValueError, OSError) as e:  # an unreadable image, a model without its checkpoint
            return jsonify(error=str(e)), 422
        return Response(body, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/verdict")
    def verdict():
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("sample_id"), str):
            raise ReviewError("expected JSON {sample_id, verdict, wnid, wnids, note}")
        v = body.get("verdict")
        if v is not None and not isinstance(v, str):
            raise ReviewError("verdict must be a string or null")
        if body["sample_id"] not in data.pos:
            raise ReviewError(f"{body['sample_id']!r} is not a change of split {data.split}")
        wnids = body.get("wnids") or []
        if not isinstance(wnids, list) or not all(isinstance(w, str) for w in wnids) or len(wnids) > len(data.classes):
            raise ReviewError("wnids must be a list of class ids")
        got = data.record(body["sample_id"], v, wnid=str(body.get("wnid") or ""), note=str(body.get("note") or ""),
                          reviewer=reviewer, time=now(), wnids=wnids)
        return jsonify(verdict=got.row() if got else None, progress=data.page(Filter(), 0, 1)["progress"])

    return app


def serve(workdir: str | Path, split: str, *, host: str = "127.0.0.1", port: int = 8765, echo=print, audit: int = 0,
          audit_seed: int = 0) -> None:
    """Run the review app until interrupted; prints the URL (with the access token off loopback).

    Raises:
        FileNotFoundError: the split has no decisions or manifest (run ``dvc repro``).
    """
    from ..config import load_params

    workdir = Path(workdir)
    data = ReviewData(workdir, split, background=True, audit=audit, audit_seed=audit_seed)
    cams, methods = None, ()
    params_file = workdir / "params.yaml"
    if params_file.is_file():
        params = load_params(params_file)
        methods = tuple(params.cam.methods)
        if params.quality.enabled:  # the quality rule's bounds, shown beside each measure
            data.quality_bounds = {m: (b.min, b.max) for m, b in params.quality.thresholds.items()}

        def load(name: str, fold: int):
            from ..models.factory import load_trained

            return load_trained(name, params.models[name], num_classes=len(data.classes), fold=fold,
                                models_dir=Workspace(workdir).models)

        cams = CamRenderer(load, Workspace(workdir).review_cache(split))
    access = None if is_loopback(host) else secrets.token_urlsafe(24)
    # bound to every interface: any Host header may reach it, and the access token guards it
    hosts = LOOPBACK if is_loopback(host) else None if host in ("0.0.0.0", "::") else (host, *LOOPBACK)
    app = create_app(data, access_token=access, hosts=hosts, cams=cams, cam_methods=methods)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/" + (f"?token={access}" if access else "")
    n_audit = int(data.audit.sum())
    echo(f"reviewing {len(data.ids) - n_audit} changes of {split}" + (f" and an audit sample of {n_audit} kept images "
         f"(seed {audit_seed}; action filter 'audit')" if n_audit else "") + f"; verdicts go to {data.reviews}")
    if len(data.duplicates):
        leak = sum(p["total"] for p in data.duplicates.summary() if p["leakage"])
        echo(f"{len(data.duplicates)} duplicate pairs with {split} images ({leak} leakage across splits): filter 'duplicates'")
    echo(f"open {url}  (Ctrl-C to stop)")
    serve_app(app, host=host, port=port)


def serve_app(app, *, host: str, port: int, threads: int = 8) -> None:
    """Serve ``app`` with waitress (a production WSGI server, pure Python) until interrupted.

    Raises:
        ValueError: the address cannot be bound (a taken port, an unknown host), in one line.
    """
    from waitress.server import create_server

    try:
        server = create_server(app, host=host, port=port, threads=threads)
    except OSError as e:
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()

