package com.mc2export.demo

import android.app.Application
import android.content.Intent
import android.graphics.Bitmap
import android.net.Uri
import android.os.Handler
import android.os.Looper
import androidx.camera.core.ImageProxy
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.setValue
import androidx.lifecycle.AndroidViewModel
import com.mc2export.shared.BenchMode
import com.mc2export.shared.BundleException
import com.mc2export.shared.IndexException
import com.mc2export.shared.PhotoIndex
import com.mc2export.shared.FrameGate
import com.mc2export.shared.Preprocess
import com.mc2export.shared.SearchHit
import com.mc2export.shared.VerifyReport
import com.mc2export.shared.ZeroShot
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import java.util.concurrent.RejectedExecutionException
import java.util.concurrent.atomic.AtomicBoolean

/** UI state, written on the main thread (the worker posts through [MainViewModel.post]). */
class UiState {
    var status by mutableStateOf("Loading the bundle ...")
    var error by mutableStateOf<String?>(null)
    var verifyLines by mutableStateOf<List<String>>(emptyList())
    var verifyStatus by mutableStateOf<String?>(null)
    var labels by mutableStateOf("cat, dog, car, person, tree, food, a diagram")
    var openaiTemplates by mutableStateOf(false)
    var results by mutableStateOf<List<Pair<String, Float>>>(emptyList())
    var warning by mutableStateOf<String?>(null)
    var cameraOn by mutableStateOf(false)
    var picked by mutableStateOf<Bitmap?>(null)
    var indexInfo by mutableStateOf("Index: not built")
    var indexing by mutableStateOf(false)
    var query by mutableStateOf("a dog on the beach")
    var hits by mutableStateOf<List<SearchHit>>(emptyList())
    var benchMode by mutableStateOf("quick")
    var benchThreads by mutableStateOf("")
    var benchLog by mutableStateOf("")
    var busy by mutableStateOf(false)
    var framesDropped by mutableStateOf(0L)
}

/**
 * Everything that must outlive the activity: rotation recreates MainActivity, not this. It owns the models
 * (one worker thread: the runtimes' sessions are used from it only), the index, the camera analysis executor
 * and the frame gate; [onCleared] stops them. Nothing is posted to a shut-down executor: [submit] says whether
 * the task was taken.
 */
class MainViewModel(app: Application) : AndroidViewModel(app) {
    val ui = UiState()
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    /** The one executor CameraX's analyzer runs on (created once, shut down in [onCleared]). */
    val cameraExecutor: ExecutorService = Executors.newSingleThreadExecutor()
    val frameGate = FrameGate()
    private val main = Handler(Looper.getMainLooper())
    private val ctx get() = getApplication<Application>()
    private var engine: Engine? = null
    private var index: PhotoIndex? = null
    /** Why the index on disk could not be opened (another model's): the next "Index photos" replaces it. */
    private var indexRefused: String? = null
    private var verify: VerifyReport? = null
    private val stopIndexing = AtomicBoolean(false)
    @Volatile private var cleared = false
    private var handledIntent = false

    fun post(f: () -> Unit) {
        main.post(f)
    }

    /** Run [task] on the model thread; false (and nothing runs) once the view model is cleared. */
    private fun submit(task: () -> Unit): Boolean {
        if (cleared) return false
        return try {
            worker.execute(task)
            true
        } catch (e: RejectedExecutionException) {
            false
        }
    }

    override fun onCleared() {
        cleared = true
        stopIndexing.set(true)
        cameraExecutor.shutdown()
        try {
            worker.execute { engine?.bundle?.close(); engine = null; index?.close(); index = null }  // the models are closed on their own thread
        } catch (e: RejectedExecutionException) {
        }
        worker.shutdown()
        super.onCleared()
    }

