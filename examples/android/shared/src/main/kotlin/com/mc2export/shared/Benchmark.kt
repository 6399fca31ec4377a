package com.mc2export.shared

import java.security.MessageDigest

/**
 * The benchmark mode of the apps, ported from the harness (mc2export/bench/stats.py, harness.py,
 * device.py) so that an app writes the harness's own JSON (`mc2export-bench` v1,
 * mc2export/bench/schema.json) and `mc2export bench --device android --app ...` / `--device ios` and
 * `mc2export bench-report` read it like their own results.
 */
class BenchMode(
    val name: String,
    val warmup: Int,
    val minIterations: Int,
    val minSeconds: Double,
    val rounds: Int = 1,
    val trimLow: Int = 0,
    val trimHigh: Int = 0,
    val headline: String = "p50",
    val maxSeconds: Double? = null
) {
    fun toMap(): Map<String, Any?> = linkedMapOf(
        "name" to name, "warmup" to warmup, "min_iterations" to minIterations, "min_seconds" to minSeconds,
        "rounds" to rounds, "trim_low" to trimLow, "trim_high" to trimHigh, "headline" to headline,
        "max_seconds" to maxSeconds, "standard" to (MODES[name]?.sameAs(this) ?: false)
    )

    private fun sameAs(o: BenchMode): Boolean = name == o.name && warmup == o.warmup && minIterations == o.minIterations &&
        minSeconds == o.minSeconds && rounds == o.rounds && trimLow == o.trimLow && trimHigh == o.trimHigh &&
        headline == o.headline && maxSeconds == o.maxSeconds

    companion object {
        /** quick: >= 20 calls and >= 2 s, p50; modelbench: 20 rounds x 50 calls, 1 warm-up per round, each round's
         *  10 lowest/highest dropped; mlperf: >= 1024 calls and >= 60 s, p90 (the harness's protocols). */
        val MODES: Map<String, BenchMode> = linkedMapOf(
            "quick" to BenchMode("quick", warmup = 3, minIterations = 20, minSeconds = 2.0, headline = "p50"),
            "modelbench" to BenchMode("modelbench", warmup = 1, minIterations = 50, minSeconds = 0.0, rounds = 20,
                trimLow = 10, trimHigh = 10, headline = "round_trimmed_mean"),
            "mlperf" to BenchMode("mlperf", warmup = 10, minIterations = 1024, minSeconds = 60.0, headline = "p90")
        )

        fun get(name: String): BenchMode = MODES[name]
            ?: throw IllegalArgumentException("unknown benchmark mode '$name': choose one of ${MODES.keys.joinToString()}")
    }
}

/** Raw timings of one tower under a mode. */
class ProtocolRun(val warmupMs: List<Double>, val samplesMs: List<Double>, val roundSizes: List<Int>, val durationS: Double)

object BenchStats {
    /** numpy's default (linear) percentile of sorted data. */
    fun percentile(sorted: DoubleArray, q: Double): Double {
        val n = sorted.size
        if (n == 0) return Double.NaN
        val pos = (n - 1) * q / 100.0
        val lo = Math.floor(pos).toInt()
        val hi = Math.min(lo + 1, n - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo)
    }

    /** Mean after dropping `int(proportion * n)` samples at each end (or exactly [low]/[high]). */
    fun trimmedMean(xs: List<Double>, proportion: Double = 0.1, low: Int? = null, high: Int? = null): Double {
        val s = xs.sorted()
        val n = s.size
        if (n == 0) return Double.NaN
        val lo = low ?: (proportion * n).toInt()
        val hi = high ?: (proportion * n).toInt()
        val kept = if (n - hi > lo) s.subList(lo, n - hi) else s
        return kept.sum() / kept.size
    }

    /** The harness's statistics (mc2export.bench.stats.summarize). */
    fun summarize(samplesMs: List<Double>, roundSizes: List<Int>? = null, trimLow: Int = 0, trimHigh: Int = 0): Map<String, Any?> {
        require(samplesMs.isNotEmpty()) { "no samples" }
        val s = samplesMs.sorted().toDoubleArray()
        val n = s.size
        val mean = s.sum() / n
        var ss = 0.0
        for (x in s) ss += (x - mean) * (x - mean)
        val std = if (n > 1) Math.sqrt(ss / (n - 1)) else 0.0
        val out = linkedMapOf<String, Any?>(
            "count" to n, "p50" to percentile(s, 50.0), "p90" to percentile(s, 90.0), "p99" to percentile(s, 99.0),
            "mean" to mean, "trimmed_mean" to trimmedMean(samplesMs, 0.1), "min" to s[0], "max" to s[n - 1],
            "std" to std, "cv" to if (mean > 0) std / mean else 0.0
        )
        if (roundSizes != null && roundSizes.isNotEmpty()) {
            val means = ArrayList<Double>()
            var i = 0
            for (k in roundSizes) {
                means.add(trimmedMean(samplesMs.subList(i, i + k), low = trimLow, high = trimHigh))
                i += k
            }
            out["round_trimmed_means"] = means
            out["round_trimmed_mean"] = means.sum() / means.size
        }
        return out
    }

