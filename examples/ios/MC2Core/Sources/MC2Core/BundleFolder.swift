import Foundation

/// A bundle folder read under the reading rules of docs/bundle.md ("Reading a bundle safely"; the same rules
/// as mc2export/export/reading.py and the Kotlin / JS readers): config.json read once as bytes and checked
/// against config.json.sha256 (R1), bundle_version 2 only (R0, in BundleConfig.parse), every path taken from
/// a file relative and inside the folder after resolving symlinks (R2), strict bounded JSON (R5). Files are
/// read through `read(_:field:)`, which applies R2; verify/ takes its tolerance from the tier (R3, `Tier`).
public struct BundleFolder: Sendable {
    public let url: URL
    /// the folder's own resolved path: every file must resolve under it
    public let root: String
    /// sha256 of config.json's bytes (the photo index header names the bundle by it)
    public let configSha256: String
    public let configData: Data

    public static let configName = "config.json"
    public static let sealName = "config.json.sha256"
    public static let maxJSONBytes = 16 << 20
    public static let maxJSONDepth = 32

    /// Open a bundle folder: config.json's bytes, their checksum line. Parse with `config(expectedRuntime:)`.
    public init(_ url: URL) throws {
        self.url = url
        guard let r = Self.realpath(url.path) else { throw BundleError("the bundle folder '\(url.lastPathComponent)' cannot be read") }
        root = r
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent(Self.configName).path) else {
            throw BundleError("this folder is not an mc2export bundle (no config.json): export one with `mc2export coreml --variant s0 --out DIR`")
        }
        let cfgURL = try Self.inside(url, root: root, Self.configName, field: "config.json")
        let sealURL = try Self.inside(url, root: root, Self.sealName, field: "config.json.sha256")
        guard let data = try? Data(contentsOf: cfgURL), data.count <= Self.maxJSONBytes else {
            throw BundleError("config.json cannot be read or is too large: re-export the bundle")
        }
        configData = data
        configSha256 = Digest.sha256Hex(data)
        // R0 before R1: a bundle of another version gets the version message, not "edited or damaged"
        let obj = try StrictJSON.object(data, "config.json", hint: "re-export the bundle")
        guard (obj["format"] as? String) == BundleConfig.format else {
            throw BundleError("this folder is not an mc2export bundle (config.json format is not \"\(BundleConfig.format)\")")
        }
        try BundleConfig.checkVersion(obj["bundle_version"])
        let seal = try? Data(contentsOf: sealURL)
        guard let s = seal, s == Data("\(configSha256)  config.json\n".utf8) else {
            throw BundleError("config.json does not match config.json.sha256: the bundle was edited or damaged; re-export it")
        }
    }

    /// config.json parsed and checked (R0, R5); `expectedRuntime`: "coreml" on iOS.
    public func config(expectedRuntime: String?) throws -> BundleConfig {
        let cfg = try BundleConfig.parse(configData, expectedRuntime: expectedRuntime)
        // R2 for every path config.json names that the app opens
        for (field, path) in cfg.paths { _ = try Self.inside(url, root: root, path, field: field) }
        return cfg
    }

    /// The URL of a file named by a bundle file, refused unless it lies inside the folder (R2).
    public func file(_ rel: String, field: String) throws -> URL { try Self.inside(url, root: root, rel, field: field) }

    /// A file's bytes (R2), nil when it does not exist.
    public func read(_ rel: String, field: String) throws -> Data? {
        let u = try file(rel, field: field)
        return FileManager.default.fileExists(atPath: u.path) ? try Data(contentsOf: u) : nil
    }

    /// R2: a relative POSIX path (not empty, not absolute, no backslash, no NUL, no empty / "." / ".." part)
    /// that, symlinks resolved, lies inside the folder.
    static func inside(_ folder: URL, root: String, _ rel: String, field: String) throws -> URL {
        var why: String?
        if rel.isEmpty {
            why = "is not a relative path"
        } else if rel.hasPrefix("/") || rel.contains("\\") || rel.contains("\u{0}") {
            why = "is not a relative POSIX path"
        } else if rel.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            why = "has an empty, '.' or '..' component"
        } else {
            let joined = root + "/" + rel
            if let real = realpath(joined) {
                if !(real == root || real.hasPrefix(root.hasSuffix("/") ? root : root + "/")) { why = "leaves the bundle folder (a symlink out of it)" }
            } else if (try? FileManager.default.destinationOfSymbolicLink(atPath: joined)) != nil {
                why = "is a symlink that cannot be resolved"
            } else if let parent = realpath((joined as NSString).deletingLastPathComponent),
                      !(parent == root || parent.hasPrefix(root.hasSuffix("/") ? root : root + "/")) {
                why = "leaves the bundle folder (a symlink out of it)"
            }
        }
        if let why {
            let shown = rel.count > 80 ? String(rel.prefix(80)) + "..." : rel
            throw BundleError("the bundle is refused: \(field) '\(shown)' \(why): re-export it")
        }
        return folder.appendingPathComponent(rel)
    }

    /// The resolved path, nil when it does not exist.
    static func realpath(_ path: String) -> String? {
        guard let p = Foundation.realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}

/// Tolerances come from the precision tier, in code (R3: mc2export/export/validate.py TOLERANCES and
/// reading.TIERS), never from numbers in a file.
public enum Tier {
    static let ofPrecision: [String: String] = [
        "fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "int8": "compressed", "int8-static": "compressed",
        "int8-bf16": "compressed", "pal6": "compressed", "pal4": "compressed", "auto": "compressed",
    ]
    static let tolerances: [String: [String: Double]] = [
        "fp32": ["cosine_min": 0.99999, "max_abs_over_std": 1e-4], "fp16": ["cosine_min": 0.999],
        "bf16": ["cosine_min": 0.999], "compressed": ["cosine_min": 0.99],
    ]

    /// nil for a precision this app does not know (the bundle is refused).
    public static func of(_ precision: String) -> String? { ofPrecision[precision] }

    public static func tolerance(_ tier: String) -> [String: Double] { tolerances[tier] ?? ["cosine_min": 1] }
}

/// JSON parsed strictly (R5): bounded size and nesting depth (checked on the bytes before parsing, so a deep
/// document never reaches a recursive parser), no NaN / Infinity (JSONSerialization refuses them).
public enum StrictJSON {
    public static func object(_ data: Data, _ what: String, hint: String) throws -> [String: Any] {
        guard data.count <= BundleFolder.maxJSONBytes, depth(data) <= BundleFolder.maxJSONDepth,
              let obj = try? JSONSerialization.jsonObject(with: data), let o = obj as? [String: Any] else {
            throw BundleError("\(what) is not valid JSON (or too large or too deeply nested)\(hint.isEmpty ? "" : ": " + hint)")
        }
        return o
    }

    /// The deepest nesting of arrays / objects, strings skipped.
    static func depth(_ data: Data) -> Int {
        var d = 0, most = 0, inString = false, escaped = false
        for c in data {
            if inString {
                if escaped { escaped = false } else if c == 0x5C { escaped = true } else if c == 0x22 { inString = false }
            } else if c == 0x22 {
                inString = true
            } else if c == 0x5B || c == 0x7B {
                d += 1; most = max(most, d)
            } else if c == 0x5D || c == 0x7D {
                d -= 1
            }
        }
        return most
    }
}
