import CoreML
import CoreVideo
import Foundation
import MC2Core

/// The bundle's image.mlpackage / text.mlpackage in Core ML. An .mlpackage copied into the app at run time is
/// compiled on the device once (MLModel.compileModel) and the compiled .mlmodelc is cached in Application Support.
final class CoreMLTowers {
    let image: MLModel?
    let text: MLModel?
    let loadMs: [String: Double]
    let computeUnits: MLComputeUnits

    static func computeUnitsName(_ u: MLComputeUnits) -> String {
        switch u {
        case .all: return "all"
        case .cpuAndNeuralEngine: return "cpu-ne"
        case .cpuAndGPU: return "cpu-gpu"
        case .cpuOnly: return "cpu"
        @unknown default: return "all"
        }
    }

    init(dir: URL, config: BundleConfig, computeUnits: MLComputeUnits = .all) async throws {
        self.computeUnits = computeUnits
        let mlConfig = MLModelConfiguration()
        mlConfig.computeUnits = computeUnits
        var times: [String: Double] = [:]
        func load(_ file: String?, _ tower: String) async throws -> MLModel? {
            guard let file = file else { return nil }
            let t0 = DispatchTime.now().uptimeNanoseconds
            let compiled = try await CoreMLTowers.compiled(dir.appendingPathComponent(file), key: "\(config.variant)-\(config.precision)-\(tower)", config: config)
            let m = try MLModel(contentsOf: compiled, configuration: mlConfig)
            times[tower] = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
            // R6 (docs/bundle.md): the names the app feeds and reads must be the ones config.json records
            try config.checkIONames(tower: tower, inputs: Array(m.modelDescription.inputDescriptionsByName.keys),
                                    outputs: Array(m.modelDescription.outputDescriptionsByName.keys))
            return m
        }
        do {
            image = try await load(config.imageModelFile, "image")
            text = try await load(config.textModelFile, "text")
        } catch let e as BundleError {
            throw e
        } catch {
            throw BundleError("Core ML cannot load the models in \(dir.lastPathComponent): \(error.localizedDescription) (exported with coremltools \(config.versions["coremltools"] ?? "?"), deployment target iOS 17)")
        }
        loadMs = times
    }

