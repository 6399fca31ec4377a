package com.mc2export.shared

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Assume.assumeTrue
import org.junit.Test
import java.io.File

/**
 * The verify/ reader and checker against a bundle folder written by Python per docs/bundle.md
 * (examples/shared/fixtures/verify-bundle, written by tests/app_fixtures.py; -Dmc2.verify=DIR for another). Its "models" are fixed linear maps (the .f32 files of fake_model/; the
 * expected rows are W @ input computed in Python), so the test checks what the app does to the vectors before
 * a model sees them: NHWC bytes -> the app's own CHW float conversion, little-endian token rows.
 */
class VerifyTest {
    private val dir: File? = (System.getProperty("mc2.verify") ?: System.getenv("MC2_VERIFY"))?.let { File(it) }
        ?: File(Vectors.dir.parentFile, "fixtures/verify-bundle")

    private fun f32(f: File): FloatArray {
        val b = f.readBytes()
        return FloatArray(b.size / 4) { i ->
            java.lang.Float.intBitsToFloat((b[i * 4].toInt() and 0xFF) or ((b[i * 4 + 1].toInt() and 0xFF) shl 8) or
                ((b[i * 4 + 2].toInt() and 0xFF) shl 16) or (b[i * 4 + 3].toInt() shl 24))
        }
    }

    private class Fixture(val cfg: BundleConfig, val files: MutableMap<String, ByteArray>, val wImg: FloatArray, val wTxt: FloatArray)

    private fun fixture(): Fixture {
        val d = dir
        assumeTrue("no verify fixture (python tests/app_fixtures.py writes it)", d != null && File(d, "config.json").isFile)
        val cfg = BundleRules.loadConfig(d!!, "onnx")
        val files = LinkedHashMap<String, ByteArray>()
        File(d, "verify").listFiles()!!.forEach { files["verify/${it.name}"] = it.readBytes() }
        return Fixture(cfg, files, f32(File(d, "fake_model/image_w.f32")), f32(File(d, "fake_model/text_w.f32")))
    }

    private fun linear(w: FloatArray, x: DoubleArray, d: Int): FloatArray =
        FloatArray(d) { j -> var s = 0.0; for (k in x.indices) s += w[j * x.size + k] * x[k]; s.toFloat() }

    /** Run with the fake models; [perturbTextRow]: that text row's embedding is moved (a model that disagrees). */
    private fun run(f: Fixture, files: Map<String, ByteArray> = f.files, cfg: BundleConfig = f.cfg,
                    perturbTextRow: Int = -1): VerifyReport {
        var textCalls = 0
        return VerifyVectors.run(cfg, { files[it] },
            runImage = { crop -> linear(f.wImg, Preprocess.toUnitChw(crop).map { it.toDouble() }.toDoubleArray(), cfg.embedDim) },
            runText = { row ->
                val e = linear(f.wTxt, DoubleArray(row.size) { row[it].toDouble() }, cfg.embedDim)
                if (textCalls++ == perturbTextRow) for (i in e.indices) if (i % 2 == 0) e[i] += 0.3f * Math.abs(e[i])
                e
            })
    }

    private fun manifest(f: Fixture, edit: (MutableMap<String, Any?>) -> Unit): Map<String, ByteArray> {
        @Suppress("UNCHECKED_CAST")
        val m = Json.parse(String(f.files.getValue(VerifyVectors.MANIFEST), Charsets.UTF_8)) as MutableMap<String, Any?>
        edit(m)
        return f.files + (VerifyVectors.MANIFEST to Json.write(m).toByteArray(Charsets.UTF_8))
    }

    @Suppress("UNCHECKED_CAST")
    private fun MutableMap<String, Any?>.at(vararg path: String): MutableMap<String, Any?> =
        path.fold(this) { m, k -> m[k] as MutableMap<String, Any?> }

    @Test
    fun vectorsPassWithTheirFiguresAndGoIntoTheBenchmarkDocument() {
        val f = fixture()
        val r = run(f)
        assertEquals(r.lines().joinToString("\n"), "passed", r.status)
        assertEquals(listOf("image", "text"), r.towers.map { it.tower })
        for (t in r.towers) {
            assertTrue(t.cosineMin > 0.9999999)
            assertTrue(t.maxAbsOverStd < 1e-5)
        }
        assertEquals(2, r.towers[0].rows)
        assertEquals(3, r.towers[1].rows)
        val lines = r.lines()
        assertTrue(lines[0], lines[0].startsWith("Verification vectors: PASSED (tier fp32: cosine >= 0.99999, max-abs <= 1.0E-4 x std)"))
        assertTrue(lines[1], lines[1].matches(Regex("image: 2 rows, cosine min 1\\.0000000, max-abs .* x std: PASS")))
        val m = r.toMap()
        assertEquals(true, m["passed"])
        @Suppress("UNCHECKED_CAST")
        val towers = m["towers"] as Map<String, Map<String, Any?>>
        assertEquals(3, towers.getValue("text")["rows"])
        // the figures travel with the timings (schema-checked in tests/test_kotlin_shared.py)
        println("verify-report: " + Json.write(m, pretty = false))
    }

