import XCTest
@testable import MC2Core

/// The iOS app's logic beyond the vectors: verify/ (on the fixture bundle the Kotlin VerifyTest uses), the frame
/// gate, bitmap byte orders, the photo index, bounded decoding. Twins of the Kotlin AppLogicTest / VerifyTest.
final class AppLogicTests: XCTestCase {
    static var fixture: URL { VectorTests.fixtures.appendingPathComponent("verify-bundle") }

    // -- verify/ ---------------------------------------------------------------------------------------------

    typealias Fixture = VerifyFixture.Fixture
    func fixture() throws -> Fixture { try VerifyFixture.load() }
    func run(_ f: Fixture, files: [String: Data]? = nil, perturbTextRow: Int = -1) -> VerifyReport {
        VerifyFixture.run(f, files: files, perturbTextRow: perturbTextRow)
    }
    func manifest(_ f: Fixture, _ edit: (inout [String: Any]) -> Void) throws -> [String: Data] { try VerifyFixture.manifest(f, edit) }

    func testVerifyVectorsPassWithTheirFigures() throws {
        let f = try fixture()
        let r = run(f)
        XCTAssertEqual(r.status, "passed", r.lines.joined(separator: "\n"))
        XCTAssertEqual(r.towers.map { $0.tower }, ["image", "text"])
        XCTAssertEqual(r.towers.map { $0.rows }, [2, 3])
        for t in r.towers { XCTAssertGreaterThan(t.cosineMin, 0.9999999); XCTAssertLessThan(t.maxAbsOverStd, 1e-5) }
        XCTAssert(r.lines[0].hasPrefix("Verification vectors: PASSED (tier fp32: cosine >= 0.99999"), r.lines[0])
        XCTAssertEqual((r.dict["towers"] as? [String: Any])?.count, 2)
    }

    func testVerifyFailsWhenAModelDisagrees() throws {
        let r = run(try fixture(), perturbTextRow: 1)
        XCTAssertEqual(r.status, "failed")
        let text = r.lines.joined(separator: "\n")
        XCTAssert(text.contains("Verification vectors: FAILED") && text.contains("text: 3 rows") && text.contains("FAIL - cosine min"), text)
    }

    func testMalformedVectorsGiveOneClearError() throws {
        let f = try fixture()
        var inputs = f.files["verify/image_inputs.u8"]!
        inputs[5] = inputs[5] &+ 1
        let cases: [(String, [String: Data], String)] = [
            ("big endian", try manifest(f) { $0["byte_order"] = "big" }, "byte_order must be \"little\""),
            ("newer", try manifest(f) { $0["version"] = 2 }, "manifest version 2 is newer than this app understands"),
            ("dtype", try manifest(f) { m in
                var t = m["towers"] as! [String: Any]; var x = t["text"] as! [String: Any]; var i = x["inputs"] as! [String: Any]
                i["dtype"] = "int64"; x["inputs"] = i; t["text"] = x; m["towers"] = t
            }, "towers.text.inputs.dtype must be \"int32\""),
            ("outside", try manifest(f) { m in
                var t = m["towers"] as! [String: Any]; var x = t["text"] as! [String: Any]; var i = x["inputs"] as! [String: Any]
                i["file"] = "../config.json"; x["inputs"] = i; t["text"] = x; m["towers"] = t
            }, "must be a path inside verify/"),
            ("dim", try manifest(f) { $0["embed_dim"] = 4 }, "embed_dim 4 differs from config.json's 8"),
            ("size", f.files.merging(["verify/image_expected.f32": f.files["verify/image_expected.f32"]!.prefix(60)]) { $1 },
             "image_expected.f32 holds 60 bytes, expected 64"),
            ("checksum", f.files.merging(["verify/image_inputs.u8": inputs]) { $1 }, "image_inputs.u8 is damaged"),
        ]
        for (name, files, fragment) in cases {
            let r = run(f, files: files)
            XCTAssertEqual(r.status, "error", name)
            XCTAssert(r.lines.count == 1 && r.lines[0].contains(fragment), "\(name): \(r.lines)")
        }
        XCTAssertEqual(run(f, files: f.files.filter { $0.key != VerifyVectors.manifest }).status, "absent")
    }

    // -- the camera gate, bitmap layouts, the index, bounded decoding ----------------------------------------

    func testFrameGateDropsFramesWhileAPredictionRuns() {
        let g = FrameGate()
        XCTAssertTrue(g.tryAcquire())
        XCTAssertFalse(g.tryAcquire())
        g.release()
        XCTAssertTrue(g.tryAcquire())
        g.release()
        XCTAssertEqual(g.accepted, 2)
        XCTAssertEqual(g.dropped, 1)
    }

    func testByteOrderIsReadWithTheMask() {
        // CGBitmapInfo byte-order values: 16Little 1<<12, 32Little 2<<12, 16Big 3<<12, 32Big 4<<12
        XCTAssertEqual(PixelLayout.byteOrder(fromField: 2 << 12), .little32)
        XCTAssertEqual(PixelLayout.byteOrder(fromField: 3 << 12), .big16)  // shares a bit with 32Little: not little32
        XCTAssertEqual(PixelLayout.byteOrder(fromField: 0), .default)
        let bytes: [UInt8] = [10, 20, 30, 40]  // one pixel
        func px(_ l: PixelLayout) -> UInt32 { bytes.withUnsafeBytes { l.pixels($0, width: 1, height: 1, bytesPerRow: 4)[0] } }
        // BGRA in memory (iOS's usual decode, 32BGRA frames): little32 + alpha first
        XCTAssertEqual(px(PixelLayout(bytesPerPixel: 4, alphaFirst: true, hasAlpha: true, byteOrder: .little32)), 0x281E140A)
        // RGBA in memory: default order, alpha last
        XCTAssertEqual(px(PixelLayout(bytesPerPixel: 4, alphaFirst: false, hasAlpha: true, byteOrder: .default)), 0x280A141E)
        // RGBX: padding ignored
        XCTAssertEqual(px(PixelLayout(bytesPerPixel: 4, alphaFirst: false, hasAlpha: false, byteOrder: .big32)), 0xFF0A141E)
    }

