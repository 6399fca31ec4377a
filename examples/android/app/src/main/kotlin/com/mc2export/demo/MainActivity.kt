package com.mc2export.demo

import android.Manifest
import android.content.Intent
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.util.Size
import androidx.activity.ComponentActivity
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.compose.setContent
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.compose.foundation.Image
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.height
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.size
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.RadioButton
import androidx.compose.material3.Surface
import androidx.compose.material3.Tab
import androidx.compose.material3.TabRow
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.DisposableEffect
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.platform.LocalLifecycleOwner
import androidx.compose.ui.unit.dp
import androidx.compose.ui.viewinterop.AndroidView
import androidx.core.content.ContextCompat
import com.mc2export.shared.BenchMode
import com.mc2export.shared.BundleException
import com.mc2export.shared.EmbeddingIndex
import com.mc2export.shared.SearchHit
import com.mc2export.shared.ZeroShot
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import java.util.concurrent.atomic.AtomicBoolean

/** UI state, written from the worker thread through runOnUiThread. */
class UiState {
    var status by mutableStateOf("Loading the bundle ...")
    var error by mutableStateOf<String?>(null)
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
}

class MainActivity : ComponentActivity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private val ui = UiState()
    private var engine: Engine? = null
    private var index: EmbeddingIndex? = null
    private val frameBusy = AtomicBoolean(false)
    private val stopIndexing = AtomicBoolean(false)

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContent { MaterialTheme { Surface(Modifier.fillMaxSize()) { App(ui) } } }
        handle(intent)
    }

    override fun onNewIntent(intent: Intent) {
        super.onNewIntent(intent)
        handle(intent)
    }

    override fun onDestroy() {
        stopIndexing.set(true)
        worker.execute { engine?.bundle?.close() }
        worker.shutdown()
        super.onDestroy()
    }

    /** A normal start loads the bundle; the benchmark intent (mc2export bench --app) also runs the benchmark. */
    private fun handle(intent: Intent?) {
        val benchBundle = intent?.getStringExtra(BenchRunner.EXTRA_BUNDLE)
        val mode = intent?.getStringExtra(BenchRunner.EXTRA_MODE)
        val threads = intent?.getIntExtra(BenchRunner.EXTRA_THREADS, 0)?.takeIf { it > 0 }
        reload(benchBundle, threads) {
            if (benchBundle != null) runBenchmark(mode ?: "quick", threads)
        }
    }

    private fun post(f: () -> Unit) = runOnUiThread(f)

    fun reload(explicit: String? = null, threads: Int? = null, then: () -> Unit = {}) {
        worker.execute {
            try {
                engine?.bundle?.close()
                engine = null
                BundleLoader.installFromAssets(this)
                val b = BundleLoader.load(this, explicit, threads)
                val e = Engine(b)
                engine = e
                index = e.loadIndex(this)
                post {
                    ui.error = null
                    ui.status = b.config.summary() + " - ${RuntimeBackend.reportName} ${RuntimeBackend.version}"
                    ui.indexInfo = "Index: ${index?.size ?: 0} photos"
                }
                then()
            } catch (e: BundleException) {
                post { ui.error = e.message; ui.status = "No usable bundle" }
            } catch (e: Exception) {
                post { ui.error = "Unexpected error: ${e.message ?: e.javaClass.simpleName}"; ui.status = "No usable bundle" }
            }
        }
    }

    private fun labelsOrError(): List<String>? {
        val parsed = ZeroShot.parseLabels(ui.labels)
        if (parsed.error != null) {
            post { ui.warning = parsed.error; ui.results = emptyList() }
            return null
        }
        return parsed.labels
    }

    private fun templates() = if (ui.openaiTemplates) ZeroShot.OPENAI_TEMPLATES else ZeroShot.SIMPLE_TEMPLATES

    /** A camera frame (analysis thread): classified on the worker, frames dropped while it is busy. */
    fun onFrame(bitmap: Bitmap, rotationDegrees: Int) {
        if (!frameBusy.compareAndSet(false, true)) return
        worker.execute {
            try {
                val e = engine ?: return@execute
                val labels = labelsOrError() ?: return@execute
                val c = e.classify(ImageInput.fromBitmap(bitmap), ImageInput.orientationForRotation(rotationDegrees), labels, templates())
                post { ui.results = c.ranked; ui.warning = c.warning }
            } catch (ex: Exception) {
                post { ui.warning = ex.message }
            } finally {
                frameBusy.set(false)
            }
        }
    }

    fun onPicked(uri: Uri) {
        worker.execute {
            try {
                val e = engine ?: throw BundleException(ui.error ?: "no bundle loaded")
                val labels = labelsOrError() ?: return@execute
                val d = ImageInput.decode(this, uri)  // full resolution: pixel-exact with Python
                val c = e.classify(d.image, d.orientation, labels, templates())
                val cfg = e.bundle.config
                val crop = com.mc2export.shared.Preprocess.prepare(d.image, d.orientation, cfg.resolution, cfg.interpolation)
                post { ui.picked = ImageInput.toBitmap(crop); ui.results = c.ranked; ui.warning = c.warning }
            } catch (ex: Exception) {
                post { ui.warning = "Cannot classify this photo: ${ex.message}" }
            }
        }
    }

    fun buildIndex() {
        stopIndexing.set(false)
        ui.indexing = true
        worker.execute {
            try {
                val e = engine ?: throw BundleException(ui.error ?: "no bundle loaded")
                val idx = index ?: e.loadIndex(this)
                val added = e.updateIndex(this, idx) { done, total ->
                    post { ui.indexInfo = "Indexing $done / $total new photos ..." }
                    !stopIndexing.get()
                }
                index = idx
                post { ui.indexInfo = "Index: ${idx.size} photos ($added new)" }
            } catch (ex: Exception) {
                post { ui.indexInfo = "Indexing failed: ${ex.message}" }
            } finally {
                post { ui.indexing = false }
            }
        }
    }

    fun search() {
        val q = ui.query
        worker.execute {
            try {
                val e = engine ?: throw BundleException(ui.error ?: "no bundle loaded")
                val idx = index
                if (idx == null || idx.size == 0) {
                    post { ui.indexInfo = "The index is empty: tap \"Index photos\" first" }
                    return@execute
                }
                if (q.isBlank()) {
                    post { ui.indexInfo = "Type a query" }
                    return@execute
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
        worker.execute {
            try {
                val e = engine ?: throw BundleException(ui.error ?: "no bundle loaded")
                val mode = BenchMode.get(modeName)
                val (_, summary) = BenchRunner.run(this, e.bundle, mode, threads) { line -> post { ui.benchLog += "\n" + line } }
                post { ui.benchLog += "\n$summary\nwritten to ${BenchRunner.resultFile(this).path}" }
            } catch (ex: Exception) {
                post { ui.benchLog += "\nfailed: ${ex.message}" }
            } finally {
                post { ui.busy = false }
            }
        }
    }

    // -- UI --------------------------------------------------------------------------------------------------

    @Composable
    fun App(ui: UiState) {
        var tab by remember { mutableStateOf(0) }
        Column(Modifier.fillMaxSize().padding(12.dp)) {
            Text(ui.status, style = MaterialTheme.typography.titleSmall)
            ui.error?.let { Text(it, color = Color(0xFFB00020)) }
            Button(onClick = { reload() }) { Text("Reload bundle") }
            TabRow(selectedTabIndex = tab) {
                listOf("Classify", "Search", "Benchmark").forEachIndexed { i, t ->
                    Tab(selected = tab == i, onClick = { tab = i }, text = { Text(t) })
                }
            }
            when (tab) {
                0 -> ClassifyTab(ui)
                1 -> SearchTab(ui)
                else -> BenchTab(ui)
            }
        }
    }

    @Composable
    fun ClassifyTab(ui: UiState) {
        val ctx = LocalContext.current
        val pick = rememberLauncherForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri -> uri?.let { onPicked(it) } }
        val camPermission = rememberLauncherForActivityResult(ActivityResultContracts.RequestPermission()) { ok ->
            ui.cameraOn = ok
            if (!ok) ui.warning = "Camera permission denied: pick a photo instead"
        }
        Column(Modifier.verticalScroll(rememberScrollState())) {
            OutlinedTextField(value = ui.labels, onValueChange = { ui.labels = it }, label = { Text("Labels (comma-separated)") },
                modifier = Modifier.fillMaxWidth())
            Row(verticalAlignment = Alignment.CenterVertically) {
                RadioButton(selected = !ui.openaiTemplates, onClick = { ui.openaiTemplates = false }); Text("7 prompts")
                RadioButton(selected = ui.openaiTemplates, onClick = { ui.openaiTemplates = true }); Text("80 prompts")
            }
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                Button(onClick = {
                    if (ui.cameraOn) ui.cameraOn = false
                    else if (ContextCompat.checkSelfPermission(ctx, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) ui.cameraOn = true
                    else camPermission.launch(Manifest.permission.CAMERA)
                }) { Text(if (ui.cameraOn) "Stop camera" else "Camera") }
                Button(onClick = {
                    ui.cameraOn = false
                    pick.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly))
                }) { Text("Pick photo") }
            }
            if (ui.cameraOn) CameraPreview() else ui.picked?.let {
                Image(it.asImageBitmap(), contentDescription = "what the model sees (center crop)", Modifier.size(224.dp))
            }
            ui.warning?.let { Text(it, color = Color(0xFF8A6D00)) }
            for ((label, p) in ui.results) {
                Text("$label  ${"%.1f".format(p * 100)}%")
                LinearProgressIndicator(progress = { p }, modifier = Modifier.fillMaxWidth().height(6.dp))
            }
        }
    }

    @Composable
    fun CameraPreview() {
        val ctx = LocalContext.current
        val owner = LocalLifecycleOwner.current
        val previewView = remember { PreviewView(ctx) }
        DisposableEffect(Unit) {
            val future = ProcessCameraProvider.getInstance(ctx)
            future.addListener({
                val provider = future.get()
                val preview = Preview.Builder().build().also { it.setSurfaceProvider(previewView.surfaceProvider) }
                val analysis = ImageAnalysis.Builder()
                    .setTargetResolution(Size(720, 960))
                    .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                    .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                    .build()
                analysis.setAnalyzer(Executors.newSingleThreadExecutor()) { proxy ->
                    proxy.use { onFrame(it.toBitmap(), it.imageInfo.rotationDegrees) }
                }
                provider.unbindAll()
                provider.bindToLifecycle(owner, CameraSelector.DEFAULT_BACK_CAMERA, preview, analysis)
            }, ContextCompat.getMainExecutor(ctx))
            onDispose { future.get().unbindAll() }
        }
        AndroidView(factory = { previewView }, modifier = Modifier.fillMaxWidth().height(320.dp))
    }

    @Composable
    fun SearchTab(ui: UiState) {
        val ctx = LocalContext.current
        val perm = if (Build.VERSION.SDK_INT >= 33) Manifest.permission.READ_MEDIA_IMAGES else Manifest.permission.READ_EXTERNAL_STORAGE
        val ask = rememberLauncherForActivityResult(ActivityResultContracts.RequestPermission()) { ok ->
            if (ok) buildIndex() else ui.indexInfo = "Photo access denied: search needs it to index the gallery"
        }
        Column {
            Text(ui.indexInfo)
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                Button(enabled = !ui.indexing, onClick = {
                    if (ContextCompat.checkSelfPermission(ctx, perm) == PackageManager.PERMISSION_GRANTED) buildIndex() else ask.launch(perm)
                }) { Text("Index photos") }
                if (ui.indexing) Button(onClick = { stopIndexing.set(true) }) { Text("Stop") }
            }
            OutlinedTextField(value = ui.query, onValueChange = { ui.query = it }, label = { Text("Search your photos") },
                modifier = Modifier.fillMaxWidth())
            Button(onClick = { search() }) { Text("Search") }
            LazyColumn {
                items(ui.hits) { h -> HitRow(h) }
            }
        }
    }

    @Composable
    fun HitRow(h: SearchHit) {
        val ctx = LocalContext.current
        val thumb = remember(h.key) {
            try {
                if (Build.VERSION.SDK_INT >= 29) ctx.contentResolver.loadThumbnail(Uri.parse(h.key), Size(160, 160), null) else null
            } catch (e: Exception) {
                null
            }
        }
        Row(verticalAlignment = Alignment.CenterVertically) {
            thumb?.let { Image(it.asImageBitmap(), contentDescription = null, Modifier.size(72.dp)) }
            Text("  %.3f".format(h.score))
        }
    }

    @Composable
    fun BenchTab(ui: UiState) {
        Column(Modifier.verticalScroll(rememberScrollState())) {
            Text("Protocol (as mc2export bench): quick = >=20 calls and >=2 s, p50; modelbench = 20 x 50, trimmed; mlperf = >=1024 calls and >=60 s, p90")
            for (m in BenchMode.MODES.keys) Row(verticalAlignment = Alignment.CenterVertically) {
                RadioButton(selected = ui.benchMode == m, onClick = { ui.benchMode = m }); Text(m)
            }
            if (RuntimeBackend.reportName == "onnxruntime") {
                OutlinedTextField(value = ui.benchThreads, onValueChange = { ui.benchThreads = it.filter(Char::isDigit) },
                    label = { Text("Threads (empty: runtime default)") })
            }
            Button(enabled = !ui.busy, onClick = {
                val threads = ui.benchThreads.toIntOrNull()?.takeIf { it > 0 }
                if (threads != null) reload(null, threads) { runBenchmark(ui.benchMode, threads) } else runBenchmark(ui.benchMode, null)
            }) { Text("Run benchmark") }
            Text(ui.benchLog)
        }
    }
}