    @Test
    fun aModelThatDisagreesFailsNamingTheTowerAndFigures() {
        val f = fixture()
        val r = run(f, perturbTextRow = 1)  // the second text row's embedding is moved
        assertEquals("failed", r.status)
        val text = r.lines().joinToString("\n")
        assertTrue(text, text.contains("Verification vectors: FAILED"))
        assertTrue(text, text.contains("image: 2 rows") && text.contains(": PASS"))
        assertTrue(text, Regex("text: 3 rows, cosine min 0\\.9\\d+, .*FAIL - cosine min 0\\.9\\d+ < 0\\.99999").containsMatchIn(text))
    }

    @Test
    fun malformedVectorsGiveOneClearError() {
        val f = fixture()
        val cases = linkedMapOf<String, Pair<Map<String, ByteArray>, String>>(
            "big endian" to (manifest(f) { it["byte_order"] = "big" } to "byte_order must be \"little\""),
            "newer" to (manifest(f) { it["version"] = 2L } to "manifest version 2 is newer than this app understands"),
            "shape" to (manifest(f) { it.at("towers", "image", "inputs")["shape"] = listOf(2L, 8L, 8L, 3L) } to "is not [N, 16, 16, 3]"),
            "dtype" to (manifest(f) { it.at("towers", "text", "inputs")["dtype"] = "int64" } to "towers.text.inputs.dtype must be \"int32\""),
            "outside" to (manifest(f) { it.at("towers", "text", "inputs")["file"] = "../config.json" } to "must be a path inside verify/"),
            "dim" to (manifest(f) { it["embed_dim"] = 4L } to "embed_dim 4 differs from config.json's 8"),
            "older" to (manifest(f) { it["version"] = 0L } to "manifest version 0 is not one this app reads"),
            "precision" to (manifest(f) { it["precision"] = "int8" } to "precision \"int8\" differs from config.json's \"fp32\""),
            "tower precision" to (manifest(f) { it.at("towers", "image")["precision"] = "fp64" } to "precision \"fp64\" is not one this app knows"),
            "absolute" to (manifest(f) { it.at("towers", "image", "expected")["file"] = "/etc/passwd" } to "must be a path inside verify/"),
            "climbs" to (manifest(f) { it.at("towers", "image", "expected")["file"] = "verify/../config.json" } to "must be a path inside verify/"),
            "rows" to (manifest(f) { it.at("towers", "text", "inputs")["shape"] = listOf(20000L, 77L) } to "text inputs hold 20000 rows (at most 10000)"),
            "expected rows" to (manifest(f) { it.at("towers", "text", "expected")["shape"] = listOf(2L, 8L) } to "text expected shape [2, 8] is not [3, 8]"),
            "not json" to (f.files + (VerifyVectors.MANIFEST to "{".toByteArray()) to "manifest.json is not valid JSON"),
            "size" to (f.files + ("verify/image_expected.f32" to f.files.getValue("verify/image_expected.f32").copyOf(60)) to
                "image_expected.f32 holds 60 bytes, expected 64"),
            "missing" to (f.files - "verify/text_tokens.i32" to "verify/text_tokens.i32 is missing"),
            "checksum" to (f.files + ("verify/image_inputs.u8" to f.files.getValue("verify/image_inputs.u8").copyOf().also { it[5] = (it[5] + 1).toByte() })
                to "image_inputs.u8 is damaged (sha256 differs from config.json)")
        )
        for ((name, case) in cases) {
            val r = run(f, case.first)
            assertEquals(name, "error", r.status)
            val line = r.lines().single()
            assertTrue("$name: $line", line.startsWith("Verification vectors: ERROR - verify/: ") && line.contains(case.second))
        }
        val absent = run(f, f.files.filterKeys { it != VerifyVectors.MANIFEST })
        assertEquals("absent", absent.status)
        assertEquals(null, absent.toMap()["passed"])
    }

    @Test
    fun towersMustMatchTheBundle() {
        val f = fixture()
        @Suppress("UNCHECKED_CAST")
        val c = Json.parse(File(dir, "config.json").readText(Charsets.UTF_8)) as MutableMap<String, Any?>
        @Suppress("UNCHECKED_CAST")
        (c["models"] as MutableMap<String, Any?>).remove("text")
        val imageOnly = BundleConfig.parse(Json.write(c), "onnx")
        val r = run(f, cfg = imageOnly)
        assertEquals("error", r.status)
        assertTrue(r.message!!, r.message!!.contains("manifest.json has text vectors, but the bundle has no text model"))
    }

    @Suppress("UNCHECKED_CAST")
    private fun configMap(): MutableMap<String, Any?> = Json.parse(File(dir, "config.json").readText(Charsets.UTF_8)) as MutableMap<String, Any?>

