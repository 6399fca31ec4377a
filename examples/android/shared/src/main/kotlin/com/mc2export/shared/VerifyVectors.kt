package com.mc2export.shared

/**
 * The bundle's verification vectors (docs/bundle.md, "verify/: verification vectors"), read strictly and run
 * through the app's own models when a bundle loads: what `mc2export verify BUNDLE` does, on the phone. The
 * figures and the pass rule are those of mc2export/export/validate.py (compare + check): per-row cosine,
 * max-abs over the standard deviation of the expected rows. Twins: examples/web/mc2/verify.js (run in
 * Chromium by tests/test_web.py), examples/ios/MC2Core/.../VerifyVectors.swift.
 *
 * [run] never throws for a bad or absent verify/ folder: the report says "absent" or "error" with a one-line
 * message, and the app shows it.
 */
class VerifyException(message: String) : Exception("verify/: $message")

/** One tower's figures (validate.compare) and verdict (validate.check). */
class TowerCheck(
    val tower: String,
    val rows: Int,
    val cosines: DoubleArray,
    val maxAbs: Double,
    val referenceStd: Double,
    val finite: Boolean,
    val failures: List<String>,
    val seconds: Double
) {
    val cosineMin: Double get() = cosines.fold(Double.POSITIVE_INFINITY) { a, b -> if (b < a || b.isNaN()) b else a }
    val cosineMean: Double get() = cosines.sum() / cosines.size
    val maxAbsOverStd: Double get() = if (referenceStd > 0) maxAbs / referenceStd else Double.POSITIVE_INFINITY
    val passed: Boolean get() = failures.isEmpty()

    fun toMap(): Map<String, Any?> = linkedMapOf(
        "rows" to rows, "cosine_min" to cosineMin, "cosine_mean" to cosineMean, "max_abs" to maxAbs,
        "reference_std" to referenceStd, "max_abs_over_std" to maxAbsOverStd, "finite" to finite, "passed" to passed,
        "failures" to failures, "seconds" to BenchStats.round4(seconds)
    )
}

/** The outcome: status "passed" | "failed" | "absent" | "error". */
class VerifyReport(
    val status: String,
    val message: String?,
    val manifestVersion: Int?,
    val precision: String?,
    val tier: String?,
    val tolerance: Map<String, Double>,
    val towers: List<TowerCheck>
) {
    val passed: Boolean get() = status == "passed"

    /** Lines for the screen: a verdict line with the tolerance, then one line per tower with its figures. */
    fun lines(): List<String> = when (status) {
        "absent" -> listOf("Verification vectors: none in this bundle (re-export to get verify/)")
        "error" -> listOf("Verification vectors: ERROR - $message")
        else -> {
            val tol = "cosine >= ${tolerance["cosine_min"]}" +
                (tolerance["max_abs_over_std"]?.let { ", max-abs <= $it x std" } ?: "")
            listOf("Verification vectors: ${if (passed) "PASSED" else "FAILED"} (tier ${tier ?: precision ?: "?"}: $tol)") +
                towers.map { t ->
                    "${t.tower}: ${t.rows} rows, cosine min ${fmt("%.7f", t.cosineMin)}, max-abs ${fmt("%.2e", t.maxAbs)} = " +
                        "${fmt("%.2e", t.maxAbsOverStd)} x std: " + if (t.passed) "PASS" else "FAIL - ${t.failures.joinToString("; ")}"
                }
        }
    }

    /** What goes into benchmark documents (result["verify"]) and logs. */
    fun toMap(): Map<String, Any?> {
        val m = linkedMapOf<String, Any?>("status" to status, "passed" to if (status == "absent") null else passed)
        if (message != null) m[if (status == "error") "error" else "note"] = message
        if (manifestVersion != null) {
            m["manifest_version"] = manifestVersion
            m["precision"] = precision
            m["tier"] = tier
            m["tolerance"] = LinkedHashMap(tolerance)
            m["towers"] = linkedMapOf<String, Any?>().also { t -> for (c in towers) t[c.tower] = c.toMap() }
        }
        return m
    }

    companion object {
        private fun fmt(f: String, x: Double) = String.format(java.util.Locale.ROOT, f, x)
        fun absent() = VerifyReport("absent", "the bundle has no verify/ folder (exported before verification vectors existed)",
            null, null, null, emptyMap(), emptyList())
        fun error(message: String) = VerifyReport("error", message, null, null, null, emptyMap(), emptyList())
    }
}

