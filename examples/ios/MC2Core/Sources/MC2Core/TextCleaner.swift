import Foundation

/// The portable part of open_clip's text cleaning, mirrored from `mc2export/appvectors.py:portable_clean`
/// (the reference) and `TextCleaner.kt`. See the Kotlin file for what is and is not ported: HTML entities
/// (a common subset + numeric), Latin ligatures, character width, curly quotes, ANSI escapes, ftfy's
/// control characters, NFC, each line fixed until stable; then unescape x2, Python-whitespace collapse,
/// Python's lower-case (full mapping + Greek final sigma). Mojibake repair is not ported (python-only).
public enum TextCleaner {
    public static let entities: [String: String] = [
        "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{a0}", "copy": "\u{a9}",
        "reg": "\u{ae}", "trade": "\u{2122}", "hellip": "\u{2026}", "mdash": "\u{2014}", "ndash": "\u{2013}",
        "lsquo": "\u{2018}", "rsquo": "\u{2019}", "ldquo": "\u{201c}", "rdquo": "\u{201d}", "laquo": "\u{ab}",
        "raquo": "\u{bb}", "deg": "\u{b0}", "times": "\u{d7}", "divide": "\u{f7}", "middot": "\u{b7}",
        "bull": "\u{2022}", "euro": "\u{20ac}", "pound": "\u{a3}", "yen": "\u{a5}", "cent": "\u{a2}",
        "sect": "\u{a7}", "para": "\u{b6}", "plusmn": "\u{b1}", "frac12": "\u{bd}", "frac14": "\u{bc}",
        "frac34": "\u{be}", "iexcl": "\u{a1}", "iquest": "\u{bf}", "szlig": "\u{df}",
        "aacute": "\u{e1}", "agrave": "\u{e0}", "acirc": "\u{e2}", "auml": "\u{e4}", "atilde": "\u{e3}",
        "aring": "\u{e5}", "aelig": "\u{e6}", "ccedil": "\u{e7}", "eacute": "\u{e9}", "egrave": "\u{e8}",
        "ecirc": "\u{ea}", "euml": "\u{eb}", "iacute": "\u{ed}", "igrave": "\u{ec}", "icirc": "\u{ee}",
        "iuml": "\u{ef}", "ntilde": "\u{f1}", "oacute": "\u{f3}", "ograve": "\u{f2}", "ocirc": "\u{f4}",
        "ouml": "\u{f6}", "otilde": "\u{f5}", "oslash": "\u{f8}", "uacute": "\u{fa}", "ugrave": "\u{f9}",
        "ucirc": "\u{fb}", "uuml": "\u{fc}", "yacute": "\u{fd}", "yuml": "\u{ff}",
        "Aacute": "\u{c1}", "Agrave": "\u{c0}", "Acirc": "\u{c2}", "Auml": "\u{c4}", "Atilde": "\u{c3}",
        "Aring": "\u{c5}", "AElig": "\u{c6}", "Ccedil": "\u{c7}", "Eacute": "\u{c9}", "Egrave": "\u{c8}",
        "Ecirc": "\u{ca}", "Euml": "\u{cb}", "Iacute": "\u{cd}", "Igrave": "\u{cc}", "Icirc": "\u{ce}",
        "Iuml": "\u{cf}", "Ntilde": "\u{d1}", "Oacute": "\u{d3}", "Ograve": "\u{d2}", "Ocirc": "\u{d4}",
        "Ouml": "\u{d6}", "Otilde": "\u{d5}", "Oslash": "\u{d8}", "Uacute": "\u{da}", "Ugrave": "\u{d9}",
        "Ucirc": "\u{db}", "Uuml": "\u{dc}",
    ]
    public static let controlRanges: [ClosedRange<UInt32>] = [
        0x00...0x08, 0x0B...0x0B, 0x0E...0x1F, 0x7F...0x7F, 0x206A...0x206F, 0xFEFF...0xFEFF, 0xFFF9...0xFFFC,
    ]
    public static let ligatures: [UInt32: String] = [
        0x0132: "IJ", 0x0133: "ij", 0x0149: "\u{2bc}n", 0x01f1: "DZ", 0x01f2: "Dz", 0x01f3: "dz",
        0x01c4: "D\u{17d}", 0x01c5: "D\u{17e}", 0x01c6: "d\u{17e}", 0x01c7: "LJ", 0x01c8: "Lj",
        0x01c9: "lj", 0x01ca: "NJ", 0x01cb: "Nj", 0x01cc: "nj", 0xfb00: "ff", 0xfb01: "fi",
        0xfb02: "fl", 0xfb03: "ffi", 0xfb04: "ffl", 0xfb05: "\u{17f}t", 0xfb06: "st",
    ]
    public static let pythonWhitespace: [UInt32] = [
        0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680,
        0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A,
        0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
    ]
    public static let singleQuotes: [UInt32] = [0x02BC, 0x2018, 0x2019, 0x201A, 0x201B]
    public static let doubleQuotes: [UInt32] = [0x201C, 0x201D, 0x201E, 0x201F]
    private static let whitespaceSet = Set(pythonWhitespace)