    /** The launch intent (once per view model, so a rotation does not reload), or a new benchmark intent. */
    fun handle(intent: Intent?, isNew: Boolean) {
        if (!isNew && handledIntent) return
        handledIntent = true
        val benchBundle = intent?.getStringExtra(BenchRunner.EXTRA_BUNDLE)
        val mode = intent?.getStringExtra(BenchRunner.EXTRA_MODE)
        val threads = intent?.getIntExtra(BenchRunner.EXTRA_THREADS, 0)?.takeIf { it > 0 }
        reload(benchBundle, threads) {
            if (benchBundle != null) runBenchmark(mode ?: "quick", threads)
        }
    }

    fun reload(explicit: String? = null, threads: Int? = null, then: () -> Unit = {}) {
        submit {
            try {
                engine?.bundle?.close()
                engine = null
                BundleLoader.installFromAssets(ctx)
                val b = BundleLoader.load(ctx, explicit, threads)
                val e = Engine(b)
                engine = e
                index?.close()
                index = try {
                    e.openIndex(ctx).also { indexRefused = null }
                } catch (x: IndexException) {
                    indexRefused = x.message
                    null
                }
                post { ui.error = null; ui.status = "Checking the bundle's verification vectors ..." }
                val v = e.runVerify()  // the bundle proves itself on this phone's runtime before it is used
                verify = v
                post {
                    ui.status = b.config.summary() + " - ${RuntimeBackend.reportName} ${RuntimeBackend.version}"
                    ui.verifyLines = v.lines()
                    ui.verifyStatus = v.status
                    ui.indexInfo = indexRefused?.let { "$it. Tap \"Index photos\" to build a new index for this model." }
                        ?: ("Index: ${index?.size ?: 0} photos" + (index?.droppedBytes?.takeIf { it > 0 }?.let { " (a torn last batch of $it bytes was dropped)" } ?: ""))
                }
                then()
            } catch (e: BundleException) {
                post { ui.error = e.message; ui.status = "No usable bundle"; ui.verifyLines = emptyList() }
            } catch (e: Exception) {
                post { ui.error = "Unexpected error: ${e.message ?: e.javaClass.simpleName}"; ui.status = "No usable bundle" }
            }
        }
    }

    private fun labelsOrError(labels: String): List<String>? {
        val parsed = ZeroShot.parseLabels(labels)
        if (parsed.error != null) {
            post { ui.warning = parsed.error; ui.results = emptyList() }
            return null
        }
        return parsed.labels
    }

    private fun templates() = if (ui.openaiTemplates) ZeroShot.OPENAI_TEMPLATES else ZeroShot.SIMPLE_TEMPLATES

    /**
     * A camera frame (camera executor). While a prediction runs the frame is dropped at once -- closed, never
     * converted to a bitmap -- so the next prediction always takes a fresh frame (FrameGate).
     */
    fun onFrame(proxy: ImageProxy) {
        if (!frameGate.tryAcquire()) {
            proxy.close()
            return
        }
        val frame = try {
            proxy.toBitmap() to proxy.imageInfo.rotationDegrees
        } catch (e: Exception) {
            null
        } finally {
            proxy.close()
        }
        if (frame == null) {
            frameGate.release()
            return
        }
        val labelsText = ui.labels
        val tpl = templates()
        val taken = submit {
            try {
                val e = engine ?: return@submit
                val labels = labelsOrError(labelsText) ?: return@submit
                val c = e.classify(ImageInput.fromBitmap(frame.first), ImageInput.orientationForRotation(frame.second), labels, tpl)
                val dropped = frameGate.dropped
                post { ui.results = c.ranked; ui.warning = c.warning; ui.framesDropped = dropped }
            } catch (ex: Exception) {
                post { ui.warning = ex.message }
            } finally {
                frameGate.release()
            }
        }
        if (!taken) frameGate.release()
    }

