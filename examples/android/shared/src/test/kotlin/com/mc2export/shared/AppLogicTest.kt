package com.mc2export.shared

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.ByteArrayInputStream
import java.io.ByteArrayOutputStream

/** Bundle config parsing, label parsing, prompts, zero-shot math, the photo index and the bench report. */
class AppLogicTest {
    /** A config.json as `mc2export executorch --variant s0` writes it (trimmed to what matters). */
    private fun config(runtime: String = "executorch", ext: String = ".pte", edit: (MutableMap<String, Any?>) -> Unit = {}): String {
        val imageInput: Map<String, Any?> = if (runtime == "coreml")
            linkedMapOf("name" to "image", "type" to "ImageType", "color" to "RGB", "width" to 256, "height" to 256)
        else linkedMapOf("name" to "image", "dtype" to "float32", "shape" to listOf(1, 3, 256, 256), "range" to listOf(0.0, 1.0),
            "normalization" to "none needed (mean 0, std 1)")
        val c = linkedMapOf<String, Any?>(
            "format" to "mc2export-bundle", "bundle_version" to 2, "runtime" to runtime,
            "variant" to "mobileclip2-s0", "name" to "MobileCLIP2-S0", "precision" to "fp32", "batch" to 1, "resolution" to 256,
            "preprocess" to linkedMapOf("resolution" to 256, "resize" to "shortest", "crop" to "center",
                "interpolation" to "bilinear", "mean" to listOf(0.0, 0.0, 0.0), "std" to listOf(1.0, 1.0, 1.0)),
            "tokenizer" to linkedMapOf("vocab" to "vocab.json", "merges" to "merges.txt", "context_length" to 77),
            "context_length" to 77, "embed_dim" to 512, "logit_scale" to 100.0, "output_normalized" to true,
            "models" to linkedMapOf(
                "image" to linkedMapOf("file" to "image$ext", "input" to imageInput),
                "text" to linkedMapOf("file" to "text$ext")),
            "weights" to linkedMapOf("source" to "checkpoint", "random_weights" to false),
            "versions" to linkedMapOf("mc2export" to "0.1.0", "executorch" to "1.4.1"),
            "files" to linkedMapOf("image$ext" to linkedMapOf("sha256" to "ab".repeat(32), "bytes" to 1))
        )
        edit(c)
        return Json.write(c)
    }

    private fun expectError(text: String, runtime: String?, vararg fragments: String) {
        try {
            BundleConfig.parse(text, runtime)
            fail("expected a BundleException")
        } catch (e: BundleException) {
            for (f in fragments) assertTrue("'${e.message}' lacks '$f'", e.message!!.contains(f))
        }
    }

    @Test
    fun parsesAnExecuTorchBundle() {
        val c = BundleConfig.parse(config(), "executorch")
        assertEquals("mobileclip2-s0", c.variant)
        assertEquals(256, c.resolution)
        assertEquals(Interpolation.BILINEAR, c.interpolation)
        assertEquals(77, c.contextLength)
        assertEquals(512, c.embedDim)
        assertEquals(100f, c.logitScale, 0f)
        assertEquals("image.pte", c.imageModelFile)
        assertEquals("text.pte", c.textModelFile)
        assertEquals(ImageInputKind.UNIT_NCHW, c.imageInput)
        assertEquals("1.4.1", c.versions["executorch"])
        assertEquals(listOf("text.pte", "merges.txt"), c.missingFiles { it == "image.pte" || it == "vocab.json" })
        assertTrue(c.summary().contains("MobileCLIP2-S0"))
    }

    @Test
    fun parsesALiteRtBundleForTheLiteRtFlavor() {
        val c = BundleConfig.parse(config("litert", ".tflite"), "litert")
        assertEquals("image.tflite", c.imageModelFile)
        assertEquals("text.tflite", c.textModelFile)
        expectError(config("litert", ".tflite"), "onnx", "mc2export onnx")
        expectError(config(), "litert", "mc2export litert", ".tflite")
    }

