// The bundle's verification vectors (docs/bundle.md, "verify/: verification vectors") read strictly and run
// through the loaded models: what `mc2export verify BUNDLE` does, in the browser. The Kotlin twin is
// examples/android/shared/.../VerifyVectors.kt (tested on the JVM); the figures and the pass rule are those
// of mc2export/export/validate.py (compare + check): per row cosine, max-abs over std of the expected rows.

import { MAX_ROWS, sha256Hex, TIERS, TOLERANCES } from "./config.js";

export const MANIFEST = "verify/manifest.json";
export const SUPPORTED_VERSION = 1;
const ITEMSIZE = { uint8: 1, int32: 4, float32: 4 };

export class VerifyError extends Error {
  constructor(message) {
    super(`verify/: ${message}`);
    this.name = "VerifyError";
  }
}

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const prod = (shape) => shape.reduce((a, b) => a * b, 1);

function checkShape(v, rank, what) {
  if (!Array.isArray(v) || v.length !== rank || !v.every((d) => Number.isInteger(d) && d >= 1)) {
    throw new VerifyError(`${what}.shape must be ${rank} positive integers, got ${JSON.stringify(v)}`);
  }
  return v;
}

function fileEntry(e, what, dtype, rank) {
  if (!isObj(e)) throw new VerifyError(`manifest.json: ${what} is missing`);
  const file = e.file;
  if (typeof file !== "string" || !file.startsWith("verify/") || file.includes("\\") || file.includes("\0") ||
      file.split("/").some((p) => p === "" || p === "." || p === "..")) {
    throw new VerifyError(`manifest.json: ${what}.file must be a path inside verify/, got ${JSON.stringify(file)}`);
  }
  if (e.dtype !== dtype) throw new VerifyError(`manifest.json: ${what}.dtype must be "${dtype}", got ${JSON.stringify(e.dtype)}`);
  return { file, dtype, shape: checkShape(e.shape, rank, `manifest.json: ${what}`) };
}

/**
 * Check verify/manifest.json (parsed) against the bundle's config (parseConfig's result). Returns the plan:
 * { version, precision, tier, tolerance, towers: { image?: {inputs, expected, rows}, text?: {...} } }.
 */
export function parseManifest(m, cfg) {
  if (!isObj(m)) throw new VerifyError("manifest.json must be a JSON object");
  if (!Number.isInteger(m.version)) throw new VerifyError("manifest.json: version must be an integer");
  if (m.version > SUPPORTED_VERSION) {
    throw new VerifyError(`manifest version ${m.version} is newer than this app understands (${SUPPORTED_VERSION}): update the app`);
  }
  if (m.version !== SUPPORTED_VERSION) throw new VerifyError(`manifest version ${m.version} is not one this app reads (${SUPPORTED_VERSION}): re-export the bundle`);
  if (m.byte_order !== "little") {
    throw new VerifyError(`manifest.json: byte_order must be "little", got ${JSON.stringify(m.byte_order)}`);
  }
  if (m.embed_dim !== cfg.embedDim) {
    throw new VerifyError(`manifest.json: embed_dim ${JSON.stringify(m.embed_dim)} differs from config.json's ${cfg.embedDim}`);
  }
  if (typeof m.output_normalized !== "boolean" || m.output_normalized !== cfg.outputNormalized) {
    throw new VerifyError(`manifest.json: output_normalized ${JSON.stringify(m.output_normalized)} differs from config.json's ${cfg.outputNormalized}`);
  }
  // R3: the tolerance is the precision tier's, in this code; the manifest's numbers are informational only
  if (m.precision !== cfg.precision) {
    throw new VerifyError(`manifest.json: precision ${JSON.stringify(m.precision)} differs from config.json's "${cfg.precision}"`);
  }
  const tierOf = (p, what) => {
    if (typeof p !== "string" || !Object.hasOwn(TIERS, p)) throw new VerifyError(`${what}: precision ${JSON.stringify(p)} is not one this app knows`);
    return TIERS[p];
  };
  const tier = tierOf(m.precision, "manifest.json");
  const tol = TOLERANCES[tier];
  if (!isObj(m.towers)) throw new VerifyError("manifest.json: towers is missing");
  const D = cfg.embedDim;
  const towers = {};
  for (const name of Object.keys(m.towers)) {
    if (name !== "image" && name !== "text") throw new VerifyError(`manifest.json: unknown tower "${name}"`);
  }
  for (const [name, has] of [["image", !!cfg.imageModel], ["text", !!cfg.textModel]]) {
    const t = m.towers[name];
    if (t === undefined) {
      if (has) throw new VerifyError(`manifest.json has no ${name} vectors, but the bundle has a ${name} model`);
      continue;
    }
    if (!has) throw new VerifyError(`manifest.json has ${name} vectors, but the bundle has no ${name} model`);
    if (!isObj(t)) throw new VerifyError(`manifest.json: towers.${name} must be a JSON object`);
    const inputs = name === "image"
      ? fileEntry(t.inputs, `towers.image.inputs`, "uint8", 4)
      : fileEntry(t.inputs, `towers.text.inputs`, "int32", 2);
    const expected = fileEntry(t.expected, `towers.${name}.expected`, "float32", 2);
    const rows = inputs.shape[0];
    if (rows > MAX_ROWS) throw new VerifyError(`${name} inputs hold ${rows} rows (at most ${MAX_ROWS})`);
    if (name === "image") {
      const [, H, W, C] = inputs.shape;
      if (H !== cfg.resolution || W !== cfg.resolution || C !== 3) {
        throw new VerifyError(`image inputs shape ${JSON.stringify(inputs.shape)} is not [N, ${cfg.resolution}, ${cfg.resolution}, 3] (the bundle's resolution)`);
      }
      if (t.inputs.layout !== undefined && t.inputs.layout !== "NHWC RGB") {
        throw new VerifyError(`image inputs layout ${JSON.stringify(t.inputs.layout)} is not "NHWC RGB"`);
      }
    } else if (inputs.shape[1] !== cfg.contextLength) {
      throw new VerifyError(`text inputs shape ${JSON.stringify(inputs.shape)} is not [M, ${cfg.contextLength}] (the bundle's context length)`);
    }
    if (expected.shape[0] !== rows || expected.shape[1] !== D) {
      throw new VerifyError(`${name} expected shape ${JSON.stringify(expected.shape)} is not [${rows}, ${D}]`);
    }
    if (t.probe_rows !== undefined && (!Array.isArray(t.probe_rows) || t.probe_rows.length !== rows)) {
      throw new VerifyError(`manifest.json: towers.${name}.probe_rows must list ${rows} rows`);
    }
    if (name === "text" && t.texts !== undefined && (!Array.isArray(t.texts) || t.texts.length !== rows)) {
      throw new VerifyError(`manifest.json: towers.text.texts must list ${rows} strings`);
    }
    // an `auto` bundle's tower names its own precision: its tier's tolerance (still from this code)
    const tolerance = t.precision === undefined ? tol : TOLERANCES[tierOf(t.precision, `manifest.json towers.${name}`)];
    towers[name] = { inputs, expected, rows, texts: t.texts || null, tolerance };
  }
  if (!Object.keys(towers).length) throw new VerifyError("manifest.json lists no tower");
  return { version: m.version, precision: m.precision, tier,
    reference: m.reference ?? null, tolerance: { ...tol }, towers };
}