    fun onPicked(uri: Uri) {
        val labelsText = ui.labels
        val tpl = templates()
        submit {
            try {
                val e = engine ?: throw BundleException(ui.error ?: "no bundle loaded")
                val labels = labelsOrError(labelsText) ?: return@submit
                val cfg = e.bundle.config
                val d = ImageInput.decode(ctx, uri, minShortSide = cfg.resolution)  // full size up to 16 MP: Python's pixels
                val c = e.classify(d.image, d.orientation, labels, tpl)
                val crop = Preprocess.prepare(d.image, d.orientation, cfg.resolution, cfg.interpolation)
                val note = if (d.sampleSize > 1) "The photo (${d.width}x${d.height}) was decoded at 1/${d.sampleSize} size to fit " +
                    "in memory: close to, not exactly, Python's pixels." else null
                post { ui.picked = ImageInput.toBitmap(crop); ui.results = c.ranked; ui.warning = listOfNotNull(c.warning, note).joinToString("\n").ifEmpty { null } }
            } catch (ex: Exception) {
                post { ui.warning = "Cannot classify this photo: ${ex.message}" }
            }
        }
    }

    fun buildIndex() {
        stopIndexing.set(false)
        ui.indexing = true
        val taken = submit {
            try {
                val e = engine ?: throw BundleException(ui.error ?: "no bundle loaded")
                // the user tapped "Index photos" after being told the old index is another model's: replace it
                val idx = index ?: (if (indexRefused != null) e.newIndex(ctx) else e.openIndex(ctx))
                indexRefused = null
                index = idx
                val out = e.updateIndex(ctx, idx, shouldStop = { stopIndexing.get() }) { done, total ->
                    post { ui.indexInfo = "Indexing $done / $total new photos ..." }
                }
                val added = out.added
                val skipped = out.skipped
                if (!out.stopped && idx.compactionDue) idx.compact()  // between runs, never while indexing
                index = idx
                post { ui.indexInfo = "Index: ${idx.size} photos ($added new" + (if (skipped > 0) ", $skipped skipped: unreadable" else "") + ")" }
            } catch (ex: Exception) {
                post { ui.indexInfo = "Indexing failed: ${ex.message}" }
            } finally {
                post { ui.indexing = false }
            }
        }
        if (!taken) ui.indexing = false
    }

    fun stopIndexing() {
        stopIndexing.set(true)
        IndexWorker.pause(ctx)
    }

    /** Index in the background (WorkManager: while charging, battery not low); resumes after a pause. */
    fun indexInBackground() {
        IndexWorker.enqueue(ctx)
        ui.indexInfo = "Indexing in the background while the phone charges (the index grows batch by batch)"
    }

    fun search() {
        val q = ui.query
        submit {
            try {
                val e = engine ?: throw BundleException(ui.error ?: "no bundle loaded")
                var idx = index
                // the background worker may have appended since: replay the file again when it grew
                if (idx != null && idx.file.length() != idx.fileLength && IndexLock.lock.tryLock()) {
                    try { idx.close(); idx = e.openIndex(ctx); index = idx } finally { IndexLock.lock.unlock() }
                }
                if (idx == null || idx.size == 0) {
                    post { ui.indexInfo = "The index is empty: tap \"Index photos\" first" }
                    return@submit
                }
                if (q.isBlank()) {
                    post { ui.indexInfo = "Type a query" }
                    return@submit
                }
                val (hits, truncated) = e.search(idx, q, 24)
                post {
                    ui.hits = hits
                    if (truncated) ui.indexInfo = "The query was longer than ${e.bundle.config.contextLength} tokens and was truncated"
                }
            } catch (ex: Exception) {
                post { ui.indexInfo = "Search failed: ${ex.message}" }
            }
        }
    }

    fun runBenchmark(modeName: String, threads: Int?) {
        post { ui.busy = true; ui.benchLog = "Benchmark ($modeName) ..." }
        val taken = submit {
            try {
                val e = engine ?: throw BundleException(ui.error ?: "no bundle loaded")
                val mode = BenchMode.get(modeName)
                val (_, summary) = BenchRunner.run(ctx, e.bundle, mode, threads, verify) { line -> post { ui.benchLog += "\n" + line } }
                post { ui.benchLog += "\n$summary\nverification vectors: ${verify?.status ?: "not run"}\nwritten to ${BenchRunner.resultFile(ctx).path}" }
            } catch (ex: Exception) {
                post { ui.benchLog += "\nfailed: ${ex.message}" }
            } finally {
                post { ui.busy = false }
            }
        }
        if (!taken) post { ui.busy = false }
    }
}
