import XCTest
@testable import MC2Core

/// The bundle reading rules (docs/bundle.md, "Reading a bundle safely", R0-R6) on edited copies of the fixture
/// bundle (examples/shared/fixtures/verify-bundle), re-sealed (config.json.sha256 rewritten) where the test is
/// about a rule other than R1 -- as the Kotlin and JS tests do.
final class BundleRulesTests: XCTestCase {
    func copy() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("mc2-bundle-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: AppLogicTests.fixture, to: d)
        addTeardownBlock { try? FileManager.default.removeItem(at: d) }
        return d
    }

    func config(_ dir: URL) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as? [String: Any])
    }

    /// Write config.json (raw bytes or an object) and, unless `seal` is false, its config.json.sha256.
    func write(_ dir: URL, _ data: Data, seal: Bool = true) throws {
        try data.write(to: dir.appendingPathComponent("config.json"))
        if seal { try Data("\(Digest.sha256Hex(data))  config.json\n".utf8).write(to: dir.appendingPathComponent("config.json.sha256")) }
    }

    func edit(_ dir: URL, seal: Bool = true, _ change: (inout [String: Any]) -> Void) throws {
        var c = try config(dir)
        change(&c)
        try write(dir, try JSONSerialization.data(withJSONObject: c), seal: seal)
    }

    func refused(_ dir: URL, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try BundleFolder(dir).config(expectedRuntime: "onnx"), file: file, line: line) { e in
            XCTAssert("\(e)".contains(fragment), "\(e) lacks \(fragment)", file: file, line: line)
            XCTAssertFalse("\(e)".contains("\n"), "one line", file: file, line: line)
        }
    }

    func testTheFixtureOpensAndNamesItsChecksum() throws {
        let b = try BundleFolder(AppLogicTests.fixture)
        let cfg = try b.config(expectedRuntime: "onnx")
        XCTAssertEqual(cfg.embedDim, 8)
        let seal = try String(contentsOf: AppLogicTests.fixture.appendingPathComponent("config.json.sha256"), encoding: .utf8)
        XCTAssertEqual(seal, "\(b.configSha256)  config.json\n")
        XCTAssertEqual(try IndexHeader(bundle: cfg, configSha256: b.configSha256).bundleSha256, b.configSha256)
    }

    func testR1EditedOrUnsealedConfigIsRefused() throws {
        let d = try copy()
        try edit(d, seal: false) { $0["logit_scale"] = 50.0 }
        refused(d, "config.json does not match config.json.sha256")
        try FileManager.default.removeItem(at: d.appendingPathComponent("config.json.sha256"))
        refused(d, "config.json does not match config.json.sha256")
    }

    func testR0OnlyBundleVersion2() throws {
        let d = try copy()
        try edit(d) { $0["bundle_version"] = 1 }
        refused(d, "bundle_version 1: written by another mc2export")
        try edit(d) { $0["bundle_version"] = 3 }
        refused(d, "update the app")
        try edit(d) { $0.removeValue(forKey: "bundle_version") }
        refused(d, "bundle_version null")
        try edit(d) { $0["bundle_version"] = true }
        refused(d, "bundle_version true")
    }

    func testR2PathsStayInTheBundle() throws {
        let d = try copy()
        for bad in ["../outside.onnx", "/etc/passwd.onnx", "a\\b.onnx", "./image.onnx", "x//image.onnx", ""] {
            try edit(d) { c in var m = c["models"] as! [String: Any]; m["image"] = ["file": bad]; c["models"] = m }
            refused(d, "models.image.file")
        }
        // a symlink inside the folder pointing out of it (verify/ and the model both)
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("mc2-outside-\(UUID().uuidString).onnx")
        try Data("secret".utf8).write(to: outside)
        addTeardownBlock { try? FileManager.default.removeItem(at: outside) }
        let fresh = try copy()
        try FileManager.default.createSymbolicLink(atPath: fresh.appendingPathComponent("image.onnx").path, withDestinationPath: outside.path)
        refused(fresh, "leaves the bundle folder")
        // a symlink that stays inside is fine
        let ok = try copy()
        try Data("model".utf8).write(to: ok.appendingPathComponent("real.onnx"))
        try FileManager.default.createSymbolicLink(atPath: ok.appendingPathComponent("image.onnx").path, withDestinationPath: "real.onnx")
        XCTAssertNoThrow(try BundleFolder(ok).config(expectedRuntime: "onnx"))
        // reads through the folder apply the rule too
        let b = try BundleFolder(fresh)
        XCTAssertThrowsError(try b.read("image.onnx", field: "models.image.file"))
        XCTAssertThrowsError(try b.read("../x", field: "verify"))
        XCTAssertNotNil(try b.read("verify/manifest.json", field: "verify"))
    }

    func testR3ToleranceComesFromTheTierNotTheFile() throws {
        let t = VerifyFixture.self
        let f = try t.load()
        // a manifest that claims any cosine passes cannot make a disagreeing model pass
        let files = try t.manifest(f) { $0["tolerance"] = ["cosine_min": -1.0, "max_abs_over_std": 1e9] }
        let r = t.run(f, files: files, perturbTextRow: 1)
        XCTAssertEqual(r.status, "failed", r.lines.joined(separator: "\n"))
        XCTAssertEqual(r.tolerance["cosine_min"], 0.99999)
        let d = try copy()
        try edit(d) { $0["precision"] = "fp8" }
        refused(d, "precision \"fp8\" is not one this app knows")
    }

    func testR4EveryTowerIsChecked() throws {
        let t = VerifyFixture.self
        let f = try t.load()
        let files = try t.manifest(f) { m in var tw = m["towers"] as! [String: Any]; tw.removeValue(forKey: "text"); m["towers"] = tw }
        let r = t.run(f, files: files)
        XCTAssertEqual(r.status, "error")
        XCTAssert(r.lines[0].contains("has no text vectors, but the bundle has a text model"), r.lines[0])
    }

    func testR5TypesRangesAndFiniteNumbers() throws {
        let d = try copy()
        try write(d, Data(("{\"format\": \"mc2export-bundle\", \"bundle_version\": 2, \"x\": " + String(repeating: "[", count: 100_000)
                            + String(repeating: "]", count: 100_000) + "}").utf8))
        refused(d, "not valid JSON")
        try write(d, Data("{\"format\": \"mc2export-bundle\", \"bundle_version\": 2, \"logit_scale\": NaN}".utf8))
        refused(d, "not valid JSON")
        let original = try Data(contentsOf: AppLogicTests.fixture.appendingPathComponent("config.json"))
        try write(d, original)
        try edit(d) { $0["embed_dim"] = 100_000 }
        refused(d, "embed_dim must be at most 8192")
        try write(d, original)
        try edit(d) { $0["files"] = ["verify/manifest.json": ["sha256": "x", "bytes": 1]] }
        refused(d, "files['verify/manifest.json'] must be")
        try write(d, original)
        try edit(d) { var t = $0["tokenizer"] as! [String: Any]; t["context_length"] = 5000; $0["tokenizer"] = t }
        refused(d, "context_length must be in 2..1024")
        // expected vectors that are not finite: an error, never a pass
        let t = VerifyFixture.self
        let f = try t.load()
        var nan = f.files["verify/image_expected.f32"]!
        nan.replaceSubrange(0..<4, with: [0, 0, 0xC0, 0x7F])  // NaN, little-endian
        var cfg = try config(AppLogicTests.fixture)
        var table = cfg["files"] as! [String: Any]
        table["verify/image_expected.f32"] = ["sha256": Digest.sha256Hex(nan), "bytes": nan.count]
        cfg["files"] = table
        let sealed = try BundleConfig.parse(JSONSerialization.data(withJSONObject: cfg), expectedRuntime: "onnx")
        var fs = f.files
        fs["verify/image_expected.f32"] = nan
        let r = VerifyVectors.run(sealed, read: { fs[$0] }, runImage: { _ in [Float](repeating: 0, count: 8) },
                                  runText: { _ in [Float](repeating: 0, count: 8) })
        XCTAssertEqual(r.status, "error")
        XCTAssert(r.lines[0].contains("non-finite"), r.lines[0])
    }

    func testR6ModelIONamesMustMatchTheConfig() throws {
        let d = try copy()
        try edit(d) { c in
            var m = c["models"] as! [String: Any]
            var img = m["image"] as! [String: Any]
            img["inputs"] = [["name": "image", "dtype": "float32", "shape": [1, 3, 16, 16]]]
            img["outputs"] = [["name": "embedding", "dtype": "float32", "shape": [1, 8]]]
            m["image"] = img; c["models"] = m
        }
        let cfg = try BundleFolder(d).config(expectedRuntime: "onnx")
        XCTAssertNoThrow(try cfg.checkIONames(tower: "image", inputs: ["image"], outputs: ["embedding"]))
        XCTAssertThrowsError(try cfg.checkIONames(tower: "image", inputs: ["pixel_values"], outputs: ["embedding"])) { e in
            XCTAssert("\(e)".contains("differ from config.json's"), "\(e)")
        }
        XCTAssertNoThrow(try cfg.checkIONames(tower: "text", inputs: ["anything"], outputs: ["x"]))  // not recorded: nothing to check
    }
}