/** A raw little-endian array file checked against its manifest entry (size) and config.json (sha256). */
async function loadArray(fetchBytes, entry, files) {
  const bytes = await fetchBytes(entry.file);
  const want = prod(entry.shape) * ITEMSIZE[entry.dtype];
  if (bytes.byteLength !== want) {
    throw new VerifyError(`${entry.file} holds ${bytes.byteLength} bytes, expected ${want} (${entry.dtype} ${JSON.stringify(entry.shape)})`);
  }
  const listed = files[entry.file];
  if (listed && typeof listed.sha256 === "string") {
    const got = await sha256Hex(bytes);
    if (got !== null && got !== listed.sha256) throw new VerifyError(`${entry.file} is damaged (sha256 differs from config.json)`);
  }
  const copy = new Uint8Array(bytes).slice();  // aligned, owned buffer
  if (entry.dtype === "uint8") return copy;
  const dv = new DataView(copy.buffer);
  const n = prod(entry.shape);
  const out = entry.dtype === "int32" ? new Int32Array(n) : new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = entry.dtype === "int32" ? dv.getInt32(i * 4, true) : dv.getFloat32(i * 4, true);
  if (entry.dtype === "float32" && !out.every(Number.isFinite)) throw new VerifyError(`${entry.file} holds NaN or infinite values: the vectors are damaged`);
  return out;
}

/** Figures of one tower (validate.compare): float64 arithmetic, std of all expected values (population). */
export function compare(got, expected, rows, D) {
  let maxAbs = 0;
  let sum = 0;
  let finite = true;
  const cos = [];
  for (let r = 0; r < rows; r++) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let j = 0; j < D; j++) {
      const a = got[r * D + j];
      const b = expected[r * D + j];
      if (!Number.isFinite(a)) finite = false;
      dot += a * b;
      na += a * a;
      nb += b * b;
      maxAbs = Math.max(maxAbs, Math.abs(a - b));
      sum += b;
    }
    cos.push(dot / Math.max(Math.sqrt(na) * Math.sqrt(nb), 1e-30));
  }
  const n = rows * D;
  const mean = sum / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (expected[i] - mean) ** 2;
  const std = Math.sqrt(ss / n);
  return { rows, cosine_min: Math.min(...cos), cosine_mean: cos.reduce((a, b) => a + b, 0) / rows, cosines: cos,
    max_abs: maxAbs, reference_std: std, max_abs_over_std: std ? maxAbs / std : Infinity, finite };
}

