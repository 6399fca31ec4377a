import Foundation

/// Labels, prompt templates and the zero-shot math (mirrors ZeroShot.kt / mc2export.zeroshot).
public enum ZeroShot {
    public static let openaiTemplates: [String] = [
        "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
        "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
        "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
        "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
        "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
        "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
        "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
        "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
        "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
        "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
        "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
        "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
        "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
        "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
        "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
        "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
        "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
        "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
        "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
        "a photo of a small {}.", "a tattoo of the {}.",
    ]
    public static let simpleTemplates: [String] = [
        "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
        "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
    ]
    public static let maxLabels = 1000

    /// Labels from the text field (commas or new lines); an error message for the screen instead. Split on
    /// Unicode scalars, not Characters: "\r\n" is one Character in Swift, and splitting Characters on "\n" would
    /// keep "cat\r\ndog" whole (Kotlin splits UTF-16 units: "\r" then collapses away as whitespace).
    public static func parseLabels(_ text: String) -> Result<[String], BundleError> {
        let labels = text.unicodeScalars.split(whereSeparator: { $0 == "," || $0 == "\n" })
            .map { TextCleaner.collapseWhitespace(String(String.UnicodeScalarView($0))) }.filter { !$0.isEmpty }
        if labels.isEmpty { return .failure(BundleError("Type at least one label, e.g. \"cat, dog, car\".")) }
        var seen = Set<[Unicode.Scalar]>()
        for l in labels where !seen.insert(Array(l.unicodeScalars)).inserted {
            return .failure(BundleError("The label \"\(l)\" appears twice: give each class once."))
        }
        if labels.count > maxLabels { return .failure(BundleError("Too many labels (\(labels.count); at most \(maxLabels)).")) }
        return .success(labels)
    }

    public struct Prompt { public let label: String; public let text: String; public let tokens: TokenizedText }

    public static func prompts(_ labels: [String], _ templates: [String], _ tok: ClipTokenizer) throws -> [Prompt] {
        try labels.flatMap { l in try templates.map { t in
            let text = t.replacingOccurrences(of: "{}", with: l)
            return Prompt(label: l, text: text, tokens: try tok.tokenize(text))
        } }
    }

    public static func truncationWarning(_ prompts: [Prompt], contextLength: Int) -> String? {
        let cut = prompts.filter { $0.tokens.truncated }
        guard let first = cut.first else { return nil }
        let shown = first.text.count > 60 ? String(first.text.prefix(60)) + "..." : first.text
        return "\(cut.count) prompt(s) longer than \(contextLength) tokens were truncated (as in Python), e.g. \"\(shown)\""
    }

    public static func l2normalize(_ v: [Float]) -> [Float] {
        let n = v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        return n == 0 ? v : v.map { Float(Double($0) / n) }
    }

    public static func dot(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "embedding sizes differ")
        var s = 0.0
        for i in 0..<a.count { s += Double(a[i]) * Double(b[i]) }
        return Float(s)
    }

    public static func classEmbedding(_ embs: [[Float]]) -> [Float] {
        let d = embs[0].count
        var acc = [Double](repeating: 0, count: d)
        for e in embs { let u = l2normalize(e); for i in 0..<d { acc[i] += Double(u[i]) } }
        return l2normalize(acc.map { Float($0 / Double(embs.count)) })
    }

    public static func probabilities(_ image: [Float], _ classes: [[Float]], logitScale: Float) -> [Float] {
        let u = l2normalize(image)
        let logits = classes.map { Double(logitScale) * Double(dot(u, $0)) }
        let m = logits.max() ?? 0
        let e = logits.map { exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { Float($0 / s) }
    }

    public static func topK(_ v: [Float], _ k: Int) -> [Int] {
        Array(v.indices.sorted { v[$0] != v[$1] ? v[$0] > v[$1] : $0 < $1 }.prefix(k))
    }
}

/// The photo index: one normalized embedding per photo (key = PHAsset localIdentifier), saved as a plist.
/// Lookups by key are O(1) (a key -> position table, rebuilt on load; not stored).
public struct EmbeddingIndex: Codable {
    public let variant: String, runtime: String, precision: String, dim: Int
    public private(set) var keys: [String] = []
    public private(set) var stamps: [Double] = []
    public private(set) var vectors: [[Float]] = []
    private var position: [String: Int] = [:]

    private enum CodingKeys: String, CodingKey { case variant, runtime, precision, dim, keys, stamps, vectors }

    public init(variant: String, runtime: String, precision: String, dim: Int) {
        self.variant = variant; self.runtime = runtime; self.precision = precision; self.dim = dim
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        variant = try c.decode(String.self, forKey: .variant)
        runtime = try c.decode(String.self, forKey: .runtime)
        precision = try c.decode(String.self, forKey: .precision)
        dim = try c.decode(Int.self, forKey: .dim)
        keys = try c.decode([String].self, forKey: .keys)
        stamps = try c.decode([Double].self, forKey: .stamps)
        vectors = try c.decode([[Float]].self, forKey: .vectors)
        guard keys.count == stamps.count, keys.count == vectors.count, vectors.allSatisfy({ $0.count == dim }) else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "inconsistent index"))
        }
        for (i, k) in keys.enumerated() { position[k] = i }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(variant, forKey: .variant)
        try c.encode(runtime, forKey: .runtime)
        try c.encode(precision, forKey: .precision)
        try c.encode(dim, forKey: .dim)
        try c.encode(keys, forKey: .keys)
        try c.encode(stamps, forKey: .stamps)
        try c.encode(vectors, forKey: .vectors)
    }

    public var count: Int { keys.count }

    public func contains(_ key: String, stamp: Double) -> Bool {
        guard let i = position[key] else { return false }
        return stamps[i] == stamp
    }

    public mutating func put(_ key: String, stamp: Double, _ e: [Float]) {
        precondition(e.count == dim, "embedding has \(e.count) values, the index holds \(dim)-d vectors")
        let v = ZeroShot.l2normalize(e)
        if let i = position[key] {
            stamps[i] = stamp; vectors[i] = v
        } else {
            position[key] = keys.count
            keys.append(key); stamps.append(stamp); vectors.append(v)
        }
    }

    public mutating func retain(_ keep: (String) -> Bool) {
        let idx = keys.indices.filter { keep(keys[$0]) }
        keys = idx.map { keys[$0] }; stamps = idx.map { stamps[$0] }; vectors = idx.map { vectors[$0] }
        position = [:]
        for (i, k) in keys.enumerated() { position[k] = i }
    }

    public func search(_ query: [Float], k: Int) -> [(key: String, score: Float)] {
        let q = ZeroShot.l2normalize(query)
        let scores = vectors.map { ZeroShot.dot(q, $0) }
        return ZeroShot.topK(scores, k).map { (key: keys[$0], score: scores[$0]) }
    }

    public func save(to url: URL) throws {
        let enc = PropertyListEncoder()
        enc.outputFormat = .binary
        try enc.encode(self).write(to: url, options: .atomic)
    }

    /// nil when missing, damaged or built by another model.
    public static func load(from url: URL, variant: String, runtime: String, precision: String, dim: Int) -> EmbeddingIndex? {
        guard let data = try? Data(contentsOf: url), let idx = try? PropertyListDecoder().decode(EmbeddingIndex.self, from: data),
              idx.variant == variant, idx.runtime == runtime, idx.precision == precision, idx.dim == dim else { return nil }
        return idx
    }
}
