import Foundation

/// The harness's protocols, statistics and JSON document (mc2export/bench; mirrors Benchmark.kt), so the
/// app's benchmark mode writes what `mc2export bench --device ios --app ...` and `bench-report` read.
public struct BenchMode: Sendable {
    public let name: String, warmup: Int, minIterations: Int, minSeconds: Double
    public var rounds = 1, trimLow = 0, trimHigh = 0
    public var headline = "p50"

    public static let modes: [String: BenchMode] = [
        "quick": BenchMode(name: "quick", warmup: 3, minIterations: 20, minSeconds: 2.0),
        "modelbench": BenchMode(name: "modelbench", warmup: 1, minIterations: 50, minSeconds: 0, rounds: 20, trimLow: 10,
                                trimHigh: 10, headline: "round_trimmed_mean"),
        "mlperf": BenchMode(name: "mlperf", warmup: 10, minIterations: 1024, minSeconds: 60, headline: "p90"),
    ]

    public static func get(_ name: String) throws -> BenchMode {
        guard let m = modes[name] else { throw BundleError("unknown benchmark mode '\(name)': quick, modelbench or mlperf") }
        return m
    }

    var dict: [String: Any] {
        ["name": name, "warmup": warmup, "min_iterations": minIterations, "min_seconds": minSeconds, "rounds": rounds,
         "trim_low": trimLow, "trim_high": trimHigh, "headline": headline, "max_seconds": NSNull(), "standard": true]
    }
}

public struct ProtocolRun: Sendable { public let warmupMs: [Double], samplesMs: [Double], roundSizes: [Int], durationS: Double }

public enum BenchStats {
    public static func percentile(_ s: [Double], _ q: Double) -> Double {
        guard !s.isEmpty else { return .nan }
        let pos = Double(s.count - 1) * q / 100
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, s.count - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - Double(lo))
    }

    public static func trimmedMean(_ xs: [Double], proportion: Double = 0.1, low: Int? = nil, high: Int? = nil) -> Double {
        let s = xs.sorted(), n = s.count
        guard n > 0 else { return .nan }
        let lo = low ?? Int(proportion * Double(n)), hi = high ?? Int(proportion * Double(n))
        let kept = n - hi > lo ? Array(s[lo..<(n - hi)]) : s
        return kept.reduce(0, +) / Double(kept.count)
    }

    public static func summarize(_ xs: [Double], roundSizes: [Int]? = nil, trimLow: Int = 0, trimHigh: Int = 0) -> [String: Any] {
        let s = xs.sorted(), n = s.count
        let mean = s.reduce(0, +) / Double(n)
        let std = n > 1 ? (s.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)).squareRoot() : 0
        var out: [String: Any] = ["count": n, "p50": percentile(s, 50), "p90": percentile(s, 90), "p99": percentile(s, 99),
                                  "mean": mean, "trimmed_mean": trimmedMean(xs), "min": s[0], "max": s[n - 1], "std": std,
                                  "cv": mean > 0 ? std / mean : 0]
        if let sizes = roundSizes, !sizes.isEmpty {
            var means: [Double] = [], i = 0
            for k in sizes { means.append(trimmedMean(Array(xs[i..<(i + k)]), low: trimLow, high: trimHigh)); i += k }
            out["round_trimmed_means"] = means
            out["round_trimmed_mean"] = means.reduce(0, +) / Double(means.count)
        }
        return out
    }

    public static func headline(_ stats: [String: Any], _ mode: BenchMode) -> Double {
        let key = mode.headline == "round_trimmed_mean" && stats[mode.headline] == nil ? "trimmed_mean" : mode.headline
        return stats[key] as? Double ?? 0
    }

    /// Time `call` under `mode` (mc2export.bench.stats.run_protocol) with the monotonic clock.
    public static func runProtocol(_ mode: BenchMode, _ call: () throws -> Void) rethrows -> ProtocolRun {
        try runProtocol(mode, clockNs: { DispatchTime.now().uptimeNanoseconds }, call: call)
    }

    /// The same with an injected clock (tests).
    public static func runProtocol(_ mode: BenchMode, clockNs: () -> UInt64, call: () throws -> Void) rethrows -> ProtocolRun {
        var warm: [Double] = [], samples: [Double] = [], sizes: [Int] = []
        let start = clockNs()
        for _ in 0..<mode.rounds {
            for _ in 0..<mode.warmup { let t0 = clockNs(); try call(); warm.append(Double(clockNs() - t0) / 1e6) }
            let tRound = clockNs()
            var k = 0
            while true {
                if mode.rounds > 1 {
                    if k >= mode.minIterations { break }
                } else if k >= mode.minIterations && Double(clockNs() - tRound) / 1e9 >= mode.minSeconds {
                    break
                }
                let t0 = clockNs(); try call(); samples.append(Double(clockNs() - t0) / 1e6)
                k += 1
            }
            sizes.append(k)
        }
        return ProtocolRun(warmupMs: warm, samplesMs: samples, roundSizes: sizes, durationS: Double(clockNs() - start) / 1e9)
    }

    static func r4(_ x: Double) -> Double { (x * 10000).rounded() / 10000 }
}

