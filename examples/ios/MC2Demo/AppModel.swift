import CoreML
import Foundation
import MC2Core
import Photos
import UIKit

/// The app's state and work: bundle loading, zero-shot classification (prompt ensemble, cached text
/// embeddings), photo-library search over an on-device index, and the benchmark mode.
@MainActor
final class AppModel: ObservableObject {
    @Published var status = "Loading the bundle ..."
    @Published var error: String?
    @Published var labels = "cat, dog, car, person, tree, food, a diagram"
    @Published var useOpenAITemplates = false
    @Published var results: [(label: String, prob: Float)] = []
    @Published var warning: String?
    @Published var pickedCrop: CGImage?
    @Published var indexInfo = "Index: not built"
    @Published var indexing = false
    @Published var query = "a dog on the beach"
    @Published var hits: [(id: String, score: Float)] = []
    @Published var benchMode = "quick"
    @Published var benchLog = ""
    @Published var busy = false

    private(set) var config: BundleConfig?
    private var configURL: URL?
    private var tokenizer: ClipTokenizer?
    private var towers: CoreMLTowers?
    private var promptCache: [String: [Float]] = [:]
    private var classKey = ""
    private var classes: [[Float]] = []
    private var index: EmbeddingIndex?
    private var frameBusy = false
    var stopIndexing = false

    static let benchArg = "--mc2export-bench"
    static let benchModeArg = "--mc2export-bench-mode"
    static let resultPath = "Documents/mc2export-bench.json"
    static let bundlePath = "Documents/mc2export-bundle"

    private var home: URL { URL(fileURLWithPath: NSHomeDirectory()) }

    /// Where bundles come from: the benchmark argument, Documents/mc2export-bundle (Finder file sharing or
    /// `xcrun devicectl device copy to ...`), or a "bundle" folder packaged in the app.
    func candidates(_ explicit: String?) -> [URL] {
        var out: [URL] = []
        if let e = explicit { out.append(e.hasPrefix("/") ? URL(fileURLWithPath: e) : home.appendingPathComponent(e)) }
        out.append(home.appendingPathComponent(Self.bundlePath))
        if let r = Bundle.main.url(forResource: "bundle", withExtension: nil) { out.append(r) }
        return out
    }

    func start(arguments: [String]) async {
        var explicit: String?
        var mode: String?
        if let i = arguments.firstIndex(of: Self.benchArg), i + 1 < arguments.count { explicit = arguments[i + 1] }
        if let i = arguments.firstIndex(of: Self.benchModeArg), i + 1 < arguments.count { mode = arguments[i + 1] }
        await reload(explicit)
        if explicit != nil { await runBenchmark(mode ?? "quick") }
    }

    func reload(_ explicit: String? = nil) async {
        towers = nil; tokenizer = nil; config = nil; classKey = ""; promptCache = [:]
        do {
            let tried = candidates(explicit)
            guard let dir = tried.first(where: { FileManager.default.fileExists(atPath: $0.appendingPathComponent("config.json").path) }) else {
                throw BundleError("No bundle found. Export one with `mc2export coreml --variant s0 --out mc2-s0` and copy the folder into the app's Documents as \"mc2export-bundle\" (Finder > iPhone > Files, or add it to the Xcode project as a folder named \"bundle\").")
            }
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
            status = "Compiling / loading \(cfg.name) ..."
            towers = try await CoreMLTowers(dir: dir, config: cfg)
            config = cfg
            configURL = dir
            index = EmbeddingIndex.load(from: indexURL(cfg), variant: cfg.variant, runtime: cfg.runtime, precision: cfg.precision, dim: cfg.embedDim)
                ?? EmbeddingIndex(variant: cfg.variant, runtime: cfg.runtime, precision: cfg.precision, dim: cfg.embedDim)
            indexInfo = "Index: \(index?.count ?? 0) photos"
            status = cfg.summary + " - Core ML"
            error = nil
        } catch {
            self.error = "\(error)"
            status = "No usable bundle"
        }
    }

    // -- zero-shot -------------------------------------------------------------------------------------------

    private func embedText(_ text: String) throws -> [Float] {
        guard let tok = tokenizer, let t = towers else { throw BundleError(error ?? "no text model loaded") }
        return ZeroShot.l2normalize(try t.embedText(tok.tokenize(text).row))
    }

