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
import androidx.activity.viewModels
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
import androidx.compose.runtime.produceState
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.unit.dp
import androidx.compose.ui.viewinterop.AndroidView
import androidx.core.content.ContextCompat
import androidx.lifecycle.compose.LocalLifecycleOwner
import com.mc2export.shared.BenchMode
import com.mc2export.shared.SearchHit
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext

/**
 * The screen. All state and work live in [MainViewModel], which survives rotation (the activity is recreated,
 * the models, index and camera executor are not); the activity only draws and forwards events.
 */
class MainActivity : ComponentActivity() {
    private val vm: MainViewModel by viewModels()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContent { MaterialTheme { Surface(Modifier.fillMaxSize()) { App(vm.ui) } } }
        vm.handle(intent, isNew = false)  // once per view model: a rotation does not reload the bundle
    }

    override fun onNewIntent(intent: Intent) {
        super.onNewIntent(intent)
        vm.handle(intent, isNew = true)
    }

    // -- UI --------------------------------------------------------------------------------------------------

    @Composable
    fun App(ui: UiState) {
        var tab by remember { mutableStateOf(0) }
        Column(Modifier.fillMaxSize().padding(12.dp)) {
            Text(ui.status, style = MaterialTheme.typography.titleSmall)
            ui.error?.let { Text(it, color = Color(0xFFB00020)) }
            if (ui.verifyLines.isNotEmpty()) {
                // the bundle's verify/ vectors, run on this phone when the bundle loaded: verdict and figures
                val color = when (ui.verifyStatus) { "passed" -> Color(0xFF1B7F3B); "absent" -> Color(0xFF8A6D00); else -> Color(0xFFB00020) }
                Text(ui.verifyLines.joinToString("\n"), color = color, style = MaterialTheme.typography.bodySmall)
            }
            Button(onClick = { vm.reload() }) { Text("Reload bundle") }
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
        val pick = rememberLauncherForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri -> uri?.let { vm.onPicked(it) } }
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
            if (ui.cameraOn) Text("frames dropped while the model ran: ${ui.framesDropped}", style = MaterialTheme.typography.bodySmall)
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
            var analysis: ImageAnalysis? = null
            future.addListener({
                val provider = future.get()
                val preview = Preview.Builder().build().also { it.setSurfaceProvider(previewView.surfaceProvider) }
                val a = ImageAnalysis.Builder()
                    .setTargetResolution(Size(720, 960))
                    .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                    .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                    .build()
                // the view model's one camera executor; frames are dropped there while the model runs (FrameGate)
                a.setAnalyzer(vm.cameraExecutor) { proxy -> vm.onFrame(proxy) }
                analysis = a
                provider.unbindAll()
                provider.bindToLifecycle(owner, CameraSelector.DEFAULT_BACK_CAMERA, preview, a)
            }, ContextCompat.getMainExecutor(ctx))
            onDispose {
                analysis?.clearAnalyzer()
                if (future.isDone) future.get().unbindAll()
            }
        }
        AndroidView(factory = { previewView }, modifier = Modifier.fillMaxWidth().height(320.dp))
    }

    @Composable
    fun SearchTab(ui: UiState) {
        val ctx = LocalContext.current
        val perm = if (Build.VERSION.SDK_INT >= 33) Manifest.permission.READ_MEDIA_IMAGES else Manifest.permission.READ_EXTERNAL_STORAGE
        val ask = rememberLauncherForActivityResult(ActivityResultContracts.RequestPermission()) { ok ->
            if (ok) vm.buildIndex() else ui.indexInfo = "Photo access denied: search needs it to index the gallery"
        }
        Column {
            Text(ui.indexInfo)
            Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
                Button(enabled = !ui.indexing, onClick = {
                    if (ContextCompat.checkSelfPermission(ctx, perm) == PackageManager.PERMISSION_GRANTED) vm.buildIndex() else ask.launch(perm)
                }) { Text("Index photos") }
                if (ui.indexing) Button(onClick = { vm.stopIndexing() }) { Text("Stop") }
                Button(enabled = !ui.indexing, onClick = {
                    if (ContextCompat.checkSelfPermission(ctx, perm) == PackageManager.PERMISSION_GRANTED) vm.indexInBackground() else ask.launch(perm)
                }) { Text("While charging") }
            }
            OutlinedTextField(value = ui.query, onValueChange = { ui.query = it }, label = { Text("Search your photos") },
                modifier = Modifier.fillMaxWidth())
            Button(onClick = { vm.search() }) { Text("Search") }
            LazyColumn {
                items(ui.hits) { h -> HitRow(h) }
            }
        }
    }

    @Composable
    fun HitRow(h: SearchHit) {
        val ctx = LocalContext.current
        // thumbnails load on the IO dispatcher, never on the main thread
        val thumb by produceState<Bitmap?>(initialValue = null, h.key) {
            value = withContext(Dispatchers.IO) {
                try {
                    if (Build.VERSION.SDK_INT >= 29) ctx.contentResolver.loadThumbnail(Uri.parse(h.key), Size(160, 160), null) else null
                } catch (e: Exception) {
                    null
                }
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
                if (threads != null) vm.reload(null, threads) { vm.runBenchmark(ui.benchMode, threads) } else vm.runBenchmark(ui.benchMode, null)
            }) { Text("Run benchmark") }
            Text(ui.benchLog)
        }
    }
}
