import Foundation

/// The bundle's verification vectors (docs/bundle.md, "verify/: verification vectors") read strictly and run
/// through the app's own models when a bundle loads. Twin of VerifyVectors.kt (tested on the JVM against the
/// same fixture, examples/shared/fixtures/verify-bundle): the same checks, messages, figures and pass rule
/// (mc2export/export/validate.py: per-row cosine, max-abs over the std of the expected rows).
public struct VerifyError: Error, CustomStringConvertible {
    public let message: String
    init(_ m: String) { message = "verify/: " + m }
    public var description: String { message }
}

public struct TowerCheck {
    public let tower: String
    public let rows: Int
    public let cosines: [Double]
    public let maxAbs: Double
    public let referenceStd: Double
    public let finite: Bool
    public let failures: [String]
    public let seconds: Double

    public var cosineMin: Double { cosines.min() ?? .nan }
    public var cosineMean: Double { cosines.reduce(0, +) / Double(max(cosines.count, 1)) }
    public var maxAbsOverStd: Double { referenceStd > 0 ? maxAbs / referenceStd : .infinity }
    public var passed: Bool { failures.isEmpty }

    public var dict: [String: Any] {
        ["rows": rows, "cosine_min": cosineMin, "cosine_mean": cosineMean, "max_abs": maxAbs, "reference_std": referenceStd,
         "max_abs_over_std": maxAbsOverStd, "finite": finite, "passed": passed, "failures": failures,
         "seconds": (seconds * 10000).rounded() / 10000]
    }
}

public struct VerifyReport {
    public let status: String   // passed | failed | absent | error
    public let message: String?
    public let manifestVersion: Int?
    public let precision: String?
    public let tier: String?
    public let tolerance: [String: Double]
    public let towers: [TowerCheck]

    public var passed: Bool { status == "passed" }

    static func absent() -> VerifyReport {
        VerifyReport(status: "absent", message: "the bundle has no verify/ folder (exported before verification vectors existed)",
                     manifestVersion: nil, precision: nil, tier: nil, tolerance: [:], towers: [])
    }

    static func error(_ m: String) -> VerifyReport {
        VerifyReport(status: "error", message: m, manifestVersion: nil, precision: nil, tier: nil, tolerance: [:], towers: [])
    }

    /// Lines for the screen: the verdict with the tolerance, then one line per tower with its figures.
    public var lines: [String] {
        switch status {
        case "absent": return ["Verification vectors: none in this bundle (re-export to get verify/)"]
        case "error": return ["Verification vectors: ERROR - \(message ?? "")"]
        default:
            var tol = "cosine >= \(tolerance["cosine_min"] ?? 0)"
            if let k = tolerance["max_abs_over_std"] { tol += ", max-abs <= \(k) x std" }
            return ["Verification vectors: \(passed ? "PASSED" : "FAILED") (tier \(tier ?? precision ?? "?"): \(tol))"] + towers.map { t in
                "\(t.tower): \(t.rows) rows, cosine min \(String(format: "%.7f", t.cosineMin)), max-abs \(String(format: "%.2e", t.maxAbs)) = "
                    + "\(String(format: "%.2e", t.maxAbsOverStd)) x std: " + (t.passed ? "PASS" : "FAIL - " + t.failures.joined(separator: "; "))
            }
        }
    }

    /// What goes into the benchmark document (result "verify").
    public var dict: [String: Any] {
        var m: [String: Any] = ["status": status, "passed": status == "absent" ? NSNull() as Any : passed as Any]
        if let msg = message { m[status == "error" ? "error" : "note"] = msg }
        if let v = manifestVersion {
            m["manifest_version"] = v
            m["precision"] = precision.map { $0 as Any } ?? NSNull()
            m["tier"] = tier.map { $0 as Any } ?? NSNull()
            m["tolerance"] = tolerance
            var t: [String: Any] = [:]
            for c in towers { t[c.tower] = c.dict }
            m["towers"] = t
        }
        return m
    }
}

public enum VerifyVectors {
    public static let manifest = "verify/manifest.json"
    public static let supportedVersion = 1

    struct ArrayFile {
        let file: String, dtype: String, shape: [Int]
        var count: Int { shape.reduce(1, *) }
        var bytes: Int { count * (dtype == "uint8" ? 1 : 4) }
    }

