import XCTest
@testable import MC2Core

/// The app's indexer without PhotoKit / Core ML: the plan, the pause rules, batches appended durably and a
/// paused run resumed from the file.
final class IndexingTests: XCTestCase {
    let header = try! IndexHeader(variant: "mobileclip2-s0", precision: "fp16", bundleSha256: String(repeating: "0f", count: 32), dim: 8)

    func url() -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("mc2-indexing-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: d) }
        return d.appendingPathComponent("photos.mc2i")
    }

    func library(_ n: Int, stamp: Int64 = 1) -> [IndexingPlan.Photo] { (0..<n).map { IndexingPlan.Photo(key: "asset-\($0)", stamp: stamp) } }

    func vector(_ key: String) -> [Float] { (0..<8).map { Float(($0 + 1) * (key.hashValue & 0xFF | 1) % 97) - 40 } }

    func testPauseRules() {
        XCTAssertNil(IndexingConditions().pauseReason)
        XCTAssertNil(IndexingConditions(thermalState: 1, batteryLevel: 0.5).pauseReason)
        XCTAssertEqual(IndexingConditions(thermalState: 2).pauseReason, "paused: the device is hot")
        XCTAssertEqual(IndexingConditions(userPaused: true).pauseReason, "paused by you")
        XCTAssertNotNil(IndexingConditions(batteryLevel: 0.1).pauseReason)
        XCTAssertNil(IndexingConditions(batteryLevel: 0.1, charging: true).pauseReason)
        XCTAssertNotNil(IndexingConditions(lowPowerMode: true).pauseReason)
        XCTAssertTrue(IndexingPlan.largeEnough(width: 256, height: 340, resolution: 256))
        XCTAssertFalse(IndexingPlan.largeEnough(width: 120, height: 160, resolution: 256))
        XCTAssertEqual(IndexingPlan.stamp(Date(timeIntervalSince1970: 1.5)), 1500)
        XCTAssertEqual(IndexingPlan.stamp(nil), 0)
    }

    func testPausedRunResumesWhereItStoppedAndDeletesGonePhotos() throws {
        let u = url()
        var index: PhotoIndex? = try PhotoIndex(url: u, header: header)
        var calls = 0
        let lib = library(100)
        var plan = IndexingPlan.diff(library: lib, index: index!.store)
        XCTAssertEqual(plan.todo.count, 100)
        var p = try IndexingRun(batchSize: 32).run(todo: plan.todo, gone: plan.gone, index: index!, embed: { batch in
            calls += 1
            return batch.map { $0.key == "asset-3" ? nil : self.vector($0.key) }  // one unreadable photo
        }, pause: { calls >= 2 ? "paused by you" : nil })
        XCTAssertEqual(p.batches, 2)
        XCTAssertEqual(p.embedded, 63)
        XCTAssertEqual(p.skipped, 1)
        XCTAssertEqual(p.pausedBecause, "paused by you")
        XCTAssertEqual(p.remaining, 36)
        index = nil  // the app is killed / suspended: the file is all that is left
        let reopened = try PhotoIndex(url: u, header: header)
        XCTAssertEqual(reopened.count, 63)
        // later: 10 photos were deleted from the library, one was edited
        var lib2 = Array(lib.dropLast(10))
        lib2[0] = IndexingPlan.Photo(key: "asset-0", stamp: 2)
        plan = IndexingPlan.diff(library: lib2, index: reopened.store)
        XCTAssertEqual(plan.todo.map { $0.key }, ["asset-0", "asset-3"] + (64..<90).map { "asset-\($0)" })
        XCTAssertEqual(plan.gone, [])  // none of the deleted ones was indexed yet
        var seen: [Int] = []
        p = try IndexingRun(batchSize: 32).run(todo: plan.todo, gone: ["asset-1"], index: reopened, embed: { batch in
            batch.map { self.vector($0.key) }
        }, pause: { nil }, progress: { seen.append($0.remaining) })
        XCTAssertEqual(p.embedded, 28)
        XCTAssertEqual(p.deleted, 1)
        XCTAssertNil(p.pausedBecause)
        XCTAssertEqual(seen, [0])
        let final = try IndexReplay.replay(Data(contentsOf: u), expect: header)
        XCTAssertEqual(final.store.count, 89)  // 90 in the library, asset-1 deleted
        XCTAssertEqual(final.store.stamp(of: "asset-0"), 2)
        XCTAssertEqual(final.dropped, 0)
        XCTAssertEqual(IndexingPlan.diff(library: lib2, index: final.store).gone, [])
    }
}