    @Test
    fun parsesCoreMlAndOpenAiNormalization() {
        val c = BundleConfig.parse(config("coreml", ".mlpackage") { m ->
            @Suppress("UNCHECKED_CAST")
            val pre = m["preprocess"] as MutableMap<String, Any?>
            pre["interpolation"] = "bicubic"
            pre["resolution"] = 224
            pre["mean"] = listOf(0.48145466, 0.4578275, 0.40821073)
            pre["std"] = listOf(0.26862954, 0.26130258, 0.27577711)
            m["logit_scale"] = null
        }, "coreml")
        assertEquals(ImageInputKind.PIXEL_BUFFER, c.imageInput)
        assertEquals(Interpolation.BICUBIC, c.interpolation)
        assertEquals(224, c.resolution)
        assertEquals(0.48145466f, c.mean[0], 0f)
        assertEquals(100f, c.logitScale, 0f)
        assertFalse(c.logitScaleFromBundle)
    }

    @Test
    fun clearErrorsForBadBundles() {
        expectError("{ not json", "executorch", "not valid JSON")
        expectError("{\"format\": \"something-else\"}", "executorch", "not an mc2export bundle")
        expectError(config("coreml", ".mlpackage"), "executorch", "this app runs executorch bundles", "coreml bundle",
            "mc2export executorch")
        expectError(config("onnx", ".onnx"), "executorch", "onnx bundle")
        expectError(config(ext = ".onnx"), "executorch", "is not a .pte model")
        expectError(config { it["batch"] = 4 }, "executorch", "--batch 1")
        expectError(config { it.remove("preprocess") }, "executorch", "preprocess is missing")
        expectError(config { it["bundle_version"] = 9 }, "executorch", "update the app")
        expectError(config { it["embed_dim"] = "big" }, "executorch", "embed_dim must be an integer")
        expectError(config { m ->
            @Suppress("UNCHECKED_CAST")
            (m["preprocess"] as MutableMap<String, Any?>)["interpolation"] = "lanczos"
        }, "executorch", "lanczos")
        expectError(config { m ->
            @Suppress("UNCHECKED_CAST")
            (m["preprocess"] as MutableMap<String, Any?>)["std"] = listOf(1.0, 0.0, 1.0)
        }, "executorch", "std must not contain 0")
        expectError(config { it["models"] = linkedMapOf<String, Any?>() }, "executorch", "neither an image nor a text model")
        expectError(config { it["output_normalized"] = "yes" }, "executorch", "output_normalized must be true or false")
        expectError(config { it["logit_scale"] = "100" }, "executorch", "logit_scale must be a number")
        expectError(config { it["logit_scale"] = -1.0 }, "executorch", "logit_scale must be a positive number")
        expectError(config { it["embed_dim"] = 0L }, "executorch", "embed_dim 0 is outside 1..8192")
        expectError(config { it["embed_dim"] = true }, "executorch", "embed_dim must be an integer")
        expectError(config { m ->
            @Suppress("UNCHECKED_CAST")
            (m["weights"] as MutableMap<String, Any?>)["random_weights"] = "no"
        }, "executorch", "random_weights must be true or false")
        // interpolation names: PIL's constant names (upper case) and surrounding spaces are accepted, as in Swift
        val upper = BundleConfig.parse(config { m ->
            @Suppress("UNCHECKED_CAST")
            (m["preprocess"] as MutableMap<String, Any?>)["interpolation"] = " BICUBIC"
        }, "executorch")
        assertEquals(Interpolation.BICUBIC, upper.interpolation)
    }

    @Test
    fun frameGateDropsFramesWhileAPredictionRuns() {
        val g = FrameGate()
        assertTrue(g.tryAcquire())
        assertFalse(g.tryAcquire())
        assertFalse(g.tryAcquire())
        g.release()
        assertTrue(g.tryAcquire())
        g.release()
        assertEquals(2L, g.accepted)
        assertEquals(2L, g.dropped)
        try {
            g.release()
            fail("expected an error")
        } catch (e: IllegalStateException) {
            assertTrue(e.message!!.contains("without a frame taken"))
        }
        // a camera thread offering 30 frames while a slow "model" thread works: never more than one in flight,
        // most frames dropped, none queued
        val gate = FrameGate()
        val inFlight = java.util.concurrent.atomic.AtomicInteger(0)
        val maxInFlight = java.util.concurrent.atomic.AtomicInteger(0)
        val worker = java.util.concurrent.Executors.newSingleThreadExecutor()
        for (frame in 0 until 30) {
            if (gate.tryAcquire()) {
                worker.execute {
                    maxInFlight.set(Math.max(maxInFlight.get(), inFlight.incrementAndGet()))
                    Thread.sleep(20)
                    inFlight.decrementAndGet()
                    gate.release()
                }
            }
            Thread.sleep(2)
        }
        worker.shutdown()
        assertTrue(worker.awaitTermination(10, java.util.concurrent.TimeUnit.SECONDS))
        assertEquals(1, maxInFlight.get())
        assertEquals(30L, gate.accepted + gate.dropped)
        assertTrue("${gate.accepted} accepted", gate.accepted in 2L..10L)
    }

