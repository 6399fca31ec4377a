import XCTest
@testable import MC2Core
#if canImport(Glibc)
import Glibc
#endif

/// The photo index (docs/app_index.md) against the shared vectors Python wrote (examples/shared/vectors/index:
/// the same files the Kotlin and JS tests read), and a process killed while appending.
final class IndexTests: XCTestCase {
    static var dir: URL { VectorTests.vectors.appendingPathComponent("index") }

    func json(_ name: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: Self.dir.appendingPathComponent(name))) as? [String: Any])
    }

    func header(_ h: [String: Any]) throws -> IndexHeader {
        try IndexHeader(variant: h["variant"] as! String, precision: h["precision"] as! String,
                        bundleSha256: h["bundle_sha256"] as! String, dim: (h["dim"] as! NSNumber).intValue)
    }

    func floats(_ v: Any?) -> [Float] { (v as! [NSNumber]).map { $0.floatValue } }

    func tmpURL(_ name: String) -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("mc2-index-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: d) }
        return d.appendingPathComponent(name)
    }

    func testLibraryReplaysToTheExpectedState() throws {
        let e = try json("expected.json")
        let h = try header(e["header"] as! [String: Any])
        let r = try IndexReplay.replay(Data(contentsOf: Self.dir.appendingPathComponent("library.mc2i")), expect: h)
        let live = e["live"] as! [[String: Any]]
        XCTAssertEqual(r.store.keys, live.map { $0["key"] as! String })
        XCTAssertEqual(r.store.stamps, live.map { ($0["stamp"] as! NSNumber).int64Value })
        XCTAssertEqual(r.records, (e["records"] as! NSNumber).intValue)
        XCTAssertEqual(r.validLength, (e["valid_length"] as! NSNumber).intValue)
        XCTAssertEqual(r.dropped, 0)
        var store = r.store
        store.compact()
        let bytes = store.vectors.flatMap { [UInt8(truncatingIfNeeded: $0), UInt8(truncatingIfNeeded: $0 >> 8)] }
        XCTAssertEqual(Digest.sha256Hex(Data(bytes)), e["vectors_sha256"] as? String)
        for (i, row) in (e["first_vector_bits"] as! [[NSNumber]]).enumerated() {
            let key = live[i]["key"] as! String
            XCTAssertEqual(Array(r.store.bits(of: key)!), row.map { $0.uint16Value })
            XCTAssertEqual(r.store.bits(of: key)!.map { Half.float($0) }, floats((e["first_vectors"] as! [Any])[i]))
        }
    }

    func testSearchesMatchPython() throws {
        let e = try json("expected.json")
        let h = try header(e["header"] as! [String: Any])
        let store = try IndexReplay.replay(Data(contentsOf: Self.dir.appendingPathComponent("library.mc2i")), expect: h).store
        let tol = (e["score_tolerance"] as! NSNumber).floatValue
        let searches = e["searches"] as! [[String: Any]]
        XCTAssertEqual(searches.count, 15)
        for s in searches {
            let hits = store.search(floats(s["query"]), k: (s["k"] as! NSNumber).intValue)
            XCTAssertEqual(hits.map { $0.key }, s["keys"] as! [String])
            for (hit, want) in zip(hits, floats(s["scores"])) { XCTAssertEqual(hit.score, want, accuracy: tol) }
        }
    }

    func testTornAndCorruptTailsKeepEveryWholeRecord() throws {
        let e = try json("expected.json")
        let h = try header(e["header"] as! [String: Any])
        for name in ["torn", "corrupt"] {
            let want = e[name] as! [String: Any]
            let url = tmpURL("\(name).mc2i")
            try FileManager.default.copyItem(at: Self.dir.appendingPathComponent(want["file"] as! String), to: url)
            let r = try IndexReplay.replay(Data(contentsOf: url), expect: h)
            XCTAssertEqual(r.store.count, (want["live"] as! NSNumber).intValue, name)
            XCTAssertEqual(r.records, (want["records"] as! NSNumber).intValue, name)
            XCTAssertEqual(r.validLength, (want["valid_length"] as! NSNumber).intValue, name)
            XCTAssertEqual(r.dropped, (want["dropped"] as! NSNumber).intValue, name)
            if let last = want["last_key"] as? String { XCTAssertEqual(r.store.keys.last, last) }
            // opening for appending cuts the tail off first, so the next batch is not hidden behind it
            let index = try PhotoIndex(url: url, header: h)
            XCTAssertEqual(index.droppedOnOpen, r.dropped)
            try index.append(puts: [(key: "after-crash.jpg", stamp: 5, vector: [Float](repeating: 0.25, count: h.dim))])
            let again = try IndexReplay.replay(Data(contentsOf: url), expect: h)
            XCTAssertEqual(again.dropped, 0, name)
            XCTAssertEqual(again.store.count, r.store.count + 1, name)
            XCTAssertEqual(again.store.keys.last, "after-crash.jpg")
        }
    }

    func testAnotherModelsIndexIsRefused() throws {
        let e = try json("expected.json")
        let h = try header(e["header"] as! [String: Any])
        let data = try Data(contentsOf: Self.dir.appendingPathComponent((e["other_model"] as! [String: Any])["file"] as! String))
        XCTAssertThrowsError(try IndexReplay.replay(data, expect: h)) { err in
            let m = "\(err)"
            XCTAssert(m.contains("another model") && m.contains("variant 'mobileclip2-s2'") && m.contains("bundle_sha256"), m)
        }
        let own = try IndexReplay.replay(data)  // readable as what it is
        XCTAssertEqual(own.header, try header((e["other_model"] as! [String: Any])["header"] as! [String: Any]))
        let url = tmpURL("other.mc2i")
        try data.write(to: url)
        XCTAssertThrowsError(try PhotoIndex(url: url, header: h))
        XCTAssertEqual(try Data(contentsOf: url), data, "a refused index is left as it was")
        for (bytes, fragment) in [(Data("MC2INDEX".utf8), "no MC2INDEX header"), (Data("PNG".utf8), "no MC2INDEX header"),
                                  (Data("MC2INDEX".utf8) + Data([2, 0, 0, 0, 2, 0, 0, 0]) + Data("{}".utf8), "version 2"),
                                  (Data("MC2INDEX".utf8) + Data([1, 0, 0, 0, 2, 0, 0, 0]) + Data("[]".utf8), "not a JSON object"),
                                  (Data("MC2INDEX".utf8) + Data([1, 0, 0, 0, 200, 0, 0, 0]) + Data("{}".utf8), "truncated")] {
            XCTAssertThrowsError(try IndexReplay.replay(bytes)) { XCTAssert("\($0)".contains(fragment), "\($0)") }
        }
    }

    func testWriterIsByteIdenticalToPython() throws {
        let w = try json("writer.json")
        let h = try header(w["header"] as! [String: Any])
        let url = tmpURL("written.mc2i")
        let index = try PhotoIndex(url: url, header: h)
        for op in w["operations"] as! [[String: Any]] {
            let key = op["key"] as! String
            if op["op"] as! String == "put" {
                try index.append(puts: [(key: key, stamp: (op["stamp"] as! NSNumber).int64Value, vector: floats(op["vector"]))])
            } else {
                try index.append(deletes: [key])
            }
        }
        let data = try Data(contentsOf: url)
        XCTAssertEqual(data.count, (w["bytes"] as! NSNumber).intValue)
        XCTAssertEqual(Digest.sha256Hex(data), w["sha256"] as? String)
        XCTAssertEqual(data, try Data(contentsOf: Self.dir.appendingPathComponent("library.mc2i")))
        // the memory state after appending is the state a reader replays
        let replayed = try IndexReplay.replay(data, expect: h).store
        XCTAssertEqual(index.store.keys, replayed.keys)
        XCTAssertEqual(index.store.stamps, replayed.stamps)
        XCTAssertTrue(index.shouldCompact == (index.deadRecords * 4 > index.records))
    }

    func testCompactionKeepsOrderStampsAndBits() throws {
        let e = try json("expected.json")
        let h = try header(e["header"] as! [String: Any])
        let url = tmpURL("compact.mc2i")
        try FileManager.default.copyItem(at: Self.dir.appendingPathComponent("library.mc2i"), to: url)
        let index = try PhotoIndex(url: url, header: h)
        let before = index.store
        XCTAssertEqual(index.deadRecords, index.records - index.count)
        try index.compact()
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path + ".tmp"))
        let after = try IndexReplay.replay(Data(contentsOf: url), expect: h)
        XCTAssertEqual(after.store.keys, before.keys)
        XCTAssertEqual(after.store.stamps, before.stamps)
        XCTAssertEqual(after.records, before.count)
        for k in before.keys { XCTAssertEqual(after.store.bits(of: k).map(Array.init), before.bits(of: k).map(Array.init)) }
        XCTAssertEqual(index.deadRecords, 0)
        try index.append(deletes: [before.keys[0]])  // the reopened handle appends to the new file
        XCTAssertEqual(try IndexReplay.replay(Data(contentsOf: url), expect: h).store.count, before.count - 1)
    }

    func testHalfConversionAndTopK() {
        // round to nearest even, subnormals, overflow, and the SIMD widening exact for every one of the 65536 bit patterns
        XCTAssertEqual(Half.bits(1), 0x3C00)
        XCTAssertEqual(Half.bits(-2), 0xC000)
        XCTAssertEqual(Half.bits(65520), 0x7C00)       // rounds up to infinity
        XCTAssertEqual(Half.bits(65519), 0x7BFF)
        XCTAssertEqual(Half.bits(0x1p-24), 0x0001)     // smallest subnormal
        XCTAssertEqual(Half.bits(0x1p-25), 0x0000)     // tie -> even (zero)
        XCTAssertEqual(Half.bits(0x1.8p-25), 0x0001)
        XCTAssertEqual(Half.bits(1 + 0x1p-11), 0x3C00)  // tie -> even
        XCTAssertEqual(Half.bits(1 + 0x1.8p-11), 0x3C01)
        for h in 0...0xFFFF {
            let bits = UInt16(h)
            let f = Half.float(bits)
            if f.isFinite {  // the search's widening: the value times 2^-112, in both halves of a lane, exactly
                let w = SIMD4<UInt32>(repeating: UInt32(bits) | UInt32(bits) << 16)
                XCTAssertEqual((Half.scaledLow(w)[3] * Half.searchScale).bitPattern, f.bitPattern, "low half \(h)")
                XCTAssertEqual((Half.scaledHigh(w)[3] * Half.searchScale).bitPattern, f.bitPattern, "high half \(h)")
            }
            if f.isNaN { continue }
            XCTAssertEqual(Half.bits(f), bits, "round trip of \(h)")
        }
        var t = TopK(3)
        for (i, s) in [0.5, 0.9, 0.5, 0.1, 0.9, 0.7].enumerated() { t.offer(Float(s), i) }
        XCTAssertEqual(t.sorted().map { $0.row }, [1, 4, 5])
        var ties = TopK(2)
        for i in 0..<5 { ties.offer(1, i) }
        XCTAssertEqual(ties.sorted().map { $0.row }, [0, 1])  // equal scores: index order
    }

    func testSearchAgreesWithBruteForceOnDimsThatAreNotMultiplesOfEight() {
        for dim in [1, 7, 8, 19, 64] {
            var store = VectorStore(dim: dim)
            var rows: [[Float]] = []
            for r in 0..<300 {
                let v: [Float] = (0..<dim).map { (j: Int) -> Float in Float(sin(Double(r * 31 + j * 7))) + 0.01 }
                let bits = IndexRecord.fp16Bits(v)!
                rows.append(bits.map { Half.float($0) })
                store.put("k\(r)", stamp: 0, bits: bits)
            }
            store.delete("k5")
            let q: [Float] = (0..<dim).map { (j: Int) -> Float in Float(cos(Double(j))) }
            let qn = ZeroShot.l2normalize(q)
            var exact: [(row: Int, score: Float)] = []
            for r in rows.indices where r != 5 {
                var s: Float = 0
                for j in 0..<dim { s += rows[r][j] * qn[j] }
                exact.append((row: r, score: s))
            }
            exact.sort { a, b in a.score != b.score ? a.score > b.score : a.row < b.row }
            let hits = store.search(q, k: 10)
            XCTAssertEqual(hits.count, 10)
            for (hit, want) in zip(hits, exact.prefix(10)) { XCTAssertEqual(hit.score, want.score, accuracy: 1e-4, "dim \(dim)") }
            XCTAssertFalse(hits.contains { $0.key == "k5" })
        }
    }

    func testSearchAcrossBlocks() {
        var store = VectorStore(dim: 3)
        let rows = 2 * VectorStore.blockRows + 700
        for r in 0..<rows {
            let v: [Float] = r == rows - 5 ? [1, 0, 0] : (r == 100 ? [0.6, 0.8, 0] : [0, 1, 0])
            store.put("k\(r)", stamp: Int64(r), bits: IndexRecord.fp16Bits(v)!)
        }
        XCTAssertEqual(store.vectors.count, rows * 3)
        XCTAssertEqual(store.search([1, 0, 0], k: 2).map { $0.key }, ["k\(rows - 5)", "k100"])
        store.delete("k\(rows - 5)")
        store.delete("k3")
        let top = store.search([2, 0, 0], k: 1)
        XCTAssertEqual(top.map { $0.key }, ["k100"])
        XCTAssertEqual(top[0].score, 0.6, accuracy: 1e-3)
        store.compact()
        XCTAssertEqual(store.count, rows - 2)
        XCTAssertEqual(store.vectors.count, (rows - 2) * 3)
        XCTAssertEqual(store.search([1, 0, 0], k: 1).first?.key, "k100")
        XCTAssertEqual(store.stamp(of: "k\(rows - 6)"), Int64(rows - 6))
    }

    // -- a process killed while appending --------------------------------------------------------------------

    /// The helper program built beside the tests (`swift build --build-tests` builds every target).
    func toolURL() throws -> URL {
        var dirs = [Bundle(for: Self.self).bundleURL.deletingLastPathComponent(), Bundle.main.bundleURL,
                    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        dirs += dirs.map { $0.deletingLastPathComponent() }
        for d in dirs where FileManager.default.isExecutableFile(atPath: d.appendingPathComponent("mc2-index-tool").path) {
            return d.appendingPathComponent("mc2-index-tool")
        }
        XCTFail("mc2-index-tool is not built beside the tests (looked in \(dirs.map { $0.path }))")
        throw IndexError("no tool")
    }

    func testKillDuringAppendLosesAtMostTheBatchInFlight() throws {
        let tool = try toolURL()
        let url = tmpURL("killed.mc2i")
        let batch = 32, dim = 512
        let h = try IndexHeader(variant: "synthetic", precision: "fp32", bundleSha256: String(repeating: "ab", count: 32), dim: dim)
        var confirmed = 0  // photos in the file when the round starts
        for round in 0..<4 {
            let p = Process()
            p.executableURL = tool
            p.arguments = ["append-loop", url.path, "\(dim)", "\(batch)"]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            // let it finish a few batches (each reported after its fsync), then kill it at an arbitrary moment
            var text = "", reported = 0
            // batches are numbered from the start of the file: the child resumes at confirmed / batch
            let want = confirmed / batch + 2 + round
            let deadline = Date().addingTimeInterval(60)
            while reported < want && Date() < deadline {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
                reported = text.split(separator: "\n").compactMap { $0.hasPrefix("batch ") ? Int($0.dropFirst(6)) : nil }.max() ?? 0
            }
            usleep(UInt32(round * 700))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationReason, .uncaughtSignal)
            let rest = out.fileHandleForReading.readDataToEndOfFile()
            text += String(decoding: rest, as: UTF8.self)
            reported = text.split(separator: "\n").compactMap { $0.hasPrefix("batch ") ? Int($0.dropFirst(6)) : nil }.max() ?? 0
            XCTAssertGreaterThanOrEqual(reported, want, text)
            // every reported batch survived; of the batch in flight, at most its whole records before the tear
            let r = try IndexReplay.replay(Data(contentsOf: url), expect: h)
            XCTAssertGreaterThanOrEqual(r.store.count, reported * batch, "round \(round)")
            XCTAssertLessThanOrEqual(r.store.count, (reported + 1) * batch, "round \(round)")
            XCTAssertEqual(r.store.keys, (0..<r.store.count).map { "photo-\($0)" }, "round \(round): keys in order, none lost")
            // reopening cuts any torn tail; the file is then whole
            let index = try PhotoIndex(url: url, header: h)
            XCTAssertEqual(index.count, r.store.count)
            confirmed = index.count
            XCTAssertEqual(try IndexReplay.replay(Data(contentsOf: url), expect: h).dropped, 0)
        }
    }
}
