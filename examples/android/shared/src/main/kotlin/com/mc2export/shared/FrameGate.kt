package com.mc2export.shared

import java.util.concurrent.atomic.AtomicBoolean
import java.util.concurrent.atomic.AtomicLong

/**
 * Latest-frame-only handoff from the camera to the model. A frame is taken only when no prediction is running;
 * frames arriving meanwhile are dropped at once -- never queued and never converted -- so every prediction
 * starts on a frame newer than all the dropped ones and the camera never waits on the model. Thread-safe
 * (the camera thread calls [tryAcquire], the model's thread [release]). Twin: MC2Core FrameGate.swift.
 */
class FrameGate {
    private val busy = AtomicBoolean(false)
    private val taken = AtomicLong(0)
    private val skipped = AtomicLong(0)

    /** true: the caller runs the model on this frame and must call [release] when done; false: drop the frame. */
    fun tryAcquire(): Boolean {
        if (busy.compareAndSet(false, true)) {
            taken.incrementAndGet()
            return true
        }
        skipped.incrementAndGet()
        return false
    }

    /** The prediction is over (also when it failed): the next frame is taken. */
    fun release() {
        check(busy.getAndSet(false)) { "FrameGate.release() without a frame taken" }
    }

    val isBusy: Boolean get() = busy.get()
    val accepted: Long get() = taken.get()
    val dropped: Long get() = skipped.get()
}