/// nil -> JSON null.
@inline(__always) func nz(_ v: Any?) -> Any { v ?? NSNull() }

public struct TowerResult {
    public let tower: String, file: String?, loadColdMs: Double?, firstInferenceMs: Double?, run: ProtocolRun, peakRssMb: Double?
    public init(tower: String, file: String?, loadColdMs: Double?, firstInferenceMs: Double?, run: ProtocolRun, peakRssMb: Double?) {
        self.tower = tower; self.file = file; self.loadColdMs = loadColdMs; self.firstInferenceMs = firstInferenceMs
        self.run = run; self.peakRssMb = peakRssMb
    }
}

public enum BenchDocument {
    /// variant -> (image ms, text ms): the paper's iPhone 12 Pro Max Core ML latencies (the model cards).
    public static let targets: [String: (Double, Double)] = [
        "mobileclip2-s0": (1.5, 3.3), "mobileclip2-s2": (3.6, 3.3), "mobileclip2-b": (10.4, 3.3),
        "mobileclip2-s3": (8.0, 6.6), "mobileclip2-s4": (19.6, 6.6), "mobileclip2-l14": (57.9, 6.6),
        "mobileclip-s0": (1.5, 1.6), "mobileclip-s1": (2.5, 3.3), "mobileclip-s2": (3.6, 3.3), "mobileclip-b": (10.4, 3.3),
        "mobileclip-blt": (10.4, 3.3), "mobileclip-s3": (8.0, 6.6), "mobileclip-s4": (19.6, 6.6), "mobileclip-l14": (57.9, 6.6),
    ]
    public static let hardware = "iPhone 12 Pro Max (A14), Core ML"
    public static let paperDeviceIds = ["iPhone13,4"]

    /// sha256 over the sorted "<file>\t<sha256>\n" lines of config.json's file table (the harness's checksum).
    public static func checksum(_ files: [String: Any]) -> String {
        var text = ""
        for name in files.keys.sorted(by: { Array($0.unicodeScalars.map { $0.value }).lexicographicallyPrecedes($1.unicodeScalars.map { $0.value }) }) {
            text += "\(name)\t\(((files[name] as? [String: Any])?["sha256"] as? String) ?? "")\n"
        }
        return Digest.sha256Hex(Data(text.utf8))
    }

    public static func verdict(variant: String, name: String, measured: [String: Double], towers: [String], device: [String: Any],
                               computeUnits: String, stat: String) -> [String: Any] {
        let t = targets[variant]
        let parts: [String: Double?] = ["image": t?.0, "text": t?.1]
        let target: Double? = towers.allSatisfy({ (parts[$0] ?? nil) != nil }) ? towers.reduce(0) { $0 + ((parts[$1] ?? 0) ?? 0) } : nil
        let got = towers.reduce(0) { $0 + (measured[$1] ?? 0) }
        let ne = ["all", "cpu-ne"].contains(computeUnits)
        let model = device["model"] as? String ?? ""
        let comp = ne && paperDeviceIds.contains(model) ? "same" : (ne ? "similar" : "none")
        let where_ = "\(device["class"] ?? "iPhone") (\(model), compute units \(computeUnits), coreml)"
        let scope = towers.joined(separator: "+")
        guard let tg = target else {
            return ["status": "no-target", "comparable": comp, "ratio": NSNull(), "target_ms": NSNull(), "measured_ms": got,
                    "towers": towers, "stat": stat, "hardware": hardware, "label": "no \(scope) latency target in the card for \(name)",
                    "note": "measured on \(where_)"]
        }
        let ratio = got / tg
        let status = comp == "none" ? "reference" : (got <= tg ? "meets" : "misses")
        let note = comp == "same" ? "measured on the paper's hardware class (\(where_))"
            : comp == "similar" ? "\(where_): a different Apple Neural Engine device than the target's \(hardware); indicative, not the paper's measurement"
            : "\(where_): not comparable to the A14 Neural Engine target (\(hardware)); shown for reference"
        let word = ["meets": "MEETS", "misses": "MISSES", "reference": "REFERENCE ONLY"][status]!
        let label = "\(word): \(scope) \(stat) \(String(format: "%.2f", got)) ms vs target \(String(format: "%g", tg)) ms (\(hardware)) = \(String(format: "%.1f", ratio))x the target"
        return ["status": status, "comparable": comp, "ratio": (ratio * 1000).rounded() / 1000, "target_ms": tg,
                "measured_ms": BenchStats.r4(got), "towers": towers, "stat": stat, "hardware": hardware, "label": label, "note": note]
    }

