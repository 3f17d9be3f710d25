// imagenet-clean review: keyboard-driven verdicts on a split's changes (server-side paging).
"use strict";
(function () {
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const PAGE = 50;
  // mode "changes": the list holds the split's changes; "pairs": the duplicate pairs of one split pair (f-dup),
  // where a pair's copy that is a change opens its page (view "change") and the verdict keys act on it
  const state = { meta: null, offset: 0, total: 0, rows: [], cur: -1, detail: null, undo: [], queue: Promise.resolve(),
                  mode: "changes", view: "change", set: [] };
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
    state.mode = $("f-dup").value ? "pairs" : "changes";
    if (state.mode === "pairs") return loadPairs(offset, pick);
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

  async function loadPairs(offset, pick) {
    const page = await getJSON("api/duplicates?" + q({ pair: $("f-dup").value, offset, limit: PAGE }));
    state.offset = page.offset; state.total = page.total; state.rows = page.rows;
    renderList();
    $("page-info").textContent = page.total ? `${page.offset + 1}-${page.offset + page.rows.length} of ${page.total} pairs` : "no pairs";
    if (page.rows.length) await select(pick === "last" ? page.rows.length - 1 : 0);
    else { state.cur = -1; $("change").replaceChildren(el("p", { class: "hint" }, "No duplicate pair in " + $("f-dup").value + ".")); }
  }

  function renderList() {
    if (state.mode === "pairs") {
      $("rows").replaceChildren(...state.rows.map((r, i) => el("li", {
        class: i === state.cur ? "current" : "", "data-index": r.index, onclick: () => select(i) },
        el("span", { class: "badge " + r.kind }, r.kind), r.leakage ? el("span", { class: "badge leakage" }, "leakage") : "",
        `${r.a.sample_id} \u2194 ${r.b.sample_id}`)));
      return;
    }
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
    if (state.mode === "pairs") { renderPair(state.rows[i]); return; }
    await openChange(state.rows[i].sample_id);
  }

  async function openChange(sampleId) {
    const d = await getJSON("api/change?" + q({ id: sampleId }));
    state.detail = d; state.view = "change";
    renderDetail(d);
  }

  // ------------------------------------------------------------ a duplicate pair, side by side
  function copyFigure(c, id) {
    const label = [c.split, c.sample_id, c.action ? `(${c.action})` : ""].join(" ");
    return el("figure", { id },
      el("img", { src: "image?" + q({ split: c.split, id: c.sample_id }), alt: c.sample_id, title: c.sample_id }),
      el("figcaption", {}, label, " ", c.change ? el("button", { onclick: () => run(() => openChange(c.sample_id)) }, "review this change") : ""));
  }

  function renderPair(r) {
    state.view = "pair"; state.detail = null;
    document.body.dataset.current = `${r.a.split}:${r.a.sample_id}|${r.b.split}:${r.b.sample_id}`;
    $("change").replaceChildren(
      el("h2", {}, el("span", { class: "badge " + r.kind }, r.kind), " ",
        r.leakage ? el("span", { class: "badge leakage" }, "leakage") : "", ` duplicate pair ${r.pair}`),
      el("p", { class: "reason", id: "pair-reason" }, r.reason),
      el("p", {}, `distance ${r.distance.toFixed(4)} (cosine distance of the pooled features; 0 for an exact copy)`),
      el("div", { class: "pair" }, copyFigure(r.a, "copy-a"), copyFigure(r.b, "copy-b")),
      el("p", { class: "hint" }, "A pair takes no verdict; open a copy that is a change to judge it."));
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
      ? el("span", { class: "v-" + v.verdict }, `verdict: ${v.verdict}${v.wnid ? " -> " + v.wnid : ""}${v.wnids ? " -> " + JSON.parse(v.wnids).join(", ") : ""} (${v.reviewer || "?"})`)
      : "not reviewed");
    const proposed = d.action === "fix" ? clsText(d.new) : d.action === "remove" ? "remove the image"
      : d.action === "relabel_set" ? "label set: " + (d.labels || []).map(clsText).join(", ")
      : d.audit ? "keep (audit sample of kept images: accept if the label is right, else relabel)" : "keep (exempted by the CAMs)";
    const classes = el("div", { class: "classes" },
      el("h3", {}, "given: ", clsText(d.label)), examples(d.examples.label),
      el("h3", {}, "proposed: ", proposed), d.action === "fix" ? examples(d.examples.new) : "");
    const rules = el("table", {}, el("tr", {}, el("th", {}, "rules"), el("td", {}, d.rules.join(", "))),
      el("tr", {}, el("th", {}, "flagging models"), el("td", {}, d.flagged.length ? `${d.n_flagged}: ` + d.flagged.map((f) => `${f.model} -> ${clsText(f.candidate)}`).join("; ") : "none")),
      el("tr", {}, el("th", {}, "C_s (top-5 misses)"), el("td", {}, String(d.c_s))),
      el("tr", {}, el("th", {}, "CAM scores (share of the box with heat)"), el("td", {}, camText(d.cam_scores) + (d.exempted_by ? `; exempted by ${d.exempted_by}` : ""))),
      d.reason ? el("tr", {}, el("th", {}, "reason"), el("td", { id: "reason" }, d.reason)) : "");
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
      el("h3", {}, "why"), rules, ...setSection(d), ...qualitySection(d), ...duplicateSection(d),
      el("h3", {}, "every model's top-5"), top5,
      el("h3", {}, "CAM heatmaps of the given label (box in red)"), cams);
  }

  // issue 30's evidence: each section only where the project has it
  function setSection(d) {
    if (!d.labels || !d.labels.length) return [];
    const methods = state.meta.cam_methods;
    const box = el("div", { class: "set", id: "label-set" });
    const found = {};  // where each class was found: the windows stage's evidence (review/setwindows.py)
    if (d.set_windows) for (const c of d.set_windows.classes) found[c.index] = c.windows;
    for (const c of d.set_cams) {
      const figs = el("div", { class: "cams" });
      if (d.image_ok && d.set_windows) figs.append(windowFigure(d, c, found[c.index] || []));
      if (d.image_ok && methods.length) {
        for (const m of state.meta.models) figs.append(el("figure", {},
          el("img", { src: "cam?" + q({ id: d.sample_id, model: m, method: methods[0], cls: c.index }), alt: `${methods[0]} ${m} ${c.wnid}`, loading: "lazy" }),
          el("figcaption", {}, `${m} ${methods[0]}`)));
      } else figs.append(el("span", { class: "hint" }, d.image_ok ? "no CAM method configured" : "image file missing"));
      box.append(el("div", { class: "set-class" }, el("h4", {}, clsText(c)), figs));
    }
    const head = el("h3", {}, `label set (${d.labels.length} classes, strongest first): where each was found, a CAM per class`);
    const why = d.set_windows_error ? [el("p", { class: "hint", id: "set-windows-error" }, `windows not shown: ${d.set_windows_error}`)] : [];
    return [head, ...why, box];
  }

  // the image with the windows in which the models found class c (boxes in the image's pixels, drawn in percent)
  function windowFigure(d, c, wins) {
    const w = d.set_windows.width, h = d.set_windows.height;
    const frame = el("div", { class: "win-frame" }, el("img", { src: "image?" + q({ id: d.sample_id, boxes: "0" }), alt: `windows ${c.wnid}` }),
      ...wins.map(([l, t, r, b]) => el("div", { class: "window-box", style:
        `left:${(100 * l / w).toFixed(2)}%;top:${(100 * t / h).toFixed(2)}%;width:${(100 * (r - l) / w).toFixed(2)}%;height:${(100 * (b - t) / h).toFixed(2)}%` })));
    return el("figure", { class: "windows" }, frame, el("figcaption", {}, wins.length ? `found in ${wins.length} window${wins.length > 1 ? "s" : ""}` : "not found in a window"));
  }

  function qualitySection(d) {
    if (!d.quality) return [];
    const fmt = (x) => x === null || x === undefined ? "" : String(x);
    const t = el("table", { id: "quality" }, el("tr", {}, el("th", {}, "measure"), el("th", {}, "value"), el("th", {}, "bounds")),
      ...d.quality.measures.map((m) => el("tr", {}, el("th", {}, m.name),
        el("td", { class: m.beyond ? "beyond" : "" }, m.value === null ? "-" : String(m.value)),
        el("td", {}, m.min === null && m.max === null ? "" : `${fmt(m.min)} .. ${fmt(m.max)}`))));
    const out = [el("h3", {}, "image quality"), t];
    if (d.quality.status && d.quality.status !== "ok") out.push(el("p", { class: "hint" }, `no figures: ${d.quality.reason}`));
    return out;
  }

  function duplicateSection(d) {
    if (!d.duplicates || !d.duplicates.length) return [];
    const box = el("div", { class: "dups", id: "duplicates" }, ...d.duplicates.map((r) => el("figure", {},
      el("img", { src: "image?" + q({ split: r.other.split, id: r.other.sample_id, boxes: "0" }), alt: r.other.sample_id, loading: "lazy" }),
      el("figcaption", {}, el("span", { class: "badge " + r.kind }, r.kind), r.leakage ? el("span", { class: "badge leakage" }, "leakage") : "",
        ` ${r.other.split} ${r.other.sample_id}: ${r.reason}`,
        r.other.change ? el("button", { onclick: () => run(() => openChange(r.other.sample_id)) }, "open") : ""))));
    return [el("h3", {}, `duplicates (${d.duplicates.length})`), box];
  }

  async function post(sampleId, verdict, wnid, wnids) {
    const r = await fetch("api/verdict", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify({ sample_id: sampleId, verdict, wnid: wnid || "", wnids: wnids || [] }) });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || r.statusText);
    showProgress(body.progress);
    return body.verdict;
  }

  async function decide(verdict, wnid, wnids) {
    if (state.mode === "pairs") {  // a verdict on the change a pair opened; the list stays on the pairs
      if (state.view !== "change" || !state.detail) { status("a pair takes no verdict: open a copy that is a change"); return; }
      const d = state.detail;
      try {
        state.undo.push({ mode: "pairs", sample_id: d.sample_id, before: d.verdict });
        await post(d.sample_id, verdict, wnid, wnids);
        status(`${verdict}: ${d.sample_id}`);
        await openChange(d.sample_id);
      } catch (e) { status("refused: " + e.message); }
      return;
    }
    if (state.cur < 0) return;
    try {
      const row = state.rows[state.cur];
      state.undo.push({ index: state.offset + state.cur, sample_id: row.sample_id, before: row.verdict });
      row.verdict = await post(row.sample_id, verdict, wnid, wnids);
      status(`${verdict}${wnid ? " -> " + wnid : ""}${wnids ? " -> " + wnids.join(", ") : ""}: ${row.sample_id}`);
      await next();
    } catch (e) { status("refused: " + e.message); }
  }

  const beforeSet = (b) => b && b.wnids ? JSON.parse(b.wnids) : [];

  async function undo() {
    const u = state.undo.pop();
    if (!u) { status("nothing to undo"); return; }
    try {
      await post(u.sample_id, u.before ? u.before.verdict : null, u.before ? u.before.wnid : "", beforeSet(u.before));
      if (u.mode === "pairs") { if (state.mode === "pairs") await openChange(u.sample_id); status("undone: " + u.sample_id); return; }
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
    if ((state.mode === "changes" && state.cur < 0) || !state.detail) return;
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

  // ------------------------------------------------------------ label-set editor
  function openSetPicker() {
    const d = state.detail;
    if (!d || (state.mode === "changes" && state.cur < 0)) return;
    if (!state.meta.label_sets) { status("label sets are off for this split (label_sets.enabled)"); return; }
    const byWnid = Object.fromEntries(state.meta.classes.map((c) => [c.wnid, c]));
    const given = d.verdict && d.verdict.wnids ? JSON.parse(d.verdict.wnids).map((w) => byWnid[w]).filter(Boolean)
      : d.labels && d.labels.length ? d.labels : [d.label, ...(d.action === "fix" ? [d.new] : [])];
    state.set = given.map((c) => c.wnid);
    $("set-candidates").replaceChildren(...d.candidates.concat(d.label).map((c) => el("span", { onclick: () => addToSet(c.wnid) }, clsText(c))));
    renderSet();
    $("setpicker").hidden = false;
    $("set-search").value = ""; setMatches();
    $("set-search").focus();
  }
  function closeSetPicker() { $("setpicker").hidden = true; $("set-search").blur(); $("set-error").textContent = ""; }
  function renderSet() {
    const byWnid = Object.fromEntries(state.meta.classes.map((c) => [c.wnid, c]));
    $("set-chosen").replaceChildren(...state.set.map((w, i) => el("li", { "data-wnid": w }, clsText(byWnid[w]),
      el("button", { onclick: () => { state.set.splice(i, 1); renderSet(); } }, "remove"))));
  }
  function addToSet(wnid) { if (!state.set.includes(wnid)) state.set.push(wnid); renderSet(); $("set-search").value = ""; setMatches(); $("set-search").focus(); }
  function setMatches() {
    const s = $("set-search").value.trim().toLowerCase();
    const all = s ? state.meta.classes.filter((c) => c.name.toLowerCase().includes(s) || c.wnid.toLowerCase() === s) : [];
    $("set-matches").replaceChildren(...all.slice(0, 20).map((c, i) =>
      el("li", { class: i === 0 ? "first" : "", onclick: () => addToSet(c.wnid) }, clsText(c))));
    return all;
  }
  function saveSet() {
    if (state.set.length < 2) { $("set-error").textContent = "a label set needs at least 2 classes"; return; }
    const wnids = state.set.slice();
    closeSetPicker();
    run(() => decide("relabel_set", "", wnids));
  }
  $("set-search").addEventListener("input", setMatches);
  $("set-save").addEventListener("click", saveSet);
  $("set-search").addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { ev.preventDefault(); closeSetPicker(); return; }
    if (ev.key === "Enter") {
      ev.preventDefault();
      if ($("set-search").value.trim()) { const m = setMatches(); if (m.length) addToSet(m[0].wnid); } else saveSet();
      return;
    }
    if (ev.key === "Backspace" && !$("set-search").value && state.set.length) { ev.preventDefault(); state.set.pop(); renderSet(); }
  });

  document.addEventListener("keydown", (ev) => {
    if (!$("picker").hidden || !$("setpicker").hidden || ev.target.tagName === "SELECT" || ev.target.tagName === "INPUT"
        || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const keys = { a: () => decide("accept"), r: () => decide("reject"), l: openPicker, s: openSetPicker, u: undo,
                   j: next, n: next, ArrowDown: next, k: prev, p: prev, ArrowUp: prev };
    const f = keys[ev.key];
    if (f) { ev.preventDefault(); f === openPicker || f === openSetPicker ? run(async () => f()) : run(f); }
  });

  for (const id of ["f-action", "f-rule", "f-cls", "f-reviewed", "f-sort", "f-dup"]) {
    $(id).addEventListener("change", () => { $(id).blur(); loadPage(0).catch((e) => status(e.message)); });
  }
  $("prev-page").addEventListener("click", () => state.offset > 0 && loadPage(Math.max(0, state.offset - PAGE)));
  $("next-page").addEventListener("click", () => state.offset + PAGE < state.total && loadPage(state.offset + PAGE));

  (async function init() {
    state.meta = await getJSON("api/meta");
    $("f-cls").append(...state.meta.classes.map((c) => el("option", { value: c.wnid }, clsText(c))));
    if (state.meta.duplicates.length) {  // the duplicates stage's pairs of this split (none: no such filter)
      $("f-dup").append(...state.meta.duplicates.map((p) => el("option", { value: p.name },
        `${p.name}${p.leakage ? " (leakage)" : ""}: ${p.exact} exact, ${p.near} near`)));
      $("f-dup-label").hidden = false;
    }
    await loadPage(0);
    document.body.dataset.ready = "1";
  })().catch((e) => status("error: " + e.message));
})();
