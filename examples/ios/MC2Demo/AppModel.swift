import CoreML
import CoreVideo
import Foundation
import MC2Core
import Photos
import UIKit

/// The screen's state. It only holds what the views show: the models, preprocessing and every prediction live
/// in `ModelActor` (off the main actor), camera frames come through the camera's FrameGate.
@MainActor
final class AppModel: ObservableObject {
    @Published var status = "Loading the bundle ..."
    @Published var error: String?
    @Published var verifyLines: [String] = []
    @Published var verifyStatus: String?
    @Published var labels = "cat, dog, car, person, tree, food, a diagram"
    @Published var useOpenAITemplates = false
    @Published var results: [(label: String, prob: Float)] = []
    @Published var warning: String?
    @Published var pickedCrop: CGImage?
    @Published var indexInfo = "Index: not built"
    @Published var indexing = false
    /// another model's index (or a damaged one) is on disk: the user confirms a rebuild
    @Published var indexProblem: String?
    @Published var query = "a dog on the beach"
    @Published var hits: [(id: String, score: Float)] = []
    @Published var benchMode = "quick"
    @Published var benchLog = ""
    @Published var busy = false
    @Published var framesDropped = 0

    let engine = ModelActor()
    /// Created once with the model: the capture session is configured on first start, then only run / paused.
    let camera = CameraController()
    private var bundleDir: URL?
    /// the user's pause (Stop button) or the background task's expiry: read before every batch
    private var pauseRequest: String?

    static let benchArg = "--mc2export-bench"
    static let benchModeArg = "--mc2export-bench-mode"
    static let resultPath = "Documents/mc2export-bench.json"
    static let bundlePath = "Documents/mc2export-bundle"

    private var home: URL { URL(fileURLWithPath: NSHomeDirectory()) }
    private var templates: [String] { useOpenAITemplates ? ZeroShot.openaiTemplates : ZeroShot.simpleTemplates }

    init() {
        camera.onFrame = Self.frameHandler(engine: engine, gate: camera.gate, model: self)
    }