    @Test
    fun decodePlanBoundsHugePhotos() {
        assertEquals(1, DecodePlan.sampleSize(4032, 3024, 256))            // 12 MP: full size, Python's pixels
        assertEquals(2, DecodePlan.sampleSize(8000, 6000, 256))            // 48 MP -> 12 MP
        assertEquals(4, DecodePlan.sampleSize(12000, 9000, 256))           // 108 MP -> 6.75 MP
        assertEquals(1, DecodePlan.sampleSize(20000, 300, 256))            // panorama: the short side rules
        assertEquals(2, DecodePlan.sampleSize(8000, 6000, 256, maxPixels = 20_000_000L))
        assertEquals(4, DecodePlan.afterOutOfMemory(2, 8000, 6000, 256))
        assertEquals(0, DecodePlan.afterOutOfMemory(16, 8000, 6000, 256))  // 375 px short side: no smaller sample
        val img = RgbImage(5, 3, IntArray(15) { (0xFF shl 24) or (it * 10 shl 16) or (it shl 8) or 7 })
        val box = DecodePlan.subsampleBox(img, 2)
        assertEquals(3, box.width)
        assertEquals(2, box.height)
        assertEquals(((0 + 10 + 50 + 60 + 2) / 4), (box.pixels[0] shr 16) and 0xFF)
        val near = DecodePlan.subsampleNearest(img, 2)
        assertEquals(2, near.width)
        assertEquals(img.pixels[1 * 5 + 1], near.pixels[0])
    }

    @Test
    fun imageOnlyBundleIsUsableForIndexingOnly() {
        val c = BundleConfig.parse(config { m ->
            @Suppress("UNCHECKED_CAST")
            (m["models"] as MutableMap<String, Any?>).remove("text")
            m["tokenizer"] = null
        }, "executorch")
        assertTrue(c.hasImage)
        assertFalse(c.hasText)
        assertEquals(listOf<String>(), c.missingFiles { true })
    }

    @Test
    fun labelParsing() {
        assertEquals(listOf("cat", "dog", "red car"), ZeroShot.parseLabels(" cat, dog ,\n red   car ,, ").labels)
        val empty = ZeroShot.parseLabels(" , \n ")
        assertTrue(empty.labels.isEmpty())
        assertNotNull(empty.error)
        assertTrue(ZeroShot.parseLabels("").error!!.contains("at least one label"))
        assertTrue(ZeroShot.parseLabels("cat, dog, cat").error!!.contains("appears twice"))
        assertNull(ZeroShot.parseLabels("cat").error)
    }

    @Test
    fun longLabelsAreTruncatedAndReported() {
        val tok = Vectors.tokenizer
        val long = (1..100).joinToString(" ") { "word$it" }
        val set = ZeroShot.prompts(listOf("cat", long), ZeroShot.SIMPLE_TEMPLATES, tok)
        assertEquals(14, set.prompts.size)
        assertEquals(7, set.truncated.size)
        for (p in set.truncated) {
            assertEquals(77, p.tokens.row.size)
            assertEquals(ClipTokenizer.EOT, p.tokens.row[76])
        }
        assertTrue(set.warning(77)!!.contains("7 prompt(s) longer than 77 tokens were truncated"))
        assertNull(ZeroShot.prompts(listOf("cat"), ZeroShot.SIMPLE_TEMPLATES, tok).warning(77))
    }

