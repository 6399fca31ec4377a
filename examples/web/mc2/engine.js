// An mc2export ONNX bundle loaded in onnxruntime-web: config, tokenizer, the two towers, the verification
// vectors. This is what `window.mc2` (api.js) and the page (app.js) use.
//
// Backends: WebAssembly with SIMD (always; onnxruntime-web ships SIMD builds only), multi-threaded when the
// page is cross-origin isolated (COOP/COEP headers: SharedArrayBuffer), else one thread; WebGPU when the
// browser offers an adapter (then the WebGPU build of onnxruntime-web, with WASM as fallback for nodes
// WebGPU does not take). `backend: "wasm"` forces WebAssembly.

import { BundleError, checkConfigSha256, checkNames, CONFIG_SHA256, parseConfig, sha256Hex, summary } from "./config.js";
import { applyOrientation, readOrientation, resizeCrop, toCHW } from "./preprocess.js";
import { ClipTokenizer } from "./tokenizer.js";
import { runVerify } from "./verify.js";
import * as zs from "./zeroshot.js";

export const ORT_VERSION = "1.31.1";  // = package.json (checked by the tests)
const DIST = new URL("../node_modules/onnxruntime-web/dist/", import.meta.url);

let ortPromise = null;

/** Import onnxruntime-web once per page: { ort, backend: "webgpu" | "wasm", threads }. */
export async function loadOrt(prefer = "auto") {
  if (!ortPromise) {
    ortPromise = (async () => {
      let gpu = false;
      if (prefer !== "wasm" && globalThis.navigator?.gpu) {
        try {
          gpu = !!(await navigator.gpu.requestAdapter());
        } catch (e) {
          gpu = false;
        }
      }
      let ort;
      try {
        ort = await import(new URL(gpu ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs", DIST).href);
      } catch (e) {
        throw new Error("cannot load onnxruntime-web from node_modules/ (run `npm ci` in examples/web): " + e.message);
      }
      const threads = globalThis.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
      ort.env.wasm.numThreads = threads;
      ort.env.wasm.wasmPaths = DIST.href;
      ort.env.logLevel = "error";
      return { ort, backend: gpu ? "webgpu" : "wasm", threads };
    })();
  }
  return ortPromise;
}

async function fetchOk(url, what) {
  let r;
  try {
    r = await fetch(url);
  } catch (e) {
    throw new BundleError(`cannot fetch ${what} (${url}): ${e.message}`);
  }
  if (!r.ok) throw new BundleError(`the bundle lacks ${what} (${url}: HTTP ${r.status}): copy the whole bundle folder`);
  return r;
}

export class Engine {
  /** Load a bundle from a URL (a folder served over HTTP: config.json, vocab.json, merges.txt, *.onnx, verify/). */
  static async load(bundleUrl, { backend = "auto", verify = true, log = () => {} } = {}) {
    const base = new URL(bundleUrl.endsWith("/") ? bundleUrl : bundleUrl + "/", location.href);
    const e = new Engine();
    e.url = base.href;
    e.log = log;
    log(`reading ${base.href}config.json`);
    // config.json's bytes read once: parsed (R0, R2, R5), then hashed against config.json.sha256 (R1)
    const cfgBytes = new Uint8Array(await (await fetchOk(new URL("config.json", base), "config.json")).arrayBuffer());
    e.cfg = parseConfig(new TextDecoder().decode(cfgBytes));
    e.configSha256 = await sha256Hex(cfgBytes);  // names this bundle in the photo index's header
    const shaResp = await fetch(new URL(CONFIG_SHA256, base)).catch(() => null);
    await checkConfigSha256(cfgBytes, shaResp && shaResp.ok ? await shaResp.text() : null);
    e.tokenizer = null;
    if (e.cfg.textModel) {
      const [v, m] = await Promise.all([
        fetchOk(new URL(e.cfg.vocabFile, base), e.cfg.vocabFile).then((r) => r.text()),
        fetchOk(new URL(e.cfg.mergesFile, base), e.cfg.mergesFile).then((r) => r.text()),
      ]);
      try {
        e.tokenizer = ClipTokenizer.fromFiles(v, m, e.cfg.contextLength);
      } catch (err) {
        throw new BundleError(`tokenizer files: ${err.message}`);
      }
    }
    const { ort, backend: be, threads } = await loadOrt(backend);
    e.ort = ort;
    e.backend = backend === "wasm" ? "wasm" : be;
    e.threads = threads;
    e.sessions = {};
    e.loadMs = {};
    for (const tower of ["image", "text"]) {
      const file = tower === "image" ? e.cfg.imageModel : e.cfg.textModel;
      if (!file) continue;
      log(`loading ${file} (${e.backend}, ${threads} thread${threads > 1 ? "s" : ""})`);
      const bytes = new Uint8Array(await (await fetchOk(new URL(file, base), file)).arrayBuffer());
      const t0 = performance.now();
      try {
        e.sessions[tower] = await ort.InferenceSession.create(bytes, {
          executionProviders: e.backend === "webgpu" ? ["webgpu", "wasm"] : ["wasm"],
          graphOptimizationLevel: "all",
        });
      } catch (err) {
        throw new BundleError(`onnxruntime-web ${ORT_VERSION} cannot load ${file}: ${err.message || err} ` +
          `(exported with onnx ${e.cfg.versions.onnx ?? "?"}, onnxruntime ${e.cfg.versions.onnxruntime ?? "?"})`);
      }
      e.loadMs[tower] = performance.now() - t0;
      const io = e.cfg.io[tower];  // R6: the session feeds by name: its names must be config.json's
      checkNames(tower, "inputs", io?.inputs, e.sessions[tower].inputNames);
      checkNames(tower, "outputs", io?.outputs, e.sessions[tower].outputNames);
    }
    e.promptCache = new Map();
    e.verify = null;
    if (verify) {
      log("running the bundle's verification vectors (verify/)");
      e.verify = await e.runVerify();
    }
    return e;
  }

  get summary() {
    return `${summary(this.cfg)} - onnxruntime-web ${ORT_VERSION} ${this.backend}, ${this.threads} thread${this.threads > 1 ? "s" : ""}`;
  }

  /** Fetch a bundle file: ArrayBuffer, or null when absent and optional. */
  async fetchBytes(rel, { optional = false } = {}) {
    const url = new URL(rel, this.url);
    const r = await fetch(url);
    if (r.status === 404 && optional) return null;
    if (!r.ok) throw new BundleError(`cannot read ${rel} (HTTP ${r.status})`);
    return r.arrayBuffer();
  }

  runVerify() {
    return runVerify({
      cfg: this.cfg, fetchBytes: (rel, opts) => this.fetchBytes(rel, opts), log: this.log,
      runImage: (chw) => this.runImage(chw), runText: (row) => this.runText(row),
      toModelInput: (crop) => this.modelInput(crop),
    });
  }

  // -- the towers on model inputs ------------------------------------------------------------------------

  requireTower(tower) {
    const s = this.sessions[tower];
    if (!s) throw new BundleError(`this bundle has no ${tower} model (exported with --towers ${tower === "image" ? "text" : "image"})`);
    return s;
  }

  /** The image input tensor for a prepared float32 NCHW array (built once, reused by the benchmark). */
  imageFeeds(chw) {
    const s = this.requireTower("image");
    const R = this.cfg.resolution;
    return { [s.inputNames[0]]: new this.ort.Tensor("float32", chw, [1, 3, R, R]) };
  }

  textFeeds(row) {
    const s = this.requireTower("text");
    return { [s.inputNames[0]]: new this.ort.Tensor("int32", Int32Array.from(row), [1, row.length]) };
  }

  async run(tower, feeds) {
    const s = this.requireTower(tower);
    const out = await s.run(feeds);
    const t = out.embedding ?? out[s.outputNames[0]];
    return new Float32Array(t.data);
  }

  runImage(chw) {
    return this.run("image", this.imageFeeds(chw));
  }

  runText(row) {
    return this.run("text", this.textFeeds(row));
  }

  // -- app-level operations --------------------------------------------------------------------------------

  /** The model input (float32 [3*R*R], NCHW) of an R x R x 3 crop, as the bundle's input contract says. */
  modelInput(crop) {
    const c = this.cfg;
    return c.normalizeInput ? toCHW(crop, c.resolution, c.mean, c.std) : toCHW(crop, c.resolution);
  }

  /** The R x R x 3 crop (HWC RGB bytes) of upright RGBA pixels: what the model sees. */
  crop(rgba, width, height) {
    let hasAlpha = false;
    for (let i = 3; i < rgba.length; i += 4) if (rgba[i] !== 255) { hasAlpha = true; break; }
    return resizeCrop(rgba, width, height, this.cfg.resolution, this.cfg.interpolation, hasAlpha);
  }

  preprocess(rgba, width, height) {
    return this.modelInput(this.crop(rgba, width, height));
  }

  embedImage(rgba, width, height) {
    return this.runImage(this.preprocess(rgba, width, height));
  }

  requireTokenizer() {
    if (!this.tokenizer) throw new BundleError("this bundle has no text model (exported with --towers image)");
    return this.tokenizer;
  }

  tokenize(text) {
    return this.requireTokenizer().tokenize(text);
  }

  embedText(text) {
    return this.runText(this.tokenize(text).row);
  }

  /** Class embeddings for labels (prompt ensemble), cached per prompt: { classes, warning }. */
  async prepareLabels(labels, templates) {
    const ps = zs.prompts(labels, templates, this.requireTokenizer());
    const byLabel = new Map(labels.map((l) => [l, []]));
    for (const p of ps) {
      let e = this.promptCache.get(p.text);
      if (!e) {
        e = zs.l2normalize(await this.runText(p.tokens.row));
        this.promptCache.set(p.text, e);
      }
      byLabel.get(p.label).push(e);
    }
    return { classes: labels.map((l) => zs.classEmbedding(byLabel.get(l))),
      warning: zs.truncationWarning(ps, this.cfg.contextLength) };
  }

  /** Zero-shot classification of upright RGBA pixels: { ranked: [{label, prob}], crop, warning, imageMs }. */
  async classify(rgba, width, height, labels, templates, k = 5) {
    const { classes, warning } = await this.prepareLabels(labels, templates);
    const crop = this.crop(rgba, width, height);
    const t0 = performance.now();
    const e = await this.runImage(this.modelInput(crop));
    const imageMs = performance.now() - t0;
    const p = zs.probabilities(e, classes, this.cfg.logitScale);
    return { ranked: zs.topK(p, k).map((i) => ({ label: labels[i], prob: p[i] })), probs: p, crop, warning, imageMs };
  }

  release() {
    for (const s of Object.values(this.sessions || {})) s.release?.();
    this.sessions = {};
  }
}

/**
 * Decode an image file (Blob / File / ArrayBuffer / Uint8Array) to upright RGBA pixels: { rgba, width, height,
 * orientation }. The browser's decoder applies the EXIF orientation (createImageBitmap "from-image", checked by
 * the tests against PIL's exif_transpose); colour management and alpha premultiplication are switched off.
 * Decoding is where browsers and PIL can differ (JPEG decoders by a level or two; pixels with 0 < alpha < 255
 * pass through the canvas's premultiplied storage), never the preprocessing after it.
 */
export async function decodeImage(data, { maxShortSide = 0 } = {}) {
  const blob = data instanceof Blob ? data : new Blob([data]);
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const orientation = readOrientation(bytes);
  const opts = { imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none" };
  let bmp;
  try {
    bmp = await createImageBitmap(blob, opts);
  } catch (e) {
    throw new Error(`not an image the browser can decode (${e.message})`);
  }
  // Photo indexing: a photo whose short side is over maxShortSide is scaled down by the browser (kept as an
  // ImageBitmap, never as a full-size RGBA array) to that short side, then preprocessed exactly as always. Its
  // crop then differs from Python's on the full-size photo by the browser's downscale (classification keeps
  // full size: no maxShortSide).
  const short = Math.min(bmp.width, bmp.height);
  if (maxShortSide > 0 && short > maxShortSide) {
    const f = maxShortSide / short;
    const small = await createImageBitmap(bmp, { ...opts, resizeWidth: Math.max(1, Math.round(bmp.width * f)),
      resizeHeight: Math.max(1, Math.round(bmp.height * f)), resizeQuality: "high" });
    bmp.close();
    bmp = small;
  }
  const canvas = new OffscreenCanvas(bmp.width, bmp.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bmp, 0, 0);
  const rgba = new Uint8Array(ctx.getImageData(0, 0, bmp.width, bmp.height).data.buffer);
  const out = { rgba, width: bmp.width, height: bmp.height, orientation };
  bmp.close();
  return out;
}

export { applyOrientation, readOrientation };
