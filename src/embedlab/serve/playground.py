"""The playground page the service shows at ``/``: type a text, see the predicted label, the
top classes with their confidences, the novelty against the out-of-scope threshold and the
nearest stored examples of a served index. One self-contained page (no CDN, no external
file: it works offline); it calls the service's own JSON API and builds the page with
``textContent`` only, so no text from a request or a model is ever read as HTML."""

from __future__ import annotations

__all__ = ["PLAYGROUND_HTML"]

PLAYGROUND_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>embedlab playground</title>
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --accent: #3056d3;
          --bad: #c4320a; --good: #067647; }
  * { box-sizing: border-box; }
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
         margin: 0 auto; max-width: 880px; padding: 24px; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  p.lead { color: var(--muted); margin: 0 0 20px; }
  .row { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 12px; }
  label { font-size: 13px; color: var(--muted); display: flex; flex-direction: column; gap: 4px; }
  select, input, textarea, button { font: inherit; }
  select, input { padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px; }
  textarea { width: 100%; min-height: 70px; padding: 8px; border: 1px solid var(--line);
             border-radius: 6px; resize: vertical; }
  button { background: var(--accent); color: white; border: 0; border-radius: 6px;
           padding: 8px 18px; cursor: pointer; }
  button:disabled { opacity: .6; cursor: wait; }
  .hint { color: var(--muted); font-size: 13px; }
  #error { color: var(--bad); white-space: pre-wrap; margin: 8px 0; }
  section { border-top: 1px solid var(--line); margin-top: 18px; padding-top: 14px; }
  #label { font-size: 24px; font-weight: 600; }
  .badge { display: inline-block; border-radius: 999px; padding: 1px 10px; font-size: 13px;
           margin-left: 8px; vertical-align: middle; }
  .badge.in { background: #ecfdf3; color: var(--good); }
  .badge.out { background: #fef3f2; color: var(--bad); }
  table { border-collapse: collapse; width: 100%; }
  td, th { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line);
           vertical-align: top; }
  th { font-weight: 500; color: var(--muted); font-size: 13px; }
  .bar { background: #eef2ff; border-radius: 3px; height: 10px; min-width: 2px; }
  .bar > div { background: var(--accent); height: 100%; border-radius: 3px; }
  .gauge { position: relative; background: #f2f4f7; height: 14px; border-radius: 7px;
           margin: 6px 0; }
  .gauge > .fill { background: var(--accent); height: 100%; border-radius: 7px; }
  .gauge > .mark { position: absolute; top: -4px; width: 2px; height: 22px;
                   background: var(--bad); }
  .num { font-variant-numeric: tabular-nums; white-space: nowrap; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<h1>embedlab playground</h1>
<p class="lead">Type a text: the served model's label, its top classes, how novel the text
is against the out-of-scope threshold, and the nearest stored examples.</p>

<div class="row">
  <label>Model <select id="model"></select></label>
  <label>Nearest examples from <select id="index"><option value="">(none)</option></select></label>
  <label id="key-box" hidden>API key <input id="key" type="password" autocomplete="off"
    placeholder="elk_..."></label>
</div>
<textarea id="text" placeholder="e.g. wake me up at seven tomorrow"></textarea>
<div class="row" style="margin-top:8px; align-items:center">
  <button id="go">Classify</button><span class="hint">Ctrl+Enter</span>
</div>
<div id="error" role="alert"></div>

<section id="result" hidden>
  <div><span id="label"></span><span id="oos" class="badge"></span></div>
  <div id="levels" class="hint"></div>
  <h3>Top classes</h3>
  <table id="top"><thead><tr><th>class</th><th>confidence</th>
    <th style="width:50%"></th></tr></thead>
  <tbody></tbody></table>
  <h3>Novelty</h3>
  <div class="gauge"><div class="fill" id="novelty-fill"></div>
    <div class="mark" id="novelty-mark"></div></div>
  <div class="hint">novelty <span id="novelty" class="num"></span> &middot; threshold
    <span id="threshold" class="num"></span> (above it: out of scope)</div>
  <div id="why-box" hidden>
    <h3>Why: the concepts behind the label</h3>
    <div id="why-versus" class="hint"></div>
    <table id="why"><thead><tr><th>concept</th><th>contribution</th>
      <th style="width:40%"></th></tr></thead><tbody></tbody></table>
    <h3>What made it unusual</h3>
    <table id="why-novel"><thead><tr><th>concept</th><th>contribution</th>
      <th style="width:40%"></th></tr></thead><tbody></tbody></table>
  </div>
</section>

<section id="neighbours-box" hidden>
  <h3>Nearest examples</h3>
  <table id="neighbours"><thead><tr><th>score</th><th>label</th><th>text</th></tr></thead>
  <tbody></tbody></table>
</section>

<script>
"use strict";
const $ = (id) => document.getElementById(id);

function headers() {
  const h = {"content-type": "application/json"};
  const key = $("key").value.trim();
  if (key) h["authorization"] = "Bearer " + key;
  return h;
}

async function call(method, path, body) {
  const r = await fetch(path, {method, headers: headers(),
                               body: body === undefined ? undefined : JSON.stringify(body)});
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (!r.ok) {
    if (r.status === 401) $("key-box").hidden = false;
    const msg = data && data.error ? data.error.message : ("HTTP " + r.status);
    throw new Error(msg);
  }
  return data;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fmt(x) { return (x === null || x === undefined) ? "\\u2014" : Number(x).toFixed(3); }

async function loadLists() {
  $("error").textContent = "";
  try {
    const models = await call("GET", "/v1/models");
    const sel = $("model");
    sel.replaceChildren();
    for (const m of models.data) {
      if (m.kind === "encoder") continue;
      const o = document.createElement("option");
      o.value = m.id;
      o.dataset.concepts = m.concepts ? "1" : "";
      o.textContent = m.id + " (v" + m.version + ", " + m.classes.length + " classes)";
      sel.appendChild(o);
    }
    const indexes = await call("GET", "/v1/indexes");
    for (const ix of indexes.data) {
      const o = document.createElement("option");
      o.value = ix.id;
      o.textContent = ix.id + " (" + ix.size + " items)";
      $("index").appendChild(o);
    }
    if (indexes.data.length) $("index").value = indexes.data[0].id;
  } catch (e) {
    $("error").textContent = e.message + (
      $("key-box").hidden ? "" : " \\u2014 enter an API key, then press Classify.");
  }
}

function showClassify(res) {
  const row = res.data[0];
  $("label").textContent = row.label;
  const oos = $("oos");
  oos.textContent = row.out_of_scope ? "out of scope" : "in scope";
  oos.className = "badge " + (row.out_of_scope ? "out" : "in");
  $("levels").textContent = row.levels
    ? Object.entries(row.levels).map(([k, v]) => k + ": " + v).join(" \\u203a ") : "";
  const body = $("top").tBodies[0];
  body.replaceChildren();
  for (const t of row.top) {
    const tr = document.createElement("tr");
    cell(tr, t.label);
    cell(tr, fmt(t.confidence), "num");
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = Math.max(0, Math.min(1, t.confidence)) * 100 + "%";
    bar.appendChild(fill);
    cell(tr, "").appendChild(bar);
    body.appendChild(tr);
  }
  $("novelty").textContent = fmt(row.novelty);
  $("threshold").textContent = fmt(res.threshold);
  // the gauge spans 0 .. 2 x threshold (or the novelty's own scale without one)
  const top = res.threshold ? Math.max(2 * Math.abs(res.threshold), Math.abs(row.novelty))
                            : Math.max(1, Math.abs(row.novelty));
  const pos = (v) => Math.max(0, Math.min(1, v / top)) * 100 + "%";
  $("novelty-fill").style.width = pos(row.novelty);
  $("novelty-mark").hidden = !res.threshold;
  if (res.threshold) $("novelty-mark").style.left = pos(res.threshold);
  $("result").hidden = false;
}

function contributions(table, items) {
  const body = table.tBodies[0];
  body.replaceChildren();
  const scale = Math.max(1e-9, ...items.map((c) => Math.abs(c.contribution)));
  for (const c of items) {
    const tr = document.createElement("tr");
    cell(tr, c.name);
    cell(tr, (c.contribution >= 0 ? "+" : "") + fmt(c.contribution), "num");
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.style.width = Math.abs(c.contribution) / scale * 100 + "%";
    if (c.contribution < 0) fill.style.background = "#c0392b";
    bar.appendChild(fill);
    cell(tr, "").appendChild(bar);
    body.appendChild(tr);
  }
}

function showWhy(row) {
  const e = row.explanation;
  $("why-box").hidden = !e;
  if (!e) return;
  $("why-versus").textContent = "margin of " + e.label.class + " over " + e.label.versus +
    ": " + fmt(e.label.margin) + " (not from a concept: " + fmt(e.label.bias) +
    "; left by the dictionary: " + fmt(e.label.residual) + ")";
  contributions($("why"), e.label.concepts);
  contributions($("why-novel"), e.novelty.concepts);
}

function showNeighbours(res) {
  const body = $("neighbours").tBodies[0];
  body.replaceChildren();
  for (const h of res.data[0].hits) {
    const tr = document.createElement("tr");
    cell(tr, fmt(h.score), "num");
    cell(tr, h.label === undefined ? "" : String(h.label));
    cell(tr, h.text === undefined ? h.id : String(h.text));
    body.appendChild(tr);
  }
  $("neighbours-box").hidden = false;
}

async function go() {
  const text = $("text").value;
  $("error").textContent = "";
  if (!text.trim()) { $("error").textContent = "type a text first"; return; }
  if (!$("model").options.length) await loadLists();
  $("go").disabled = true;
  try {
    const model = $("model").value;
    const option = $("model").selectedOptions[0];
    const explain = Boolean(option && option.dataset.concepts);
    const res = await call("POST", "/v1/classify", {model, input: [text], top_k: 5, explain});
    showClassify(res);
    showWhy(res.data[0]);
    const index = $("index").value;
    if (index) {
      showNeighbours(await call("POST", "/v1/search", {index, input: [text], k: 5}));
    } else {
      $("neighbours-box").hidden = true;
    }
  } catch (e) {
    $("error").textContent = e.message;
  } finally {
    $("go").disabled = false;
  }
}

$("go").addEventListener("click", go);
$("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && e.ctrlKey) go(); });
loadLists();
</script>
</body>
</html>
"""
