import Foundation

public enum TokenizerError: Error, CustomStringConvertible {
    case badFiles(String)
    /// BPE produced a symbol the vocabulary lacks (Kotlin: IllegalStateException; Python: KeyError). Cannot happen
    /// with files that passed fromFiles's checks.
    case unknownSymbol(String)
    public var description: String {
        switch self {
        case .badFiles(let m): return m
        case .unknownSymbol(let s): return "BPE symbol '\(s)' is not in the vocabulary"
        }
    }
}

/// One tokenized text: the int32 model row and what happened on the way.
public struct TokenizedText: Sendable {
    /// `[SOT, ids..., EOT, 0, ...]`, exactly contextLength values.
    public let row: [Int32]
    /// Length of `[SOT] + ids + [EOT]` before truncation.
    public let nTokens: Int
    /// The text did not fit: the row keeps its first contextLength ids and ends with EOT.
    public let truncated: Bool
    public var ids: [Int32] { Array(row.prefix(min(nTokens, row.count))) }
}

/// CLIP byte-level BPE, a port of mc2export.tokenizer (= open_clip) mirrored from ClipTokenizer.kt.
public final class ClipTokenizer {
    public static let sot: Int32 = 49406
    public static let eot: Int32 = 49407
    public static let vocabSize = 49408
    public static let nMerges = 49152 - 256 - 2
    static let sotText = "<start_of_text>"
    static let eotText = "<end_of_text>"

    /// GPT-2/CLIP byte table: index = byte, value = stand-in character; and the vocabulary order of the stand-ins.
    public static let byteEncoder: [String] = table().0
    public static let byteSymbols: [String] = table().1

    private static func table() -> ([String], [String]) {
        var printable: [Int] = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var enc = [String](repeating: "", count: 256)
        for b in printable { enc[b] = String(Character(Unicode.Scalar(UInt32(b))!)) }
        var extra = 0
        for b in 0..<256 where enc[b].isEmpty {
            enc[b] = String(Character(Unicode.Scalar(UInt32(256 + extra))!))
            extra += 1
        }
        let set = Set(printable)
        var ordered = printable.map { enc[$0] }
        for b in 0..<256 where !set.contains(b) { ordered.append(enc[b]) }
        printable.removeAll()
        return (enc, ordered)
    }

    private let encoder: [String: Int32]
    private let ranks: [String: Int]
    public let contextLength: Int
    private var cache: [String: [Int32]] = [:]

    init(encoder: [String: Int32], ranks: [String: Int], contextLength: Int) {
        self.encoder = encoder
        self.ranks = ranks
        self.contextLength = contextLength
    }