    /// Built outside the main actor on purpose: the handler runs on the camera queue. The gate let the frame
    /// through; the prediction runs in the model actor and the gate opens again when it is over.
    nonisolated private static func frameHandler(engine: ModelActor, gate: FrameGate, model: AppModel) -> (CVPixelBuffer, Int) -> Void {
        { [weak model] pb, orientation in
            let target = model  // a constant for the task (a captured weak var may not cross into it)
            Task.detached {
                defer { gate.release() }
                let result = try? await engine.classifyFrame(pb, orientation: orientation)
                await target?.showFrame(result, dropped: gate.dropped)
            }
        }
    }

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
        do {
            guard let dir = candidates(explicit).first(where: { FileManager.default.fileExists(atPath: $0.appendingPathComponent("config.json").path) }) else {
                throw BundleError("No bundle found. Export one with `mc2export coreml --variant s0 --out mc2-s0` and copy the folder into the app's Documents as \"mc2export-bundle\" (Finder > iPhone > Files, or add it to the Xcode project as a folder named \"bundle\").")
            }
            status = "Compiling / loading the models, then checking the bundle's verification vectors ..."
            let info = try await engine.load(dir)
            bundleDir = dir
            status = info.summary
            verifyLines = info.verifyLines
            verifyStatus = info.verifyStatus
            indexInfo = info.indexProblem.map { "Index: \($0)" } ?? "Index: \(info.indexCount) photos"
            indexProblem = info.indexProblem
            error = nil
        } catch {
            self.error = "\(error)"
            status = "No usable bundle"
            verifyLines = []
        }
    }

    // -- zero-shot -------------------------------------------------------------------------------------------

    private func parsedLabels() -> [String]? {
        switch ZeroShot.parseLabels(labels) {
        case .failure(let e):
            warning = e.message; results = []
            return nil
        case .success(let l):
            return l
        }
    }

    /// Before the camera runs (and when labels change while it runs): class embeddings in the model actor.
    func prepareLabels() async {
        guard let l = parsedLabels() else { return }
        do { try await engine.prepare(labels: l, templates: templates) } catch { warning = "\(error)" }
    }

    private func showFrame(_ c: Classification?, dropped: Int) {
        framesDropped = dropped
        guard let c else { return }
        results = c.ranked
        warning = c.warning
    }

    func classifyPicked(_ data: Data) async {
        guard let l = parsedLabels() else { return }
        let tpl = templates
        do {
            let resolution = await engine.config?.resolution ?? 256
            let (img, orientation, sample) = try ImageLoading.decode(data, minShortSide: resolution)  // full size up to 16 MP
            let c = try await engine.classify(img, orientation: orientation, labels: l, templates: tpl, keepCrop: true)
            results = c.ranked
            let note = sample > 1 ? "The photo was decoded at 1/\(sample) size to fit in memory: close to, not exactly, Python's pixels." : nil
            warning = [c.warning, note].compactMap { $0 }.joined(separator: "\n").nilIfEmpty
            if let crop = c.crop { pickedCrop = Self.cgImage(crop) }
        } catch { warning = "Cannot classify this photo: \(error)" }
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

    /// Index the library now (the app is open): new and changed photos in batches of 32, each batch durable
    /// on disk when it is counted; photos gone from the library are deleted from the index. Paused by the Stop
    /// button, heat, low battery or Low Power Mode; what remains is left to the background task.
    func buildIndex() async {
        guard await engine.config != nil else { indexInfo = error ?? "no bundle loaded"; return }
        guard indexProblem == nil else { indexInfo = "Index: \(indexProblem!) -- tap Rebuild"; return }
        let auth = await PHPhotoLibrary.requestAuthorization(for: .readWrite)
        guard auth == .authorized || auth == .limited else { indexInfo = "Photo access denied: search needs it to index the library"; return }
        _ = await runIndexing()
    }

    /// The body of a foreground or background run; true when nothing is left to do.
    func runIndexing() async -> Bool {
        guard !indexing else { return false }
        indexing = true
        pauseRequest = nil
        defer { indexing = false }
        let (library, assets) = PhotoLibrary.snapshot()
        do {
            let plan = try await engine.plan(library)
            if plan.todo.isEmpty && plan.gone.isEmpty {
                let n = await engine.indexCount
                indexInfo = "Index: \(n) photos (up to date)"
                return true
            }
            indexInfo = "Indexing \(plan.todo.count) new or changed photos ..."
            // the pause rule reads the device on the main actor; the actor asks it before each batch
            let conditions = Locked(PhotoLibrary.conditions(userPaused: false))
            let watcher = Task { @MainActor [weak self] in
                while !Task.isCancelled {
                    conditions.set(PhotoLibrary.conditions(userPaused: self?.pauseRequest != nil))
                    try? await Task.sleep(nanoseconds: 1_000_000_000)
                }
            }
            defer { watcher.cancel() }
            let total = plan.todo.count
            let p = try await engine.index(plan.todo, gone: plan.gone, assets: assets, batchSize: 32,
                                           pause: { conditions.get().pauseReason },
                                           progress: { p in Task { @MainActor [weak self] in
                                               self?.indexInfo = "Indexing: \(total - p.remaining) / \(total) (\(p.skipped) unreadable)" } })
            try await engine.compactIndexIfWorthIt()
            let count = await engine.indexCount
            if let why = p.pausedBecause {
                indexInfo = "Index: \(count) photos, \(p.remaining) to go -- \(why); continues in the background while charging"
                BackgroundIndexing.schedule()
                return false
            }
            indexInfo = "Index: \(count) photos" + (p.skipped > 0 ? " (\(p.skipped) skipped: unreadable here, retried next time)" : "")
            return true
        } catch {
            indexInfo = "Indexing stopped: \(error)"
            return false
        }
    }

    /// The Stop button, or the background task's expiry: the batch in flight finishes and is kept.
    func pauseIndexing(reason: String = "paused by you") { pauseRequest = reason }

    /// BGProcessingTask entry (BackgroundIndexing): the same run, resumed from the index on disk.
    func indexInBackground() async -> Bool {
        if await engine.config == nil { await reload() }
        guard indexProblem == nil, await engine.config != nil else { return true }
        return await runIndexing()
    }

    /// The user confirmed replacing another model's (or a damaged) index.
    func rebuildIndex() async {
        do {
            _ = try await engine.rebuildIndex()
            indexProblem = nil
            indexInfo = "Index: 0 photos (new)"
        } catch { indexInfo = "Cannot rebuild the index: \(error)" }
    }

    func search() async {
        guard !query.trimmingCharacters(in: .whitespaces).isEmpty else { indexInfo = "Type a query"; return }
        do {
            let r = try await engine.search(query, k: 24)
            if r.count == 0 { indexInfo = "The index is empty: tap \"Index photos\" first"; return }
            if r.truncated { indexInfo = "The query was longer than 77 tokens and was truncated" }
            hits = r.hits.map { (id: $0.key, score: $0.score) }
        } catch { indexInfo = "Search failed: \(error)" }
    }

    // -- benchmark -------------------------------------------------------------------------------------------

    static func machineId() -> String {
        var info = utsname()
        uname(&info)
        return withUnsafeBytes(of: &info.machine) { raw in String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self) }
    }

    func runBenchmark(_ modeName: String) async {
        busy = true
        defer { busy = false }
        do {
            let mode = try BenchMode.get(modeName)
            let device: [String: Any] = [
                "kind": "ios", "class": Self.machineId().hasPrefix("iPhone") ? "iPhone" : "iOS device", "model": Self.machineId(),
                "soc": NSNull(), "arch": "arm64", "cores_logical": ProcessInfo.processInfo.activeProcessorCount,
                "os": "iOS \(UIDevice.current.systemVersion)",
                "memory_gb": (Double(ProcessInfo.processInfo.physicalMemory) / 1e9 * 10).rounded() / 10,
            ]
            let version = Bundle.main.infoDictionary?["CFBundleShortVersionString"] as? String ?? "0.1.0"
            benchLog = "Benchmark (\(mode.name)) ..."
            let (data, summary) = try await engine.benchmark(mode, device: device, runtimeVersion: "iOS \(UIDevice.current.systemVersion)",
                                                             toolVersion: version) { line in
                Task { @MainActor [weak self] in self?.benchLog += "\n" + line }
            }
            let out = home.appendingPathComponent(Self.resultPath)
            try data.write(to: out, options: .atomic)
            benchLog += "\n\(summary)\nverification vectors: \(verifyStatus ?? "not run")\nwritten to \(out.path)"
        } catch { benchLog += "\nfailed: \(error)" }
    }
}

private extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}

/// A value shared between the main actor (which writes it) and the model actor (which reads it).
final class Locked<Value: Sendable>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ v: Value) { value = v }
    func get() -> Value { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ v: Value) { lock.lock(); value = v; lock.unlock() }
}
