// imagenet-clean review: keyboard-driven verdicts on a split's changes (server-side paging).
"use strict";
(function () {
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const PAGE = 50;
  const state = { meta: null, offset: 0, total: 0, rows: [], cur: -1, detail: null, undo: [], queue: Promise.resolve() };
  // every key's action runs after the previous one finished, so fast typing loses nothing
  const run = (f) => { state.queue = state.queue.then(f).catch((e) => status("error: " + e.message)); return state.queue; };
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const c of kids) if (c !== null && c !== undefined) e.append(c);
    return e;
  };
  const q = (o) => Object.entries(o).map(([k, v]) => encodeURIComponent(k) + "=" + encodeURIComponent(v)).join("&");
  const status = (msg) => { $("status").textContent = msg; };
  const clsText = (c) => c && c.wnid ? `${c.name} (${c.wnid})` : "-";

  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
    return r.json();
  }

  function filters() {
    return { action: $("f-action").value, rule: $("f-rule").value, cls: $("f-cls").value,
             reviewed: $("f-reviewed").value, sort: $("f-sort").value };
  }

  async function loadPage(offset, pick) {
    const page = await getJSON("api/changes?" + q({ ...filters(), offset, limit: PAGE }));
    state.offset = page.offset; state.total = page.total; state.rows = page.rows;
    showProgress(page.progress);
    renderList();
    $("page-info").textContent = page.total ? `${page.offset + 1}-${page.offset + page.rows.length} of ${page.total}` : "no changes";
    if (page.rows.length) await select(pick === "last" ? page.rows.length - 1 : 0);
    else { state.cur = -1; $("change").replaceChildren(el("p", { class: "hint" }, "No change matches the filters.")); }
  }

  function showProgress(p) {
    $("progress").textContent = `reviewed ${p.reviewed} / ${p.changes}` + (p.audit ? `, audit ${p.audit_reviewed} / ${p.audit}` : "");
  }

  function renderList() {
    $("rows").replaceChildren(...state.rows.map((r, i) => el("li", {
      class: i === state.cur ? "current" : "", "data-id": r.sample_id, onclick: () => select(i) },
      el("span", { class: "badge " + r.action }, r.action),
      r.verdict ? el("span", { class: "v-" + r.verdict.verdict }, r.verdict.verdict[0].toUpperCase() + " ") : "",
      r.sample_id)));
  }

  async function select(i) {
    if (i < 0 || i >= state.rows.length) return;
    state.cur = i;
    renderList();
    const li = $("rows").children[i]; if (li) li.scrollIntoView({ block: "nearest" });
    const d = await getJSON("api/change?" + q({ id: state.rows[i].sample_id }));
    state.detail = d;
    renderDetail(d);
  }

  function camText(scores) {
    const parts = Object.entries(scores || {}).map(([m, v]) => typeof v === "object"
      ? `${m}: ` + Object.entries(v).map(([meth, x]) => `${meth} ${Number(x).toFixed(3)}`).join(", ")
      : `${m}: ${v}`);
    return parts.length ? parts.join("; ") : "not computed";
  }

  function examples(ids) {
    return el("div", { class: "examples" }, ...ids.map((s) => el("img", { src: "image?" + q({ id: s, boxes: "0" }), alt: s, title: s, loading: "lazy" })));
  }

  function renderDetail(d) {
    const img = d.image_ok
      ? el("img", { id: "main-image", src: "image?" + q({ id: d.sample_id }), alt: d.sample_id })
      : el("div", { class: "missing", id: "main-image-missing" }, "image file missing");
    const v = d.verdict;
    const verdictNow = el("p", { class: "verdict-now", id: "verdict-now" }, v
      ? el("span", { class: "v-" + v.verdict }, `verdict: ${v.verdict}${v.wnid ? " -> " + v.wnid : ""} (${v.reviewer || "?"})`)
      : "not reviewed");
    const proposed = d.action === "fix" ? clsText(d.new) : d.action === "remove" ? "remove the image"
      : d.audit ? "keep (audit sample of kept images: accept if the label is right, else relabel)" : "keep (exempted by the CAMs)";
    const classes = el("div", { class: "classes" },
      el("h3", {}, "given: ", clsText(d.label)), examples(d.examples.label),
      el("h3", {}, "proposed: ", proposed), d.action === "fix" ? examples(d.examples.new) : "");
    const rules = el("table", {}, el("tr", {}, el("th", {}, "rules"), el("td", {}, d.rules.join(", "))),
      el("tr", {}, el("th", {}, "flagging models"), el("td", {}, d.flagged.length ? `${d.n_flagged}: ` + d.flagged.map((f) => `${f.model} -> ${clsText(f.candidate)}`).join("; ") : "none")),
      el("tr", {}, el("th", {}, "C_s (top-5 misses)"), el("td", {}, String(d.c_s))),
      el("tr", {}, el("th", {}, "CAM scores (share of the box with heat)"), el("td", {}, camText(d.cam_scores) + (d.exempted_by ? `; exempted by ${d.exempted_by}` : ""))));
    const top5 = el("table", { class: "top5" }, el("tr", {}, el("th", {}, "model"), ...[1, 2, 3, 4, 5].map((k) => el("th", {}, "#" + k))),
      ...Object.entries(d.top5).map(([m, t]) => el("tr", {}, el("th", {}, m), ...t.map((e) =>
        el("td", { class: e.class.index === d.label.index ? "hit" : "" }, `${e.class.name} ${(100 * e.prob).toFixed(1)}%`)))));
    const cams = el("div", { class: "cams" });
    if (d.image_ok && d.boxes.length && state.meta.cam_methods.length) {
      for (const m of d.cam_models) for (const meth of state.meta.cam_methods) {
        cams.append(el("figure", {}, el("img", { src: "cam?" + q({ id: d.sample_id, model: m, method: meth }), alt: `${meth} ${m}`, loading: "lazy" }),
          el("figcaption", {}, `${m} ${meth}`)));
      }
      if (!cams.children.length) cams.append(el("p", { class: "hint" }, "no model has the given label in its top-5: no CAM could exempt it"));
    }
    document.body.dataset.current = d.sample_id;
    $("change").replaceChildren(
      el("h2", {}, el("span", { class: "badge " + d.action }, d.action), " ", d.sample_id), verdictNow,
      el("div", { class: "row" }, el("div", { class: "main-image" }, img), classes),
      el("h3", {}, "why"), rules, el("h3", {}, "every model's top-5"), top5,
      el("h3", {}, "CAM heatmaps of the given label (box in red)"), cams);
  }

  async function post(sampleId, verdict, wnid) {
    const r = await fetch("api/verdict", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify({ sample_id: sampleId, verdict, wnid: wnid || "" }) });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || r.statusText);
    showProgress(body.progress);
    return body.verdict;
  }

  async function decide(verdict, wnid) {
    if (state.cur < 0) return;
    try {
      const row = state.rows[state.cur];
      state.undo.push({ index: state.offset + state.cur, sample_id: row.sample_id, before: row.verdict });
      row.verdict = await post(row.sample_id, verdict, wnid);
      status(`${verdict}${wnid ? " -> " + wnid : ""}: ${row.sample_id}`);
      await next();
    } catch (e) { status("refused: " + e.message); }
  }

  async function undo() {
    const u = state.undo.pop();
    if (!u) { status("nothing to undo"); return; }
    try {
      await post(u.sample_id, u.before ? u.before.verdict : null, u.before ? u.before.wnid : "");
      const page = Math.floor(u.index / PAGE) * PAGE;
      if (page !== state.offset) await loadPage(page);
      const i = state.rows.findIndex((r) => r.sample_id === u.sample_id);
      if (i >= 0) { state.rows[i].verdict = u.before; await select(i); }
      status("undone: " + u.sample_id);
    } catch (e) { status("refused: " + e.message); }
  }

  async function next() {
    if (state.cur + 1 < state.rows.length) return select(state.cur + 1);
    if (state.offset + state.rows.length < state.total) return loadPage(state.offset + PAGE);
    renderList(); status("last change");
  }
  async function prev() {
    if (state.cur > 0) return select(state.cur - 1);
    if (state.offset > 0) return loadPage(Math.max(0, state.offset - PAGE), "last");
  }

  // ------------------------------------------------------------ relabel picker
  function openPicker() {
    if (state.cur < 0 || !state.detail) return;
    const cands = state.detail.candidates.filter((c) => c.index !== state.detail.label.index);
    $("picker-candidates").replaceChildren(...cands.slice(0, 9).map((c, i) =>
      el("li", { "data-wnid": c.wnid, onclick: () => pick(c.wnid) }, `${i + 1}. ${clsText(c)}`)));
    $("picker").hidden = false;
    $("picker-search").value = ""; matches();
    $("picker-search").focus();
  }
  function closePicker() { $("picker").hidden = true; $("picker-search").blur(); }
  function matches() {
    const s = $("picker-search").value.trim().toLowerCase();
    const all = s ? state.meta.classes.filter((c) => c.name.toLowerCase().includes(s) || c.wnid.toLowerCase() === s) : [];
    $("picker-matches").replaceChildren(...all.slice(0, 20).map((c, i) =>
      el("li", { class: i === 0 ? "first" : "", onclick: () => pick(c.wnid) }, clsText(c))));
    return all;
  }
  function pick(wnid) { closePicker(); run(() => decide("relabel", wnid)); }
  $("picker-search").addEventListener("input", matches);
  $("picker-search").addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { ev.preventDefault(); closePicker(); return; }
    if (ev.key === "Enter") { ev.preventDefault(); const m = matches(); if (m.length) pick(m[0].wnid); return; }
    if (/^[1-9]$/.test(ev.key) && !$("picker-search").value) {
      ev.preventDefault();
      const li = $("picker-candidates").children[Number(ev.key) - 1];
      if (li) pick(li.dataset.wnid);
    }
  });

  document.addEventListener("keydown", (ev) => {
    if (!$("picker").hidden || ev.target.tagName === "SELECT" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const keys = { a: () => decide("accept"), r: () => decide("reject"), l: openPicker, u: undo,
                   j: next, n: next, ArrowDown: next, k: prev, p: prev, ArrowUp: prev };
    const f = keys[ev.key];
    if (f) { ev.preventDefault(); f === openPicker ? run(async () => openPicker()) : run(f); }
  });

  for (const id of ["f-action", "f-rule", "f-cls", "f-reviewed", "f-sort"]) {
    $(id).addEventListener("change", () => { $(id).blur(); loadPage(0).catch((e) => status(e.message)); });
  }
  $("prev-page").addEventListener("click", () => state.offset > 0 && loadPage(Math.max(0, state.offset - PAGE)));
  $("next-page").addEventListener("click", () => state.offset + PAGE < state.total && loadPage(state.offset + PAGE));

  (async function init() {
    state.meta = await getJSON("api/meta");
    $("f-cls").append(...state.meta.classes.map((c) => el("option", { value: c.wnid }, clsText(c))));
    await loadPage(0);
    document.body.dataset.ready = "1";
  })().catch((e) => status("error: " + e.message));
})();