    private func prepareClasses(_ labels: [String]) throws {
        let templates = useOpenAITemplates ? ZeroShot.openaiTemplates : ZeroShot.simpleTemplates
        let key = labels.joined(separator: "\u{0}") + "\u{1}" + templates.joined(separator: "\u{0}")
        if key == classKey { return }
        guard let tok = tokenizer, let t = towers, let cfg = config else { throw BundleError(error ?? "no bundle loaded") }
        let prompts = ZeroShot.prompts(labels, templates, tok)
        var byLabel: [String: [[Float]]] = [:]
        for p in prompts {
            let e: [Float]
            if let c = promptCache[p.text] { e = c } else {
                e = ZeroShot.l2normalize(try t.embedText(p.tokens.row))
                promptCache[p.text] = e
            }
            byLabel[p.label, default: []].append(e)
        }
        classes = labels.map { ZeroShot.classEmbedding(byLabel[$0]!) }
        classKey = key
        warning = ZeroShot.truncationWarning(prompts, contextLength: cfg.contextLength)
    }

    func classify(_ img: RGBAImage, orientation: Int, showCrop: Bool) {
        guard let cfg = config, let t = towers else { warning = error ?? "no bundle loaded"; return }
        switch ZeroShot.parseLabels(labels) {
        case .failure(let e):
            warning = e.message; results = []
        case .success(let labels):
            do {
                try prepareClasses(labels)
                let crop = Preprocess.prepare(img, orientation: orientation, resolution: cfg.resolution, interpolation: cfg.interpolation)
                let e = try t.embedImage(crop, config: cfg)
                let p = ZeroShot.probabilities(e, classes, logitScale: cfg.logitScale)
                results = ZeroShot.topK(p, 5).map { (label: labels[$0], prob: p[$0]) }
                if showCrop { pickedCrop = Self.cgImage(crop) }
            } catch { warning = "\(error)" }
        }
    }

    func classifyFrame(_ pb: CVPixelBuffer, orientation: Int) {
        if frameBusy { return }
        frameBusy = true
        classify(ImageLoading.rgba(pb), orientation: orientation, showCrop: false)
        frameBusy = false
    }

    func classifyPicked(_ data: Data) {
        do {
            let (img, orientation) = try ImageLoading.decode(data)  // full size: pixel-exact with Python
            classify(img, orientation: orientation, showCrop: true)
        } catch { warning = "Cannot read this photo: \(error)" }
    }