    /// Compile (or reuse) a .mlpackage; the cache is keyed by the package's config checksum via `key` + file dates.
    static func compiled(_ package: URL, key: String, config: BundleConfig) async throws -> URL {
        if package.pathExtension == "mlmodelc" { return package }
        let support = try FileManager.default.url(for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
        let stamp = (BenchDocument.checksum(config.files)).prefix(16)
        let target = support.appendingPathComponent("compiled-\(key)-\(stamp).mlmodelc")
        if FileManager.default.fileExists(atPath: target.path) { return target }
        let tmp = try await MLModel.compileModel(at: package)
        try? FileManager.default.removeItem(at: target)
        try FileManager.default.moveItem(at: tmp, to: target)
        return target
    }

    /// The image model's input for a center crop, built once (the benchmark times `prediction(from:)` on it alone):
    /// ImageType -> an R x R 32BGRA pixel buffer, MultiArray -> float32 NCHW.
    func imageInput(_ crop: CroppedImage, config: BundleConfig) throws -> MLFeatureProvider {
        guard let m = image else { throw BundleError("this bundle has no image model") }
        let inputName = m.modelDescription.inputDescriptionsByName.keys.first ?? "image"
        let desc = m.modelDescription.inputDescriptionsByName[inputName]
        let value: MLFeatureValue
        if desc?.type == .image {
            value = MLFeatureValue(pixelBuffer: try CoreMLTowers.pixelBuffer(crop))
        } else {
            let r = crop.size
            let arr = try MLMultiArray(shape: [1, 3, NSNumber(value: r), NSNumber(value: r)], dataType: .float32)
            let x = config.imageInput == .normalizedNCHW ? Preprocess.toNormalizedCHW(crop, mean: config.mean, std: config.std)
                : Preprocess.toUnitCHW(crop)
            let p = arr.dataPointer.bindMemory(to: Float.self, capacity: x.count)
            for i in 0..<x.count { p[i] = x[i] }
            value = MLFeatureValue(multiArray: arr)
        }
        return try MLDictionaryFeatureProvider(dictionary: [inputName: value])
    }

    func textInput(_ row: [Int32]) throws -> MLFeatureProvider {
        guard let m = text else { throw BundleError("this bundle has no text model") }
        let inputName = m.modelDescription.inputDescriptionsByName.keys.first ?? "tokens"
        let arr = try MLMultiArray(shape: [1, NSNumber(value: row.count)], dataType: .int32)
        let p = arr.dataPointer.bindMemory(to: Int32.self, capacity: row.count)
        for i in 0..<row.count { p[i] = row[i] }
        return try MLDictionaryFeatureProvider(dictionary: [inputName: MLFeatureValue(multiArray: arr)])
    }

    /// The image embedding of a center crop (the model's output as is).
    func embedImage(_ crop: CroppedImage, config: BundleConfig) throws -> [Float] {
        guard let m = image else { throw BundleError("this bundle has no image model") }
        return try CoreMLTowers.floats(m.prediction(from: imageInput(crop, config: config)))
    }

    /// Image embeddings of a batch of crops in one Core ML call (MLArrayBatchProvider: Core ML pipelines the
    /// batch through a batch-1 model). Each output is copied to [Float] at once; the caller wraps the batch in
    /// an autoreleasepool so the output buffers are released before the next batch.
    func embedImages(_ crops: [CroppedImage], config: BundleConfig) throws -> [[Float]] {
        guard let m = image else { throw BundleError("this bundle has no image model") }
        guard !crops.isEmpty else { return [] }
        let inputs = try crops.map { try imageInput($0, config: config) }
        let out = try m.predictions(from: MLArrayBatchProvider(array: inputs), options: MLPredictionOptions())
        return try (0..<out.count).map { try CoreMLTowers.floats(out.features(at: $0)) }
    }

    func embedText(_ row: [Int32]) throws -> [Float] {
        guard let m = text else { throw BundleError("this bundle has no text model") }
        return try CoreMLTowers.floats(m.prediction(from: textInput(row)))
    }

    static func floats(_ out: MLFeatureProvider) throws -> [Float] {
        guard let a = out.featureValue(for: "embedding")?.multiArrayValue else { throw BundleError("the model has no 'embedding' output") }
        var v = [Float](repeating: 0, count: a.count)
        if a.dataType == .float32 {
            let p = a.dataPointer.bindMemory(to: Float.self, capacity: a.count)
            for i in 0..<a.count { v[i] = p[i] }
        } else {
            for i in 0..<a.count { v[i] = a[i].floatValue }
        }
        return v
    }

    /// R x R 32BGRA pixel buffer from the crop (exact bytes: no scaling, no colour conversion).
    static func pixelBuffer(_ crop: CroppedImage) throws -> CVPixelBuffer {
        let r = crop.size
        var pb: CVPixelBuffer?
        let attrs = [kCVPixelBufferCGImageCompatibilityKey: true, kCVPixelBufferCGBitmapContextCompatibilityKey: true] as CFDictionary
        guard CVPixelBufferCreate(kCFAllocatorDefault, r, r, kCVPixelFormatType_32BGRA, attrs, &pb) == kCVReturnSuccess, let buf = pb else {
            throw BundleError("cannot allocate a pixel buffer")
        }
        CVPixelBufferLockBaseAddress(buf, [])
        defer { CVPixelBufferUnlockBaseAddress(buf, []) }
        let base = CVPixelBufferGetBaseAddress(buf)!.assumingMemoryBound(to: UInt8.self)
        let stride = CVPixelBufferGetBytesPerRow(buf)
        for y in 0..<r {
            for x in 0..<r {
                let o = y * stride + x * 4, i = (y * r + x) * 3
                base[o] = crop.rgb[i + 2]; base[o + 1] = crop.rgb[i + 1]; base[o + 2] = crop.rgb[i]; base[o + 3] = 255
            }
        }
        return buf
    }
}