/** Violations of the tolerance (validate.check); empty when everything holds. */
export function check(fig, tol) {
  const bad = [];
  if (!fig.finite) bad.push("non-finite outputs");
  if (!(fig.cosine_min >= tol.cosine_min)) bad.push(`cosine min ${fig.cosine_min.toFixed(7)} < ${tol.cosine_min}`);
  if ("max_abs_over_std" in tol && !(fig.max_abs_over_std <= tol.max_abs_over_std)) {
    bad.push(`max-abs ${fig.max_abs.toExponential(3)} = ${fig.max_abs_over_std.toExponential(2)} x std > ${tol.max_abs_over_std} x std`);
  }
  return bad;
}

/**
 * Run the vectors. `fetchBytes(relPath)` -> ArrayBuffer or null when the file does not exist; `runImage(chw
 * Float32Array [3*R*R])` and `runText(Int32Array row)` -> Promise<Float32Array [D]> call the models on exactly
 * these inputs; `toModelInput(u8 crop HWC)` turns a crop into the image model's input.
 * Returns the report: { status: "passed" | "failed" | "absent" | "error", ... } -- never throws.
 */
export async function runVerify({ cfg, fetchBytes, runImage, runText, toModelInput, log = () => {} }) {
  const t0 = performance.now();
  let manifestBytes;
  try {
    manifestBytes = await fetchBytes(MANIFEST, { optional: true });
  } catch (e) {
    return { status: "error", passed: false, error: String(e.message || e) };
  }
  if (manifestBytes === null) {
    return { status: "absent", passed: null, note: "the bundle has no verify/ folder (exported before verification vectors existed)" };
  }
  try {
    let m;
    try {
      m = JSON.parse(new TextDecoder().decode(manifestBytes));
    } catch (e) {
      throw new VerifyError(`manifest.json is not valid JSON (${e.message})`);
    }
    const plan = parseManifest(m, cfg);
    const report = { status: "passed", passed: true, manifest_version: plan.version, precision: plan.precision,
      tier: plan.tier, reference: plan.reference, tolerance: plan.tolerance, towers: {} };
    const D = cfg.embedDim;
    for (const [name, t] of Object.entries(plan.towers)) {
      const inputs = await loadArray(fetchBytes, t.inputs, cfg.files);
      const expected = await loadArray(fetchBytes, t.expected, cfg.files);
      const got = new Float32Array(t.rows * D);
      const ts = performance.now();
      for (let r = 0; r < t.rows; r++) {
        let out;
        if (name === "image") {
          const R = cfg.resolution;
          out = await runImage(toModelInput(inputs.subarray(r * R * R * 3, (r + 1) * R * R * 3)));
        } else {
          const L = cfg.contextLength;
          out = await runText(inputs.slice(r * L, (r + 1) * L));
        }
        if (out.length !== D) throw new VerifyError(`the ${name} model returned ${out.length} values, expected ${D}`);
        got.set(out, r * D);
        log(`verify: ${name} row ${r + 1}/${t.rows}`);
      }
      const fig = compare(got, expected, t.rows, D);
      const bad = check(fig, t.tolerance);
      report.towers[name] = { ...fig, passed: bad.length === 0, failures: bad,
        seconds: +((performance.now() - ts) / 1000).toFixed(3) };
      if (bad.length) {
        report.passed = false;
        report.status = "failed";
      }
    }
    report.seconds = +((performance.now() - t0) / 1000).toFixed(3);
    return report;
  } catch (e) {
    return { status: "error", passed: false, error: String(e.message || e) };
  }
}

/** One line per tower for the screen, e.g. "image: 4 rows, cosine min 0.9999998, max-abs 2.1e-6 x std: PASS". */
export function describeReport(r) {
  if (r.status === "absent") return ["Verification vectors: none in this bundle (re-export to get verify/)"];
  if (r.status === "error") return [`Verification vectors: ERROR - ${r.error}`];
  const tol = r.tolerance;
  const lines = [`Verification vectors: ${r.passed ? "PASSED" : "FAILED"} (tier ${r.tier ?? r.precision ?? "?"}: cosine >= ${tol.cosine_min}` +
    ("max_abs_over_std" in tol ? `, max-abs <= ${tol.max_abs_over_std} x std` : "") + ")"];
  for (const [name, t] of Object.entries(r.towers)) {
    lines.push(`${name}: ${t.rows} rows, cosine min ${t.cosine_min.toFixed(7)}, max-abs ${t.max_abs.toExponential(2)} ` +
      `= ${t.max_abs_over_std.toExponential(2)} x std: ${t.passed ? "PASS" : "FAIL - " + t.failures.join("; ")}`);
  }
  return lines;
}
