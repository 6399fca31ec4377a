// What the web app reads from a bundle's config.json (docs/bundle.md), with the same keys, fallbacks and
// one-line errors as the apps' BundleConfig (examples/android/shared/.../BundleConfig.kt). The web app runs
// ONNX bundles (`mc2export onnx`) in onnxruntime-web.

import { parseInterpolation } from "./preprocess.js";

export const FORMAT = "mc2export-bundle";
export const SUPPORTED_VERSION = 2;
export const CONFIG_SHA256 = "config.json.sha256";

// The reading rules (docs/bundle.md, "Reading a bundle safely"; mc2export/export/reading.py and the Kotlin
// BundleRules are the twins): R0 bundle_version 2 only, R1 config.json checked against config.json.sha256
// (checkConfigSha256, by the engine), R2 every path relative and inside the bundle (safePath; symlinks are the
// server's to refuse: a page cannot see them, examples/web/serve.py does not follow them out), R3 tolerances
// from the precision tier in code (TIERS / TOLERANCES, used by verify.js), R5 typed fields in range (JSON.parse
// has no NaN / Infinity; numbers that overflow are refused), R6 the sessions' input / output names equal
// config.json's (checkNames, at model load).

/** precision -> tolerance tier (mc2export.export.reading.TIERS); a precision not named here is refused. */
export const TIERS = { fp32: "fp32", fp16: "fp16", bf16: "bf16", int8: "compressed", "int8-static": "compressed",
  "int8-bf16": "compressed", pal6: "compressed", pal4: "compressed", auto: "compressed" };
/** tier -> tolerance (mc2export.export.validate.TOLERANCES). */
export const TOLERANCES = { fp32: { cosine_min: 0.99999, max_abs_over_std: 1e-4 }, fp16: { cosine_min: 0.999 },
  bf16: { cosine_min: 0.999 }, compressed: { cosine_min: 0.99 } };
export const MAX_ROWS = 10000;

export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = "BundleError";
  }
}

const describe = (v) => (v === null || v === undefined ? "null" : Array.isArray(v) ? "an array"
  : typeof v === "object" ? "an object" : JSON.stringify(v));
const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function int(v, what) {
  if (typeof v !== "number" || !Number.isInteger(v)) throw new BundleError(`config.json: ${what} must be an integer, got ${describe(v)}`);
  return v;
}
function num(v, what) {
  if (typeof v !== "number" || !Number.isFinite(v)) throw new BundleError(`config.json: ${what} must be a number, got ${describe(v)}`);
  return v;
}
function str(v, what) {
  if (typeof v !== "string") throw new BundleError(`config.json: ${what} must be a string, got ${describe(v)}`);
  return v;
}
function bool(v, what) {
  if (typeof v !== "boolean") throw new BundleError(`config.json: ${what} must be true or false, got ${describe(v)}`);
  return v;
}
function triple(v, what) {
  if (v === undefined || v === null) throw new BundleError(`config.json: ${what} is missing`);
  if (!Array.isArray(v)) throw new BundleError(`config.json: ${what} must be a JSON array`);
  if (v.length !== 3) throw new BundleError(`config.json: ${what} must hold 3 numbers, got ${v.length}`);
  return v.map((x, i) => num(x, `${what}[${i}]`));
}

/** R2: a relative POSIX path (not empty, not absolute, no backslash / NUL / drive, no "", ".", ".." part). */
export function safePath(rel, field) {
  let why = null;
  if (typeof rel !== "string" || !rel) why = "is not a relative path";
  else if (rel.startsWith("/") || rel.includes("\\") || rel.includes("\0") || /^[A-Za-z]:/.test(rel)) why = "is not a relative POSIX path";
  else if (rel.split("/").some((p) => p === "" || p === "." || p === "..")) why = "has an empty, '.' or '..' component";
  if (why) throw new BundleError(`config.json: ${field} ${JSON.stringify(rel)?.slice(0, 120)} ${why}: the bundle is refused`);
  return rel;
}

/** R1: the bytes of config.json against the text of config.json.sha256 (null: the file is missing). */
export async function checkConfigSha256(configBytes, shaText) {
  const want = `${await sha256Hex(configBytes)}  config.json\n`;
  if (shaText !== want) {
    throw new BundleError("config.json does not match config.json.sha256: the bundle was edited or damaged (re-export it)");
  }
}

