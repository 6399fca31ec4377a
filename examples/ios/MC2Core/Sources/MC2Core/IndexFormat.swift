import Foundation

/// The photo index file (`.mc2i`, docs/app_index.md), read and written exactly as mc2export/appindex.py does
/// (the shared vectors in examples/shared/vectors/index check it byte for byte): a header naming the model,
/// then PUT / DELETE records with a CRC-32 each, fp16 vectors.
public struct IndexError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Who built the index: an index is only valid for that model (variant, precision, bundle checksum, dim).
public struct IndexHeader: Equatable, Sendable {
    public let variant: String
    public let precision: String
    /// sha256 of the bundle's config.json (its config.json.sha256), 64 lowercase hex digits
    public let bundleSha256: String
    public let dim: Int
    public static let vectorDtype = "float16"

    public static let magic = Array("MC2INDEX".utf8)
    public static let version: UInt32 = 1
    public static let maxHeader = 65536
    public static let maxKey = 4096
    public static let maxDim = 8192

    public init(variant: String, precision: String, bundleSha256: String, dim: Int) throws {
        guard (1...Self.maxDim).contains(dim) else { throw IndexError("index dim \(dim) is outside 1..\(Self.maxDim)") }
        guard bundleSha256.utf8.count == 64, bundleSha256.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw IndexError("index header bundle_sha256 is not 64 lowercase hex digits: the index is damaged")
        }
        self.variant = variant; self.precision = precision; self.bundleSha256 = bundleSha256; self.dim = dim
    }

    /// The header of an index built by a bundle: `configSha256` is the sha256 of its config.json.
    public init(bundle: BundleConfig, configSha256: String) throws {
        try self.init(variant: bundle.variant, precision: bundle.precision, bundleSha256: configSha256, dim: bundle.embedDim)
    }

    /// JSON as Python's `json.dumps(h, sort_keys=True, separators=(",", ":"))` writes it (ASCII-escaped).
    var json: String {
        "{\"bundle_sha256\":\(Self.quote(bundleSha256)),\"dim\":\(dim),\"precision\":\(Self.quote(precision)),"
            + "\"variant\":\(Self.quote(variant)),\"vector_dtype\":\(Self.quote(Self.vectorDtype))}"
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.utf16 {
            switch u {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(UInt8(u)))
            default:
                let hex = String(u, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            }
        }
        return out + "\""
    }

    /// magic, version, header length, header JSON.
    public var encoded: [UInt8] {
        let body = Array(json.utf8)
        return Self.magic + le(Self.version) + le(UInt32(body.count)) + body
    }

    /// The fields that differ from `other` (empty: same model).
    public func differences(from other: IndexHeader) -> [String] {
        var d: [String] = []
        if variant != other.variant { d.append("variant '\(variant)'") }
        if precision != other.precision { d.append("precision '\(precision)'") }
        if bundleSha256 != other.bundleSha256 { d.append("bundle_sha256 \(bundleSha256.prefix(12))...") }
        if dim != other.dim { d.append("dim \(dim)") }
        return d
    }

    /// Parse the header at the start of `b`; returns it and the offset of the first record.
    static func parse(_ b: UnsafeRawBufferPointer) throws -> (IndexHeader, Int) {
        guard b.count >= 16, b.prefix(8).elementsEqual(magic) else { throw IndexError("not an mc2export photo index (no MC2INDEX header)") }
        let version = readLE32(b, 8), hlen = Int(readLE32(b, 12))
        guard version == Self.version else {
            throw IndexError("photo index version \(version): written by another app version (this one reads \(Self.version))")
        }
        guard (1...maxHeader).contains(hlen), 16 + hlen <= b.count else { throw IndexError("photo index header is truncated or damaged") }
        guard let obj = try? JSONSerialization.jsonObject(with: Data(b[16..<(16 + hlen)])), let h = obj as? [String: Any] else {
            throw IndexError("photo index header is not a JSON object: the index is damaged")
        }
        func string(_ k: String) throws -> String {
            guard let s = h[k] as? String else { throw IndexError("index header field '\(k)' is missing or not a str: the index is damaged") }
            return s
        }
        guard let n = h["dim"] as? NSNumber, !BundleConfig.isBool(n), let dim = Int(exactly: n.doubleValue) else {
            throw IndexError("index header field 'dim' is missing or not a int: the index is damaged")
        }
        let (variant, precision, sha, dtype) = (try string("variant"), try string("precision"), try string("bundle_sha256"),
                                                try string("vector_dtype"))
        guard dtype == vectorDtype else { throw IndexError("index vector_dtype '\(dtype)' is not float16: written by a newer app") }
        return (try IndexHeader(variant: variant, precision: precision, bundleSha256: sha, dim: dim), 16 + hlen)
    }
}

@inline(__always) func readLE32(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
    UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
}

func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
    (0..<(T.bitWidth / 8)).map { UInt8(truncatingIfNeeded: v >> ($0 * 8)) }
}

