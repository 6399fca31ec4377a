import Foundation

/// The app's photo index on disk (docs/app_index.md): opened by replaying the file (another model's index is
/// refused; a torn tail left by a crash is cut off before the first append), appended one batch at a time
/// (one write, then fsync: a crash loses at most the batch in flight), compacted by rewriting the live photos
/// into `<name>.tmp` and renaming it over the index. Owned by one actor (the app's ModelActor): not Sendable.
public final class PhotoIndex {
    public let url: URL
    public let header: IndexHeader
    public private(set) var store: VectorStore
    /// dead records in the file (replaced PUTs, tombstones): compaction pays when they pass a quarter of it
    public private(set) var deadRecords: Int
    public private(set) var records: Int
    /// bytes of torn tail found (and cut off) when the index was opened
    public let droppedOnOpen: Int
    private var handle: FileHandle
    /// the file's length after the last whole batch: every append writes there
    private var length: UInt64

    /// Open (or create) the index at `url` for the model of `header`. Throws IndexError for another model's
    /// index or a file that is not an index (the app offers to rebuild: `PhotoIndex.remove(at:)`).
    public init(url: URL, header: IndexHeader) throws {
        self.url = url
        self.header = header
        if !FileManager.default.fileExists(atPath: url.path) {
            try Self.writeNew(url, header.encoded)
        }
        let data = try Data(contentsOf: url, options: .uncached)
        let r = try IndexReplay.replay(data, expect: header)
        store = r.store
        records = r.records
        deadRecords = r.records - r.store.count
        droppedOnOpen = r.dropped
        handle = try FileHandle(forUpdating: url)
        length = UInt64(r.validLength)
        if r.dropped > 0 {
            try handle.truncate(atOffset: UInt64(r.validLength))
            try handle.synchronize()
        }
    }

    deinit { try? handle.close() }

    public var count: Int { store.count }
    public func needs(_ key: String, stamp: Int64) -> Bool { store.needs(key, stamp: stamp) }
    public func search(_ query: [Float], k: Int) -> [VectorStore.Hit] { store.search(query, k: k) }

    /// One batch: the PUTs (embeddings, normalized and stored as fp16 here), then the tombstones, as one
    /// write followed by fsync (FileHandle.synchronize). The memory state changes only after the write.
    public func append(puts: [(key: String, stamp: Int64, vector: [Float])] = [], deletes: [String] = []) throws {
        var blob: [UInt8] = []
        var staged: [(String, Int64, [UInt16])] = []
        for p in puts {
            guard let bits = IndexRecord.fp16Bits(p.vector), p.vector.count == header.dim else {
                throw IndexError("embedding of '\(p.key)' is zero, not finite or not \(header.dim)-d: nothing to index")
            }
            blob += try IndexRecord.encodePut(p.key, stamp: p.stamp, bits: bits)
            staged.append((p.key, p.stamp, bits))
        }
        for k in deletes { blob += try IndexRecord.encodeDelete(k) }
        guard !blob.isEmpty else { return }
        do {
            try handle.seek(toOffset: length)
            try handle.write(contentsOf: Data(blob))
            try handle.synchronize()
        } catch {
            // a half-written batch (disk full, I/O error) must not sit before the next one: cut it off
            try? handle.truncate(atOffset: length)
            throw IndexError("cannot append to the photo index: \(error.localizedDescription)")
        }
        length += UInt64(blob.count)
        for (k, s, b) in staged {
            if store.stamp(of: k) != nil { deadRecords += 1 }
            store.put(k, stamp: s, bits: b)
        }
        for k in deletes {
            deadRecords += store.stamp(of: k) != nil ? 2 : 1
            store.delete(k)
        }
        records += staged.count + deletes.count
    }

    /// docs/app_index.md: compact when dead records exceed a quarter of the file's records.
    public var shouldCompact: Bool { deadRecords * 4 > records && deadRecords > 0 }

    /// Rewrite the live photos (order, stamps and vector bits exactly) into `<name>.tmp`, fsync, rename it over
    /// the index, fsync the folder. Run it between indexing runs or in a background task, never per batch.
    public func compact() throws {
        var blob = header.encoded
        var live = store
        live.compact()
        for (k, s) in zip(live.keys, live.stamps) {
            blob += try IndexRecord.encodePut(k, stamp: s, bits: Array(live.bits(of: k)!))
        }
        try Self.writeNew(url, blob)
        try? handle.close()
        handle = try FileHandle(forUpdating: url)
        length = UInt64(blob.count)
        store = live
        records = live.count
        deadRecords = 0
    }

    /// The new-file protocol: `<name>.tmp`, fsync, rename over `url`, fsync the folder.
    static func writeNew(_ url: URL, _ bytes: [UInt8]) throws {
        let tmp = url.deletingLastPathComponent().appendingPathComponent(url.lastPathComponent + ".tmp")
        guard FileManager.default.createFile(atPath: tmp.path, contents: nil) else {
            throw IndexError("cannot write \(tmp.lastPathComponent) in \(url.deletingLastPathComponent().path)")
        }
        let h = try FileHandle(forWritingTo: tmp)
        do {
            try h.truncate(atOffset: 0)
            try h.write(contentsOf: Data(bytes))
            try h.synchronize()
            try h.close()
        } catch {
            try? h.close()
            try? FileManager.default.removeItem(at: tmp)
            throw error
        }
        guard rename(tmp.path, url.path) == 0 else {
            let e = errno
            try? FileManager.default.removeItem(at: tmp)
            throw IndexError("cannot replace \(url.lastPathComponent): \(String(cString: strerror(e)))")
        }
        let dir = open(url.deletingLastPathComponent().path, O_RDONLY)
        if dir >= 0 { _ = fsync(dir); _ = close(dir) }
    }

    /// Delete an index (the user chose to rebuild, or it belongs to another model).
    public static func remove(at url: URL) throws {
        if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
    }
}
