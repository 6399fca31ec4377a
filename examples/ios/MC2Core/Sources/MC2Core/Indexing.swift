import Foundation

/// Indexing a photo library with bounded memory and durable progress -- the platform-free part of the app's
/// indexer (MC2Demo/PhotoIndexer.swift supplies PhotoKit and Core ML through closures): what to embed, in
/// batches; when to pause; one index append (write + fsync) per finished batch, so an app killed at any
/// moment resumes where it stopped, losing at most the batch in flight.
public enum IndexingPlan {
    public struct Photo: Sendable, Equatable {
        public let key: String
        public let stamp: Int64
        public init(key: String, stamp: Int64) { self.key = key; self.stamp = stamp }
    }

    /// The photos to embed (new or changed since they were indexed, in library order) and the keys to delete
    /// (indexed photos no longer in the library).
    public static func diff(library: [Photo], index: VectorStore) -> (todo: [Photo], gone: [String]) {
        let present = Set(library.map { $0.key })
        return (library.filter { index.needs($0.key, stamp: $0.stamp) }, index.keys.filter { !present.contains($0) })
    }

    /// A photo's modification date as the index stamp (ms since 1970; 0 when unknown).
    public static func stamp(_ date: Date?) -> Int64 { date.map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) } ?? 0 }

    /// The smallest image the model may be fed: its short side must reach the model resolution (a center crop
    /// of R x R without upscaling). PhotoKit's fast format may hand back a smaller thumbnail: request again.
    public static func largeEnough(width: Int, height: Int, resolution: Int) -> Bool { min(width, height) >= resolution }

    /// The PhotoKit target size for a photo (aspect fill): the model resolution on the short side.
    public static func targetSize(resolution: Int) -> (width: Int, height: Int) { (resolution, resolution) }
}

/// When background indexing must stop for now (docs: iOS BGProcessingTask, paused on low battery, serious
/// thermal state or the user's request; resumed later from the index on disk).
public struct IndexingConditions: Sendable, Equatable {
    /// ProcessInfo.ThermalState as its raw value: 0 nominal, 1 fair, 2 serious, 3 critical
    public var thermalState: Int
    /// 0...1, nil when unknown (simulator, monitoring off)
    public var batteryLevel: Float?
    public var charging: Bool
    public var lowPowerMode: Bool
    public var userPaused: Bool

    public init(thermalState: Int = 0, batteryLevel: Float? = nil, charging: Bool = false, lowPowerMode: Bool = false, userPaused: Bool = false) {
        self.thermalState = thermalState; self.batteryLevel = batteryLevel; self.charging = charging
        self.lowPowerMode = lowPowerMode; self.userPaused = userPaused
    }

    public static let minBattery: Float = 0.2

    /// nil: go on; otherwise why indexing pauses.
    public var pauseReason: String? {
        if userPaused { return "paused by you" }
        if thermalState >= 2 { return "paused: the device is hot" }
        if lowPowerMode { return "paused: Low Power Mode is on" }
        if let b = batteryLevel, b < Self.minBattery, !charging { return "paused: battery below \(Int(Self.minBattery * 100)) %" }
        return nil
    }
}

/// One indexing run over `todo`: batches of `batchSize`, each embedded by `embed` (nil for a photo that could
/// not be read: skipped, not retried in this run) and appended to the index with one durable write; the run
/// stops before the next batch when `pause()` gives a reason. Tombstones of deleted photos go with the first
/// batch (or alone when there is nothing to embed).
public struct IndexingRun {
    public struct Progress: Sendable, Equatable {
        public var embedded = 0, skipped = 0, deleted = 0, batches = 0
        public var remaining = 0
        public var pausedBecause: String?
    }

    public let batchSize: Int
    public init(batchSize: Int = 32) { self.batchSize = max(1, batchSize) }

    public func run(todo: [IndexingPlan.Photo], gone: [String], index: PhotoIndex,
                    embed: ([IndexingPlan.Photo]) throws -> [[Float]?],
                    pause: () -> String?, progress: (Progress) -> Void = { _ in }) throws -> Progress {
        var p = Progress(remaining: todo.count)
        var deletes = gone
        var start = 0
        if todo.isEmpty && !deletes.isEmpty {
            try index.append(deletes: deletes)
            p.deleted = deletes.count
            deletes = []
        }
        while start < todo.count {
            if let why = pause() { p.pausedBecause = why; break }
            let batch = Array(todo[start..<min(start + batchSize, todo.count)])
            let vectors = try embed(batch)
            precondition(vectors.count == batch.count, "embed returned \(vectors.count) vectors for \(batch.count) photos")
            var puts: [(key: String, stamp: Int64, vector: [Float])] = []
            for (photo, v) in zip(batch, vectors) {
                // unreadable photos and degenerate outputs (zero, NaN) are skipped: the next run retries them
                if let v, v.count == index.header.dim, IndexRecord.fp16Bits(v) != nil {
                    puts.append((key: photo.key, stamp: photo.stamp, vector: v))
                } else {
                    p.skipped += 1
                }
            }
            try index.append(puts: puts, deletes: deletes)  // one write + fsync: the batch is durable now
            p.deleted += deletes.count
            deletes = []
            p.embedded += puts.count
            p.batches += 1
            start += batch.count
            p.remaining = todo.count - start
            progress(p)
        }
        return p
    }
}
