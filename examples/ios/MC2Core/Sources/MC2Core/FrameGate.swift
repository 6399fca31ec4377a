import Foundation

/// Latest-frame-only handoff from the camera to the model (twin of FrameGate.kt, tested on the JVM): a frame
/// is taken only when no prediction is running; frames arriving meanwhile are dropped at once -- never queued,
/// never converted -- so every prediction starts on a frame newer than all the dropped ones and the camera
/// never waits on the model. Thread-safe: the camera queue calls `tryAcquire`, the model's task `release`.
public final class FrameGate: @unchecked Sendable {
    private let lock = NSLock()
    private var busy = false
    private var taken = 0
    private var skipped = 0

    public init() {}

    /// true: run the model on this frame and call `release()` when done; false: drop the frame.
    public func tryAcquire() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if busy {
            skipped += 1
            return false
        }
        busy = true
        taken += 1
        return true
    }

    /// The prediction is over (also when it failed): the next frame is taken.
    public func release() {
        lock.lock()
        defer { lock.unlock() }
        precondition(busy, "FrameGate.release() without a frame taken")
        busy = false
    }

    public var accepted: Int { lock.lock(); defer { lock.unlock() }; return taken }
    public var dropped: Int { lock.lock(); defer { lock.unlock() }; return skipped }
}
