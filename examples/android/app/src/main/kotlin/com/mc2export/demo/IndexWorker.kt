package com.mc2export.demo

import android.content.Context
import androidx.work.Constraints
import androidx.work.CoroutineWorker
import androidx.work.ExistingWorkPolicy
import androidx.work.OneTimeWorkRequestBuilder
import androidx.work.WorkManager
import androidx.work.WorkerParameters
import androidx.work.workDataOf
import com.mc2export.shared.BundleException
import com.mc2export.shared.IndexException

/**
 * Background indexing of the photo library (WorkManager). Runs only while the battery is not low and the
 * device is charging; when a constraint goes away (unplugged, battery low) or the user stops it, WorkManager
 * stops the worker, which notices between batches ([isStopped]) and returns: every finished batch is already
 * durable in the index, and the next run (WorkManager reschedules it when the constraints hold again)
 * resumes with the photos not yet in it (IndexingRun's bookkeeping is the index itself). A process killed
 * mid-batch loses at most that batch.
 *
 * The worker loads the bundle itself (its own runtime sessions, closed when it returns) and shares the index
 * file with the foreground "Index photos" button through [IndexLock].
 */
class IndexWorker(ctx: Context, params: WorkerParameters) : CoroutineWorker(ctx, params) {
    override suspend fun doWork(): Result {
        if (!IndexLock.lock.tryLock()) return Result.retry()  // the foreground run is indexing: later
        IndexLock.lock.unlock()
        val bundle = try {
            BundleLoader.load(applicationContext, null, threads = 2)
        } catch (e: BundleException) {
            return Result.failure(workDataOf(KEY_ERROR to e.message))
        }
        bundle.use { b ->
            val engine = Engine(b)
            val index = try {
                engine.openIndex(applicationContext)
            } catch (e: IndexException) {
                // another model's index: replacing it needs the user's yes (the app asks); nothing to do here
                return Result.failure(workDataOf(KEY_ERROR to e.message))
            }
            index.use { idx ->
                val out = try {
                    engine.updateIndex(applicationContext, idx, shouldStop = { isStopped }) { done, total ->
                        setProgressAsync(workDataOf(KEY_DONE to done, KEY_TOTAL to total))
                    }
                } catch (e: IllegalStateException) {
                    return Result.retry()  // the foreground run took the lock meanwhile
                }
                if (out.stopped) return Result.retry()
                // compaction belongs here, off the indexing path: between runs, in the background
                if (idx.compactionDue) idx.compact()
                return Result.success(workDataOf(KEY_DONE to out.added, KEY_TOTAL to idx.size))
            }
        }
    }

    companion object {
        const val NAME = "mc2-photo-index"
        const val KEY_DONE = "done"
        const val KEY_TOTAL = "total"
        const val KEY_ERROR = "error"

        /** Schedule (or keep) the background run: battery not low, charging. */
        fun enqueue(ctx: Context) {
            val constraints = Constraints.Builder().setRequiresBatteryNotLow(true).setRequiresCharging(true).build()
            val req = OneTimeWorkRequestBuilder<IndexWorker>().setConstraints(constraints).build()
            WorkManager.getInstance(ctx).enqueueUniqueWork(NAME, ExistingWorkPolicy.KEEP, req)
        }

        /** The user's pause: the worker stops between batches; [enqueue] resumes. */
        fun pause(ctx: Context) {
            WorkManager.getInstance(ctx).cancelUniqueWork(NAME)
        }
    }
}
