// window.mc2: the page API for tests and embedders (documented in examples/web/README.md).
//
//   await mc2.load(bundleUrl[, {backend: "auto" | "wasm", verify: true}])  -> info about the loaded bundle
//   mc2.tokenize(text)                     -> Int32Array(context_length): [SOT, ids..., EOT, 0...]
//   mc2.preprocess(rgba, width, height)    -> Float32Array(3*R*R): the image model's input, NCHW
//   await mc2.embedImage(rgba, width, height) -> Float32Array(D): the image embedding (the model's output)
//   await mc2.embedText(text)              -> Float32Array(D): the text embedding
// rgba: upright pixels, 4 bytes per pixel, row-major, not premultiplied (ImageData.data works as is).

import * as bench from "./bench.js";
import { decodeImage, Engine, ORT_VERSION } from "./engine.js";
import { describeReport } from "./verify.js";
import * as zs from "./zeroshot.js";

let engine = null;
let loading = null;

function current() {
  if (!engine) throw new Error("no bundle loaded: call mc2.load(bundleUrl) first");
  return engine;
}

function asBytes(rgba) {
  if (rgba instanceof Uint8Array || rgba instanceof Uint8ClampedArray) return rgba;
  if (rgba instanceof ArrayBuffer) return new Uint8Array(rgba);
  if (Array.isArray(rgba)) return Uint8Array.from(rgba);
  throw new TypeError("rgba must be a Uint8Array, Uint8ClampedArray, ArrayBuffer or array of bytes");
}

export const mc2 = {
  version: "0.1.0",
  ortVersion: ORT_VERSION,

  /** Load an ONNX bundle (URL of its folder). Runs its verification vectors unless {verify: false}. */
  async load(bundleUrl, options = {}) {
    if (typeof bundleUrl !== "string" || !bundleUrl) throw new TypeError("load(bundleUrl): the URL of a bundle folder");
    loading = Engine.load(bundleUrl, options);
    try {
      const e = await loading;
      engine?.release();
      engine = e;
      return mc2.info();
    } finally {
      loading = null;
    }
  },

  /** What is loaded: config summary, backend, threads, load times and the verification report. */
  info() {
    const e = current();
    return { url: e.url, summary: e.summary, variant: e.cfg.variant, name: e.cfg.name, precision: e.cfg.precision,
      resolution: e.cfg.resolution, interpolation: e.cfg.interpolation, embedDim: e.cfg.embedDim,
      contextLength: e.cfg.contextLength, configSha256: e.configSha256, outputNormalized: e.cfg.outputNormalized, logitScale: e.cfg.logitScale,
      towers: Object.keys(e.sessions), backend: e.backend, threads: e.threads, crossOriginIsolated: !!globalThis.crossOriginIsolated,
      loadMs: { ...e.loadMs }, verify: e.verify, verifyLines: e.verify ? describeReport(e.verify) : [] };
  },

  tokenize(text) {
    return current().tokenize(String(text)).row;
  },

  preprocess(rgba, width, height) {
    return current().preprocess(asBytes(rgba), width, height);
  },

  embedImage(rgba, width, height) {
    return current().embedImage(asBytes(rgba), width, height);
  },

  embedText(text) {
    return current().embedText(String(text));
  },

  // -- beyond the documented five: what the page itself uses ------------------------------------------------

  /** The R x R x 3 crop (HWC RGB) the model sees. */
  crop(rgba, width, height) {
    return current().crop(asBytes(rgba), width, height);
  },

  decodeImage,

  /** Zero-shot: labels (array or "cat, dog" text), templates "simple" (7) | "openai" (80) | an array. */
  async classify(rgba, width, height, labels, templates = "simple", k = 5) {
    const parsed = Array.isArray(labels) ? { labels, error: null } : zs.parseLabels(labels);
    if (parsed.error) throw new Error(parsed.error);
    const tpl = Array.isArray(templates) ? templates : templates === "openai" ? zs.OPENAI_TEMPLATES : zs.SIMPLE_TEMPLATES;
    return current().classify(asBytes(rgba), width, height, parsed.labels, tpl, k);
  },

  /** Re-run the bundle's verification vectors. */
  async verify() {
    const e = current();
    e.verify = await e.runVerify();
    return e.verify;
  },

  /** The benchmark mode: each tower timed on an input prepared once; returns the harness's JSON document. */
  async benchmark(modeName = "quick", overrides = {}, log = () => {}) {
    const e = current();
    const mode = bench.getMode(modeName, overrides);
    const R = e.cfg.resolution;
    const towers = [];
    if (e.sessions.image) {
      // a fixed synthetic picture: latency does not depend on content
      const rgba = new Uint8Array(R * R * 4);
      for (let i = 0; i < R * R; i++) rgba.set([(i * 7) & 255, (i * 13) & 255, i & 255, 255], i * 4);
      const feeds = e.imageFeeds(e.preprocess(rgba, R, R));
      towers.push(await timeTower(e, "image", e.cfg.imageModel, feeds, mode, log));
    }
    if (e.sessions.text) {
      towers.push(await timeTower(e, "text", e.cfg.textModel, e.textFeeds(e.tokenize("a photo of a dog").row), mode, log));
    }
    return bench.buildDocument({
      cfg: e.cfg, bundleUrl: e.url, mode, towers, device: await bench.describeDevice(), verify: e.verify,
      runtime: { version: ORT_VERSION, threads: e.threads, backend: e.backend,
        info: { library: "onnxruntime-web", execution_providers: e.backend === "webgpu" ? ["webgpu", "wasm"] : ["wasm"],
          wasm_simd: true, threads: e.threads, cross_origin_isolated: !!globalThis.crossOriginIsolated, user_agent: navigator.userAgent } },
      created: new Date().toISOString(), toolVersion: mc2.version,
    });
  },

  modes: Object.keys(bench.MODES),
  _engine: () => current(),  // internal (tests): the loaded Engine
  templates: { simple: zs.SIMPLE_TEMPLATES, openai: zs.OPENAI_TEMPLATES },
};

async function timeTower(e, tower, file, feeds, mode, log) {
  log(`${tower}: ${mode.name} protocol ...`);
  const session = e.requireTower(tower);
  const call = () => session.run(feeds);  // only the model call: the input tensor is built once, outside
  const t0 = performance.now();
  await call();
  const firstMs = performance.now() - t0;
  const run = await bench.runProtocol(mode, call);
  return { tower, file, loadMs: e.loadMs[tower], firstMs, run };
}

globalThis.mc2 = mc2;
