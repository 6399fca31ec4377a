package com.mc2export.demo

import android.app.ActivityManager
import android.content.Context
import android.os.Build
import com.mc2export.shared.BenchDocument
import com.mc2export.shared.BenchMode
import com.mc2export.shared.BenchStats
import com.mc2export.shared.ImageInputKind
import com.mc2export.shared.Preprocess
import com.mc2export.shared.RgbImage
import com.mc2export.shared.TowerResult
import com.mc2export.shared.VerifyReport
import java.io.File
import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import java.util.TimeZone

/**
 * The benchmark mode: each tower timed under a protocol of the harness (quick / modelbench / mlperf), inputs
 * prepared beforehand, one model call per sample; writes the harness's JSON (mc2export/bench/schema.json) to
 * files/mc2export-bench.json, which `mc2export bench --device android --app com.mc2export.demo` pulls.
 */
object BenchRunner {
    const val RESULT_FILE = "mc2export-bench.json"
    const val EXTRA_BUNDLE = "mc2export.bench.bundle"
    const val EXTRA_MODE = "mc2export.bench.mode"
    const val EXTRA_THREADS = "mc2export.bench.threads"

    fun resultFile(ctx: Context) = File(ctx.filesDir, RESULT_FILE)

    private fun peakRssMb(): Double? = try {
        File("/proc/self/status").readLines().firstOrNull { it.startsWith("VmHWM:") }
            ?.split(Regex("\\s+"))?.getOrNull(1)?.toDouble()?.div(1024.0)
    } catch (e: Exception) {
        null
    }

    fun device(ctx: Context): Map<String, Any?> {
        val am = ctx.getSystemService(Context.ACTIVITY_SERVICE) as ActivityManager
        val mem = ActivityManager.MemoryInfo().also { am.getMemoryInfo(it) }
        val abi = Build.SUPPORTED_ABIS.firstOrNull() ?: "unknown"
        val arch = if (abi.startsWith("arm64")) "arm64" else if (abi.startsWith("x86_64")) "x86_64" else abi
        return linkedMapOf(
            "kind" to "android", "class" to "Android $arch",
            "model" to Build.MODEL, "soc" to (if (Build.VERSION.SDK_INT >= 31) Build.SOC_MODEL else Build.HARDWARE),
            "cpu" to Build.HARDWARE, "arch" to arch,
            "cores_logical" to Runtime.getRuntime().availableProcessors(),
            "os" to "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT})",
            "memory_gb" to Math.round(mem.totalMem / 1e9 * 10.0) / 10.0,
            "serial" to null
        )
    }

    /** Run and write the document; returns (json text, one-line summary). */
    fun run(ctx: Context, bundle: LoadedBundle, mode: BenchMode, threads: Int?, verify: VerifyReport?,
            log: (String) -> Unit): Pair<String, String> {
        val cfg = bundle.config
        val r = cfg.resolution
        // a fixed synthetic picture and prompt: latency does not depend on content
        val px = IntArray(r * r) { i -> (0xFF shl 24) or ((i * 7 and 0xFF) shl 16) or ((i * 13 and 0xFF) shl 8) or (i and 0xFF) }
        val crop = Preprocess.resizeCrop(RgbImage(r, r, px), r, cfg.interpolation)
        val imageInput = if (cfg.imageInput == ImageInputKind.NORMALIZED_NCHW) Preprocess.toNormalizedChw(crop, cfg.mean, cfg.std)
        else Preprocess.toUnitChw(crop)
        val tokens = bundle.tokenizer?.tokenize("a photo of a dog")?.row
        val towers = ArrayList<TowerResult>()
        // Inputs become runtime tensors once, outside the timed loop: a sample is the model call alone (docs/bench.md).
        fun time(tower: String, file: String?, call: PreparedCall): TowerResult = call.use {
            log("$tower: ${mode.name} protocol ...")
            val t0 = System.nanoTime(); it.run(); val first = (System.nanoTime() - t0) / 1e6
            val run = BenchStats.runProtocol(mode) { it.run() }
            TowerResult(tower, file, bundle.loadMs[tower], null, first, run, peakRssMb(), "VmHWM (/proc/self/status)")
        }
        bundle.image?.let { towers.add(time("image", cfg.imageModelFile, it.prepare(imageInput, r))) }
        val textTower = bundle.text
        if (textTower != null && tokens != null) towers.add(time("text", cfg.textModelFile, textTower.prepare(tokens)))
        val iso = SimpleDateFormat("yyyy-MM-dd'T'HH:mm:ssXXX", Locale.ROOT).apply { timeZone = TimeZone.getTimeZone("UTC") }.format(Date())
        val json = BenchDocument.build(
            toolName = "mc2export-android-app", toolVersion = BuildConfig.VERSION_NAME, createdIso = iso,
            bundle = cfg, configJson = bundle.configText, bundlePath = bundle.dir.path,
            runtimeName = RuntimeBackend.reportName, runtimeVersion = RuntimeBackend.version,
            threads = if (RuntimeBackend.reportName == "onnxruntime") threads else null,  // XNNPACK picks its own
            computeUnits = null, device = device(ctx), mode = mode, towers = towers, verify = verify?.toMap()
        )
        val out = resultFile(ctx)
        val tmp = File(out.path + ".tmp")
        tmp.writeText(json, Charsets.UTF_8)
        if (!tmp.renameTo(out)) throw java.io.IOException("cannot write ${out.path}")
        val summary = towers.joinToString("; ") { t ->
            val st = BenchStats.summarize(t.run.samplesMs)
            "${t.tower} p50 %.2f ms, p90 %.2f ms (%d calls)".format(Locale.ROOT, st["p50"] as Double, st["p90"] as Double, t.run.samplesMs.size)
        }
        return json to summary
    }
}
