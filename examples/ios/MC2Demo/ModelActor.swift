import CoreML
import CoreVideo
import Foundation
import MC2Core

/// One zero-shot result for the screen.
struct Classification {
    let ranked: [(label: String, prob: Float)]
    let warning: String?
    let crop: CroppedImage?
}

/// What a loaded bundle looks like from the main actor.
struct LoadedInfo {
    let summary: String
    let verifyLines: [String]
    let verifyStatus: String
    let indexCount: Int
}

/// Owns the models and everything that touches them -- config, tokenizer, Core ML towers, prompt cache, class
/// embeddings, photo index, verification report -- so that preprocessing and inference never run on the main
/// actor. The UI (AppModel, @MainActor) awaits these methods; camera frames arrive through a FrameGate.
actor ModelActor {
    private(set) var config: BundleConfig?
    private var dir: URL?
    private var tokenizer: ClipTokenizer?
    private var towers: CoreMLTowers?
    private var promptCache: [String: [Float]] = [:]
    private var classKey = ""
    private var classLabels: [String] = []
    private var classes: [[Float]] = []
    private var classWarning: String?
    private var index: EmbeddingIndex?
    private(set) var verify: VerifyReport?

    private var home: URL { URL(fileURLWithPath: NSHomeDirectory()) }

    private func indexURL(_ cfg: BundleConfig) -> URL {
        home.appendingPathComponent("Library/index-\(cfg.variant)-\(cfg.runtime)-\(cfg.precision).plist")
    }

    /// Load a bundle folder, then run its verification vectors on this device's Core ML.
    func load(_ dir: URL) async throws -> LoadedInfo {
        towers = nil; tokenizer = nil; config = nil; verify = nil; index = nil
        promptCache = [:]; classKey = ""; classes = []
        let cfgData = try Data(contentsOf: dir.appendingPathComponent("config.json"))
        let cfg = try BundleConfig.parse(cfgData, expectedRuntime: "coreml")
        let missing = cfg.missingFiles { FileManager.default.fileExists(atPath: dir.appendingPathComponent($0).path) }
        if !missing.isEmpty { throw BundleError("the bundle lacks \(missing.joined(separator: ", ")): copy the whole folder") }
        if cfg.hasText {
            do {
                tokenizer = try ClipTokenizer.fromFiles(vocab: Data(contentsOf: dir.appendingPathComponent(cfg.vocabFile)),
                                                        merges: String(contentsOf: dir.appendingPathComponent(cfg.mergesFile), encoding: .utf8),
                                                        contextLength: cfg.contextLength)
            } catch { throw BundleError("tokenizer files: \(error)") }
        }
        let t = try await CoreMLTowers(dir: dir, config: cfg)
        towers = t
        config = cfg
        self.dir = dir
        // the bundle proves itself on this device before it is used: verify/ through the same calls as photos
        let report = VerifyVectors.run(cfg, read: { rel in try? Data(contentsOf: dir.appendingPathComponent(rel)) },
                                       runImage: { crop in try t.embedImage(crop, config: cfg) },
                                       runText: { row in try t.embedText(row) })
        verify = report
        let idx = EmbeddingIndex.load(from: indexURL(cfg), variant: cfg.variant, runtime: cfg.runtime, precision: cfg.precision, dim: cfg.embedDim)
            ?? EmbeddingIndex(variant: cfg.variant, runtime: cfg.runtime, precision: cfg.precision, dim: cfg.embedDim)
        index = idx
        return LoadedInfo(summary: cfg.summary + " - Core ML", verifyLines: report.lines, verifyStatus: report.status, indexCount: idx.count)
    }

    private func require() throws -> (BundleConfig, CoreMLTowers) {
        guard let c = config, let t = towers else { throw BundleError("no bundle loaded") }
        return (c, t)
    }

    // -- zero-shot -------------------------------------------------------------------------------------------

    /// Class embeddings for labels x templates (text embeddings cached per prompt); nothing to do when unchanged.
    func prepare(labels: [String], templates: [String]) throws {
        let key = labels.joined(separator: "\u{0}") + "\u{1}" + templates.joined(separator: "\u{0}")
        if key == classKey { return }
        let (cfg, t) = try require()
        guard let tok = tokenizer else { throw BundleError("this bundle has no text model") }
        let prompts = try ZeroShot.prompts(labels, templates, tok)
        var byLabel: [String: [[Float]]] = [:]
        for p in prompts {
            let e: [Float]
            if let c = promptCache[p.text] { e = c } else {
                e = ZeroShot.l2normalize(try t.embedText(p.tokens.row))
                promptCache[p.text] = e
            }
            byLabel[p.label, default: []].append(e)
        }
        classes = labels.map { ZeroShot.classEmbedding(byLabel[$0] ?? []) }
        classLabels = labels
        classKey = key
        classWarning = ZeroShot.truncationWarning(prompts, contextLength: cfg.contextLength)
    }

    func classify(_ img: RGBAImage, orientation: Int, labels: [String], templates: [String], keepCrop: Bool) throws -> Classification {
        try prepare(labels: labels, templates: templates)
        let (cfg, t) = try require()
        let crop = Preprocess.prepare(img, orientation: orientation, resolution: cfg.resolution, interpolation: cfg.interpolation)
        let p = ZeroShot.probabilities(try t.embedImage(crop, config: cfg), classes, logitScale: cfg.logitScale)
        return Classification(ranked: ZeroShot.topK(p, 5).map { (label: classLabels[$0], prob: p[$0]) }, warning: classWarning,
                              crop: keepCrop ? crop : nil)
    }

    /// A camera frame against the labels prepared last (nil before any): read, preprocessed and classified here.
    func classifyFrame(_ pb: CVPixelBuffer, orientation: Int) throws -> Classification? {
        guard !classes.isEmpty else { return nil }
        let (cfg, t) = try require()
        let crop = Preprocess.prepare(ImageLoading.rgba(pb), orientation: orientation, resolution: cfg.resolution, interpolation: cfg.interpolation)
        let p = ZeroShot.probabilities(try t.embedImage(crop, config: cfg), classes, logitScale: cfg.logitScale)
        return Classification(ranked: ZeroShot.topK(p, 5).map { (label: classLabels[$0], prob: p[$0]) }, warning: classWarning, crop: nil)
    }

    // -- photo index -----------------------------------------------------------------------------------------

    func indexNeeds(_ key: String, stamp: Double) -> Bool { !(index?.contains(key, stamp: stamp) ?? true) }

    func retainIndex(_ present: Set<String>) { index?.retain { present.contains($0) } }

    /// Embed one photo of the library into the index (decoded subsampled: fast; not Python's pixels exactly).
    func indexPhoto(_ key: String, stamp: Double, data: Data) throws {
        let (cfg, t) = try require()
        let (img, o, _) = try ImageLoading.decode(data, minShortSide: cfg.resolution * 2, maxPixels: 0)
        let crop = Preprocess.prepare(img, orientation: o, resolution: cfg.resolution, interpolation: cfg.interpolation)
        index?.put(key, stamp: stamp, try t.embedImage(crop, config: cfg))
    }

    func saveIndex() throws -> Int {
        guard let cfg = config, let idx = index else { return 0 }
        try idx.save(to: indexURL(cfg))
        return idx.count
    }

    func search(_ query: String, k: Int) throws -> (hits: [(key: String, score: Float)], truncated: Bool, count: Int) {
        let (_, t) = try require()
        guard let tok = tokenizer else { throw BundleError("this bundle has no text model") }
        guard let idx = index, idx.count > 0 else { return ([], false, 0) }
        let row = try tok.tokenize(query)
        return (idx.search(ZeroShot.l2normalize(try t.embedText(row.row)), k: k), row.truncated, idx.count)
    }

    // -- benchmark -------------------------------------------------------------------------------------------

    /// Each tower timed under `mode` on an input made into a feature provider once: a sample is `prediction(from:)`.
    func benchmark(_ mode: BenchMode, device: [String: Any], runtimeVersion: String, toolVersion: String,
                   log: @Sendable (String) -> Void) throws -> (Data, String) {
        let (cfg, t) = try require()
        let r = cfg.resolution
        let px = (0..<(r * r)).map { i in 0xFF00_0000 | UInt32((i * 7) & 0xFF) << 16 | UInt32((i * 13) & 0xFF) << 8 | UInt32(i & 0xFF) }
        let crop = Preprocess.resizeCrop(RGBAImage(width: r, height: r, pixels: px), r, cfg.interpolation)
        var out: [TowerResult] = []
        func time(_ tower: String, _ file: String?, _ model: MLModel, _ input: MLFeatureProvider) throws {
            log("\(tower): \(mode.name) protocol ...")
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try model.prediction(from: input)
            let first = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            let run = try BenchStats.runProtocol(mode) { _ = try model.prediction(from: input) }
            out.append(TowerResult(tower: tower, file: file, loadColdMs: t.loadMs[tower], firstInferenceMs: first, run: run,
                                   peakRssMb: ModelActor.peakFootprintMb()))
        }
        if let m = t.image { try time("image", cfg.imageModelFile, m, try t.imageInput(crop, config: cfg)) }
        if let m = t.text, let tok = tokenizer { try time("text", cfg.textModelFile, m, try t.textInput(try tok.tokenize("a photo of a dog").row)) }
        let iso = ISO8601DateFormatter().string(from: Date())
        let data = try BenchDocument.build(toolVersion: toolVersion, created: iso, config: cfg, bundlePath: dir?.path,
                                           runtimeVersion: runtimeVersion, computeUnits: CoreMLTowers.computeUnitsName(t.computeUnits),
                                           device: device, mode: mode, towers: out, verify: verify?.dict)
        let summary = out.map { tr -> String in
            let st = BenchStats.summarize(tr.run.samplesMs)
            return String(format: "%@ p50 %.2f ms, p90 %.2f ms (%d calls)", tr.tower, st["p50"] as? Double ?? 0, st["p90"] as? Double ?? 0,
                          tr.run.samplesMs.count)
        }.joined(separator: "; ")
        return (data, summary)
    }

    static func peakFootprintMb() -> Double? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<natural_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count) }
        }
        return kr == KERN_SUCCESS ? Double(info.ledger_phys_footprint_peak) / 1_048_576 : nil
    }
}