    /// Merge lines of merges.txt, skipping exactly the first (header) line.
    public static func parseMerges(_ text: String) throws -> [(String, String)] {
        let lines = text.components(separatedBy: "\n")
        guard let first = lines.first, first.hasPrefix("#version") else {
            throw TokenizerError.badFiles("merges.txt must start with the '#version: 0.2' header line")
        }
        var out: [(String, String)] = []
        out.reserveCapacity(nMerges)
        for line in lines.dropFirst() {
            let l = line.hasSuffix("\r") ? String(line.dropLast()) : line
            if l.isEmpty { continue }
            let parts = l.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw TokenizerError.badFiles("merges.txt line is not 'left right': '\(l)'")
            }
            out.append((String(parts[0]), String(parts[1])))
            if out.count == nMerges { break }
        }
        guard out.count == nMerges else {
            throw TokenizerError.badFiles("merges.txt holds \(out.count) merges, expected \(nMerges)")
        }
        return out
    }

    private static func rankTable(_ merges: [(String, String)]) -> [String: Int] {
        var r: [String: Int] = [:]
        r.reserveCapacity(merges.count)
        for (i, m) in merges.enumerated() { r[m.0 + " " + m.1] = i }
        return r
    }

    /// From a bundle's vocab.json and merges.txt.
    public static func fromFiles(vocab: Data, merges: String, contextLength: Int = 77) throws -> ClipTokenizer {
        let m = try parseMerges(merges)
        guard let obj = try? JSONSerialization.jsonObject(with: vocab) as? [String: Any] else {
            throw TokenizerError.badFiles("vocab.json is not a JSON object")
        }
        var enc: [String: Int32] = [:]
        enc.reserveCapacity(obj.count)
        for (k, v) in obj {
            guard let n = (v as? NSNumber)?.int32Value else { throw TokenizerError.badFiles("vocab.json: bad id for '\(k)'") }
            enc[k] = n
        }
        guard enc.count == vocabSize else { throw TokenizerError.badFiles("vocab.json holds \(enc.count) tokens, expected \(vocabSize)") }
        guard enc[sotText] == sot, enc[eotText] == eot else { throw TokenizerError.badFiles("vocab.json: special tokens are not 49406/49407") }
        // Every symbol BPE can produce must have an id -- the byte symbols (alone or word-final) and every merge.
        for b in byteSymbols where enc[b] == nil || enc[b + "</w>"] == nil {
            throw TokenizerError.badFiles("vocab.json lacks the byte symbol '\(b)': not CLIP's vocabulary")
        }
        for p in m where enc[p.0 + p.1] == nil {
            throw TokenizerError.badFiles("merges.txt and vocab.json do not belong together (merge '\(p.0) \(p.1)')")
        }
        guard contextLength >= 2 else { throw TokenizerError.badFiles("context length must be >= 2") }
        return ClipTokenizer(encoder: enc, ranks: rankTable(m), contextLength: contextLength)
    }

    private static func isLetter(_ u: Unicode.Scalar) -> Bool {
        switch u.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    private static func isNumber(_ u: Unicode.Scalar) -> Bool {
        switch u.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    private static let literals: [[Unicode.Scalar]] = [sotText, eotText, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
        .map { Array($0.unicodeScalars) }

    /// Case-insensitive literal match (regex IGNORECASE, simple folding: U+017F long s equals 's').
    private static func matchLiteral(_ s: [Unicode.Scalar], _ pos: Int, _ lit: [Unicode.Scalar]) -> Int? {
        var i = pos
        for p in lit {
            guard i < s.count else { return nil }
            let c = s[i].value
            let ok = c == p.value || ((0x41...0x5A).contains(c) && c + 32 == p.value) || (p.value == 0x73 && c == 0x17F)
            if !ok { return nil }
            i += 1
        }
        return i
    }

    /// CLIP's pre-tokenization of cleaned text (Python: `_PATTERN.findall`).
    public static func preTokenize(_ cleaned: String) -> [String] {
        let s = Array(cleaned.unicodeScalars)
        var out: [String] = []
        var i = 0
        outer: while i < s.count {
            for lit in literals {
                if let end = matchLiteral(s, i, lit) {
                    out.append(String(String.UnicodeScalarView(s[i..<end])))
                    i = end
                    continue outer
                }
            }
            let u = s[i]
            if isLetter(u) {
                var j = i + 1
                while j < s.count, isLetter(s[j]) { j += 1 }
                out.append(String(String.UnicodeScalarView(s[i..<j])))
                i = j
            } else if isNumber(u) {
                out.append(String(Character(u)))
                i += 1
            } else if TextCleaner.isPythonSpace(u.value) {
                i += 1
            } else {
                var j = i + 1
                while j < s.count, !isLetter(s[j]), !isNumber(s[j]), !TextCleaner.isPythonSpace(s[j].value) { j += 1 }
                out.append(String(String.UnicodeScalarView(s[i..<j])))
                i = j
            }
        }
        return out
    }

    private func bpe(_ piece: String) throws -> [Int32] {
        if let c = cache[piece] { return c }
        if piece == ClipTokenizer.sotText { return [ClipTokenizer.sot] }
        if piece == ClipTokenizer.eotText { return [ClipTokenizer.eot] }
        var word = Array(piece.utf8).map { ClipTokenizer.byteEncoder[Int($0)] }
        word[word.count - 1] += "</w>"
        while word.count > 1 {
            var bestRank = Int.max
            var best: (String, String)? = nil
            for k in 0..<(word.count - 1) {
                if let r = ranks[word[k] + " " + word[k + 1]], r < bestRank {
                    bestRank = r
                    best = (word[k], word[k + 1])
                }
            }
            guard let (first, second) = best else { break }
            var merged: [String] = []
            var k = 0
            while k < word.count {
                if k < word.count - 1, word[k] == first, word[k + 1] == second {
                    merged.append(first + second)
                    k += 2
                } else {
                    merged.append(word[k])
                    k += 1
                }
            }
            word = merged
        }
        let ids: [Int32] = try word.map { sym in
            guard let id = encoder[sym] else { throw TokenizerError.unknownSymbol(sym) }
            return id
        }
        if cache.count > 50_000 { cache.removeAll() }
        cache[piece] = ids
        return ids
    }

    public func encodeCleaned(_ cleaned: String) throws -> [Int32] {
        try ClipTokenizer.preTokenize(cleaned).flatMap { try bpe($0) }
    }

    public func encode(_ text: String) throws -> [Int32] { try encodeCleaned(TextCleaner.clean(text)) }

    /// The model row for `text` (portable cleaning, truncation as Python).
    public func tokenize(_ text: String) throws -> TokenizedText {
        let ids = try encode(text)
        let n = ids.count + 2
        var row = [Int32](repeating: 0, count: contextLength)
        row[0] = ClipTokenizer.sot
        if n > contextLength {
            for k in 0..<(contextLength - 1) { row[k + 1] = ids[k] }
            row[contextLength - 1] = ClipTokenizer.eot
        } else {
            for k in 0..<ids.count { row[k + 1] = ids[k] }
            row[ids.count + 1] = ClipTokenizer.eot
        }
        return TokenizedText(row: row, nTokens: n, truncated: n > contextLength)
    }
}
