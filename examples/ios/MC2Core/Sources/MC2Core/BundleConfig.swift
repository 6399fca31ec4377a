import Foundation

/// A bundle problem, worded for the screen (mirrors BundleException in BundleConfig.kt).
public struct BundleError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum ImageInputKind: Sendable { case unitNCHW, normalizedNCHW, pixelBuffer }

/// What the apps read from config.json; the same keys and fallbacks as BundleConfig.kt (documented there and
/// in examples/README.md).
public struct BundleConfig {
    public let runtime: String
    public let variant: String
    public let name: String
    public let precision: String
    public let resolution: Int
    public let interpolation: Interpolation
    public let mean: [Float]
    public let std: [Float]
    public let contextLength: Int
    public let embedDim: Int
    public let logitScale: Float
    public let outputNormalized: Bool
    public let imageModelFile: String?
    public let textModelFile: String?
    public let imageInput: ImageInputKind
    public let vocabFile: String
    public let mergesFile: String
    public let randomWeights: Bool
    public let versions: [String: String]
    public let files: [String: Any]
    /// config.json's file table: path -> sha256 (verify/ files are checked against it).
    public var fileSha256: [String: String] {
        var out: [String: String] = [:]
        for (k, v) in files { out[k] = ((v as? [String: Any])?["sha256"] as? String) ?? "" }
        return out
    }

    public var hasImage: Bool { imageModelFile != nil }
    public var hasText: Bool { textModelFile != nil }

    public static let format = "mc2export-bundle"
    public static let supportedVersion = 1
    static let extensions = ["onnx": ".onnx", "executorch": ".pte", "coreml": ".mlpackage"]

    public func missingFiles(_ exists: (String) -> Bool) -> [String] {
        var need: [String] = []
        if let f = imageModelFile { need.append(f) }
        if let f = textModelFile { need += [f, vocabFile, mergesFile] }
        return need.filter { !exists($0) }
    }

    public var summary: String {
        "\(name) (\(runtime), \(precision), \(resolution)px \(interpolation.rawValue), \(embedDim)-d)"
            + (randomWeights ? " - RANDOM WEIGHTS: results are meaningless" : "")
    }

    /// JSONSerialization gives NSNumber for numbers *and* booleans: tell them apart as Kotlin's parser does.
    /// Apple: the CFBoolean singletons. Linux Foundation (no CoreFoundation re-export) marks a JSON boolean
    /// with the Objective-C type code of BOOL ("c" or "B"); JSON numbers are parsed as Int or Double, never
    /// as the 8-bit integers that share the code.
    static func isBool(_ v: Any?) -> Bool {
        guard let n = v as? NSNumber else { return false }
        #if canImport(Darwin)
        return CFGetTypeID(n) == CFBooleanGetTypeID()
        #else
        let code = String(cString: n.objCType)
        return code == "c" || code == "B"
        #endif
    }

    static func describe(_ v: Any?) -> String {
        guard let v = v, !(v is NSNull) else { return "null" }
        if isBool(v) { return (v as! NSNumber).boolValue ? "true" : "false" }
        if let s = v as? String { return "\"\(s.count > 40 ? String(s.prefix(40)) + "..." : s)\"" }
        if v is [String: Any] { return "an object" }
        if v is [Any] { return "an array" }
        return "\(v)"
    }

    /// A JSON value, nil for a missing key or an explicit null.
    static func present(_ v: Any?) -> Any? {
        guard let v = v, !(v is NSNull) else { return nil }
        return v
    }

    static func int(_ v: Any?, default d: Int, _ what: String) throws -> Int {
        guard let v = present(v) else { return d }
        return try int(v, what)
    }

    static func int(_ v: Any?, _ what: String) throws -> Int {
        guard let n = v as? NSNumber, !isBool(v), n.doubleValue == n.doubleValue.rounded(), abs(n.doubleValue) <= Double(Int32.max) else {
            throw BundleError("config.json: \(what) must be an integer, got \(describe(v))")
        }
        return n.intValue
    }

    static func number(_ v: Any?, _ what: String) throws -> Double {
        guard let n = v as? NSNumber, !isBool(v), n.doubleValue.isFinite else {
            throw BundleError("config.json: \(what) must be a number, got \(describe(v))")
        }
        return n.doubleValue
    }

    static func bool(_ v: Any?, _ what: String) throws -> Bool {
        guard isBool(v) else { throw BundleError("config.json: \(what) must be true or false, got \(describe(v))") }
        return (v as! NSNumber).boolValue
    }

    private static func triple(_ v: Any?, _ what: String) throws -> [Float] {
        guard let l = v as? [Any] else { throw BundleError("config.json: \(what) is missing") }
        guard l.count == 3 else { throw BundleError("config.json: \(what) must hold 3 numbers, got \(l.count)") }
        return try l.enumerated().map { i, x in Float(try number(x, "\(what)[\(i)]")) }
    }