    @Test
    fun zeroShotMath() {
        val a = floatArrayOf(1f, 0f, 0f)
        val b = floatArrayOf(0f, 2f, 0f)
        val cls = ZeroShot.classEmbedding(listOf(floatArrayOf(3f, 0f, 0f), floatArrayOf(0f, 0f, 1f)))
        assertEquals(0.70710677f, cls[0], 1e-6f)
        assertEquals(0.70710677f, cls[2], 1e-6f)
        val p = ZeroShot.probabilities(floatArrayOf(5f, 0.1f, 0f), listOf(a, ZeroShot.l2normalize(b)), 100f)
        assertEquals(1f, p[0] + p[1], 1e-6f)
        assertTrue(p[0] > 0.99f)
        assertEquals(listOf(2, 0, 1), ZeroShot.topK(floatArrayOf(0.2f, 0.1f, 0.7f), 5).toList())
        assertEquals(listOf(0), ZeroShot.topK(floatArrayOf(0.5f, 0.5f), 1).toList())
    }

    @Test
    fun statisticsMatchTheHarness() {
        // numpy.percentile([...], [50, 90, 99]) of these samples: 5.5, 9.1, 9.91
        val xs = listOf(10.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0)
        val s = BenchStats.summarize(xs)
        assertEquals(5.5, s["p50"] as Double, 1e-12)
        assertEquals(9.1, s["p90"] as Double, 1e-12)
        assertEquals(9.91, s["p99"] as Double, 1e-12)
        assertEquals(5.5, s["mean"] as Double, 1e-12)
        assertEquals(5.5, s["trimmed_mean"] as Double, 1e-12)
        assertEquals(Math.sqrt(82.5 / 9), s["std"] as Double, 1e-12)  // sample std (n-1)
        assertEquals(10, s["count"])
        val one = BenchStats.summarize(listOf(7.0))
        assertEquals(7.0, one["p99"] as Double, 0.0)
        assertEquals(0.0, one["std"] as Double, 0.0)
    }

    /** A fake clock: every call takes 1 ms + i * 0.01 ms, so the protocols are deterministic. */
    private class FakeClock {
        var t = 0L
        var calls = 0
        fun now(): Long = t
        fun call() { t += 1_000_000L + (calls % 7) * 10_000L; calls++ }
    }

