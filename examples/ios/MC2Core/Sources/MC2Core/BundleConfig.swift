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
    /// tower -> the model's input and output names config.json records (R6: checked at model load)
    public let ioNames: [String: (inputs: [String], outputs: [String])]
    /// extra files a model consists of (models.<tower>.files: external weights)
    public let modelExtraFiles: [String]

    /// Every path config.json names that a reader may open, with the field it came from (R2).
    public var paths: [(field: String, path: String)] {
        var out: [(field: String, path: String)] = []
        if let f = imageModelFile { out.append(("models.image.file", f)) }
        if let f = textModelFile { out += [("models.text.file", f), ("tokenizer.vocab", vocabFile), ("tokenizer.merges", mergesFile)] }
        out += modelExtraFiles.map { ("models.files", $0) }
        out += files.keys.sorted().map { ("files", $0) }
        return out
    }

    /// R6: the loaded model's input / output names must be the ones config.json records (when it records them).
    public func checkIONames(tower: String, inputs: [String], outputs: [String]) throws {
        guard let want = ioNames[tower] else { return }
        if Set(inputs) != Set(want.inputs) || Set(outputs) != Set(want.outputs) {
            throw BundleError("the \(tower) model's inputs \(inputs.sorted()) / outputs \(outputs.sorted()) differ from config.json's "
                              + "\(want.inputs.sorted()) / \(want.outputs.sorted()): the bundle is refused; re-export it")
        }
    }
    /// config.json's file table: path -> sha256 (verify/ files are checked against it).
    public var fileSha256: [String: String] {
        var out: [String: String] = [:]
        for (k, v) in files { out[k] = ((v as? [String: Any])?["sha256"] as? String) ?? "" }
        return out
    }

    public var hasImage: Bool { imageModelFile != nil }
    public var hasText: Bool { textModelFile != nil }

    public static let format = "mc2export-bundle"
    public static let supportedVersion = 2
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

    /// R0: bundle_version must be exactly the one this app reads (2); older bundles are re-exported.
    static func checkVersion(_ v: Any?) throws {
        guard let n = v as? NSNumber, !isBool(v), let version = Int(exactly: n.doubleValue) else {
            throw BundleError("bundle_version \(describe(v)): written by another mc2export; re-export the bundle with this one")
        }
        if version > supportedVersion {
            throw BundleError("bundle_version \(version): written by a newer mc2export (this app reads \(supportedVersion)); update the app")
        }
        if version != supportedVersion {
            throw BundleError("bundle_version \(version): written by another mc2export (this app reads \(supportedVersion)); re-export the bundle with this one")
        }
    }

    /// Parse config.json; `expectedRuntime` is the runtime this app runs ("coreml" on iOS). Apps read a bundle
    /// folder through BundleFolder (config.json.sha256, paths); this checks the content (R0, R5).
    public static func parse(_ data: Data, expectedRuntime: String?) throws -> BundleConfig {
        let c = try StrictJSON.object(data, "config.json", hint: "re-export the bundle")
        guard (c["format"] as? String) == format else {
            throw BundleError("this folder is not an mc2export bundle (config.json format is not \"\(format)\"): export one with `mc2export coreml --variant s0 --out DIR`")
        }
        try checkVersion(c["bundle_version"])
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
        guard (2...1024).contains(ctx) else { throw BundleError("config.json: context_length must be in 2..1024") }
        let embed = try int(c["embed_dim"], "embed_dim")
        guard embed >= 1 else { throw BundleError("config.json: embed_dim must be positive") }
        guard embed <= 8192 else { throw BundleError("config.json: embed_dim must be at most 8192") }
        guard let precision = c["precision"] as? String, Tier.of(precision) != nil else {
            throw BundleError("config.json: precision \(describe(c["precision"])) is not one this app knows (fp32, fp16, bf16, int8, ...): update the app")
        }
        var ls: Float = 100
        if let raw = present(c["logit_scale"]) { ls = Float(try number(raw, "logit_scale")) }
        guard ls > 0, ls.isFinite else { throw BundleError("config.json: logit_scale must be a positive number, got \(describe(c["logit_scale"]))") }
        var normalized = true
        if let raw = present(c["output_normalized"]) { normalized = try bool(raw, "output_normalized") }
        guard let models = c["models"] as? [String: Any] else { throw BundleError("config.json: models is missing (no model files listed)") }
        for k in models.keys where k != "image" && k != "text" { throw BundleError("config.json: models.\(k.prefix(20)) is not a tower (image, text)") }
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
        var io: [String: (inputs: [String], outputs: [String])] = [:]
        var extra: [String] = []
        for (tower, m) in [("image", image), ("text", text)] {
            guard let m else { continue }
            func names(_ side: String) throws -> [String]? {
                guard let raw = present(m[side]) else { return nil }
                guard let l = raw as? [Any] else { throw BundleError("config.json: models.\(tower).\(side) must be a list of {name, dtype, shape}") }
                return try l.map { e in
                    guard let n = (e as? [String: Any])?["name"] as? String else {
                        throw BundleError("config.json: models.\(tower).\(side) must be a list of {name, dtype, shape}")
                    }
                    return n
                }
            }
            let ins = try names("inputs"), outs = try names("outputs")
            if ins != nil || outs != nil { io[tower] = (ins ?? [], outs ?? []) }
            if let raw = present(m["files"]) {
                guard let l = raw as? [String] else { throw BundleError("config.json: models.\(tower).files must be a list of paths") }
                extra += l
            }
        }
        let table = (c["files"] as? [String: Any]) ?? [:]
        if present(c["files"]) != nil && !(c["files"] is [String: Any]) { throw BundleError("config.json: files must be the table of the bundle's files") }
        for (name, f) in table {
            guard let e = f as? [String: Any], let sha = e["sha256"] as? String, sha.utf8.count == 64,
                  sha.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }),
                  let b = e["bytes"] as? NSNumber, !isBool(b), b.doubleValue >= 0, b.doubleValue == b.doubleValue.rounded() else {
                throw BundleError("config.json: files['\(name.prefix(80))'] must be {sha256: 64 hex digits, bytes: an integer}")
            }
        }
        var versions: [String: String] = [:]
        for (k, v) in (c["versions"] as? [String: Any]) ?? [:] { versions[k] = "\(v)" }
        return BundleConfig(
            runtime: runtime, variant: variant, name: (c["name"] as? String) ?? variant, precision: precision,
            resolution: resolution, interpolation: interp, mean: mean, std: std, contextLength: ctx, embedDim: embed,
            logitScale: ls, outputNormalized: normalized, imageModelFile: try file(image, "models.image"),
            textModelFile: try file(text, "models.text"), imageInput: kind,
            vocabFile: (tok?["vocab"] as? String) ?? "vocab.json", mergesFile: (tok?["merges"] as? String) ?? "merges.txt",
            randomWeights: randomWeights,
            versions: versions, files: table, ioNames: io, modelExtraFiles: extra)
    }
}
