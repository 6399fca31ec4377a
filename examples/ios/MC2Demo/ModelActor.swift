import CoreML
import CoreVideo
import Foundation
import MC2Core
import Photos

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
    /// why the index on disk was not opened (another model's index, a damaged file): the app offers a rebuild
    let indexProblem: String?
}

/// Owns the models and everything that touches them -- config, tokenizer, Core ML towers, prompt cache, class
/// embeddings, photo index, verification report -- so that preprocessing and inference never run on the main
/// actor. The UI (AppModel, @MainActor) awaits these methods; camera frames arrive through a FrameGate.
actor ModelActor {
    private(set) var config: BundleConfig?
    private var dir: URL?
    private var folder: BundleFolder?
    private var tokenizer: ClipTokenizer?
    private var towers: CoreMLTowers?
    private var promptCache: [String: [Float]] = [:]
    private var classKey = ""
    private var classLabels: [String] = []
    private var classes: [[Float]] = []
    private var classWarning: String?
    private var index: PhotoIndex?
    private var indexHeader: IndexHeader?
    private(set) var verify: VerifyReport?

    private var home: URL { URL(fileURLWithPath: NSHomeDirectory()) }

    /// One index file whatever the model: an index of another model is detected by its header and refused
    /// (docs/app_index.md), never mixed in or silently replaced.
    private var indexURL: URL { home.appendingPathComponent("Library/photos.mc2i") }

    /// Load a bundle folder, then run its verification vectors on this device's Core ML.
    func load(_ dir: URL) async throws -> LoadedInfo {
        towers = nil; tokenizer = nil; config = nil; verify = nil; index = nil
        promptCache = [:]; classKey = ""; classes = []
        // the reading rules (docs/bundle.md): config.json.sha256, bundle_version 2, paths inside the folder
        let folder = try BundleFolder(dir)
        let cfg = try folder.config(expectedRuntime: "coreml")
        let missing = cfg.missingFiles { FileManager.default.fileExists(atPath: dir.appendingPathComponent($0).path) }
        if !missing.isEmpty { throw BundleError("the bundle lacks \(missing.joined(separator: ", ")): copy the whole folder") }
        if cfg.hasText {
            do {
                guard let vocab = try folder.read(cfg.vocabFile, field: "tokenizer.vocab"),
                      let merges = try folder.read(cfg.mergesFile, field: "tokenizer.merges") else { throw BundleError("missing") }
                tokenizer = try ClipTokenizer.fromFiles(vocab: vocab, merges: String(decoding: merges, as: UTF8.self),
                                                        contextLength: cfg.contextLength)
            } catch { throw BundleError("tokenizer files: \(error)") }
        }
        let t = try await CoreMLTowers(dir: dir, config: cfg)
        towers = t
        config = cfg
        self.dir = dir
        self.folder = folder
        // the bundle proves itself on this device before it is used: verify/ through the same calls as photos
        let report = VerifyVectors.run(cfg, read: { rel in try folder.read(rel, field: "verify/manifest.json") },
                                       runImage: { crop in try t.embedImage(crop, config: cfg) },
                                       runText: { row in try t.embedText(row) })
        verify = report
        let header = try IndexHeader(bundle: cfg, configSha256: folder.configSha256)
        indexHeader = header
        var problem: String?
        do {
            index = try PhotoIndex(url: indexURL, header: header)
        } catch {
            problem = "\(error)"  // another model's index (or not an index): kept until the user rebuilds
        }
        return LoadedInfo(summary: cfg.summary + " - Core ML", verifyLines: report.lines, verifyStatus: report.status,
                          indexCount: index?.count ?? 0, indexProblem: problem)
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

    /// The user confirmed: replace whatever index file is there by a new, empty one for this bundle.
    func rebuildIndex() throws -> Int {
        guard let header = indexHeader else { throw BundleError("no bundle loaded") }
        index = nil
        try PhotoIndex.remove(at: indexURL)
        index = try PhotoIndex(url: indexURL, header: header)
        return 0
    }

    /// What the library needs (new or changed photos, photos gone) against the index.
    func plan(_ library: [IndexingPlan.Photo]) throws -> (todo: [IndexingPlan.Photo], gone: [String]) {
        guard let idx = index else { throw BundleError("the photo index is not open (rebuild it)") }
        return IndexingPlan.diff(library: library, index: idx.store)
    }

    /// Index `todo` in batches (MC2Core IndexingRun): each batch is read from PhotoKit at the model's size,
    /// embedded by one batched Core ML call, and appended to the index with one durable write. `pause` is
    /// asked before every batch (battery, heat, the user, the background task's expiry).
    func index(_ todo: [IndexingPlan.Photo], gone: [String], assets: [String: PHAsset], batchSize: Int,
               pause: @Sendable () -> String?, progress: @Sendable (IndexingRun.Progress) -> Void) throws -> IndexingRun.Progress {
        let (cfg, t) = try require()
        guard let idx = index else { throw BundleError("the photo index is not open (rebuild it)") }
        return try IndexingRun(batchSize: batchSize).run(todo: todo, gone: gone, index: idx, embed: { batch in
            // the images, the crops and Core ML's outputs of one batch live and die inside this pool: output
            // buffers are copied to [Float] at once, never held across batches (Queryable's IOSurface crash)
            try autoreleasepool {
                var crops: [CroppedImage?] = []
                for p in batch {
                    guard let a = assets[p.key], let got = PhotoLibrary.image(a, resolution: cfg.resolution) else { crops.append(nil); continue }
                    crops.append(Preprocess.prepare(got.0, orientation: got.1, resolution: cfg.resolution, interpolation: cfg.interpolation))
                }
                let vectors = try t.embedImages(crops.compactMap { $0 }, config: cfg)
                var result: [[Float]?] = []
                var next = 0
                for c in crops {
                    if c == nil { result.append(nil) } else { result.append(vectors[next]); next += 1 }
                }
                return result
            }
        }, pause: pause, progress: progress)
    }

    var indexCount: Int { index?.count ?? 0 }

    /// Compaction rewrites the file: between indexing runs only (called when a run ends), when worth it.
    func compactIndexIfWorthIt() throws {
        guard let idx = index, idx.shouldCompact else { return }
        try idx.compact()
    }

    func search(_ query: String, k: Int) throws -> (hits: [(key: String, score: Float)], truncated: Bool, count: Int) {
        let (_, t) = try require()
        guard let tok = tokenizer else { throw BundleError("this bundle has no text model") }
        guard let idx = index, idx.count > 0 else { return ([], false, 0) }
        let row = try tok.tokenize(query)
        let hits = idx.search(try t.embedText(row.row), k: k)
        return (hits.map { (key: $0.key, score: $0.score) }, row.truncated, idx.count)
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