    /// Parse config.json; `expectedRuntime` is the runtime this app runs ("coreml" on iOS).
    public static func parse(_ data: Data, expectedRuntime: String?) throws -> BundleConfig {
        guard let root = try? JSONSerialization.jsonObject(with: data), let c = root as? [String: Any] else {
            throw BundleError("config.json is not valid JSON: re-export the bundle")
        }
        guard (c["format"] as? String) == format else {
            throw BundleError("this folder is not an mc2export bundle (config.json format is not \"\(format)\"): export one with `mc2export coreml --variant s0 --out DIR`")
        }
        let version = try int(c["bundle_version"], default: 1, "bundle_version")
        if version > supportedVersion { throw BundleError("bundle version \(version) is newer than this app understands (\(supportedVersion)): update the app") }
        guard let runtime = c["runtime"] as? String, extensions[runtime] != nil else {
            throw BundleError("config.json: unknown runtime (expected onnx, executorch or coreml)")
        }
        if let want = expectedRuntime, runtime != want {
            throw BundleError("this app runs \(want) bundles (\(extensions[want] ?? "") models), but this is a \(runtime) bundle: export one with `mc2export \(want) --variant s0 --out DIR`")
        }
        guard let variant = c["variant"] as? String else { throw BundleError("config.json: variant is missing") }
        let batch = try int(c["batch"], default: 1, "batch")
        if batch != 1 { throw BundleError("the bundle was exported with --batch \(batch): the apps need --batch 1") }
        guard let pre = c["preprocess"] as? [String: Any] else { throw BundleError("config.json: preprocess is missing") }
        let resolution = try int(pre["resolution"] ?? c["resolution"] ?? pre["size"], "preprocess.resolution")
        guard (16...4096).contains(resolution) else { throw BundleError("config.json: preprocess.resolution \(resolution) is out of range") }
        guard let interpName = pre["interpolation"] as? String, let interp = Interpolation.parse(interpName) else {
            throw BundleError("config.json: preprocess.interpolation \(describe(pre["interpolation"])) is not supported (bilinear or bicubic)")
        }
        let resize = (pre["resize"] ?? pre["resize_mode"] ?? "shortest") as? String
        guard resize == "shortest" else { throw BundleError("config.json: preprocess.resize '\(resize ?? "?")' is not supported (only shortest)") }
        guard ((pre["crop"] ?? "center") as? String) == "center" else { throw BundleError("config.json: only center crop is supported") }
        let mean = try triple(pre["mean"], "preprocess.mean"), std = try triple(pre["std"], "preprocess.std")
        if std.contains(0) { throw BundleError("config.json: preprocess.std must not contain 0") }
        let tok = c["tokenizer"] as? [String: Any]
        let ctx = try int(present(tok?["context_length"]) ?? c["context_length"], default: 77, "context_length")
        guard ctx >= 2 else { throw BundleError("config.json: context_length must be >= 2") }
        let embed = try int(c["embed_dim"], "embed_dim")
        guard embed >= 1 else { throw BundleError("config.json: embed_dim must be positive") }
        var ls: Float = 100
        if let raw = present(c["logit_scale"]) { ls = Float(try number(raw, "logit_scale")) }
        guard ls > 0, ls.isFinite else { throw BundleError("config.json: logit_scale must be a positive number, got \(describe(c["logit_scale"]))") }
        var normalized = true
        if let raw = present(c["output_normalized"]) { normalized = try bool(raw, "output_normalized") }
        guard let models = c["models"] as? [String: Any] else { throw BundleError("config.json: models is missing (no model files listed)") }
        let image = models["image"] as? [String: Any], text = models["text"] as? [String: Any]
        if image == nil && text == nil { throw BundleError("config.json: models lists neither an image nor a text model") }
        let ext = extensions[runtime]!
        func file(_ m: [String: Any]?, _ what: String) throws -> String? {
            guard let m = m else { return nil }
            guard let f = m["file"] as? String else { throw BundleError("config.json: \(what).file is missing") }
            guard f.hasSuffix(ext) else { throw BundleError("\(what).file '\(f)' is not a \(ext) model: this bundle does not match its runtime") }
            return f
        }
        let contract = image?["input"] as? [String: Any]
        var kind = ImageInputKind.unitNCHW
        if let k = contract {
            if (k["type"] as? String) == "ImageType" { kind = .pixelBuffer } else if let norm = k["normalization"] as? String,
                !(norm.hasPrefix("inside") || norm.hasPrefix("none")) { kind = .normalizedNCHW }
        } else if runtime == "coreml" { kind = .pixelBuffer }
        var randomWeights = false
        if let raw = present((c["weights"] as? [String: Any])?["random_weights"]) { randomWeights = try bool(raw, "weights.random_weights") }
        var versions: [String: String] = [:]
        for (k, v) in (c["versions"] as? [String: Any]) ?? [:] { versions[k] = "\(v)" }
        return BundleConfig(
            runtime: runtime, variant: variant, name: (c["name"] as? String) ?? variant, precision: (c["precision"] as? String) ?? "fp32",
            resolution: resolution, interpolation: interp, mean: mean, std: std, contextLength: ctx, embedDim: embed,
            logitScale: ls, outputNormalized: normalized, imageModelFile: try file(image, "models.image"),
            textModelFile: try file(text, "models.text"), imageInput: kind,
            vocabFile: (tok?["vocab"] as? String) ?? "vocab.json", mergesFile: (tok?["merges"] as? String) ?? "merges.txt",
            randomWeights: randomWeights,
            versions: versions, files: (c["files"] as? [String: Any]) ?? [:])
    }
}
