// The page: bundle loading (with its verification vectors), zero-shot classification of a picked or dropped
// photo, text search over a set of photos, and the benchmark mode. All model work goes through window.mc2.

import { mc2 } from "./mc2/api.js";
import { l2normalize, dot, parseLabels, topK } from "./mc2/zeroshot.js";

const $ = (id) => document.getElementById(id);
const state = { busy: false, photos: [], lastBenchmark: null };
globalThis.mc2app = state;  // for tests: the last classification / benchmark

function setError(msg) {
  $("error").hidden = !msg;
  $("error").textContent = msg || "";
}

function showVerify(info) {
  const box = $("verify");
  const v = info.verify;
  box.hidden = !v;
  if (!v) return;
  box.className = `verify ${v.status}`;
  box.textContent = info.verifyLines.join("\n");
  box.dataset.status = v.status;
}

async function load() {
  const url = $("bundle-url").value.trim();
  setError(null);
  $("status").textContent = `Loading ${url} ...`;
  $("load").disabled = true;
  try {
    const info = await mc2.load(url, { backend: $("backend").value, log: (line) => { $("status").textContent = line; } });
    $("status").textContent = info.summary;
    $("status").dataset.loaded = "true";
    showVerify(info);
    state.photos = [];
    renderIndexInfo();
  } catch (e) {
    $("status").textContent = "No usable bundle";
    $("status").dataset.loaded = "false";
    setError(e.message || String(e));
  } finally {
    $("load").disabled = false;
  }
}

// -- classify ------------------------------------------------------------------------------------------------

function drawCrop(crop, r) {
  const canvas = $("crop");
  canvas.width = r;
  canvas.height = r;
  const img = new ImageData(r, r);
  for (let i = 0; i < r * r; i++) img.data.set([crop[i * 3], crop[i * 3 + 1], crop[i * 3 + 2], 255], i * 4);
  canvas.getContext("2d").putImageData(img, 0, 0);
}

async function classifyFile(file) {
  const warn = $("warning");
  warn.hidden = true;
  const parsed = parseLabels($("labels").value);
  if (parsed.error) {
    warn.hidden = false;
    warn.textContent = parsed.error;
    return;
  }
  try {
    const img = await mc2.decodeImage(file);
    const templates = document.querySelector("input[name=templates]:checked").value;
    const res = await mc2.classify(img.rgba, img.width, img.height, parsed.labels, templates);
    drawCrop(res.crop, mc2.info().resolution);
    const ol = $("ranked");
    ol.replaceChildren(...res.ranked.map(({ label, prob }) => {
      const li = document.createElement("li");
      li.dataset.label = label;
      li.innerHTML = `<span class="label"></span> <b>${(prob * 100).toFixed(1)}%</b><div class="bar" style="width:${Math.max(1, prob * 240)}px"></div>`;
      li.querySelector(".label").textContent = label;
      return li;
    }));
    ol.dataset.top = res.ranked[0].label;
    state.lastClassification = { file: file.name, ranked: res.ranked, warning: res.warning, imageMs: res.imageMs };
    if (res.warning) {
      warn.hidden = false;
      warn.textContent = res.warning;
    }
  } catch (e) {
    warn.hidden = false;
    warn.textContent = `Cannot classify this photo: ${e.message || e}`;
  }
}

// -- search --------------------------------------------------------------------------------------------------

function renderIndexInfo(extra = "") {
  $("index-info").textContent = `Index: ${state.photos.length} photos${extra}`;
}

async function addPhotos(files) {
  let done = 0;
  for (const file of files) {
    try {
      const img = await mc2.decodeImage(file);
      const e = l2normalize(await mc2.embedImage(img.rgba, img.width, img.height));
      state.photos.push({ name: file.name, url: URL.createObjectURL(file), embedding: e });
    } catch (err) {
      console.warn(`skipped ${file.name}: ${err.message || err}`);  // an unreadable photo is skipped
    }
    renderIndexInfo(` (indexing ${++done} / ${files.length})`);
  }
  renderIndexInfo();
}

async function search(query) {
  if (!state.photos.length) {
    renderIndexInfo(": add photos first");
    return;
  }
  const q = l2normalize(await mc2.embedText(query));
  const scores = state.photos.map((p) => dot(q, p.embedding));
  const hits = topK(scores, 24).map((i) => ({ name: state.photos[i].name, url: state.photos[i].url, score: scores[i] }));
  state.lastSearch = hits.map(({ name, score }) => ({ name, score }));
  $("hits").replaceChildren(...hits.map((h) => {
    const f = document.createElement("figure");
    f.innerHTML = `<img alt=""><figcaption></figcaption>`;
    f.querySelector("img").src = h.url;
    f.querySelector("figcaption").textContent = `${h.name} ${h.score.toFixed(3)}`;
    return f;
  }));
}

// -- benchmark -----------------------------------------------------------------------------------------------

async function runBenchmark() {
  const log = $("bench-log");
  log.textContent = "";
  $("bench-run").disabled = true;
  try {
    const doc = await mc2.benchmark($("bench-mode").value, {}, (line) => { log.textContent += line + "\n"; });
    state.lastBenchmark = doc;
    const r = doc.results[0];
    log.textContent += `${r.verdict.label}\n` + Object.values(r.towers).map((t) =>
      `${t.tower}: p50 ${t.stats.p50.toFixed(2)} ms, p90 ${t.stats.p90.toFixed(2)} ms (${t.iterations} calls)`).join("\n") +
      `\nverification: ${r.verify.status}\n\n` + JSON.stringify(doc, null, 1);
    const a = $("bench-download");
    a.href = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 1)], { type: "application/json" }));
    a.hidden = false;
  } catch (e) {
    log.textContent += `failed: ${e.message || e}`;
  } finally {
    $("bench-run").disabled = false;
  }
}

// -- wiring --------------------------------------------------------------------------------------------------

for (const b of document.querySelectorAll("nav button")) {
  b.addEventListener("click", () => {
    for (const o of document.querySelectorAll("nav button")) o.classList.toggle("active", o === b);
    for (const s of document.querySelectorAll("section")) s.hidden = s.id !== `tab-${b.dataset.tab}`;
  });
}
$("load-form").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
$("photo").addEventListener("change", (ev) => { if (ev.target.files[0]) classifyFile(ev.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  const f = ev.dataTransfer.files[0];
  if (f) classifyFile(f);
});
$("photos").addEventListener("change", (ev) => addPhotos(Array.from(ev.target.files)));
$("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search($("query").value); });
$("bench-run").addEventListener("click", runBenchmark);

const param = new URLSearchParams(location.search).get("bundle");
if (param !== null) {
  $("bundle-url").value = param;
  load();
}
