import Foundation
#if canImport(Accelerate)
import Accelerate
#endif

/// The live photos of an index in memory: keys in first-insertion order, stamps, and every vector's fp16 bits
/// in contiguous blocks of `blockRows` rows (slot s: block s / blockRows, row s % blockRows). Blocks are
/// allocated whole and never grow, so adding photos never copies the vectors held so far (one growing array
/// would double its capacity and briefly hold old + new: 2-3x the vectors' bytes at 100k photos). A
/// replaced photo keeps its slot; a deleted one leaves a dead slot (skipped by the search) until
/// `compact()`; a re-added one takes a new slot.
public struct VectorStore: Sendable {
    public let dim: Int
    public static let blockRows = 4096
    private var blocks: [[UInt16]] = []
    private var slotKeys: [String] = []
    private var slotStamps: [Int64] = []
    private var alive: [Bool] = []
    private var slotOf: [String: Int] = [:]

    public init(dim: Int) { self.dim = dim }

    /// live photos
    public var count: Int { slotOf.count }
    /// slots held, live or dead
    public var slots: Int { alive.count }
    public var deadSlots: Int { alive.count - slotOf.count }

    public var keys: [String] { slotKeys.indices.filter { alive[$0] }.map { slotKeys[$0] } }
    public var stamps: [Int64] { slotStamps.indices.filter { alive[$0] }.map { slotStamps[$0] } }

    public func stamp(of key: String) -> Int64? { slotOf[key].map { slotStamps[$0] } }

    /// The stored bits of a live photo.
    public func bits(of key: String) -> ArraySlice<UInt16>? { slotOf[key].map { row($0) } }

    private func row(_ s: Int) -> ArraySlice<UInt16> {
        let o = (s % Self.blockRows) * dim
        return blocks[s / Self.blockRows][o..<(o + dim)]
    }

    /// Every slot's bits in slot order (dead slots included), as one array: for tests and checksums.
    public var vectors: [UInt16] { Array(blocks.joined().prefix(alive.count * dim)) }

    /// Whether the photo must be (re-)embedded: new, or changed since (another stamp).
    public func needs(_ key: String, stamp: Int64) -> Bool { slotOf[key].map { slotStamps[$0] } != stamp }

    /// PUT from little-endian fp16 bytes (2 * dim of them).
    mutating func put(_ key: String, stamp: Int64, bytes: UnsafeRawBufferPointer) {
        let s = slot(for: key, stamp: stamp)
        let o = (s % Self.blockRows) * dim
        blocks[s / Self.blockRows].withUnsafeMutableBufferPointer { v in
            for j in 0..<dim { v[o + j] = UInt16(bytes[2 * j]) | UInt16(bytes[2 * j + 1]) << 8 }
        }
    }

    public mutating func put<C: Collection>(_ key: String, stamp: Int64, bits: C) where C.Element == UInt16 {
        precondition(bits.count == dim, "a vector of \(bits.count) values in a \(dim)-d index")
        let s = slot(for: key, stamp: stamp)
        let o = (s % Self.blockRows) * dim
        blocks[s / Self.blockRows].replaceSubrange(o..<(o + dim), with: bits)
    }

    private mutating func slot(for key: String, stamp: Int64) -> Int {
        if let s = slotOf[key] { slotStamps[s] = stamp; return s }
        let s = alive.count
        slotOf[key] = s
        slotKeys.append(key); slotStamps.append(stamp); alive.append(true)
        if s % Self.blockRows == 0 { blocks.append([UInt16](repeating: 0, count: Self.blockRows * dim)) }
        return s
    }

    public mutating func delete(_ key: String) {
        guard let s = slotOf.removeValue(forKey: key) else { return }
        alive[s] = false
    }

    /// Drop dead slots (order kept).
    public mutating func compact() {
        guard deadSlots > 0 else { return }
        var out = VectorStore(dim: dim)
        for s in alive.indices where alive[s] { out.put(slotKeys[s], stamp: slotStamps[s], bits: row(s)) }
        self = out
    }

    // -- search ----------------------------------------------------------------------------------------------

    public struct Hit: Sendable, Equatable { public let key: String; public let score: Float }

    /// The `k` live photos most similar to `query` (normalized here), best first; equal scores in index order
    /// (docs/app_index.md, "Search"): float32 dot products with the fp16 vectors widened, top k kept in a
    /// bounded heap (O(N log k), no sort of all N).
    public func search(_ query: [Float], k: Int) -> [Hit] {
        precondition(query.count == dim, "a \(query.count)-d query in a \(dim)-d index")
        guard k > 0, count > 0 else { return [] }
        var n: Float = 0
        for x in query { n += x * x }
        n = n.squareRoot()
        let q = n > 0 ? query.map { $0 / n } : query
        var heap = TopK(k)
        let slots = alive.count
        let step = 1024  // rows scored per call (a 2-MB float block on the Accelerate path)
        var scores = [Float](repeating: 0, count: step)
        for (b, block) in blocks.enumerated() {
            let first = b * Self.blockRows
            let rowsHere = min(Self.blockRows, slots - first)
            var start = 0
            while start < rowsHere {
                let rows = min(step, rowsHere - start)
                Self.scoreRows(block, from: start, rows: rows, dim: dim, query: q, into: &scores)
                for r in 0..<rows where alive[first + start + r] { heap.offer(scores[r], first + start + r) }
                start += rows
            }
        }
        return heap.sorted().map { Hit(key: slotKeys[$0.row], score: $0.score) }
    }