    /// The whole `mc2export-bench` v1 document with one result, as JSON data.
    public static func build(toolVersion: String, created: String, config: BundleConfig, bundlePath: String?,
                             runtimeVersion: String?, computeUnits: String, device: [String: Any], mode: BenchMode,
                             towers: [TowerResult], verify: [String: Any]? = nil) throws -> Data {
        var towerMaps: [String: Any] = [:], headlines: [String: Double] = [:], peaks: [Double] = []
        for t in towers {
            let st = BenchStats.summarize(t.run.samplesMs, roundSizes: mode.rounds > 1 ? t.run.roundSizes : nil,
                                          trimLow: mode.trimLow, trimHigh: mode.trimHigh)
            let h = BenchStats.r4(BenchStats.headline(st, mode))
            headlines[t.tower] = h
            if let p = t.peakRssMb { peaks.append(p) }
            var rounded: [String: Any] = [:]
            for (k, v) in st {
                if let d = v as? Double { rounded[k] = BenchStats.r4(d) } else if let l = v as? [Double] { rounded[k] = l.map(BenchStats.r4) } else { rounded[k] = v }
            }
            towerMaps[t.tower] = [
                "tower": t.tower, "file": nz(t.file),
                "load_ms": ["cold": nz(t.loadColdMs.map(BenchStats.r4)), "warm": NSNull(),
                            "first_inference": nz(t.firstInferenceMs.map(BenchStats.r4))] as [String: Any],
                "warmup_ms": t.run.warmupMs.map(BenchStats.r4), "iterations": t.run.samplesMs.count, "rounds": mode.rounds,
                "duration_s": BenchStats.r4(t.run.durationS), "stats": rounded, "samples_ms": t.run.samplesMs.map(BenchStats.r4),
                "headline_ms": h,
                "memory": ["scope": "app", "peak_rss_mb": nz(t.peakRssMb), "method": "task_vm_info phys_footprint (peak)"] as [String: Any],
            ] as [String: Any]
        }
        let names = towers.map { $0.tower }
        let t = targets[config.variant]
        let result: [String: Any] = [
            "variant": config.variant, "name": config.name,
            "bundle": ["path": nz(bundlePath), "format": config.runtime, "precision": config.precision, "variant": config.variant,
                       "checksum": nz(checksum(config.files)), "verified": false, "random_weights": config.randomWeights,
                       "batch": 1, "towers": names, "exporter_versions": config.versions] as [String: Any],
            "runtime": ["name": "coreml", "version": nz(runtimeVersion), "versions": ["coreml": runtimeVersion ?? ""],
                        "threads": NSNull(), "compute_units": computeUnits, "runner": "mc2export-ios-app"] as [String: Any],
            "device": device, "mode": mode.dict, "towers": towerMaps,
            "total": ["headline_ms": BenchStats.r4(headlines.values.reduce(0, +)), "stat": mode.headline, "towers": names,
                      "peak_rss_mb": nz(peaks.max()),
                      "note": "image and text towers measured separately and summed, as the paper reports"] as [String: Any],
            "target": ["image_ms": nz(t?.0), "text_ms": nz(t?.1), "total_ms": nz(t.map { $0.0 + $0.1 }),
                       "hardware": hardware, "band_ms": [3.0, 15.0]] as [String: Any],
            "verdict": verdict(variant: config.variant, name: config.name, measured: headlines, towers: names, device: device,
                               computeUnits: computeUnits, stat: mode.headline),
            // the bundle's verification vectors as run by the app when it loaded the bundle (VerifyReport.dict)
            "verify": verify ?? ["status": "not-run"],
            "source": "mc2export-ios-app benchmark mode", "created": created,
        ]
        let doc: [String: Any] = ["schema": "mc2export-bench", "schema_version": 1, "created": created,
                                  "tool": ["name": "mc2export-ios-app", "version": toolVersion], "host": NSNull(),
                                  "results": [result]]
        return try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
    }
}
