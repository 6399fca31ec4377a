import BackgroundTasks
import Foundation
import MC2Core
import Photos
import UIKit

/// Indexing the photo library (issue 21): the plan, batching, pause rules and durable appends are MC2Core's
/// (IndexingPlan / IndexingRun / PhotoIndex, compiled and tested on Linux); this file is the Apple glue:
/// PhotoKit at the model's size, the device conditions, and the background task.
enum PhotoLibrary {
    /// Every image asset, oldest first, as (key, stamp) with the assets by key.
    static func snapshot() -> ([IndexingPlan.Photo], [String: PHAsset]) {
        let opts = PHFetchOptions()
        opts.sortDescriptors = [NSSortDescriptor(key: "creationDate", ascending: true)]
        let result = PHAsset.fetchAssets(with: .image, options: opts)
        var photos: [IndexingPlan.Photo] = []
        var byKey: [String: PHAsset] = [:]
        photos.reserveCapacity(result.count)
        result.enumerateObjects { a, _, _ in
            photos.append(IndexingPlan.Photo(key: a.localIdentifier, stamp: IndexingPlan.stamp(a.modificationDate)))
            byKey[a.localIdentifier] = a
        }
        return (photos, byKey)
    }

    /// The photo at (about) the model's input size: `requestImage` with a target of R x R, aspect fill, fast
    /// resize, `.fastFormat` on a synchronous request (one image, from PhotoKit's thumbnail cache when it has
    /// one; `.opportunistic` would behave as high quality on a synchronous request) -- never the original file
    /// (a 12-MP HEIC decoded per photo). A fast result whose short side is under R is asked again in
    /// `.highQualityFormat` (still at the target size). Local photos only (no iCloud download).
    /// Returns the pixels as stored in PhotoKit's rendering and the EXIF orientation that makes them upright
    /// (a UIImage's cgImage is not rotated: its imageOrientation says how; MC2Core applies it).
    static func image(_ asset: PHAsset, resolution: Int) -> (RGBAImage, Int)? {
        func request(_ mode: PHImageRequestOptionsDeliveryMode) -> (CGImage, Int)? {
            let opts = PHImageRequestOptions()
            opts.isSynchronous = true
            opts.deliveryMode = mode
            opts.resizeMode = .fast
            opts.isNetworkAccessAllowed = false
            opts.version = .current
            var out: (CGImage, Int)?
            let t = IndexingPlan.targetSize(resolution: resolution)
            PHImageManager.default().requestImage(for: asset, targetSize: CGSize(width: t.width, height: t.height), contentMode: .aspectFill,
                                                  options: opts) { img, _ in
                if let img, let cg = img.cgImage { out = (cg, exifOrientation(img.imageOrientation)) }
            }
            return out
        }
        guard var got = request(.fastFormat) else { return nil }
        if !IndexingPlan.largeEnough(width: got.0.width, height: got.0.height, resolution: resolution) {
            guard let better = request(.highQualityFormat),
                  IndexingPlan.largeEnough(width: better.0.width, height: better.0.height, resolution: resolution) else { return nil }
            got = better
        }
        guard let px = try? ImageLoading.rgba(got.0) else { return nil }
        return (px, got.1)
    }

    static func exifOrientation(_ o: UIImage.Orientation) -> Int {
        switch o {
        case .up: return 1
        case .upMirrored: return 2
        case .down: return 3
        case .downMirrored: return 4
        case .leftMirrored: return 5
        case .right: return 6
        case .rightMirrored: return 7
        case .left: return 8
        @unknown default: return 1
        }
    }

    /// Battery, thermal state, Low Power Mode -- read on the main actor (UIDevice).
    @MainActor static func conditions(userPaused: Bool) -> IndexingConditions {
        UIDevice.current.isBatteryMonitoringEnabled = true
        let level = UIDevice.current.batteryLevel
        let state = UIDevice.current.batteryState
        return IndexingConditions(thermalState: ProcessInfo.processInfo.thermalState.rawValue,
                                  batteryLevel: level < 0 ? nil : level, charging: state == .charging || state == .full,
                                  lowPowerMode: ProcessInfo.processInfo.isLowPowerModeEnabled, userPaused: userPaused)
    }
}

/// The background continuation of indexing: a BGProcessingTask (requires external power: phones index while
/// charging, overnight) that resumes from the index file and stops at its expiration, and is scheduled again
/// while photos remain.
enum BackgroundIndexing {
    static let identifier = "com.mc2export.demo.index"

    /// Register the handler (before the app finishes launching: MC2DemoApp.init).
    static func register(_ model: AppModel) {
        BGTaskScheduler.shared.register(forTaskWithIdentifier: identifier, using: nil) { task in
            guard let task = task as? BGProcessingTask else { return }
            let work = Task { @MainActor in
                let done = await model.indexInBackground()
                task.setTaskCompleted(success: done)
                if !done { schedule() }
            }
            task.expirationHandler = {
                Task { @MainActor in model.pauseIndexing(reason: "paused: background time is over") }
                work.cancel()
            }
        }
    }

    static func schedule() {
        let request = BGProcessingTaskRequest(identifier: identifier)
        request.requiresExternalPower = true
        request.requiresNetworkConnectivity = false
        try? BGTaskScheduler.shared.submit(request)
    }
}
