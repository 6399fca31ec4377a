import Foundation
import MC2Core

// The photo index's helper program (not part of the app):
//   mc2-index-tool append-loop FILE [DIM] [BATCH]   append batches until killed, printing "batch N" after each
//                                                   fsync (the crash test's child: IndexTests kills it)
//   mc2-index-tool search-bench N [DIM] [K] [QUERIES] search p50 over N synthetic vectors, recall vs exact fp32
//   mc2-index-tool append-bench FILE N [DIM] [BATCH] append N embeddings; peak memory growth beyond the vectors
// Results are one JSON object on stdout (benchmarks/swift_index_bench.py runs them in release builds).

/// SplitMix64 -> approximately normal floats (sum of uniforms): deterministic synthetic embeddings.
struct Synthetic {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    mutating func vector(_ dim: Int) -> [Float] { (0..<dim).map { _ in uniform() + uniform() + uniform() - 1.5 } }
    /// row r of a synthetic collection (same values however the rows are visited)
    static func row(_ r: Int, _ dim: Int) -> [Float] { var g = Synthetic(seed: UInt64(r) &* 0x2545_F491_4F6C_DD1D &+ 1); return g.vector(dim) }
}

func header(_ dim: Int) -> IndexHeader {
    // swiftlint:disable:next force_try
    try! IndexHeader(variant: "synthetic", precision: "fp32", bundleSha256: String(repeating: "ab", count: 32), dim: dim)
}

func emit(_ obj: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

func peakRSSBytes() -> Int {
    var u = rusage()
    #if canImport(Darwin)
    getrusage(RUSAGE_SELF, &u)
    return Int(u.ru_maxrss)  // bytes on Apple systems
    #else
    getrusage(Int32(RUSAGE_SELF.rawValue), &u)
    return Int(u.ru_maxrss) * 1024  // KiB on Linux
    #endif
}

/// One line on stdout, unbuffered (the crash test reads the progress of a child it kills).
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// CPU seconds of this thread: on a shared, loaded machine the wall time of a single-threaded search includes
/// the time other processes held the core; its CPU time does not.
func cpuNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

let args = CommandLine.arguments
func arg(_ i: Int, _ d: Int) -> Int { CommandLine.arguments.count > i ? Int(CommandLine.arguments[i]) ?? d : d }

switch args.count > 1 ? args[1] : "" {
case "append-loop":
    let url = URL(fileURLWithPath: args[2])
    let dim = arg(3, 512), batch = arg(4, 32)
    let index = try PhotoIndex(url: url, header: header(dim))
    var n = index.count / batch
    say("opened \(index.count) dropped \(index.droppedOnOpen)")
    while true {
        let puts = (0..<batch).map { i in (key: "photo-\(n * batch + i)", stamp: Int64(n), vector: Synthetic.row(n * batch + i, dim)) }
        try index.append(puts: puts)
        n += 1
        say("batch \(n)")
    }
case "search-bench":
    let n = arg(2, 100_000), dim = arg(3, 512), k = arg(4, 24), queries = arg(5, 15)
    var store = VectorStore(dim: dim)
    let t0 = now()
    for r in 0..<n { store.put("p\(r)", stamp: 0, bits: IndexRecord.fp16Bits(Synthetic.row(r, dim))!) }
    let build = now() - t0
    var g = Synthetic(seed: 42)
    let qs = (0..<queries).map { _ in g.vector(dim) }
    _ = store.search(qs[0], k: k)  // warm-up: page the vectors in
    var times: [Double] = [], cpu: [Double] = []
    var results: [[String]] = []
    for q in qs {
        let t = now(), c = cpuNow()
        let hits = store.search(q, k: k)
        cpu.append(cpuNow() - c)
        times.append(now() - t)
        results.append(hits.map { $0.key })
    }
    // recall against exact fp32 search over the unrounded vectors (regenerated row by row: never held at
    // 4 bytes each), for the first three queries, in one pass
    let checked = min(queries, 3)
    let qn = qs.prefix(checked).map { ZeroShot.l2normalize($0) }
    var exact = [[(Float, Int)]](repeating: [], count: checked)
    for r in 0..<n {
        let v = ZeroShot.l2normalize(Synthetic.row(r, dim))
        for i in 0..<checked {
            var s: Float = 0
            for j in 0..<dim { s += qn[i][j] * v[j] }
            exact[i].append((s, r))
        }
    }
    var recall = 0.0
    for i in 0..<checked {
        let truth = Set(exact[i].sorted { $0.0 != $1.0 ? $0.0 > $1.0 : $0.1 < $1.1 }.prefix(k).map { "p\($0.1)" })
        recall += Double(results[i].filter { truth.contains($0) }.count) / Double(k)
    }
    let sorted = times.sorted(), cpuSorted = cpu.sorted()
    emit(["n": n, "dim": dim, "k": k, "queries": queries, "p50_ms": sorted[sorted.count / 2] * 1000,
          "cpu_p50_ms": cpuSorted[cpuSorted.count / 2] * 1000, "cpu_min_ms": cpuSorted[0] * 1000,
          "min_ms": sorted[0] * 1000, "max_ms": sorted[sorted.count - 1] * 1000, "build_s": build,
          "recall_vs_fp32": recall / Double(checked), "recall_queries": checked, "vector_bytes": n * dim * 2])
case "append-bench":
    let url = URL(fileURLWithPath: args[2])
    let n = arg(3, 100_000), dim = arg(4, 512), batch = arg(5, 32)
    try? PhotoIndex.remove(at: url)
    let base = peakRSSBytes()
    let t0 = now()
    let index = try PhotoIndex(url: url, header: header(dim))
    var done = 0
    while done < n {
        let m = min(batch, n - done)
        try index.append(puts: (0..<m).map { i in (key: "photo-\(done + i)", stamp: 0, vector: Synthetic.row(done + i, dim)) })
        done += m
    }
    let secs = now() - t0
    let peak = peakRSSBytes()
    let size = (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? 0
    emit(["n": n, "dim": dim, "batch": batch, "seconds": secs, "peak_rss_growth_bytes": peak - base,
          "vector_bytes": n * dim * 2, "growth_beyond_vectors_bytes": peak - base - n * dim * 2, "file_bytes": size,
          "file_over_vectors": Double(size) / Double(n * dim * 2)])
default:
    FileHandle.standardError.write(Data("usage: mc2-index-tool append-loop FILE [DIM] [BATCH] | search-bench N [DIM] [K] [QUERIES] | append-bench FILE N [DIM] [BATCH]\n".utf8))
    exit(2)
}