    public static func isPythonSpace(_ v: UInt32) -> Bool { whitespaceSet.contains(v) }

    static func numericOK(_ cp: UInt32) -> Bool {
        if cp == 0x09 || cp == 0x0A || cp == 0x0D { return true }
        if (0x20...0x7E).contains(cp) || (0xA0...0xD7FF).contains(cp) { return true }
        if (0xE000...0xFFFD).contains(cp) { return !(0xFDD0...0xFDEF).contains(cp) }
        return (0x10000...0x10FFFF).contains(cp) && (cp & 0xFFFF) < 0xFFFE
    }

    private static func isAsciiDigit(_ s: Unicode.Scalar) -> Bool { (0x30...0x39).contains(s.value) }
    private static func isAsciiLetter(_ s: Unicode.Scalar) -> Bool {
        (0x41...0x5A).contains(s.value) || (0x61...0x7A).contains(s.value)
    }
    private static func isHex(_ s: Unicode.Scalar) -> Bool {
        isAsciiDigit(s) || (0x41...0x46).contains(s.value) || (0x61...0x66).contains(s.value)
    }

    /// One pass of HTML unescaping, the regex `&(#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});`.
    public static func unescape(_ text: String) -> String {
        let s = Array(text.unicodeScalars)
        if !s.contains("&") { return text }
        var out = String.UnicodeScalarView()
        var i = 0
        while i < s.count {
            guard s[i] == "&" else { out.append(s[i]); i += 1; continue }
            var replaced: String? = nil
            var end = i
            if i + 1 < s.count, s[i + 1] == "#" {
                let hex = i + 2 < s.count && (s[i + 2] == "x" || s[i + 2] == "X")
                var j = hex ? i + 3 : i + 2
                let start = j
                while j < s.count, hex ? isHex(s[j]) : isAsciiDigit(s[j]) { j += 1 }
                let n = j - start
                if n >= 1, n <= (hex ? 6 : 7), j < s.count, s[j] == ";" {
                    let digits = String(String.UnicodeScalarView(s[start..<j]))
                    if let cp = UInt32(digits, radix: hex ? 16 : 10) {
                        end = j
                        if numericOK(cp), let u = Unicode.Scalar(cp) { replaced = String(Character(u)) } else {
                            replaced = String(String.UnicodeScalarView(s[i...j]))
                        }
                    }
                }
            } else if i + 1 < s.count, isAsciiLetter(s[i + 1]) {
                var j = i + 2
                while j < s.count, isAsciiLetter(s[j]) || isAsciiDigit(s[j]) { j += 1 }
                let n = j - (i + 1)
                if n >= 2, n <= 32, j < s.count, s[j] == ";" {
                    let name = String(String.UnicodeScalarView(s[(i + 1)..<j]))
                    end = j
                    replaced = entities[name] ?? String(String.UnicodeScalarView(s[i...j]))
                }
            }
            if let r = replaced {
                out.append(contentsOf: r.unicodeScalars)
                i = end + 1
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return String(out)
    }

    private static func isControl(_ v: UInt32) -> Bool { controlRanges.contains { $0.contains(v) } }

    /// ANSI terminal escapes `ESC [ (digit|;)* letter` removed (Python's \d: any Unicode decimal digit).
    static func removeAnsi(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        if !s.contains("\u{1B}") { return s }
        var out: [Unicode.Scalar] = []
        var i = 0
        while i < s.count {
            if s[i] == "\u{1B}", i + 1 < s.count, s[i + 1] == "[" {
                var j = i + 2
                while j < s.count, s[j] == ";" || s[j].properties.generalCategory == .decimalNumber { j += 1 }
                if j < s.count, isAsciiLetter(s[j]) { i = j + 1; continue }
            }
            out.append(s[i])
            i += 1
        }
        return out
    }

    private static func fixSegment(_ segment: String, unescapeHtml: Bool) -> String {
        var seg = segment
        while true {
            let orig = Array(seg.unicodeScalars)
            if unescapeHtml { seg = unescape(seg) }
            var a: [Unicode.Scalar] = []
            for u in seg.unicodeScalars {
                if let lig = ligatures[u.value] { a.append(contentsOf: lig.unicodeScalars) } else { a.append(u) }
            }
            var b: [Unicode.Scalar] = []
            for u in a {
                if u.value == 0x3000 {
                    b.append(" ")
                } else if (0xFF01...0xFFEF).contains(u.value) {
                    b.append(contentsOf: String(Character(u)).precomposedStringWithCompatibilityMapping.unicodeScalars)
                } else {
                    b.append(u)
                }
            }
            var c: [Unicode.Scalar] = []
            for u in b {
                if singleQuotes.contains(u.value) { c.append("'") } else if doubleQuotes.contains(u.value) { c.append("\"") } else { c.append(u) }
            }
            let d = removeAnsi(c).filter { !isControl($0.value) }
            seg = String(String.UnicodeScalarView(d)).precomposedStringWithCanonicalMapping
            // compare scalar by scalar: Swift's == is canonical equivalence, Python's is not
            if Array(seg.unicodeScalars) == orig { return seg }
        }
    }

    /// strip + split on Python whitespace + join with one space.
    public static func collapseWhitespace(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        var pending = false
        for u in text.unicodeScalars {
            if isPythonSpace(u.value) {
                pending = !out.isEmpty
            } else {
                if pending { out.append(" ") }
                pending = false
                out.append(u)
            }
        }
        return String(out)
    }

    /// Python's str.lower(): full lower-case mapping and the Final_Sigma rule, no locale.
    public static func lower(_ text: String) -> String {
        let s = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        for (i, u) in s.enumerated() {
            if u.value == 0x03A3 {
                out.append(finalSigma(s, i) ? "\u{3C2}" : "\u{3C3}")
            } else {
                out.append(contentsOf: u.properties.lowercaseMapping.unicodeScalars)
            }
        }
        return String(out)
    }

    private static func finalSigma(_ s: [Unicode.Scalar], _ i: Int) -> Bool {
        var j = i - 1
        while j >= 0, s[j].properties.isCaseIgnorable { j -= 1 }
        guard j >= 0, s[j].properties.isCased else { return false }
        var k = i + 1
        while k < s.count, s[k].properties.isCaseIgnorable { k += 1 }
        return !(k < s.count && s[k].properties.isCased)
    }

    /// The portable cleaning (see the type comment).
    public static func clean(_ text: String) -> String {
        var out = ""
        var unescapeHtml = true
        var segment = String.UnicodeScalarView()
        func flush() {
            let seg = String(segment)
            if unescapeHtml, seg.unicodeScalars.contains("<") { unescapeHtml = false }
            out += fixSegment(seg, unescapeHtml: unescapeHtml)
            segment = String.UnicodeScalarView()
        }
        for u in text.unicodeScalars {
            segment.append(u)
            if u == "\n" { flush() }
        }
        if !segment.isEmpty { flush() }
        return lower(collapseWhitespace(unescape(unescape(out))))
    }
}