    func testEmbeddingIndexLookupsAndPersistence() throws {
        var idx = EmbeddingIndex(variant: "mobileclip2-s0", runtime: "coreml", precision: "fp16", dim: 3)
        idx.put("a", stamp: 1, [1, 0, 0])
        idx.put("b", stamp: 2, [0, 1, 0])
        idx.put("b", stamp: 3, [0, 0, 5])  // replaced
        XCTAssertEqual(idx.count, 2)
        XCTAssertTrue(idx.contains("b", stamp: 3))
        XCTAssertFalse(idx.contains("b", stamp: 2))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("mc2-index-\(UUID().uuidString).plist")
        defer { try? FileManager.default.removeItem(at: url) }
        try idx.save(to: url)
        var back = try XCTUnwrap(EmbeddingIndex.load(from: url, variant: "mobileclip2-s0", runtime: "coreml", precision: "fp16", dim: 3))
        XCTAssertTrue(back.contains("a", stamp: 1))  // the key table is rebuilt on load
        back.retain { $0 != "a" }
        XCTAssertFalse(back.contains("a", stamp: 1))
        XCTAssertTrue(back.contains("b", stamp: 3))
        XCTAssertNil(EmbeddingIndex.load(from: url, variant: "mobileclip2-s2", runtime: "coreml", precision: "fp16", dim: 3))
    }

    func testDecodePlanBoundsHugePhotos() {
        XCTAssertEqual(DecodePlan.sampleSize(4032, 3024, minShortSide: 256), 1)
        XCTAssertEqual(DecodePlan.sampleSize(8000, 6000, minShortSide: 256), 2)
        XCTAssertEqual(DecodePlan.sampleSize(12000, 9000, minShortSide: 256), 4)
        XCTAssertEqual(DecodePlan.sampleSize(20000, 300, minShortSide: 256), 1)
    }
}

/// The verify/ fixture bundle with linear "models" (shared by AppLogicTests and BundleRulesTests).
enum VerifyFixture {
    static func f32(_ url: URL) throws -> [Float] {
        VerifyVectors.le32(try Data(contentsOf: url)).map { Float(bitPattern: $0) }
    }

    struct Fixture { let cfg: BundleConfig; let files: [String: Data]; let wImg: [Float]; let wTxt: [Float] }

    static func load() throws -> Fixture {
        let dir = AppLogicTests.fixture
        let cfg = try BundleConfig.parse(Data(contentsOf: dir.appendingPathComponent("config.json")), expectedRuntime: "onnx")
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("verify").path) {
            files["verify/\(name)"] = try Data(contentsOf: dir.appendingPathComponent("verify/\(name)"))
        }
        return Fixture(cfg: cfg, files: files, wImg: try f32(dir.appendingPathComponent("fake_model/image_w.f32")),
                       wTxt: try f32(dir.appendingPathComponent("fake_model/text_w.f32")))
    }

    static func linear(_ w: [Float], _ x: [Double], _ d: Int) -> [Float] {
        (0..<d).map { j in var s = 0.0; for k in 0..<x.count { s += Double(w[j * x.count + k]) * x[k] }; return Float(s) }
    }

    /// The config as an exporter would have sealed it for these files' manifest (its sha256 in the files
    /// table): a manifest edit is then checked by the manifest rules, not stopped by the checksum.
    static func sealed(_ f: Fixture, _ fs: [String: Data]) throws -> BundleConfig {
        var c = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: AppLogicTests.fixture.appendingPathComponent("config.json"))) as? [String: Any])
        var table = c["files"] as! [String: Any]
        if let m = fs[VerifyVectors.manifest] {
            table[VerifyVectors.manifest] = ["sha256": Digest.sha256Hex(m), "bytes": m.count]
        }
        c["files"] = table
        return try BundleConfig.parse(JSONSerialization.data(withJSONObject: c), expectedRuntime: "onnx")
    }

    static func run(_ f: Fixture, files: [String: Data]? = nil, perturbTextRow: Int = -1) -> VerifyReport {
        let fs = files ?? f.files
        var textCalls = 0
        let cfg = (try? sealed(f, fs)) ?? f.cfg
        return VerifyVectors.run(cfg, read: { fs[$0] },
                                 runImage: { crop in linear(f.wImg, Preprocess.toUnitCHW(crop).map { Double($0) }, f.cfg.embedDim) },
                                 runText: { row in
                                     var e = linear(f.wTxt, row.map { Double($0) }, f.cfg.embedDim)
                                     if textCalls == perturbTextRow { for i in stride(from: 0, to: e.count, by: 2) { e[i] += 0.3 * abs(e[i]) } }
                                     textCalls += 1
                                     return e
                                 })
    }

    static func manifest(_ f: Fixture, _ edit: (inout [String: Any]) -> Void) throws -> [String: Data] {
        var m = try XCTUnwrap(JSONSerialization.jsonObject(with: f.files[VerifyVectors.manifest]!) as? [String: Any])
        edit(&m)
        var out = f.files
        out[VerifyVectors.manifest] = try JSONSerialization.data(withJSONObject: m)
        return out
    }
}
