// The benchmark mode, ported from the harness (mc2export/bench/stats.py, harness.py, device.py; Kotlin twin
// examples/android/shared/.../Benchmark.kt): the same protocols and statistics, and a document in the
// harness's own JSON schema (mc2export-bench v1, mc2export/bench/schema.json), so that
// `mc2export bench-report` reads the browser's figures like its own.

import { bundleChecksum } from "./config.js";

export const MODES = {
  quick: { name: "quick", warmup: 3, min_iterations: 20, min_seconds: 2.0, rounds: 1, trim_low: 0, trim_high: 0, headline: "p50" },
  modelbench: { name: "modelbench", warmup: 1, min_iterations: 50, min_seconds: 0.0, rounds: 20, trim_low: 10, trim_high: 10,
    headline: "round_trimmed_mean" },
  mlperf: { name: "mlperf", warmup: 10, min_iterations: 1024, min_seconds: 60.0, rounds: 1, trim_low: 0, trim_high: 0, headline: "p90" },
};

/** A protocol by name, optionally with counts overridden ({warmup, min_iterations, min_seconds, rounds}). */
export function getMode(name, overrides = {}) {
  const base = MODES[name];
  if (!base) throw new Error(`unknown benchmark mode '${name}': choose one of ${Object.keys(MODES).join(", ")}`);
  const m = { ...base, max_seconds: null };
  for (const k of ["warmup", "min_iterations", "min_seconds", "rounds"]) if (overrides[k] !== undefined) m[k] = overrides[k];
  m.standard = ["warmup", "min_iterations", "min_seconds", "rounds"].every((k) => m[k] === base[k]);
  return m;
}

/** numpy's default (linear) percentile of sorted data. */
export function percentile(sorted, q) {
  const n = sorted.length;
  if (!n) return NaN;
  const pos = ((n - 1) * q) / 100;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function trimmedMean(xs, proportion = 0.1, low = null, high = null) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (!n) return NaN;
  const lo = low ?? Math.trunc(proportion * n);
  const hi = high ?? Math.trunc(proportion * n);
  const kept = n - hi > lo ? s.slice(lo, n - hi) : s;
  return kept.reduce((a, b) => a + b, 0) / kept.length;
}

/** The harness's statistics (mc2export.bench.stats.summarize). */
export function summarize(samples, roundSizes = null, trimLow = 0, trimHigh = 0) {
  if (!samples.length) throw new Error("no samples");
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  const mean = s.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(s.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : 0;
  const out = { count: n, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), mean,
    trimmed_mean: trimmedMean(samples, 0.1), min: s[0], max: s[n - 1], std, cv: mean > 0 ? std / mean : 0 };
  if (roundSizes && roundSizes.length) {
    const means = [];
    let i = 0;
    for (const k of roundSizes) {
      means.push(trimmedMean(samples.slice(i, i + k), 0.1, trimLow, trimHigh));
      i += k;
    }
    out.round_trimmed_means = means;
    out.round_trimmed_mean = means.reduce((a, b) => a + b, 0) / means.length;
  }
  return out;
}

export function headline(stats, mode) {
  const key = mode.headline === "round_trimmed_mean" && !(mode.headline in stats) ? "trimmed_mean" : mode.headline;
  return stats[key];
}

/** Time `call` (async: one model call on a prepared input) under `mode` (mc2export.bench.stats.run_protocol). */
export async function runProtocol(mode, call, clock = () => performance.now()) {
  const warmup = [];
  const samples = [];
  const sizes = [];
  const start = clock();
  for (let r = 0; r < mode.rounds; r++) {
    for (let w = 0; w < mode.warmup; w++) {
      const t0 = clock();
      await call();
      warmup.push(clock() - t0);
    }
    const tRound = clock();
    let k = 0;
    for (;;) {
      if (mode.rounds > 1) {
        if (k >= mode.min_iterations) break;
      } else if (k >= mode.min_iterations && (clock() - tRound) / 1000 >= mode.min_seconds) {
        break;
      }
      const t0 = clock();
      await call();
      samples.push(clock() - t0);
      k++;
    }
    sizes.push(k);
  }
  return { warmup, samples, sizes, duration_s: (clock() - start) / 1000 };
}