object VerifyVectors {
    const val MANIFEST = "verify/manifest.json"
    const val SUPPORTED_VERSION = 1

    /** One raw array file of the manifest. */
    class ArrayFile(val file: String, val dtype: String, val shape: IntArray) {
        val count: Int get() = shape.fold(1) { a, b -> a * b }
        val bytes: Int get() = count * (if (dtype == "uint8") 1 else 4)
    }

    class TowerPlan(val tower: String, val inputs: ArrayFile, val expected: ArrayFile, val rows: Int, val texts: List<String>?,
                    /** From the tower's precision tier in code (BundleRules.TOLERANCES), never from the manifest. */
                    val tolerance: Map<String, Double>)

    class Plan(val version: Int, val precision: String?, val tier: String?, val tolerance: Map<String, Double>, val towers: List<TowerPlan>)

    private fun bad(msg: String): Nothing = throw VerifyException(msg)

    private fun arrayFile(v: Any?, what: String, dtype: String, rank: Int): ArrayFile {
        val e = v as? Map<*, *> ?: bad("manifest.json: $what is missing")
        val file = e["file"] as? String
        val safe = try { BundleRules.safeRelative(file, "$what.file"); true } catch (x: BundleException) { false }
        if (file == null || !safe || !file.startsWith("verify/")) {
            bad("manifest.json: $what.file must be a path inside verify/, got ${J.describe(e["file"])}")
        }
        if (e["dtype"] != dtype) bad("manifest.json: $what.dtype must be \"$dtype\", got ${J.describe(e["dtype"])}")
        val shape = e["shape"] as? List<*>
        if (shape == null || shape.size != rank || shape.any { !(it is Long && it >= 1 && it <= Int.MAX_VALUE) }) {
            bad("manifest.json: $what.shape must be $rank positive integers, got ${J.describe(e["shape"])}")
        }
        return ArrayFile(file, dtype, IntArray(rank) { (shape[it] as Long).toInt() })
    }