    @Test
    fun protocolsFollowTheHarnessRules() {
        val c = FakeClock()
        val quick = BenchStats.runProtocol(BenchMode.get("quick"), { c.now() }) { c.call() }
        assertEquals(3, quick.warmupMs.size)
        assertTrue(quick.samplesMs.size >= 20)
        assertTrue(quick.samplesMs.sum() >= 2000.0 - 2.0)
        val c2 = FakeClock()
        val mb = BenchStats.runProtocol(BenchMode.get("modelbench"), { c2.now() }) { c2.call() }
        assertEquals(20, mb.warmupMs.size)
        assertEquals(1000, mb.samplesMs.size)
        assertEquals(List(20) { 50 }, mb.roundSizes)
        val st = BenchStats.summarize(mb.samplesMs, mb.roundSizes, 10, 10)
        assertEquals(20, (st["round_trimmed_means"] as List<*>).size)
        assertEquals(st["round_trimmed_mean"] as Double, BenchStats.headline(st, BenchMode.get("modelbench")), 0.0)
        try {
            BenchMode.get("fast")
            fail("expected an error")
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!.contains("quick"))
        }
    }

    @Test
    fun paperTargetsAreTheCards() {
        var d: java.io.File? = java.io.File(System.getProperty("user.dir")).absoluteFile
        while (d != null && !java.io.File(d, "models/mobileclip2-s0.json").isFile) d = d.parentFile
        if (d == null) return  // not run from the repository
        val cards = java.io.File(d, "models").listFiles { f -> f.name.endsWith(".json") }!!
        assertTrue(cards.size >= 10)
        for (f in cards) {
            val card = J.obj(Json.parse(f.readText(Charsets.UTF_8)), f.name)
            val lat = J.obj(J.obj(card["paper"], "paper")["latency_ms"], "latency_ms")
            val ours = PaperTargets.LATENCY_MS[card["id"] as String] ?: throw AssertionError("no target for ${card["id"]}")
            assertEquals("${card["id"]} image", J.double(lat["image"], "image"), ours[0], 0.0)
            assertEquals("${card["id"]} text", J.double(lat["text"], "text"), ours[1], 0.0)
        }
    }

    @Test
    fun benchDocumentIsTheHarnessSchema() {
        val cfgText = config()
        val cfg = BundleConfig.parse(cfgText, "executorch")
        val mode = BenchMode.get("quick")
        val c = FakeClock()
        val img = BenchStats.runProtocol(mode, { c.now() }) { c.call() }
        val txt = BenchStats.runProtocol(mode, { c.now() }) { c.call(); c.call() }
        val device = linkedMapOf<String, Any?>("kind" to "android", "class" to "Android arm64", "model" to "Pixel 8",
            "soc" to "Tensor G3", "arch" to "arm64-v8a", "cores_logical" to 9, "os" to "Android 15 (API 35)", "memory_gb" to 7.6)
        val check = VerifyVectors.compare("image", floatArrayOf(1f, 0f, 0f, 1f), floatArrayOf(1f, 0f, 0f, 1f), 2, 2,
            mapOf("cosine_min" to 0.99999, "max_abs_over_std" to 1e-4), 0.5)
        val verify = VerifyReport("passed", null, 1, "fp32", "fp32", mapOf("cosine_min" to 0.99999, "max_abs_over_std" to 1e-4),
            listOf(check)).toMap()
        val text = BenchDocument.build("mc2export-android-app", "0.1.0", "2026-01-01T00:00:00Z", cfg, cfgText,
            "/data/local/tmp/mc2export/x/bundle", "executorch", "1.4.1", 4, null, device, mode,
            listOf(TowerResult("image", "image.pte", 120.0, 15.0, 3.0, img, 80.5, "Debug.getPss"),
                TowerResult("text", "text.pte", 90.0, 12.0, 2.0, txt, 95.25, "Debug.getPss")), verify)
        val doc = J.obj(Json.parse(text), "doc")
        assertEquals("mc2export-bench", doc["schema"])
        val r = J.obj(J.list(doc["results"], "results")[0], "result")
        val v = J.obj(r["verdict"], "verdict")
        assertEquals("reference", v["status"])
        assertEquals("none", v["comparable"])
        assertEquals(4.8, J.double(J.obj(r["target"], "target")["total_ms"], "t"), 1e-9)
        assertTrue(v["label"].toString(), v["label"].toString().startsWith("REFERENCE ONLY: image+text p50 "))
        assertEquals(BenchDocument.bundleChecksum(cfgText), J.obj(r["bundle"], "bundle")["checksum"])
        assertEquals(95.25, J.double(J.obj(r["total"], "total")["peak_rss_mb"], "peak"), 0.0)
        val vr = J.obj(r["verify"], "verify")
        assertEquals("passed", vr["status"])
        assertEquals(1.0, J.double(J.obj(J.obj(vr["towers"], "towers")["image"], "image")["cosine_min"], "cos"), 0.0)
        // the Python side validates this document with mc2export.bench.schema (tests/test_kotlin_shared.py)
        val out = System.getProperty("mc2.benchOut")
        if (out != null) java.io.File(out).writeText(text, Charsets.UTF_8)
        // iOS on the paper's phone through Core ML with the Neural Engine: same hardware class
        val ios = linkedMapOf<String, Any?>("kind" to "ios", "class" to "iPhone", "model" to "iPhone13,4", "os" to "iOS 18.1")
        val same = BenchDocument.verdict("mobileclip2-s0", "MobileCLIP2-S0", mapOf("image" to 1.2, "text" to 3.0),
            listOf("image", "text"), ios, "coreml", null, "all", "p50")
        assertEquals("meets", same["status"])
        assertEquals("same", same["comparable"])
        assertEquals("MEETS: image+text p50 4.20 ms vs target 4.8 ms (iPhone 12 Pro Max (A14), Core ML) = 0.9x the target", same["label"])
    }

    @Test
    fun jsonRoundTrip() {
        val v = linkedMapOf<String, Any?>("a" to listOf(1L, 2.5, "x\"y\n\u0001", true, null), "b" to linkedMapOf<String, Any?>())
        assertEquals(v, Json.parse(Json.write(v)))
        assertEquals("\ud83d\udc31", Json.parse("\"\\ud83d\\udc31\""))
        try {
            Json.parse("[1, 2")
            fail("expected an error")
        } catch (e: Json.ParseError) {
            assertTrue(e.message!!.contains("line 1"))
        }
    }
}
