// The page: bundle loading (with its verification vectors), zero-shot classification of a picked or dropped
// photo, text search over a set of photos, and the benchmark mode. All model work goes through window.mc2.

import { mc2 } from "./mc2/api.js";
import { indexFiles, openLibrary } from "./mc2/library.js";
import { parseLabels } from "./mc2/zeroshot.js";

const $ = (id) => document.getElementById(id);
// photos: the persistent index of the loaded bundle (mc2/library.js); urls: thumbnails of this session's files
const state = { busy: false, photos: null, urls: new Map(), lastBenchmark: null };
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
    state.photos?.journal.close();
    state.photos = null;
    try {
      state.photos = await openLibrary(info, async (msg) => confirm(`${msg}.\nStart a new photo index for this model?`));
    } catch (e) {
      setError(`Photo index: ${e.message || e}`);
    }
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
  $("index-info").textContent = `Index: ${state.photos ? state.photos.index.size : 0} photos${extra}`;
}

async function addPhotos(files) {
  if (!state.photos) return renderIndexInfo(": load a bundle first");
  for (const f of files) state.urls.set(f.name, URL.createObjectURL(f));
  const info = mc2.info();
  const r = await indexFiles(state.photos, files, { resolution: info.resolution,
    embed: (rgba, w, h) => mc2.embedImage(rgba, w, h),
    onProgress: (done, total) => renderIndexInfo(` (indexing ${done} / ${total})`) });
  renderIndexInfo(` (${r.added} new, ${r.unchanged} already indexed` + (r.skipped ? `, ${r.skipped} unreadable` : "") + ")");
}

async function search(query) {
  if (!state.photos || !state.photos.index.size) {
    renderIndexInfo(": add photos first");
    return;
  }
  const hits = state.photos.index.search(await mc2.embedText(query), 24)
    .map(({ key, score }) => ({ name: key, url: state.urls.get(key) || null, score }));
  state.lastSearch = hits.map(({ name, score }) => ({ name, score }));
  $("hits").replaceChildren(...hits.map((h) => {
    const f = document.createElement("figure");
    f.innerHTML = `<img alt=""><figcaption></figcaption>`;
    if (h.url) f.querySelector("img").src = h.url;  // files of an earlier visit: name only (the page keeps no copies)
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