    fun headline(stats: Map<String, Any?>, mode: BenchMode): Double {
        val key = if (mode.headline == "round_trimmed_mean" && !stats.containsKey(mode.headline)) "trimmed_mean" else mode.headline
        return (stats[key] as Number).toDouble()
    }

    /** Time [call] under [mode] (mc2export.bench.stats.run_protocol); [clockNs] is System::nanoTime on device. */
    fun runProtocol(mode: BenchMode, clockNs: () -> Long = { System.nanoTime() }, call: () -> Unit): ProtocolRun {
        val warm = ArrayList<Double>()
        val samples = ArrayList<Double>()
        val sizes = ArrayList<Int>()
        val start = clockNs()
        for (r in 0 until mode.rounds) {
            for (w in 0 until mode.warmup) {
                val t0 = clockNs(); call(); warm.add((clockNs() - t0) / 1e6)
            }
            val tRound = clockNs()
            var k = 0
            while (true) {
                if (mode.rounds > 1) {
                    if (k >= mode.minIterations) break
                } else {
                    val elapsed = (clockNs() - tRound) / 1e9
                    if (k >= mode.minIterations && elapsed >= mode.minSeconds) break
                    val cap = mode.maxSeconds
                    if (cap != null && k >= mode.minIterations && elapsed >= cap) break
                }
                val t0 = clockNs(); call(); samples.add((clockNs() - t0) / 1e6)
                k++
            }
            sizes.add(k)
        }
        return ProtocolRun(warm, samples, sizes, (clockNs() - start) / 1e9)
    }

    fun round4(x: Double): Double = Math.round(x * 10000.0) / 10000.0

    fun roundAll(stats: Map<String, Any?>): Map<String, Any?> {
        val out = LinkedHashMap<String, Any?>()
        for ((k, v) in stats) out[k] = when (v) {
            is Double -> round4(v)
            is List<*> -> v.map { if (it is Double) round4(it) else it }
            else -> v
        }
        return out
    }
}

/** The paper's latency targets (iPhone 12 Pro Max, Core ML) per variant, as in the model cards (the models folder). */
object PaperTargets {
    const val HARDWARE = "iPhone 12 Pro Max (A14), Core ML"
    const val SOURCE = "MobileCLIP2 paper (arXiv 2508.20691) / official README; latency iPhone 12 Pro Max, Core ML, batch 1"
    /** variant -> (image ms, text ms). */
    val LATENCY_MS: Map<String, DoubleArray> = linkedMapOf(
        "mobileclip2-s0" to doubleArrayOf(1.5, 3.3), "mobileclip2-s2" to doubleArrayOf(3.6, 3.3),
        "mobileclip2-b" to doubleArrayOf(10.4, 3.3), "mobileclip2-s3" to doubleArrayOf(8.0, 6.6),
        "mobileclip2-s4" to doubleArrayOf(19.6, 6.6), "mobileclip2-l14" to doubleArrayOf(57.9, 6.6),
        "mobileclip-s0" to doubleArrayOf(1.5, 1.6), "mobileclip-s1" to doubleArrayOf(2.5, 3.3),
        "mobileclip-s2" to doubleArrayOf(3.6, 3.3), "mobileclip-b" to doubleArrayOf(10.4, 3.3),
        "mobileclip-blt" to doubleArrayOf(10.4, 3.3), "mobileclip-s3" to doubleArrayOf(8.0, 6.6),
        "mobileclip-s4" to doubleArrayOf(19.6, 6.6), "mobileclip-l14" to doubleArrayOf(57.9, 6.6)
    )
    val PAPER_DEVICE_IDS = listOf("iPhone13,4")
}

/** One measured tower, ready for the document. */
class TowerResult(
    val tower: String,
    val file: String?,
    val loadColdMs: Double?,
    val loadWarmMs: Double?,
    val firstInferenceMs: Double?,
    val run: ProtocolRun,
    val peakRssMb: Double?,
    val memoryMethod: String
)

object BenchDocument {
    const val SCHEMA = "mc2export-bench"
    const val SCHEMA_VERSION = 1