    struct TowerPlan { let tower: String, inputs: ArrayFile, expected: ArrayFile, rows: Int, tolerance: [String: Double] }
    struct Plan { let version: Int, precision: String?, tier: String?, tolerance: [String: Double], towers: [TowerPlan] }

    static func integer(_ v: Any?) -> Int? {
        guard let n = v as? NSNumber, !BundleConfig.isBool(v), n.doubleValue == n.doubleValue.rounded() else { return nil }
        return n.intValue
    }

    static func arrayFile(_ v: Any?, _ what: String, _ dtype: String, _ rank: Int) throws -> ArrayFile {
        guard let e = v as? [String: Any] else { throw VerifyError("manifest.json: \(what) is missing") }
        guard let file = e["file"] as? String, file.hasPrefix("verify/"), !file.contains(".."), !file.contains("\\"), !file.contains("//") else {
            throw VerifyError("manifest.json: \(what).file must be a path inside verify/, got \(BundleConfig.describe(e["file"]))")
        }
        guard (e["dtype"] as? String) == dtype else {
            throw VerifyError("manifest.json: \(what).dtype must be \"\(dtype)\", got \(BundleConfig.describe(e["dtype"]))")
        }
        guard let list = e["shape"] as? [Any], list.count == rank else {
            throw VerifyError("manifest.json: \(what).shape must be \(rank) positive integers, got \(BundleConfig.describe(e["shape"]))")
        }
        let shape = list.compactMap { integer($0) }.filter { $0 >= 1 }
        guard shape.count == rank else {
            throw VerifyError("manifest.json: \(what).shape must be \(rank) positive integers, got \(BundleConfig.describe(e["shape"]))")
        }
        return ArrayFile(file: file, dtype: dtype, shape: shape)
    }