    static func cgImage(_ crop: CroppedImage) -> CGImage? {
        let r = crop.size
        var rgba = [UInt8](repeating: 255, count: r * r * 4)
        for i in 0..<(r * r) { rgba[i * 4] = crop.rgb[i * 3]; rgba[i * 4 + 1] = crop.rgb[i * 3 + 1]; rgba[i * 4 + 2] = crop.rgb[i * 3 + 2] }
        guard let provider = CGDataProvider(data: Data(rgba) as CFData) else { return nil }
        return CGImage(width: r, height: r, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: r * 4,
                       space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.noneSkipLast.rawValue),
                       provider: provider, decode: nil, shouldInterpolate: false, intent: .defaultIntent)
    }

    // -- photo search ----------------------------------------------------------------------------------------

    private func indexURL(_ cfg: BundleConfig) -> URL {
        home.appendingPathComponent("Library/index-\(cfg.variant)-\(cfg.runtime)-\(cfg.precision).plist")
    }

    func buildIndex() async {
        guard let cfg = config, let t = towers, var idx = index else { indexInfo = error ?? "no bundle loaded"; return }
        let auth = await PHPhotoLibrary.requestAuthorization(for: .readWrite)
        guard auth == .authorized || auth == .limited else { indexInfo = "Photo access denied: search needs it to index the library"; return }
        indexing = true
        stopIndexing = false
        defer { indexing = false }
        let assets = PHAsset.fetchAssets(with: .image, options: nil)
        var present = Set<String>(), todo: [PHAsset] = []
        assets.enumerateObjects { a, _, _ in
            present.insert(a.localIdentifier)
            if !idx.contains(a.localIdentifier, stamp: a.modificationDate?.timeIntervalSince1970 ?? 0) { todo.append(a) }
        }
        idx.retain { present.contains($0) }
        let opts = PHImageRequestOptions()
        opts.isSynchronous = true
        opts.isNetworkAccessAllowed = false
        opts.deliveryMode = .highQualityFormat
        for (i, a) in todo.enumerated() where !stopIndexing {
            indexInfo = "Indexing \(i) / \(todo.count) new photos ..."
            var data: Data?
            PHImageManager.default().requestImageDataAndOrientation(for: a, options: opts) { d, _, _, _ in data = d }
            guard let d = data, let decoded = try? ImageLoading.decode(d, maxPixelSize: cfg.resolution * 4) else { continue }
            let (img, o) = decoded
            let crop = Preprocess.prepare(img, orientation: o, resolution: cfg.resolution, interpolation: cfg.interpolation)
            if let e = try? t.embedImage(crop, config: cfg) {
                idx.put(a.localIdentifier, stamp: a.modificationDate?.timeIntervalSince1970 ?? 0, e)
            }
            if i % 50 == 0 { await Task.yield() }
        }
        try? idx.save(to: indexURL(cfg))
        index = idx
        indexInfo = "Index: \(idx.count) photos"
    }

    func search() {
        guard let idx = index, idx.count > 0 else { indexInfo = "The index is empty: tap \"Index photos\" first"; return }
        guard !query.trimmingCharacters(in: .whitespaces).isEmpty else { indexInfo = "Type a query"; return }
        do {
            if let tok = tokenizer, tok.tokenize(query).truncated {
                indexInfo = "The query was longer than \(tok.contextLength) tokens and was truncated"
            }
            hits = idx.search(try embedText(query), k: 24).map { (id: $0.key, score: $0.score) }
        } catch { indexInfo = "Search failed: \(error)" }
    }

    // -- benchmark -------------------------------------------------------------------------------------------

    static func machineId() -> String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }

    static func peakFootprintMb() -> Double? {
        var info = task_vm_info_data_t()
        var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<natural_t>.size)
        let kr = withUnsafeMutablePointer(to: &info) {
            $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) { task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count) }
        }
        return kr == KERN_SUCCESS ? Double(info.ledger_phys_footprint_peak) / 1_048_576 : nil
    }

    func runBenchmark(_ modeName: String) async {
        guard let cfg = config, let t = towers else { benchLog = error ?? "no bundle loaded"; return }
        busy = true
        defer { busy = false }
        do {
            let mode = try BenchMode.get(modeName)
            let r = cfg.resolution
            let px = (0..<(r * r)).map { i in 0xFF00_0000 | UInt32((i * 7) & 0xFF) << 16 | UInt32((i * 13) & 0xFF) << 8 | UInt32(i & 0xFF) }
            let crop = Preprocess.resizeCrop(RGBAImage(width: r, height: r, pixels: px), r, cfg.interpolation)
            var towersOut: [TowerResult] = []
            if t.image != nil {
                benchLog = "image: \(mode.name) protocol ..."
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try t.embedImage(crop, config: cfg)
                let first = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                let run = try BenchStats.runProtocol(mode) { _ = try t.embedImage(crop, config: cfg) }
                towersOut.append(TowerResult(tower: "image", file: cfg.imageModelFile, loadColdMs: t.loadMs["image"],
                                             firstInferenceMs: first, run: run, peakRssMb: Self.peakFootprintMb()))
            }
            if t.text != nil, let tok = tokenizer {
                benchLog += "\ntext: \(mode.name) protocol ..."
                let row = tok.tokenize("a photo of a dog").row
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try t.embedText(row)
                let first = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                let run = try BenchStats.runProtocol(mode) { _ = try t.embedText(row) }
                towersOut.append(TowerResult(tower: "text", file: cfg.textModelFile, loadColdMs: t.loadMs["text"],
                                             firstInferenceMs: first, run: run, peakRssMb: Self.peakFootprintMb()))
            }
            let device: [String: Any] = [
                "kind": "ios", "class": Self.machineId().hasPrefix("iPhone") ? "iPhone" : "iOS device", "model": Self.machineId(),
                "soc": NSNull(), "arch": "arm64", "cores_logical": ProcessInfo.processInfo.activeProcessorCount,
                "os": "iOS \(UIDevice.current.systemVersion)",
                "memory_gb": (Double(ProcessInfo.processInfo.physicalMemory) / 1e9 * 10).rounded() / 10,
            ]
            let iso = ISO8601DateFormatter().string(from: Date())
            let version = Bundle.main.infoDictionary?["CFBundleShortVersionString"] as? String ?? "0.1.0"
            let data = try BenchDocument.build(toolVersion: version, created: iso, config: cfg, bundlePath: configURL?.path,
                                               runtimeVersion: "iOS \(UIDevice.current.systemVersion)",
                                               computeUnits: CoreMLTowers.computeUnitsName(t.computeUnits), device: device,
                                               mode: mode, towers: towersOut)
            let out = home.appendingPathComponent(Self.resultPath)
            try data.write(to: out, options: .atomic)
            let summary = towersOut.map { tr -> String in
                let st = BenchStats.summarize(tr.run.samplesMs)
                return String(format: "%@ p50 %.2f ms, p90 %.2f ms (%d calls)", tr.tower, st["p50"] as! Double, st["p90"] as! Double, tr.run.samplesMs.count)
            }.joined(separator: "; ")
            benchLog += "\n\(summary)\nwritten to \(out.path)"
        } catch { benchLog += "\nfailed: \(error)" }
    }
}