    /** sha256 over the sorted "<file>\t<sha256>\n" lines of config.json's file table (harness: bundle_checksum). */
    fun bundleChecksum(configJson: String): String? {
        val files = (Json.parse(configJson) as? Map<*, *>)?.get("files") as? Map<*, *> ?: return null
        val md = MessageDigest.getInstance("SHA-256")
        for (name in files.keys.map { it.toString() }.sortedWith(Comparator { a, b -> compareUtf8(a, b) })) {
            val sha = ((files[name] as? Map<*, *>)?.get("sha256") as? String) ?: ""
            md.update("$name\t$sha\n".toByteArray(Charsets.UTF_8))
        }
        val sb = StringBuilder()
        for (b in md.digest()) sb.append(String.format("%02x", b))
        return sb.toString()
    }

    /** Python sorts str by code point; Kotlin's compareTo sorts by UTF-16 unit: the same except above U+FFFF. */
    private fun compareUtf8(a: String, b: String): Int {
        var i = 0
        var j = 0
        while (i < a.length && j < b.length) {
            val ca = a.codePointAt(i)
            val cb = b.codePointAt(j)
            if (ca != cb) return ca.compareTo(cb)
            i += Character.charCount(ca)
            j += Character.charCount(cb)
        }
        return (a.length - i).compareTo(b.length - j)
    }

    fun comparability(device: Map<String, Any?>, runtime: String, computeUnits: String?): String {
        val ne = runtime == "coreml" && (computeUnits ?: "all") in listOf("all", "cpu-ne")
        if (device["kind"] == "ios" && ne && device["model"] in PaperTargets.PAPER_DEVICE_IDS) return "same"
        if (ne && (device["kind"] == "ios" || device["class"] == "Apple silicon Mac")) return "similar"
        return "none"
    }

    private fun fmt2(x: Double): String = String.format(java.util.Locale.ROOT, "%.2f", x)
    private fun fmt1(x: Double): String = String.format(java.util.Locale.ROOT, "%.1f", x)
    /** Python's format(x, "g") for the label: 6 significant digits, no trailing zeros. */
    private fun fmtG(x: Double): String =
        java.math.BigDecimal(x).round(java.math.MathContext(6)).stripTrailingZeros().toPlainString()

    /** The verdict object (harness: device.verdict). */
    fun verdict(variant: String, name: String, measured: Map<String, Double>, towers: List<String>, device: Map<String, Any?>,
                runtime: String, threads: Int?, computeUnits: String?, stat: String): Map<String, Any?> {
        val lat = PaperTargets.LATENCY_MS[variant]
        val parts = mapOf("image" to lat?.get(0), "text" to lat?.get(1))
        val target = if (towers.all { parts[it] != null }) towers.map { parts[it]!! }.sum() else null
        val got = towers.map { measured[it] ?: 0.0 }.sum()
        val comp = comparability(device, runtime, computeUnits)
        val whereParts = ArrayList<String>()
        whereParts.add((device["model"] ?: device["cpu"] ?: "unknown CPU").toString() +
            if (device["kind"] == "android" && device["soc"] != null) " (${device["soc"]})" else "")
        if (runtime == "coreml") whereParts.add("compute units ${computeUnits ?: "all"}")
        else if (threads != null) whereParts.add("$threads thread${if (threads != 1) "s" else ""}")
        whereParts.add(runtime)
        val where = "${device["class"]} (${whereParts.joinToString(", ")})"
        val scope = towers.joinToString("+")
        val hw = PaperTargets.HARDWARE
        if (target == null) {
            return linkedMapOf("status" to "no-target", "comparable" to comp, "ratio" to null, "target_ms" to null,
                "measured_ms" to got, "towers" to towers, "stat" to stat, "hardware" to hw,
                "label" to "no $scope latency target in the card for $name", "note" to "measured on $where")
        }
        val ratio = got / target
        val meets = got <= target
        val status: String
        val note: String
        when (comp) {
            "same" -> { status = if (meets) "meets" else "misses"; note = "measured on the paper's hardware class ($where)" }
            "similar" -> {
                status = if (meets) "meets" else "misses"
                note = "$where: a different Apple Neural Engine device than the target's $hw; indicative, not the paper's measurement"
            }
            else -> { status = "reference"; note = "$where: not comparable to the A14 Neural Engine target ($hw); shown for reference" }
        }
        val word = mapOf("meets" to "MEETS", "misses" to "MISSES", "reference" to "REFERENCE ONLY").getValue(status)
        val label = "$word: $scope $stat ${fmt2(got)} ms vs target ${fmtG(target)} ms ($hw) = ${fmt1(ratio)}x the target"
        return linkedMapOf("status" to status, "comparable" to comp, "ratio" to Math.round(ratio * 1000.0) / 1000.0,
            "target_ms" to target, "measured_ms" to BenchStats.round4(got), "towers" to towers, "stat" to stat,
            "hardware" to hw, "label" to label, "note" to note)
    }

