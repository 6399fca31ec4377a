import XCTest
@testable import MC2Core

/// The Swift ports against examples/shared/vectors -- the same checks as the Kotlin JUnit tests.
/// Tokenizer: by default the committed slice of CLIP's vocabulary that these strings need
/// (examples/shared/fixtures/tokenizer_slice.json, checked by tests/test_kotlin_shared.py to reproduce every
/// vector's ids); $MC2_VOCAB (a folder with vocab.json + merges.txt, e.g. any bundle) runs on the full files.
final class VectorTests: XCTestCase {
    static let vectors: URL = {
        if let p = ProcessInfo.processInfo.environment["MC2_VECTORS"] { return URL(fileURLWithPath: p) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("shared/vectors")
    }()

    func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: Self.vectors.appendingPathComponent(name))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static var fixtures: URL { vectors.deletingLastPathComponent().appendingPathComponent("fixtures") }

    func tokenizer() throws -> ClipTokenizer {
        if let env = ProcessInfo.processInfo.environment["MC2_VOCAB"] {
            let dir = URL(fileURLWithPath: env)
            return try ClipTokenizer.fromFiles(vocab: Data(contentsOf: dir.appendingPathComponent("vocab.json")),
                                               merges: String(contentsOf: dir.appendingPathComponent("merges.txt"), encoding: .utf8))
        }
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("tokenizer_slice.json"))
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let merges = try XCTUnwrap(obj["merges"] as? [[String]])
        let vocab = try XCTUnwrap(obj["vocab"] as? [String: NSNumber])
        var ranks: [String: Int] = [:]
        for (i, m) in merges.enumerated() { ranks[m[0] + " " + m[1]] = i }
        return ClipTokenizer(encoder: vocab.mapValues { $0.int32Value }, ranks: ranks, contextLength: 77)
    }

    func testTokenizerMatchesPython() throws {
        let tok = try tokenizer()
        let texts = try XCTUnwrap(try json("text.json")["texts"] as? [[String: Any]])
        var failures: [String] = []
        for t in texts {
            let text = t["text"] as! String
            let exact = t["exact"] as! Bool
            let expected = ((exact ? t["ids"] : t["portable_ids"]) as! [NSNumber]).map { $0.int32Value }
            let clean = (exact ? t["clean"] : t["portable_clean"]) as! String
            let got = try tok.tokenize(text)
            if got.ids != expected { failures.append("\(text.debugDescription): ids \(got.ids) != \(expected)") }
            if Array(TextCleaner.clean(text).unicodeScalars) != Array(clean.unicodeScalars) {
                failures.append("\(text.debugDescription): clean '\(TextCleaner.clean(text))' != '\(clean)'")
            }
            if got.row.count != 77 { failures.append("row length") }
        }
        XCTAssert(failures.isEmpty, failures.joined(separator: "\n"))
    }

    func testTemplatesAreThePythonOnes() throws {
        let tpl = try XCTUnwrap(try json("text.json")["templates"] as? [String: [String]])
        XCTAssertEqual(tpl["openai"], ZeroShot.openaiTemplates)
        XCTAssertEqual(tpl["simple"], ZeroShot.simpleTemplates)
    }

    func testNormalizationMatchesTorch() throws {
        let table = try json("normalize.json")
        for set in ["zero_one", "openai"] {
            let t = table[set] as! [String: Any]
            let mean = (t["mean"] as! [NSNumber]).map { $0.floatValue }, std = (t["std"] as! [NSNumber]).map { $0.floatValue }
            let values = t["values"] as! [[NSNumber]]
            for b in 0..<256 {
                let out = Preprocess.toNormalizedCHW(CroppedImage(size: 1, rgb: [UInt8(b), UInt8(b), UInt8(b)]), mean: mean, std: std)
                for c in 0..<3 { XCTAssertEqual(out[c], values[c][b].floatValue, "\(set) c=\(c) b=\(b)") }
            }
        }
    }

    func testOrientations() throws {
        let o = try json("orientation.json")
        let input = o["input"] as! [String: Any]
        let size = (input["size"] as! [NSNumber]).map { $0.intValue }
        let px = (input["pixels"] as! [[NSNumber]]).map { p in 0xFF00_0000 | UInt32(p[0].intValue) << 16 | UInt32(p[1].intValue) << 8 | UInt32(p[2].intValue) }
        let img = RGBAImage(width: size[0], height: size[1], pixels: px)
        for case_ in o["cases"] as! [[String: Any]] {
            let out = ExifOrientation.apply(img, (case_["orientation"] as! NSNumber).intValue)
            let exp = (case_["pixels"] as! [[NSNumber]]).map { p in 0xFF00_0000 | UInt32(p[0].intValue) << 16 | UInt32(p[1].intValue) << 8 | UInt32(p[2].intValue) }
            XCTAssertEqual(out.pixels, exp)
        }
        for f in o["files"] as! [[String: Any]] {
            let bytes = try [UInt8](Data(contentsOf: Self.vectors.appendingPathComponent("images/\(f["file"] as! String)")))
            XCTAssertEqual(ExifOrientation.read(bytes), (f["orientation"] as! NSNumber).intValue, f["file"] as! String)
        }
    }

    /// Pillow's preprocessing, byte for byte, on every platform: the PNGs are decoded by the test's own PNG
    /// reader (checked against the vectors' hash of the stored pixels), the crop is compared by its hash
    /// (`u8_hwc_sha256`) and, for the message, pixel by pixel with the committed crop PNG.
    func testPreprocessingMatchesPythonByteForByte() throws {
        let images = try json("images.json")
        var failures: [String] = []
        var decoded: [String: RGBAImage] = [:]
        for meta in images["images"] as! [[String: Any]] {
            guard let want = meta["pixels_sha256"] as? String else { continue }
            let name = meta["file"] as! String
            let data = try Data(contentsOf: Self.vectors.appendingPathComponent("images/\(name)"))
            let raw = try PNGDecoder.decodeBytes(data)
            XCTAssertEqual(Digest.sha256Hex(Data(raw.bytes)), want, "\(name): the test's PNG decoder disagrees with Pillow")
            decoded[name] = RGBAImage(width: raw.width, height: raw.height, bytes: raw.bytes, channels: raw.channels)
        }
        let cases = images["cases"] as! [[String: Any]]
        XCTAssertEqual(cases.count, 18)
        for c in cases {
            let name = c["image"] as! String
            let url = Self.vectors.appendingPathComponent("images/\(name)")
            let orient = ExifOrientation.read([UInt8](try Data(contentsOf: url)))
            let interp = Interpolation(rawValue: c["interpolation"] as! String)!
            let image = try XCTUnwrap(decoded[name], name)
            let crop = Preprocess.prepare(image, orientation: orient, resolution: (c["resolution"] as! NSNumber).intValue,
                                          interpolation: interp)
            if Digest.sha256Hex(Data(crop.rgb)) == c["u8_hwc_sha256"] as? String { continue }
            let expected = try PNGDecoder.decodeBytes(try Data(contentsOf: Self.vectors.appendingPathComponent("images/\(c["crop_png"] as! String)")))
            let diff = zip(crop.rgb, expected.bytes).filter { $0 != $1 }.count
            failures.append("\(name) @ \(c["resolution"]!) \(interp): the crop's hash differs (\(diff) bytes differ from the crop PNG)")
        }
        XCTAssert(failures.isEmpty, failures.joined(separator: "\n"))
    }

    func testLabelsAndTruncation() throws {
        if case .success(let l) = ZeroShot.parseLabels(" cat, dog ,\n red   car ,, ") { XCTAssertEqual(l, ["cat", "dog", "red car"]) } else { XCTFail() }
        if case .failure(let e) = ZeroShot.parseLabels(" , ") { XCTAssert(e.message.contains("at least one label")) } else { XCTFail() }
        if case .failure(let e) = ZeroShot.parseLabels("cat, cat") { XCTAssert(e.message.contains("twice")) } else { XCTFail() }
        // "\r\n" is one Character in Swift: labels are split on Unicode scalars, as Kotlin splits UTF-16 units
        if case .success(let l) = ZeroShot.parseLabels("cat\r\ndog\r\n red car") { XCTAssertEqual(l, ["cat", "dog", "red car"]) } else { XCTFail() }
        let tok = try tokenizer()
        let long = (1...100).map { "word\($0)" }.joined(separator: " ")
        let p = try ZeroShot.prompts(["cat", long], ZeroShot.simpleTemplates, tok)
        XCTAssertEqual(p.filter { $0.tokens.truncated }.count, 7)
        XCTAssertNotNil(ZeroShot.truncationWarning(p, contextLength: 77))
    }

    func testBundleConfigErrors() throws {
        func cfg(_ edit: (inout [String: Any]) -> Void) throws -> Data {
            var c: [String: Any] = ["format": "mc2export-bundle", "bundle_version": 2, "runtime": "coreml", "variant": "mobileclip2-s0", "precision": "fp16",
                                    "batch": 1, "preprocess": ["resolution": 256, "resize": "shortest", "crop": "center",
                                                               "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 1, 1]],
                                    "embed_dim": 512, "logit_scale": 100.0,
                                    "models": ["image": ["file": "image.mlpackage", "input": ["type": "ImageType"]],
                                               "text": ["file": "text.mlpackage"]]]
            edit(&c)
            return try JSONSerialization.data(withJSONObject: c)
        }
        let ok = try BundleConfig.parse(cfg { _ in }, expectedRuntime: "coreml")
        XCTAssertEqual(ok.imageInput, .pixelBuffer)
        XCTAssertEqual(ok.contextLength, 77)
        func expectError(_ data: Data, _ fragment: String) {
            XCTAssertThrowsError(try BundleConfig.parse(data, expectedRuntime: "coreml")) { e in
                XCTAssert("\(e)".contains(fragment), "\(e) lacks \(fragment)")
            }
        }
        expectError(Data("{ not json".utf8), "not valid JSON")
        expectError(try cfg { $0["format"] = "x" }, "not an mc2export bundle")
        expectError(try cfg { $0["runtime"] = "onnx" }, "mc2export coreml")
        expectError(try cfg { $0["batch"] = 4 }, "--batch 1")
        expectError(try cfg { $0["models"] = ["image": ["file": "image.onnx"]] }, "not a .mlpackage model")
        // the same strictness as BundleConfig.kt: booleans are booleans, numbers are numbers
        expectError(try cfg { $0["output_normalized"] = "yes" }, "output_normalized must be true or false")
        expectError(try cfg { $0["output_normalized"] = 1 }, "output_normalized must be true or false")
        expectError(try cfg { $0["logit_scale"] = "100" }, "logit_scale must be a number")
        expectError(try cfg { $0["logit_scale"] = -1.0 }, "logit_scale must be a positive number")
        expectError(try cfg { $0["embed_dim"] = true }, "embed_dim must be an integer")
        expectError(try cfg { $0["embed_dim"] = 0 }, "embed_dim must be positive")
        expectError(try cfg { $0["weights"] = ["random_weights": "no"] }, "random_weights must be true or false")
        expectError(try cfg { c in var p = c["preprocess"] as! [String: Any]; p["interpolation"] = "lanczos"; c["preprocess"] = p }, "lanczos")
        let upper = try BundleConfig.parse(try cfg { c in var p = c["preprocess"] as! [String: Any]; p["interpolation"] = " BICUBIC"; c["preprocess"] = p },
                                           expectedRuntime: "coreml")
        XCTAssertEqual(upper.interpolation, .bicubic)
    }
}
