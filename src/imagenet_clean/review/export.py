"""A read-only HTML report of a split's changes, for sharing without a server (``imagenet-clean review --export``).

``DIR/index.html`` lists the pages; each ``DIR/page-NNNN.html`` holds up to
:data:`PER_PAGE` changes with the same evidence as the app (image thumbnail
with its boxes, given and proposed class, rules, flagging models and their
candidates, ``C_s``, CAM scores, every model's top-5, the verdict so far), the
thumbnails embedded as PNG data URIs, so that every file is self-contained.
CAM heatmaps are not exported (they are computed on demand by the app).
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from PIL import Image, ImageDraw

from ..constants import MAX_IMAGE_PIXELS
from ..data.images import load_rgb
from ..io import write_text
from .data import Filter, ReviewData

PER_PAGE = 200
THUMB = 128
STYLE = ("body{font:13px system-ui,sans-serif;margin:12px}table{border-collapse:collapse}"
         "td,th{border-bottom:1px solid #ddd;padding:3px 6px;vertical-align:top;text-align:left}"
         "img{image-rendering:pixelated}.fix{color:#2a7}.remove{color:#c33}.keep{color:#57a}")


def thumbnail(path: Path, boxes, *, root: Path) -> str:
    """A data URI of the image at most :data:`THUMB` pixels a side, boxes drawn in red ('' if unreadable)."""
    try:
        img = load_rgb(path, max_pixels=MAX_IMAGE_PIXELS, within=root)
    except (OSError, ValueError):
        return ""
    w, h = img.size
    s = THUMB / max(w, h)
    img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.NEAREST if s > 1 else Image.BILINEAR)
    d = ImageDraw.Draw(img)
    for b in boxes or []:
        d.rectangle([float(v) * s for v in b], outline=(255, 40, 40), width=2)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _cls(c: dict) -> str:
    return html.escape(f"{c['name']} ({c['wnid']})") if c.get("wnid") else "-"


def _row(data: ReviewData, sid: str) -> str:
    d = data.detail_of(sid)
    e = html.escape
    path = data.image_file(sid)
    uri = thumbnail(path, d["boxes"], root=data.root) if path is not None else ""
    img = f'<img src="{uri}" alt="{e(sid)}">' if uri else "<em>image file missing</em>"
    proposed = (_cls(d["new"]) if d["action"] == "fix" else "remove" if d["action"] == "remove"
                else "label set: " + ", ".join(_cls(c) for c in d.get("labels") or []) if d["action"] == "relabel_set"
                else "keep (CAM exemption)")
    flagged = "; ".join(f"{e(f['model'])} &rarr; {_cls(f['candidate'])}" for f in d["flagged"]) or "none"
    cams = "; ".join(f"{e(m)}: " + ", ".join(f"{e(k)} {v:.3f}" for k, v in s.items()) if isinstance(s, dict) else
                     f"{e(m)}: {e(str(s))}" for m, s in d["cam_scores"].items()) or "not computed"
    top5 = "<br>".join(f"{e(m)}: " + ", ".join(f"{e(t['class']['name'])} {100 * t['prob']:.1f}%" for t in ts)
                       for m, ts in d["top5"].items())
    v = d["verdict"]
    verdict = e(f"{v['verdict']}{' -> ' + v['wnid'] if v['wnid'] else ''}{' -> ' + v['wnids'] if v.get('wnids') else ''} "
                f"({v['reviewer']})") if v else "not reviewed"
    extra = f"<br>reason: {e(d['reason'])}" if d.get("reason") else ""  # issue 30's evidence, where the project has it
    if d.get("quality"):
        extra += "<br>quality: " + ", ".join(f"{e(m['name'])} {m['value']}" + (" (beyond)" if m["beyond"] else "")
                                             for m in d["quality"]["measures"] if m["value"] is not None)
    for r in d.get("duplicates") or []:
        extra += f"<br>{e(r['kind'])} copy: {e(r['other']['split'])} {e(r['other']['sample_id'])} ({e(r['reason'])})"
    return (f'<tr><td>{img}</td><td><b>{e(sid)}</b><br><span class="{e(d["action"])}">{e(d["action"])}</span>'
            f"<br>given: {_cls(d['label'])}<br>proposed: {proposed}<br>verdict: {verdict}</td>"
            f"<td>rules: {e(', '.join(d['rules']))}<br>flagging models ({d['n_flagged']}): {flagged}"
            f"<br>C_s: {d['c_s']}<br>CAM scores: {cams}{'; exempted by ' + e(d['exempted_by']) if d['exempted_by'] else ''}"
            f"{extra}</td><td>{top5}</td></tr>")


def export_html(data: ReviewData, out: str | Path, *, f: Filter = Filter(sort="sample_id")) -> dict:
    """Write the report of ``data``'s changes (those passing ``f``) to the folder ``out``.

    Returns:
        ``{"changes": n, "pages": p, "index": path of index.html}``.
    """
    out = Path(out)
    sel = data.select(f)
    ids = data.ids[sel]
    pages = max(1, -(-len(ids) // PER_PAGE))
    title = html.escape(f"imagenet-clean: changes of {data.split}")
    links = []
    for p in range(pages):
        chunk = ids[p * PER_PAGE:(p + 1) * PER_PAGE]
        name = f"page-{p + 1:04d}.html"
        rows = "\n".join(_row(data, str(s)) for s in chunk)
        nav = (f'<a href="index.html">index</a> &middot; page {p + 1} of {pages}'
               + (f' &middot; <a href="page-{p:04d}.html">previous</a>' if p else "")
               + (f' &middot; <a href="page-{p + 2:04d}.html">next</a>' if p + 1 < pages else ""))
        write_text(out / name, f"<!doctype html><meta charset=utf-8><title>{title}, page {p + 1}</title>"
                               f"<style>{STYLE}</style><p>{nav}</p><table><tr><th>image</th><th>change</th>"
                               f"<th>why</th><th>every model's top-5</th></tr>\n{rows}\n</table><p>{nav}</p>\n")
        first, last = (html.escape(str(chunk[0])), html.escape(str(chunk[-1]))) if len(chunk) else ("", "")
        links.append(f'<li><a href="{name}">page {p + 1}</a>: {len(chunk)} changes, {first} &hellip; {last}</li>')
    reviewed = int(data.reviewed_mask()[sel].sum()) if len(sel) else 0
    write_text(out / "index.html", f"<!doctype html><meta charset=utf-8><title>{title}</title><style>{STYLE}</style>"
                                   f"<h1>{title}</h1><p>{len(ids)} changes, {reviewed} reviewed.</p>"
                                   f"<ol>{''.join(links)}</ol>\n")
    return {"changes": int(len(ids)), "pages": pages, "index": str(out / "index.html")}