public enum IndexRecord {
    static let put: UInt8 = 1, delete: UInt8 = 2

    /// The stored form of an embedding: L2-normalized in float32 (the norm summed in double, as numpy's
    /// reference does), then binary16 bits, nearest even. nil for a zero or non-finite embedding.
    public static func fp16Bits(_ v: [Float]) -> [UInt16]? {
        var s = 0.0
        for x in v { s += Double(x) * Double(x) }
        let n = Float(s.squareRoot())
        guard n.isFinite, n > 0 else { return nil }
        return v.map { Half.bits($0 / n) }
    }

    static func body(_ kind: UInt8, _ key: String, _ stamp: Int64, _ bits: [UInt16]) throws -> [UInt8] {
        let k = Array(key.utf8)
        guard (1...IndexHeader.maxKey).contains(k.count) else {
            throw IndexError("index key of \(k.count) bytes: keys are 1..\(IndexHeader.maxKey) bytes of UTF-8")
        }
        var out: [UInt8] = [kind]
        out.reserveCapacity(3 + k.count + 8 + 2 * bits.count + 4)
        out += le(UInt16(k.count)) + k + le(stamp)
        for h in bits { out.append(UInt8(truncatingIfNeeded: h)); out.append(UInt8(truncatingIfNeeded: h >> 8)) }
        return out + le(Digest.crc32(out))
    }

    /// A PUT record of stored bits (already normalized fp16).
    public static func encodePut(_ key: String, stamp: Int64, bits: [UInt16]) throws -> [UInt8] { try body(put, key, stamp, bits) }

    /// A PUT record of an embedding (normalized and converted here).
    public static func encodePut(_ key: String, stamp: Int64, vector: [Float]) throws -> [UInt8] {
        guard let bits = fp16Bits(vector) else { throw IndexError("embedding of '\(key)' is zero or not finite: nothing to index") }
        return try body(put, key, stamp, bits)
    }

    public static func encodeDelete(_ key: String, stamp: Int64 = 0) throws -> [UInt8] { try body(delete, key, stamp, []) }
}

/// A replayed index file: the live photos (in `store`), how much of the file was whole, how much was a torn tail.
public struct IndexReplay: Sendable {
    public let header: IndexHeader
    public var store: VectorStore
    /// bytes replay accepted; the rest (`dropped`) is a torn tail left by a crash
    public let validLength: Int
    public let dropped: Int
    /// whole records read, live or dead (replaced PUTs, tombstones)
    public let records: Int

    /// Replay an index file's bytes (docs/app_index.md, "Reading"). `expect`: the loaded bundle's header; an
    /// index of another model is refused (IndexError). A torn tail never fails: it is measured and left out.
    public static func replay(_ data: Data, expect: IndexHeader? = nil) throws -> IndexReplay {
        try data.withUnsafeBytes { b in
            let (h, start) = try IndexHeader.parse(b)
            if let want = expect {
                let diff = h.differences(from: want)
                if !diff.isEmpty {
                    throw IndexError("this photo index was built by another model (\(diff.joined(separator: ", "))); the loaded bundle is "
                                     + "\(want.variant) \(want.precision): rebuild the index")
                }
            }
            var store = VectorStore(dim: h.dim)
            let n = b.count, dim = h.dim
            var off = start, records = 0
            while off + 3 <= n {
                let kind = b[off], klen = Int(b[off + 1]) | Int(b[off + 2]) << 8
                guard kind == IndexRecord.put || kind == IndexRecord.delete, (1...IndexHeader.maxKey).contains(klen) else { break }
                let end = off + 3 + klen + 8 + (kind == IndexRecord.put ? 2 * dim : 0) + 4
                guard end <= n else { break }
                guard Digest.crc32(UnsafeRawBufferPointer(rebasing: b[off..<(end - 4)])) == readLE32(b, end - 4) else { break }
                guard let key = String(validatingUTF8Bytes: b[(off + 3)..<(off + 3 + klen)]) else { break }
                var stamp: Int64 = 0
                for i in 0..<8 { stamp |= Int64(b[off + 3 + klen + i]) << (8 * i) }
                if kind == IndexRecord.put {
                    store.put(key, stamp: stamp, bytes: UnsafeRawBufferPointer(rebasing: b[(off + 3 + klen + 8)..<(end - 4)]))
                } else {
                    store.delete(key)
                }
                records += 1
                off = end
            }
            return IndexReplay(header: h, store: store, validLength: off, dropped: n - off, records: records)
        }
    }
}

extension String {
    /// nil unless the bytes are valid UTF-8 (String(decoding:) would repair them silently).
    init?<C: Collection>(validatingUTF8Bytes bytes: C) where C.Element == UInt8 {
        var it = bytes.makeIterator()
        var codec = UTF8()
        var out = String.UnicodeScalarView()
        loop: while true {
            switch codec.decode(&it) {
            case .scalarValue(let s): out.append(s)
            case .emptyInput: break loop
            case .error: return nil
            }
        }
        self = String(out)
    }
}