    /** Check the manifest against the bundle's config; the plan of what to run. */
    fun parseManifest(text: String, cfg: BundleConfig): Plan {
        val root = try {
            Json.parse(text)
        } catch (e: Json.ParseError) {
            bad("manifest.json is not valid JSON (${e.message})")
        }
        val m = root as? Map<*, *> ?: bad("manifest.json must be a JSON object")
        val version = (m["version"] as? Long)?.toInt() ?: bad("manifest.json: version must be an integer")
        if (version > SUPPORTED_VERSION) bad("manifest version $version is newer than this app understands ($SUPPORTED_VERSION): update the app")
        if (version != SUPPORTED_VERSION) bad("manifest version $version is not one this app reads ($SUPPORTED_VERSION): re-export the bundle")
        if (m["byte_order"] != "little") bad("manifest.json: byte_order must be \"little\", got ${J.describe(m["byte_order"])}")
        if (m["embed_dim"] != cfg.embedDim.toLong()) {
            bad("manifest.json: embed_dim ${J.describe(m["embed_dim"])} differs from config.json's ${cfg.embedDim}")
        }
        if (m["output_normalized"] != cfg.outputNormalized) {
            bad("manifest.json: output_normalized ${J.describe(m["output_normalized"])} differs from config.json's ${cfg.outputNormalized}")
        }
        // R3: the tolerance is the precision tier's, in this code; the manifest's numbers are informational only
        val precision = m["precision"] as? String ?: bad("manifest.json: precision must be a string")
        if (precision != cfg.precision) bad("manifest.json: precision \"$precision\" differs from config.json's \"${cfg.precision}\"")
        val tier = try { BundleRules.tierOf(precision, "manifest.json") } catch (x: BundleException) { bad(x.message ?: "unknown precision") }
        val tolerance = BundleRules.TOLERANCES.getValue(tier)
        val towers = m["towers"] as? Map<*, *> ?: bad("manifest.json: towers is missing")
        for (k in towers.keys) if (k != "image" && k != "text") bad("manifest.json: unknown tower \"$k\"")
        val plans = ArrayList<TowerPlan>()
        for ((name, has) in listOf("image" to cfg.hasImage, "text" to cfg.hasText)) {
            val t = towers[name]
            if (t == null) {
                if (has) bad("manifest.json has no $name vectors, but the bundle has a $name model")
                continue
            }
            if (!has) bad("manifest.json has $name vectors, but the bundle has no $name model")
            val tm = t as? Map<*, *> ?: bad("manifest.json: towers.$name must be a JSON object")
            val inputs = if (name == "image") arrayFile(tm["inputs"], "towers.image.inputs", "uint8", 4)
            else arrayFile(tm["inputs"], "towers.text.inputs", "int32", 2)
            val expected = arrayFile(tm["expected"], "towers.$name.expected", "float32", 2)
            val rows = inputs.shape[0]
            if (rows > BundleRules.MAX_ROWS) bad("$name inputs hold $rows rows (at most ${BundleRules.MAX_ROWS})")
            if (name == "image") {
                val s = inputs.shape
                if (s[1] != cfg.resolution || s[2] != cfg.resolution || s[3] != 3) {
                    bad("image inputs shape ${s.toList()} is not [N, ${cfg.resolution}, ${cfg.resolution}, 3] (the bundle's resolution)")
                }
                val layout = (tm["inputs"] as Map<*, *>)["layout"]
                if (layout != null && layout != "NHWC RGB") bad("image inputs layout ${J.describe(layout)} is not \"NHWC RGB\"")
            } else if (inputs.shape[1] != cfg.contextLength) {
                bad("text inputs shape ${inputs.shape.toList()} is not [M, ${cfg.contextLength}] (the bundle's context length)")
            }
            if (expected.shape[0] != rows || expected.shape[1] != cfg.embedDim) {
                bad("$name expected shape ${expected.shape.toList()} is not [$rows, ${cfg.embedDim}]")
            }
            val probe = tm["probe_rows"]
            if (probe != null && (probe !is List<*> || probe.size != rows)) bad("manifest.json: towers.$name.probe_rows must list $rows rows")
            val texts = tm["texts"]
            if (name == "text" && texts != null && (texts !is List<*> || texts.size != rows)) {
                bad("manifest.json: towers.text.texts must list $rows strings")
            }
            // an `auto` bundle's tower names its own precision: its tier's tolerance (still from this code)
            val own = tm["precision"]
            val towerTol = if (own == null) tolerance else {
                val t2 = try { BundleRules.tierOf(own as? String, "manifest.json towers.$name") } catch (x: BundleException) { bad(x.message ?: "unknown precision") }
                BundleRules.TOLERANCES.getValue(t2)
            }
            plans.add(TowerPlan(name, inputs, expected, rows, (texts as? List<*>)?.map { it.toString() }, towerTol))
        }
        if (plans.isEmpty()) bad("manifest.json lists no tower")
        return Plan(version, precision, tier, tolerance, plans)
    }

    private fun hex(bytes: ByteArray): String {
        val md = java.security.MessageDigest.getInstance("SHA-256").digest(bytes)
        val sb = StringBuilder()
        for (b in md) sb.append(String.format("%02x", b))
        return sb.toString()
    }

    /** A raw file checked against its manifest entry (size) and, when config.json lists it, its sha256. */
    private fun load(read: (String) -> ByteArray?, f: ArrayFile, files: Map<String, String>): ByteArray {
        val bytes = read(f.file) ?: bad("${f.file} is missing")
        if (bytes.size != f.bytes) bad("${f.file} holds ${bytes.size} bytes, expected ${f.bytes} (${f.dtype} ${f.shape.toList()})")
        val sha = files[f.file]
        if (!sha.isNullOrEmpty() && sha != hex(bytes)) bad("${f.file} is damaged (sha256 differs from config.json)")
        return bytes
    }

    private fun le32(b: ByteArray, i: Int): Int =
        (b[i].toInt() and 0xFF) or ((b[i + 1].toInt() and 0xFF) shl 8) or ((b[i + 2].toInt() and 0xFF) shl 16) or (b[i + 3].toInt() shl 24)