const r4 = (x) => Math.round(x * 10000) / 10000;

/** The paper's latency targets (iPhone 12 Pro Max, Core ML) per variant (the model cards; checked by the tests). */
export const PAPER_TARGETS = {
  "mobileclip2-s0": [1.5, 3.3], "mobileclip2-s2": [3.6, 3.3], "mobileclip2-b": [10.4, 3.3], "mobileclip2-s3": [8.0, 6.6],
  "mobileclip2-s4": [19.6, 6.6], "mobileclip2-l14": [57.9, 6.6], "mobileclip-s0": [1.5, 1.6], "mobileclip-s1": [2.5, 3.3],
  "mobileclip-s2": [3.6, 3.3], "mobileclip-b": [10.4, 3.3], "mobileclip-blt": [10.4, 3.3], "mobileclip-s3": [8.0, 6.6],
  "mobileclip-s4": [19.6, 6.6], "mobileclip-l14": [57.9, 6.6],
};
export const HARDWARE = "iPhone 12 Pro Max (A14), Core ML";
const SOURCE = "MobileCLIP2 paper (arXiv 2508.20691) / official README; latency iPhone 12 Pro Max, Core ML, batch 1";

/** Python's format(x, "g"). */
function fmtG(x) {
  return String(Number(x.toPrecision(6)));
}

/** The verdict (harness: device.verdict). A browser is never the paper's hardware: "reference". */
export function verdict(variant, name, measured, towers, device, runtime, threads, stat) {
  const lat = PAPER_TARGETS[variant];
  const parts = { image: lat ? lat[0] : null, text: lat ? lat[1] : null };
  const target = towers.every((t) => parts[t] != null) ? towers.reduce((a, t) => a + parts[t], 0) : null;
  const got = towers.reduce((a, t) => a + (measured[t] ?? 0), 0);
  const where = `${device.class} (${device.model || device.cpu || "unknown CPU"}, ${threads} thread${threads !== 1 ? "s" : ""}, ${runtime})`;
  const scope = towers.join("+");
  if (target == null) {
    return { status: "no-target", comparable: "none", ratio: null, target_ms: null, measured_ms: got, towers, stat,
      hardware: HARDWARE, label: `no ${scope} latency target in the card for ${name}`, note: `measured on ${where}` };
  }
  const ratio = got / target;
  return { status: "reference", comparable: "none", ratio: Math.round(ratio * 1000) / 1000, target_ms: target,
    measured_ms: r4(got), towers, stat, hardware: HARDWARE,
    label: `REFERENCE ONLY: ${scope} ${stat} ${got.toFixed(2)} ms vs target ${fmtG(target)} ms (${HARDWARE}) = ${ratio.toFixed(1)}x the target`,
    note: `${where}: not comparable to the A14 Neural Engine target (${HARDWARE}); shown for reference` };
}

/** The device as the schema describes it (kind "host": the machine the browser runs on). */
export async function describeDevice() {
  let arch = null;
  let platform = navigator.platform || "unknown";
  let platformVersion = "";
  let model = null;
  if (navigator.userAgentData?.getHighEntropyValues) {
    try {
      const v = await navigator.userAgentData.getHighEntropyValues(["architecture", "bitness", "platformVersion", "model"]);
      arch = v.architecture === "x86" ? (v.bitness === "64" ? "x86_64" : "x86") : v.architecture === "arm" ? (v.bitness === "64" ? "arm64" : "arm") : v.architecture || null;
      platform = navigator.userAgentData.platform || platform;
      platformVersion = v.platformVersion || "";
      model = v.model || null;
    } catch (e) { /* low-entropy values only */ }
  }
  const brand = navigator.userAgentData?.brands?.find((b) => !/Not.A.Brand/i.test(b.brand));
  return {
    kind: "host", class: `${arch || "unknown"} CPU (web browser)`, model, soc: null, cpu: null, arch,
    cores_logical: navigator.hardwareConcurrency || null, cores_physical: null,
    os: `${platform} ${platformVersion}`.trim() + (brand ? ` / ${brand.brand} ${brand.version}` : ""),
    memory_gb: navigator.deviceMemory ?? null, cpu_features: [], load_avg: null, load_avg_end: null,
  };
}