    /// Check the manifest against the bundle's config; the plan of what to run.
    static func parseManifest(_ data: Data, _ cfg: BundleConfig) throws -> Plan {
        guard data.count <= BundleFolder.maxJSONBytes, StrictJSON.depth(data) <= BundleFolder.maxJSONDepth,
              let root = try? JSONSerialization.jsonObject(with: data) else { throw VerifyError("manifest.json is not valid JSON") }
        guard let m = root as? [String: Any] else { throw VerifyError("manifest.json must be a JSON object") }
        guard let version = integer(m["version"]) else { throw VerifyError("manifest.json: version must be an integer") }
        if version > supportedVersion {
            throw VerifyError("manifest version \(version) is newer than this app understands (\(supportedVersion)): update the app")
        }
        if version != supportedVersion { throw VerifyError("manifest version \(version) is not one this app reads (\(supportedVersion)): re-export the bundle") }
        guard (m["byte_order"] as? String) == "little" else {
            throw VerifyError("manifest.json: byte_order must be \"little\", got \(BundleConfig.describe(m["byte_order"]))")
        }
        guard integer(m["embed_dim"]) == cfg.embedDim else {
            throw VerifyError("manifest.json: embed_dim \(BundleConfig.describe(m["embed_dim"])) differs from config.json's \(cfg.embedDim)")
        }
        guard BundleConfig.isBool(m["output_normalized"]), (m["output_normalized"] as! NSNumber).boolValue == cfg.outputNormalized else {
            throw VerifyError("manifest.json: output_normalized \(BundleConfig.describe(m["output_normalized"])) differs from config.json's \(cfg.outputNormalized)")
        }
        // R3: the tolerance is the bundle precision's tier, in code; the manifest's numbers are informational
        guard let bundleTier = Tier.of(cfg.precision) else { throw VerifyError("precision '\(cfg.precision)' has no tolerance tier this app knows") }
        let tolerance = Tier.tolerance(bundleTier)
        guard let towers = m["towers"] as? [String: Any] else { throw VerifyError("manifest.json: towers is missing") }
        for k in towers.keys where k != "image" && k != "text" { throw VerifyError("manifest.json: unknown tower \"\(k)\"") }
        var plans: [TowerPlan] = []
        for (name, has) in [("image", cfg.hasImage), ("text", cfg.hasText)] {
            guard let t = towers[name] else {
                if has { throw VerifyError("manifest.json has no \(name) vectors, but the bundle has a \(name) model") }
                continue
            }
            if !has { throw VerifyError("manifest.json has \(name) vectors, but the bundle has no \(name) model") }
            guard let tm = t as? [String: Any] else { throw VerifyError("manifest.json: towers.\(name) must be a JSON object") }
            let inputs: ArrayFile
            if name == "image" {
                inputs = try arrayFile(tm["inputs"], "towers.image.inputs", "uint8", 4)
            } else {
                inputs = try arrayFile(tm["inputs"], "towers.text.inputs", "int32", 2)
            }
            let expected = try arrayFile(tm["expected"], "towers.\(name).expected", "float32", 2)
            let rows = inputs.shape[0]
            if name == "image" {
                let s = inputs.shape
                if s[1] != cfg.resolution || s[2] != cfg.resolution || s[3] != 3 {
                    throw VerifyError("image inputs shape \(s) is not [N, \(cfg.resolution), \(cfg.resolution), 3] (the bundle's resolution)")
                }
                if let layout = (tm["inputs"] as? [String: Any])?["layout"], (layout as? String) != "NHWC RGB" {
                    throw VerifyError("image inputs layout \(BundleConfig.describe(layout)) is not \"NHWC RGB\"")
                }
            } else if inputs.shape[1] != cfg.contextLength {
                throw VerifyError("text inputs shape \(inputs.shape) is not [M, \(cfg.contextLength)] (the bundle's context length)")
            }
            if expected.shape[0] != rows || expected.shape[1] != cfg.embedDim {
                throw VerifyError("\(name) expected shape \(expected.shape) is not [\(rows), \(cfg.embedDim)]")
            }
            if let p = tm["probe_rows"], (p as? [Any])?.count != rows {
                throw VerifyError("manifest.json: towers.\(name).probe_rows must list \(rows) rows")
            }
            if name == "text", let t = tm["texts"], (t as? [Any])?.count != rows {
                throw VerifyError("manifest.json: towers.text.texts must list \(rows) strings")
            }
            if rows > 10000 { throw VerifyError("manifest.json: towers.\(name) has \(rows) rows (at most 10000)") }
            // an `auto` bundle (OpenVINO) names each tower's own precision; its tier is taken from the table here
            var towerTier = bundleTier
            if cfg.precision == "auto", let p = tm["precision"] {
                guard let ps = p as? String, let t = Tier.of(ps) else {
                    throw VerifyError("manifest.json: towers.\(name).precision \(BundleConfig.describe(p)) has no tolerance tier this app knows")
                }
                towerTier = t
            }
            plans.append(TowerPlan(tower: name, inputs: inputs, expected: expected, rows: rows, tolerance: Tier.tolerance(towerTier)))
        }
        if plans.isEmpty { throw VerifyError("manifest.json lists no tower") }
        return Plan(version: version, precision: cfg.precision, tier: bundleTier, tolerance: tolerance, towers: plans)
    }

    static func sha256(_ d: Data) -> String { Digest.sha256Hex(d) }

    static func load(_ read: (String) throws -> Data?, _ f: ArrayFile, _ files: [String: String]) throws -> Data {
        guard let want = files[f.file], !want.isEmpty else { throw VerifyError("\(f.file) is not in config.json's files table") }
        guard let d = try read(f.file) else { throw VerifyError("\(f.file) is missing") }
        if d.count != f.bytes { throw VerifyError("\(f.file) holds \(d.count) bytes, expected \(f.bytes) (\(f.dtype) \(f.shape))") }
        if sha256(d) != want { throw VerifyError("\(f.file) is damaged (sha256 differs from config.json)") }
        return d
    }

    /// Little-endian 32-bit words of `d` (explicit byte order: never the host's by accident).
    static func le32(_ d: Data) -> [UInt32] {
        let b = [UInt8](d)
        return (0..<(b.count / 4)).map { (i: Int) -> UInt32 in
            let lo = UInt32(b[i * 4]) | UInt32(b[i * 4 + 1]) << 8
            let hi = UInt32(b[i * 4 + 2]) << 16 | UInt32(b[i * 4 + 3]) << 24
            return lo | hi
        }
    }