    /** validate.compare: float64, std over all expected values (population). */
    fun compare(tower: String, got: FloatArray, expected: FloatArray, rows: Int, d: Int, tol: Map<String, Double>, seconds: Double): TowerCheck {
        var maxAbs = 0.0
        var sum = 0.0
        var finite = true
        val cos = DoubleArray(rows)
        for (r in 0 until rows) {
            var dot = 0.0
            var na = 0.0
            var nb = 0.0
            for (j in 0 until d) {
                val a = got[r * d + j].toDouble()
                val b = expected[r * d + j].toDouble()
                if (a.isNaN() || a.isInfinite()) finite = false
                dot += a * b; na += a * a; nb += b * b
                maxAbs = Math.max(maxAbs, Math.abs(a - b))
                sum += b
            }
            cos[r] = dot / Math.max(Math.sqrt(na) * Math.sqrt(nb), 1e-30)
        }
        val mean = sum / (rows * d)
        var ss = 0.0
        for (v in expected) ss += (v - mean) * (v - mean)
        val std = Math.sqrt(ss / (rows * d))
        val failures = ArrayList<String>()
        val c = TowerCheck(tower, rows, cos, maxAbs, std, finite, failures, seconds)
        if (!finite) failures.add("non-finite outputs")
        if (!(c.cosineMin >= tol.getValue("cosine_min"))) failures.add("cosine min ${String.format(java.util.Locale.ROOT, "%.7f", c.cosineMin)} < ${tol["cosine_min"]}")
        val k = tol["max_abs_over_std"]
        if (k != null && !(c.maxAbsOverStd <= k)) {
            failures.add("max-abs ${String.format(java.util.Locale.ROOT, "%.3e = %.2e", maxAbs, c.maxAbsOverStd)} x std > $k x std")
        }
        return c
    }

    /**
     * Run the vectors. [read] returns a bundle file's bytes (path relative to the bundle) or null when it does
     * not exist; [runImage] takes one R x R crop (what the model sees) and returns the embedding -- the app
     * turns it into its model input exactly as for a photo; [runText] takes one token row.
     */
    fun run(cfg: BundleConfig, read: (String) -> ByteArray?, runImage: (CroppedImage) -> FloatArray,
            runText: (IntArray) -> FloatArray, clockNs: () -> Long = { System.nanoTime() }): VerifyReport {
        return try {
            val manifest = read(MANIFEST) ?: return VerifyReport.absent()
            val plan = parseManifest(String(manifest, Charsets.UTF_8), cfg)
            val d = cfg.embedDim
            val checks = ArrayList<TowerCheck>()
            for (t in plan.towers) {
                val inputs = load(read, t.inputs, cfg.fileSha256)
                val expBytes = load(read, t.expected, cfg.fileSha256)
                val expected = FloatArray(t.rows * d) { java.lang.Float.intBitsToFloat(le32(expBytes, it * 4)) }
                if (expected.any { it.isNaN() || it.isInfinite() }) bad("${t.expected.file} holds NaN or infinite values: the vectors are damaged")
                val got = FloatArray(t.rows * d)
                val t0 = clockNs()
                for (r in 0 until t.rows) {
                    val out = if (t.tower == "image") {
                        val n = cfg.resolution * cfg.resolution * 3
                        runImage(CroppedImage(cfg.resolution, inputs.copyOfRange(r * n, (r + 1) * n)))
                    } else {
                        val l = cfg.contextLength
                        runText(IntArray(l) { le32(inputs, (r * l + it) * 4) })
                    }
                    if (out.size != d) bad("the ${t.tower} model returned ${out.size} values, expected $d")
                    System.arraycopy(out, 0, got, r * d, d)
                }
                checks.add(compare(t.tower, got, expected, t.rows, d, t.tolerance, (clockNs() - t0) / 1e9))
            }
            val ok = checks.all { it.passed }
            VerifyReport(if (ok) "passed" else "failed", null, plan.version, plan.precision, plan.tier, plan.tolerance, checks)
        } catch (e: VerifyException) {
            VerifyReport.error(e.message ?: "verify/: unreadable")
        }
    }
}