/**
 * The whole document with one result. towers: [{tower, file, loadMs, firstMs, run}]; runtime: {version,
 * threads, info}; verify: the verification report of the loaded bundle (its figures travel with the timings).
 */
export async function buildDocument({ cfg, bundleUrl, mode, towers, runtime, device, verify, created, toolVersion }) {
  const towerMaps = {};
  const headlines = {};
  for (const t of towers) {
    const st = summarize(t.run.samples, mode.rounds > 1 ? t.run.sizes : null, mode.trim_low, mode.trim_high);
    const h = r4(headline(st, mode));
    headlines[t.tower] = h;
    const stats = {};
    for (const [k, v] of Object.entries(st)) stats[k] = Array.isArray(v) ? v.map(r4) : typeof v === "number" && k !== "count" ? r4(v) : v;
    towerMaps[t.tower] = {
      tower: t.tower, file: t.file, load_ms: { cold: r4(t.loadMs), warm: null, first_inference: r4(t.firstMs) },
      warmup_ms: t.run.warmup.map(r4), iterations: t.run.samples.length, rounds: mode.rounds, duration_s: r4(t.run.duration_s),
      stats, samples_ms: t.run.samples.map(r4), headline_ms: h,
      memory: { scope: "none", peak_rss_mb: null, method: "not available in a web page" },
      runtime_info: runtime.info,
    };
  }
  const names = towers.map((t) => t.tower);
  const lat = PAPER_TARGETS[cfg.variant];
  const total = r4(names.reduce((a, n) => a + headlines[n], 0));
  const result = {
    variant: cfg.variant, name: cfg.name,
    bundle: { path: bundleUrl, format: "onnx", precision: cfg.precision, variant: cfg.variant,
      checksum: await bundleChecksum(cfg.files), verified: false, created: cfg.raw.created ?? null,
      random_weights: cfg.randomWeights, weights_source: cfg.raw.weights?.source ?? null, batch: 1,
      towers: [cfg.imageModel && "image", cfg.textModel && "text"].filter(Boolean), exporter_versions: cfg.versions },
    runtime: { name: "onnxruntime", version: runtime.version, versions: { "onnxruntime-web": runtime.version },
      threads: runtime.threads, compute_units: null, runner: "mc2export-web-app" },
    device, mode: { ...mode }, towers: towerMaps,
    total: { headline_ms: total, stat: mode.headline, towers: names, peak_rss_mb: null,
      note: "image and text towers measured separately and summed, as the paper reports" },
    target: { image_ms: lat ? lat[0] : null, text_ms: lat ? lat[1] : null, total_ms: lat ? lat[0] + lat[1] : null,
      hardware: HARDWARE, source: SOURCE, band_ms: [3.0, 15.0] },
    verdict: verdict(cfg.variant, cfg.name, headlines, names, device, `onnxruntime-web ${runtime.backend}`, runtime.threads, mode.headline),
    verify: verifySummary(verify),
    source: "mc2export-web-app benchmark mode", created,
  };
  return { schema: "mc2export-bench", schema_version: 1, created,
    tool: { name: "mc2export-web-app", version: toolVersion, command: null }, host: null, results: [result] };
}

/** The verification figures as they go into benchmark documents (no per-row arrays). */
export function verifySummary(v) {
  if (!v) return { status: "not-run" };
  const out = { status: v.status, passed: v.passed };
  for (const k of ["error", "note", "manifest_version", "precision", "tier", "tolerance"]) if (v[k] !== undefined) out[k] = v[k];
  if (v.towers) {
    out.towers = {};
    for (const [name, t] of Object.entries(v.towers)) {
      out.towers[name] = { rows: t.rows, cosine_min: t.cosine_min, cosine_mean: t.cosine_mean, max_abs: t.max_abs,
        reference_std: t.reference_std, max_abs_over_std: t.max_abs_over_std, finite: t.finite, passed: t.passed };
    }
  }
  return out;
}