    /// validate.compare + validate.check.
    public static func compare(_ tower: String, got: [Float], expected: [Float], rows: Int, dim d: Int, tolerance tol: [String: Double],
                               seconds: Double) -> TowerCheck {
        var maxAbs = 0.0, sum = 0.0, finite = true
        var cos = [Double](repeating: 0, count: rows)
        for r in 0..<rows {
            var dot = 0.0, na = 0.0, nb = 0.0
            for j in 0..<d {
                let a = Double(got[r * d + j]), b = Double(expected[r * d + j])
                if !a.isFinite { finite = false }
                dot += a * b; na += a * a; nb += b * b
                maxAbs = max(maxAbs, abs(a - b))
                sum += b
            }
            cos[r] = dot / max(na.squareRoot() * nb.squareRoot(), 1e-30)
        }
        let mean = sum / Double(rows * d)
        let std = (expected.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(rows * d)).squareRoot()
        var failures: [String] = []
        let probe = TowerCheck(tower: tower, rows: rows, cosines: cos, maxAbs: maxAbs, referenceStd: std, finite: finite, failures: [],
                               seconds: seconds)
        if !finite { failures.append("non-finite outputs") }
        let cmin = tol["cosine_min"] ?? 1
        if !(probe.cosineMin >= cmin) { failures.append("cosine min \(String(format: "%.7f", probe.cosineMin)) < \(cmin)") }
        if let k = tol["max_abs_over_std"], !(probe.maxAbsOverStd <= k) {
            failures.append("max-abs \(String(format: "%.3e = %.2e", maxAbs, probe.maxAbsOverStd)) x std > \(k) x std")
        }
        return TowerCheck(tower: tower, rows: rows, cosines: cos, maxAbs: maxAbs, referenceStd: std, finite: finite, failures: failures,
                          seconds: seconds)
    }

    /// Run the vectors: `read` returns a bundle file (path relative to the bundle) or nil; `runImage` gets one
    /// R x R crop (the app feeds it as it feeds a photo's crop), `runText` one token row. Never throws.
    public static func run(_ cfg: BundleConfig, read: (String) throws -> Data?, runImage: (CroppedImage) throws -> [Float],
                           runText: ([Int32]) throws -> [Float]) -> VerifyReport {
        do {
            guard let m = try read(manifest) else { return .absent() }
            guard let want = cfg.fileSha256[manifest], !want.isEmpty, sha256(m) == want else {
                throw VerifyError("manifest.json is not covered by config.json's files table (edited or damaged)")
            }
            let plan = try parseManifest(m, cfg)
            let d = cfg.embedDim
            let files = cfg.fileSha256
            var checks: [TowerCheck] = []
            for t in plan.towers {
                let inputs = [UInt8](try load(read, t.inputs, files))
                let words = t.tower == "text" ? le32(Data(inputs)) : []
                let expected = le32(try load(read, t.expected, files)).map { Float(bitPattern: $0) }
                if !expected.allSatisfy({ $0.isFinite }) { throw VerifyError("\(t.expected.file) holds non-finite expected values") }
                var got = [Float](repeating: 0, count: t.rows * d)
                let t0 = DispatchTime.now().uptimeNanoseconds
                for r in 0..<t.rows {
                    let out: [Float]
                    if t.tower == "image" {
                        let n = cfg.resolution * cfg.resolution * 3
                        out = try runImage(CroppedImage(size: cfg.resolution, rgb: Array(inputs[(r * n)..<((r + 1) * n)])))
                    } else {
                        let l = cfg.contextLength
                        out = try runText((0..<l).map { Int32(bitPattern: words[r * l + $0]) })
                    }
                    guard out.count == d else { throw VerifyError("the \(t.tower) model returned \(out.count) values, expected \(d)") }
                    got.replaceSubrange((r * d)..<((r + 1) * d), with: out)
                }
                let secs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                checks.append(compare(t.tower, got: got, expected: expected, rows: t.rows, dim: d, tolerance: t.tolerance, seconds: secs))
            }
            return VerifyReport(status: checks.allSatisfy { $0.passed } ? "passed" : "failed", message: nil, manifestVersion: plan.version,
                                precision: plan.precision, tier: plan.tier, tolerance: plan.tolerance, towers: checks)
        } catch let e as VerifyError {
            return .error(e.message)
        } catch {
            return .error("verify/: \(error)")
        }
    }
}