    /// scores[r] = dot(query, widen(vectors row start + r)), for `rows` rows.
    static func scoreRows(_ vectors: [UInt16], from start: Int, rows: Int, dim: Int, query q: [Float], into scores: inout [Float]) {
        #if canImport(Accelerate)
        // Apple: widen the block with vImage (NEON / F16C), then one matrix-vector product (vDSP_mmul).
        var wide = [Float](repeating: 0, count: rows * dim)
        vectors.withUnsafeBufferPointer { v in
            wide.withUnsafeMutableBufferPointer { w in
                var src = vImage_Buffer(data: UnsafeMutableRawPointer(mutating: v.baseAddress! + start * dim), height: 1,
                                        width: vImagePixelCount(rows * dim), rowBytes: rows * dim * 2)
                var dst = vImage_Buffer(data: w.baseAddress!, height: 1, width: vImagePixelCount(rows * dim), rowBytes: rows * dim * 4)
                _ = vImageConvert_Planar16FtoPlanarF(&src, &dst, vImage_Flags(kvImageNoFlags))
            }
        }
        wide.withUnsafeBufferPointer { w in
            q.withUnsafeBufferPointer { qp in
                scores.withUnsafeMutableBufferPointer { s in
                    vDSP_mmul(w.baseAddress!, 1, qp.baseAddress!, 1, s.baseAddress!, 1, vDSP_Length(rows), 1, vDSP_Length(dim))
                }
            }
        }
        #else
        // Elsewhere: a tight loop over 8 halves at a time, read as four 32-bit lanes and widened in registers
        // (Half.scaledLow / scaledHigh: the values times 2^-112, exactly), multiplied with the query's even and
        // odd elements times 2^112 (split once per call); the dim % 8 tail is scalar.
        let chunks = dim / 8
        var qe = [Float](repeating: 0, count: chunks * 4), qo = [Float](repeating: 0, count: chunks * 4)
        for i in 0..<(chunks * 4) { qe[i] = q[2 * i] * Half.searchScale; qo[i] = q[2 * i + 1] * Half.searchScale }
        vectors.withUnsafeBufferPointer { v in
            qe.withUnsafeBytes { qeb in
                qo.withUnsafeBytes { qob in
                    let raw = UnsafeRawPointer(v.baseAddress!)
                    for r in 0..<rows {
                        let row = raw + (start + r) * dim * 2
                        var a0 = SIMD4<Float>(), a1 = SIMD4<Float>()
                        for c in 0..<chunks {
                            let w = row.loadUnaligned(fromByteOffset: c * 16, as: SIMD4<UInt32>.self)
                            a0 += Half.scaledLow(w) * qeb.loadUnaligned(fromByteOffset: c * 16, as: SIMD4<Float>.self)
                            a1 += Half.scaledHigh(w) * qob.loadUnaligned(fromByteOffset: c * 16, as: SIMD4<Float>.self)
                        }
                        var s = (a0 + a1).sum()
                        for j in (chunks * 8)..<dim { s += Half.float(v[(start + r) * dim + j]) * q[j] }
                        scores[r] = s
                    }
                }
            }
        }
        #endif
    }
}

/// The k best (score, row) pairs seen: a min-heap whose root is the worst kept (lowest score; on equal scores
/// the later row, so earlier rows win ties as in docs/app_index.md).
struct TopK {
    struct Entry { let score: Float; let row: Int }
    let k: Int
    private(set) var heap: [Entry] = []

    init(_ k: Int) { self.k = k; heap.reserveCapacity(k) }

    @inline(__always) static func worse(_ a: Entry, _ b: Entry) -> Bool { a.score < b.score || (a.score == b.score && a.row > b.row) }

    mutating func offer(_ score: Float, _ row: Int) {
        let e = Entry(score: score, row: row)
        if heap.count < k {
            heap.append(e)
            var i = heap.count - 1
            while i > 0 {
                let p = (i - 1) / 2
                guard Self.worse(heap[i], heap[p]) else { break }
                heap.swapAt(i, p); i = p
            }
        } else if Self.worse(heap[0], e) {
            heap[0] = e
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && Self.worse(heap[l], heap[m]) { m = l }
                if r < heap.count && Self.worse(heap[r], heap[m]) { m = r }
                if m == i { break }
                heap.swapAt(i, m); i = m
            }
        }
    }

    /// best first (sorting k entries, not N)
    func sorted() -> [Entry] { heap.sorted { Self.worse($1, $0) } }
}