    @Test
    fun toleranceComesFromTheTierNotTheManifestAndExpectedValuesMustBeFinite() {
        val f = fixture()
        var textCalls = 0
        val loose = manifest(f) { it["tolerance"] = linkedMapOf("cosine_min" to -1.0, "max_abs_over_std" to 1e9) }
        val r = VerifyVectors.run(f.cfg, { loose[it] }, runImage = { FloatArray(f.cfg.embedDim) { 1f } },
            runText = { FloatArray(f.cfg.embedDim) { i -> if (textCalls++ >= 0 && i % 2 == 0) 1f else -1f } })
        assertEquals("failed", r.status)  // unrelated outputs fail at the fp32 tier's 0.99999, whatever the file says
        assertTrue(r.lines()[0], r.lines()[0].contains("tier fp32: cosine >= 0.99999"))
        // NaN in the expected rows (with a matching checksum): refused, not compared
        val nan = f.files.getValue("verify/text_expected.f32").copyOf().also { it[2] = 0xC0.toByte(); it[3] = 0x7F }
        val c = configMap()
        @Suppress("UNCHECKED_CAST")
        ((c["files"] as MutableMap<String, Any?>)["verify/text_expected.f32"] as MutableMap<String, Any?>)["sha256"] = BundleRules.sha256Hex(nan)
        val r2 = run(f, f.files + ("verify/text_expected.f32" to nan), cfg = BundleConfig.parse(Json.write(c), "onnx"))
        assertEquals("error", r2.status)
        assertTrue(r2.message!!, r2.message!!.contains("text_expected.f32 holds NaN or infinite values"))
    }

    /** A copy of the fixture bundle whose config.json is [edit]ed and re-sealed (config.json.sha256 rewritten). */
    private fun copyBundle(edit: (MutableMap<String, Any?>) -> Unit = {}, seal: Boolean = true): File {
        val d = java.nio.file.Files.createTempDirectory("mc2-rules").toFile()
        File(dir, "verify").copyRecursively(File(d, "verify"))
        val c = configMap()
        edit(c)
        val bytes = Json.write(c).toByteArray(Charsets.UTF_8)
        File(d, "config.json").writeBytes(bytes)
        if (seal) File(d, "config.json.sha256").writeText("${BundleRules.sha256Hex(bytes)}  config.json\n")
        return d
    }

    private fun refused(d: File, fragment: String) {
        try {
            BundleRules.loadConfig(d, "onnx")
            fail("expected a refusal: $fragment")
        } catch (e: BundleException) {
            assertTrue(e.message!!, e.message!!.contains(fragment) && !e.message!!.contains("\n"))
        }
    }

    @Test
    fun bundleFolderReadingRules() {
        assumeTrue(dir != null)
        val ok = copyBundle()
        assertEquals("fp32", BundleRules.loadConfig(ok, "onnx").tier)
        File(ok, "config.json").appendText(" ")  // R1: edited after export
        refused(ok, "config.json does not match config.json.sha256")
        refused(copyBundle(seal = false), "config.json does not match config.json.sha256")
        refused(copyBundle({ it["bundle_version"] = 1L }), "bundle_version 1: written by an older mc2export")
        refused(copyBundle({ it["bundle_version"] = 3L }), "newer than this app understands")
        refused(copyBundle({ it["precision"] = "fp8" }), "precision \"fp8\" is not one this app knows")
        @Suppress("UNCHECKED_CAST")
        fun models(c: MutableMap<String, Any?>) = c["models"] as MutableMap<String, MutableMap<String, Any?>>
        refused(copyBundle({ models(it).getValue("image")["file"] = "../image.onnx" }), "has an empty, '.' or '..' component")
        refused(copyBundle({ models(it).getValue("image")["file"] = "/tmp/image.onnx" }), "is not a relative POSIX path")
        refused(copyBundle({ (it["tokenizer"] as MutableMap<String, Any?>)["vocab"] = "a\\..\\vocab.json" }), "is not a relative POSIX path")
        refused(copyBundle({ it["embed_dim"] = 100000L }), "embed_dim 100000 is outside 1..8192")
        // R2: a symlink inside the bundle that leads out of it
        val link = copyBundle({ models(it).getValue("image")["file"] = "image.onnx" })
        java.nio.file.Files.createSymbolicLink(File(link, "image.onnx").toPath(), File("/etc/hostname").toPath())
        refused(link, "leaves the bundle folder (a symlink out of it)")
        // R5: JSON that is too deep or has an overflowing number: one clean line, no StackOverflowError
        val deep = copyBundle()
        File(deep, "config.json").writeText("[".repeat(100000))
        refused(deep, "nested deeper than")
        val huge = copyBundle()
        File(huge, "config.json").writeText(File(huge, "config.json").readText().replace("\"logit_scale\": 100.0", "\"logit_scale\": 1e999"))
        refused(huge, "out of range")
        // R6: the names a runtime reports must be config.json's
        BundleRules.checkNames("image", "inputs", listOf("image"), listOf("image"))
        BundleRules.checkNames("image", "inputs", null, listOf("anything"))  // not listed: nothing to compare
        try {
            BundleRules.checkNames("text", "outputs", listOf("embedding"), listOf("logits"))
            fail("expected a refusal")
        } catch (e: BundleException) {
            assertTrue(e.message!!, e.message!!.contains("the text model's outputs are [logits], but config.json says [embedding]"))
        }
    }
}