    /**
     * The whole document with one result. [device] needs at least kind ("android" | "ios"), class and os
     * (schema $defs/device); [runtimeName] is "executorch" | "onnxruntime" | "coreml".
     */
    fun build(
        toolName: String,
        toolVersion: String,
        createdIso: String,
        bundle: BundleConfig,
        configJson: String,
        bundlePath: String?,
        runtimeName: String,
        runtimeVersion: String?,
        threads: Int?,
        computeUnits: String?,
        device: Map<String, Any?>,
        mode: BenchMode,
        towers: List<TowerResult>,
        verify: Map<String, Any?>? = null
    ): String {
        val towerMaps = LinkedHashMap<String, Any?>()
        val headlines = LinkedHashMap<String, Double>()
        val peaks = ArrayList<Double>()
        for (t in towers) {
            val st = BenchStats.summarize(t.run.samplesMs, if (mode.rounds > 1) t.run.roundSizes else null, mode.trimLow, mode.trimHigh)
            val h = BenchStats.round4(BenchStats.headline(st, mode))
            headlines[t.tower] = h
            t.peakRssMb?.let { peaks.add(it) }
            towerMaps[t.tower] = linkedMapOf(
                "tower" to t.tower, "file" to t.file,
                "load_ms" to linkedMapOf("cold" to t.loadColdMs?.let { BenchStats.round4(it) },
                    "warm" to t.loadWarmMs?.let { BenchStats.round4(it) },
                    "first_inference" to t.firstInferenceMs?.let { BenchStats.round4(it) }),
                "warmup_ms" to t.run.warmupMs.map { BenchStats.round4(it) },
                "iterations" to t.run.samplesMs.size,
                "rounds" to mode.rounds,
                "duration_s" to BenchStats.round4(t.run.durationS),
                "stats" to BenchStats.roundAll(st),
                "samples_ms" to t.run.samplesMs.map { BenchStats.round4(it) },
                "headline_ms" to h,
                "memory" to linkedMapOf("scope" to "app", "peak_rss_mb" to t.peakRssMb, "method" to t.memoryMethod)
            )
        }
        val names = towers.map { it.tower }
        val lat = PaperTargets.LATENCY_MS[bundle.variant]
        val total = BenchStats.round4(headlines.values.sum())
        val dev = LinkedHashMap(device)
        val result = linkedMapOf<String, Any?>(
            "variant" to bundle.variant, "name" to bundle.name,
            "bundle" to linkedMapOf("path" to bundlePath, "format" to bundle.runtime, "precision" to bundle.precision,
                "variant" to bundle.variant, "checksum" to bundleChecksum(configJson), "verified" to false,
                "random_weights" to bundle.randomWeights, "batch" to 1,
                "towers" to listOfNotNull(if (bundle.hasImage) "image" else null, if (bundle.hasText) "text" else null),
                "exporter_versions" to bundle.versions),
            "runtime" to linkedMapOf("name" to runtimeName, "version" to runtimeVersion,
                "versions" to linkedMapOf(runtimeName to runtimeVersion), "threads" to threads, "compute_units" to computeUnits,
                "runner" to toolName),
            "device" to dev,
            "mode" to mode.toMap(),
            "towers" to towerMaps,
            "total" to linkedMapOf("headline_ms" to total, "stat" to mode.headline, "towers" to names,
                "peak_rss_mb" to if (peaks.isEmpty()) null else peaks.fold(0.0) { a, b -> Math.max(a, b) },
                "note" to "image and text towers measured separately and summed, as the paper reports"),
            "target" to linkedMapOf("image_ms" to lat?.get(0), "text_ms" to lat?.get(1),
                "total_ms" to if (lat != null) lat[0] + lat[1] else null, "hardware" to PaperTargets.HARDWARE,
                "source" to PaperTargets.SOURCE, "band_ms" to listOf(3.0, 15.0)),
            "verdict" to verdict(bundle.variant, bundle.name, headlines, names, dev, runtimeName, threads, computeUnits, mode.headline),
            // the bundle's verification vectors as run by the app when it loaded the bundle (VerifyReport.toMap)
            "verify" to (verify ?: linkedMapOf<String, Any?>("status" to "not-run")),
            "source" to "$toolName benchmark mode",
            "created" to createdIso
        )
        val doc = linkedMapOf<String, Any?>(
            "schema" to SCHEMA, "schema_version" to SCHEMA_VERSION, "created" to createdIso,
            "tool" to linkedMapOf("name" to toolName, "version" to toolVersion, "command" to null),
            "host" to null,
            "results" to listOf(result)
        )
        return Json.write(doc)
    }
}
