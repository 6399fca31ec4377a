import Foundation
@testable import MC2Core

/// A minimal PNG reader for the preprocessing vectors on every platform (ImageIO exists on Apple systems only):
/// 8-bit RGB / RGBA, non-interlaced -- what examples/shared/vectors/images holds -- decoded to the exact stored
/// bytes (no colour management, no premultiplication). zlib inflate (RFC 1951: stored, fixed and dynamic
/// Huffman blocks) and the five PNG row filters. Checked in the tests against the vectors' `pixels_sha256`
/// (Python's hash of the same bytes), so a decoder bug cannot pass as a preprocessing match.
enum PNGDecoder {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func decode(_ data: Data) throws -> RGBAImage {
        let (width, height, channels, px) = try decodeBytes(data)
        return RGBAImage(width: width, height: height, bytes: px, channels: channels)
    }

    /// The stored interleaved bytes (numpy's `np.asarray(PIL.Image.open(f)).tobytes()`).
    static func decodeBytes(_ data: Data) throws -> (width: Int, height: Int, channels: Int, bytes: [UInt8]) {
        let b = [UInt8](data)
        guard b.count > 8, b[0..<8].elementsEqual([137, 80, 78, 71, 13, 10, 26, 10]) else { throw Failure(description: "not a PNG") }
        var o = 8, width = 0, height = 0, channels = 0
        var idat = [UInt8]()
        func u32(_ i: Int) -> Int { Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3]) }
        while o + 8 <= b.count {
            let len = u32(o), type = String(decoding: b[(o + 4)..<(o + 8)], as: UTF8.self)
            guard o + 12 + len <= b.count else { throw Failure(description: "truncated chunk \(type)") }
            let body = b[(o + 8)..<(o + 8 + len)]
            if type == "IHDR" {
                width = u32(o + 8); height = u32(o + 12)
                let depth = body[body.startIndex + 8], color = body[body.startIndex + 9], interlace = body[body.startIndex + 12]
                guard depth == 8, color == 2 || color == 6, interlace == 0 else {
                    throw Failure(description: "unsupported PNG: depth \(depth), colour type \(color), interlace \(interlace)")
                }
                channels = color == 6 ? 4 : 3
            } else if type == "IDAT" {
                idat += body
            } else if type == "IEND" {
                break
            }
            o += 12 + len
        }
        guard channels > 0, width > 0, height > 0 else { throw Failure(description: "no IHDR") }
        guard idat.count > 2, idat[0] & 0x0F == 8 else { throw Failure(description: "not a zlib stream") }
        let raw = try inflate(Array(idat[2...]))
        let stride = width * channels
        guard raw.count >= height * (stride + 1) else { throw Failure(description: "short image data") }
        var px = [UInt8](repeating: 0, count: height * stride)
        for y in 0..<height {
            let filter = raw[y * (stride + 1)], src = y * (stride + 1) + 1, dst = y * stride
            for x in 0..<stride {
                let a = x >= channels ? Int(px[dst + x - channels]) : 0
                let up = y > 0 ? Int(px[dst - stride + x]) : 0
                let c = (x >= channels && y > 0) ? Int(px[dst - stride + x - channels]) : 0
                let pred: Int
                switch filter {
                case 0: pred = 0
                case 1: pred = a
                case 2: pred = up
                case 3: pred = (a + up) / 2
                case 4:
                    let p = a + up - c, pa = abs(p - a), pb = abs(p - up), pc = abs(p - c)
                    pred = pa <= pb && pa <= pc ? a : (pb <= pc ? up : c)
                default: throw Failure(description: "bad filter \(filter)")
                }
                px[dst + x] = UInt8(truncatingIfNeeded: Int(raw[src + x]) + pred)
            }
        }
        return (width, height, channels, px)
    }

    /// Canonical Huffman decoding table: symbol counts per length and symbols in code order (RFC 1951 3.2.2).
    struct Huffman {
        var counts = [Int](repeating: 0, count: 16)
        var symbols: [Int] = []
        init(_ lengths: [Int]) {
            for l in lengths { counts[l] += 1 }
            counts[0] = 0
            var offs = [Int](repeating: 0, count: 16)
            for i in 1..<16 { offs[i] = offs[i - 1] + counts[i - 1] }
            symbols = [Int](repeating: 0, count: lengths.count)
            for (s, l) in lengths.enumerated() where l != 0 { symbols[offs[l]] = s; offs[l] += 1 }
        }
    }

    /// LSB-first bit reader with a 64-bit buffer.
    struct Bits {
        let b: [UInt8]
        var pos = 0, buf: UInt64 = 0, n = 0
        init(b: [UInt8]) { self.b = b }
        mutating func get(_ k: Int) throws -> Int {
            if k == 0 { return 0 }
            while n < k {
                guard pos < b.count else { throw Failure(description: "inflate: out of data") }
                buf |= UInt64(b[pos]) << UInt64(n)
                pos += 1; n += 8
            }
            let v = Int(buf & ((1 << UInt64(k)) - 1))
            buf >>= UInt64(k); n -= k
            return v
        }
        mutating func alignToByte() { let d = n % 8; buf >>= UInt64(d); n -= d }
        mutating func decode(_ h: Huffman) throws -> Int {
            var code = 0, first = 0, index = 0
            for len in 1..<16 {
                code |= try get(1)
                let count = h.counts[len]
                if code - count < first { return h.symbols[index + (code - first)] }
                index += count; first += count; first <<= 1; code <<= 1
            }
            throw Failure(description: "inflate: bad code")
        }
    }

    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
                           4097, 6145, 8193, 12289, 16385, 24577]
    static let distExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    static func inflate(_ input: [UInt8]) throws -> [UInt8] {
        var s = Bits(b: input)
        var out = [UInt8]()
        var last = 0
        while last == 0 {
            last = try s.get(1)
            let type = try s.get(2)
            if type == 0 {
                s.alignToByte()
                let len = try s.get(16)
                _ = try s.get(16)  // one's complement of len
                for _ in 0..<len { out.append(UInt8(try s.get(8))) }
                continue
            }
            let lit: Huffman, dist: Huffman
            if type == 1 {
                lit = Huffman([Int](repeating: 8, count: 144) + [Int](repeating: 9, count: 112) + [Int](repeating: 7, count: 24)
                              + [Int](repeating: 8, count: 8))
                dist = Huffman([Int](repeating: 5, count: 30))
            } else if type == 2 {
                let nlen = try s.get(5) + 257, ndist = try s.get(5) + 1, ncode = try s.get(4) + 4
                let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
                var cl = [Int](repeating: 0, count: 19)
                for i in 0..<ncode { cl[order[i]] = try s.get(3) }
                let clh = Huffman(cl)
                var lengths: [Int] = []
                while lengths.count < nlen + ndist {
                    let sym = try s.decode(clh)
                    switch sym {
                    case 0..<16: lengths.append(sym)
                    case 16:
                        guard let prev = lengths.last else { throw Failure(description: "inflate: repeat with no length") }
                        lengths += [Int](repeating: prev, count: 3 + (try s.get(2)))
                    case 17: lengths += [Int](repeating: 0, count: 3 + (try s.get(3)))
                    default: lengths += [Int](repeating: 0, count: 11 + (try s.get(7)))
                    }
                }
                lit = Huffman(Array(lengths[0..<nlen]))
                dist = Huffman(Array(lengths[nlen..<(nlen + ndist)]))
            } else {
                throw Failure(description: "inflate: bad block type")
            }
            while true {
                let sym = try s.decode(lit)
                if sym < 256 { out.append(UInt8(sym)); continue }
                if sym == 256 { break }
                let li = sym - 257
                guard li < 29 else { throw Failure(description: "inflate: bad length symbol") }
                let len = lengthBase[li] + (try s.get(lengthExtra[li]))
                let di = try s.decode(dist)
                guard di < 30 else { throw Failure(description: "inflate: bad distance symbol") }
                let d = distBase[di] + (try s.get(distExtra[di]))
                guard d <= out.count else { throw Failure(description: "inflate: distance too far") }
                let start = out.count - d
                for i in 0..<len { out.append(out[start + i]) }
            }
        }
        return out
    }
}