/** R6: the names a session reports against config.json's (null: config.json lists none). */
export function checkNames(tower, side, expected, actual) {
  if (!expected) return;
  if (expected.length !== actual.length || expected.some((n, i) => n !== actual[i])) {
    throw new BundleError(`the ${tower} model's ${side} are ${JSON.stringify(actual)}, but config.json says ${JSON.stringify(expected)}: the bundle is refused (re-export it)`);
  }
}

/** Parse config.json text (the bundle must be an ONNX bundle). Throws BundleError with a message for the user. */
export function parseConfig(text) {
  let c;
  try {
    c = JSON.parse(text);
  } catch (e) {
    throw new BundleError(`config.json is not valid JSON (${e.message}): re-export the bundle`);
  }
  if (!isObj(c)) throw new BundleError("config.json must be a JSON object");
  if (c.format !== FORMAT) {
    throw new BundleError(`this folder is not an mc2export bundle (config.json format is ${describe(c.format)}, expected "${FORMAT}"): ` +
      "export one with `mc2export onnx --variant s0 --out DIR`");
  }
  if (c.bundle_version == null) throw new BundleError("config.json: bundle_version is missing: re-export the bundle with this mc2export");
  const version = int(c.bundle_version, "bundle_version");
  if (version > SUPPORTED_VERSION) {
    throw new BundleError(`bundle version ${version} is newer than this app understands (${SUPPORTED_VERSION}): update the app`);
  }
  if (version !== SUPPORTED_VERSION) {
    throw new BundleError(`bundle_version ${version}: written by an older mc2export; re-export the bundle with this one`);
  }
  const runtime = str(c.runtime, "runtime");
  if (runtime !== "onnx") {
    throw new BundleError(`the web app runs ONNX bundles (.onnx models), but this is a ${runtime} bundle: ` +
      "export one with `mc2export onnx --variant s0 --out DIR`");
  }
  const variant = str(c.variant, "variant");
  const name = c.name == null ? variant : str(c.name, "name");
  const precision = str(c.precision, "precision");
  if (!Object.hasOwn(TIERS, precision)) throw new BundleError(`config.json: precision ${JSON.stringify(precision).slice(0, 60)} is not one this app knows: update the app`);
  const batch = c.batch == null ? 1 : int(c.batch, "batch");
  if (batch !== 1) throw new BundleError(`the bundle was exported with --batch ${batch}: the app needs --batch 1`);

  if (!isObj(c.preprocess)) throw new BundleError("config.json: preprocess is missing");
  const pre = c.preprocess;
  const resolution = int(pre.resolution ?? c.resolution, "preprocess.resolution");
  if (resolution < 1 || resolution > 4096) throw new BundleError(`config.json: preprocess.resolution ${resolution} is out of range`);
  let interpolation;
  try {
    interpolation = parseInterpolation(pre.interpolation);
  } catch (e) {
    throw new BundleError(`config.json: preprocess.${e.message}`);
  }
  if ((pre.resize ?? "shortest") !== "shortest") throw new BundleError(`config.json: preprocess.resize "${pre.resize}" is not supported (only "shortest")`);
  if ((pre.crop ?? "center") !== "center") throw new BundleError(`config.json: preprocess.crop "${pre.crop}" is not supported (only "center")`);
  const mean = triple(pre.mean, "preprocess.mean");
  const std = triple(pre.std, "preprocess.std");
  if (std.some((s) => s === 0)) throw new BundleError("config.json: preprocess.std must not contain 0");

  const tok = isObj(c.tokenizer) ? c.tokenizer : null;
  const ctxRaw = tok?.context_length ?? c.context_length;
  const contextLength = ctxRaw == null ? 77 : int(ctxRaw, "context_length");
  if (contextLength < 2 || contextLength > 1024) throw new BundleError(`config.json: context_length ${contextLength} is outside 2..1024`);
  const embedDim = int(c.embed_dim, "embed_dim");
  if (embedDim < 1 || embedDim > 8192) throw new BundleError(`config.json: embed_dim ${embedDim} is outside 1..8192`);
  const logitScale = c.logit_scale == null ? 100 : num(c.logit_scale, "logit_scale");
  if (!(logitScale > 0)) throw new BundleError("config.json: logit_scale must be positive");
  const outputNormalized = c.output_normalized == null ? true : bool(c.output_normalized, "output_normalized");

  if (!isObj(c.models)) throw new BundleError("config.json: models is missing (no model files listed)");
  const model = (m, what) => {
    if (m == null) return null;
    if (!isObj(m)) throw new BundleError(`config.json: ${what} must be a JSON object`);
    const f = safePath(str(m.file, `${what}.file`), `${what}.file`);
    if (!f.endsWith(".onnx")) throw new BundleError(`${what}.file "${f}" is not a .onnx model: this bundle does not match its runtime`);
    if (m.external_data) throw new BundleError(`${what} keeps its weights in a separate .onnx.data file: the web app loads single-file models`);
    return f;
  };
  const imageModel = model(c.models.image, "models.image");
  const textModel = model(c.models.text, "models.text");
  if (!imageModel && !textModel) throw new BundleError("config.json: models lists neither an image nor a text model");

  // The image input contract: "inside the model" / "none needed" normalization -> u8 / 255, else (x - mean) / std.
  const contract = isObj(c.models.image?.input) ? c.models.image.input : null;
  const norm = typeof contract?.normalization === "string" ? contract.normalization : null;
  const normalizeInput = norm !== null && !(norm.startsWith("inside") || norm.startsWith("none"));

  const weights = isObj(c.weights) ? c.weights : {};
  const randomWeights = weights.random_weights == null ? false : bool(weights.random_weights, "weights.random_weights");
  const versions = {};
  for (const [k, v] of Object.entries(isObj(c.versions) ? c.versions : {})) if (v != null) versions[k] = String(v);
  if (!isObj(c.files)) throw new BundleError("config.json: files is missing (the table of the bundle's files)");
  const files = {};
  for (const [k, v] of Object.entries(c.files)) {
    safePath(k, "files");
    if (!isObj(v) || typeof v.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(v.sha256) || !Number.isInteger(v.bytes) || v.bytes < 0) {
      throw new BundleError(`config.json: files[${JSON.stringify(k).slice(0, 80)}] must be {sha256: 64 hex digits, bytes: an integer}`);
    }
    files[k] = v;
  }
  const names = (m, what) => {
    if (m?.[what] == null) return null;
    if (!Array.isArray(m[what])) throw new BundleError(`config.json: ${what} must be a list of {name, dtype, shape}`);
    return m[what].map((x, i) => str(x?.name, `${what}[${i}].name`));
  };
  const io = {};
  for (const tower of ["image", "text"]) {
    const m = c.models[tower];
    if (m) io[tower] = { inputs: names(m, "inputs"), outputs: names(m, "outputs") };
  }
  const vocabFile = safePath(tok?.vocab ?? "vocab.json", "tokenizer.vocab");
  const mergesFile = safePath(tok?.merges ?? "merges.txt", "tokenizer.merges");
  return {
    runtime, variant, name, precision, resolution, interpolation, mean, std, contextLength, embedDim, logitScale,
    logitScaleFromBundle: c.logit_scale != null, outputNormalized, imageModel, textModel, normalizeInput,
    vocabFile, mergesFile, tier: TIERS[precision], io,
    randomWeights, versions, files, raw: c,
  };
}

/** One line for the screen. */
export function summary(cfg) {
  return `${cfg.name} (${cfg.runtime}, ${cfg.precision}, ${cfg.resolution}px ${cfg.interpolation}, ${cfg.embedDim}-d)` +
    (cfg.randomWeights ? " - RANDOM WEIGHTS: results are meaningless" : "");
}

/** sha256 over the sorted "<file>\t<sha256>\n" lines of config.json's file table (the harness's bundle checksum). */
export async function bundleChecksum(files) {
  const names = Object.keys(files).sort((a, b) => {  // Python sorts str by code point
    const x = Array.from(a, (ch) => ch.codePointAt(0));
    const y = Array.from(b, (ch) => ch.codePointAt(0));
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  });
  if (!names.length) return null;
  const text = names.map((n) => `${n}\t${(files[n] && files[n].sha256) || ""}\n`).join("");
  return sha256Hex(new TextEncoder().encode(text));
}

export async function sha256Hex(bytes) {
  if (!globalThis.crypto?.subtle) return null;  // only in secure contexts (https, localhost)
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(h, (b) => b.toString(16).padStart(2, "0")).join("");
}
