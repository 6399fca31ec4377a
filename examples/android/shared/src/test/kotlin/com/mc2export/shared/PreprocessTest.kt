package com.mc2export.shared

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File
import javax.imageio.ImageIO

class PreprocessTest {
    private val images = Vectors.json("images.json")
    private val imageDir = File(Vectors.dir, "images")

    /** Decode a PNG losslessly (raster samples, no colour management): RGB or RGBA. */
    private fun readPng(f: File): RgbImage {
        val bi = ImageIO.read(f) ?: throw IllegalStateException("cannot decode $f")
        val raster = bi.raster
        val bands = raster.numBands
        require(bands == 3 || bands == 4) { "$f has $bands bands" }
        val w = bi.width
        val h = bi.height
        val s = raster.getPixels(0, 0, w, h, null as IntArray?)
        val px = IntArray(w * h)
        for (i in 0 until w * h) {
            val o = i * bands
            val a = if (bands == 4) s[o + 3] else 255
            px[i] = (a shl 24) or (s[o] shl 16) or (s[o + 1] shl 8) or s[o + 2]
        }
        return RgbImage(w, h, px, bands == 4)
    }

    private fun firstDifference(ours: CroppedImage, expectedPng: File): String {
        val exp = readPng(expectedPng)
        var count = 0
        var first = ""
        for (y in 0 until ours.size) for (x in 0 until ours.size) for (c in 0 until 3) {
            val e = (exp.pixels[y * ours.size + x] shr (16 - 8 * c)) and 0xFF
            val o = ours.u8(c, y, x)
            if (e != o) {
                if (count == 0) first = "first at (c=$c, y=$y, x=$x): expected $e got $o"
                count++
            }
        }
        return "$count bytes differ; $first"
    }

    @Test
    fun preprocessingMatchesPythonByteForByte() {
        val cases = Vectors.objs(images["cases"])
        val failures = ArrayList<String>()
        @Suppress("UNCHECKED_CAST")
        val meanStd = images["mean_std"] as Map<String, Map<String, Any?>>
        for (case in cases) {
            val name = case["image"] as String
            val r = J.int(case["resolution"], "resolution")
            val interp = Interpolation.parse(case["interpolation"] as String)
            val file = File(imageDir, name)
            val bytes = file.readBytes()
            val orientation = ExifOrientation.read(bytes)
            val upright = ExifOrientation.apply(readPng(file), orientation)
            val tag = "$name @ $r ${interp.id}"
            assertEquals("$tag upright size", case["upright_size"], listOf(upright.width.toLong(), upright.height.toLong()))
            val rs = Preprocess.resizedSize(upright.width, upright.height, r)
            assertEquals("$tag resized size", case["resized_size"], listOf(rs[0].toLong(), rs[1].toLong()))
            val origin = Preprocess.cropOrigin(rs[0], rs[1], r)
            assertEquals("$tag crop", case["crop_left_top"], listOf(origin[0].toLong(), origin[1].toLong()))
            val crop = Preprocess.resizeCrop(upright, r, interp)
            if (Vectors.sha256(crop.rgb) != case["u8_hwc_sha256"]) {
                failures.add("$tag: uint8 crop differs: " + firstDifference(crop, File(imageDir, case["crop_png"] as String)))
                continue
            }
            @Suppress("UNCHECKED_CAST")
            val f32 = case["f32_chw_sha256"] as Map<String, String>
            if (Vectors.sha256(Vectors.f32le(Preprocess.toUnitChw(crop))) != f32["unit"]) failures.add("$tag: unit tensor hash")
            for ((setName, ms) in meanStd) {
                val mean = FloatArray(3) { J.double((ms["mean"] as List<*>)[it], "mean").toFloat() }
                val std = FloatArray(3) { J.double((ms["std"] as List<*>)[it], "std").toFloat() }
                val t = Preprocess.toNormalizedChw(crop, mean, std)
                if (Vectors.sha256(Vectors.f32le(t)) != f32[setName]) failures.add("$tag: $setName tensor hash")
                val raw = case["f32_file"] as String?
                if (raw != null && setName == "openai") {
                    val expected = java.nio.ByteBuffer.wrap(File(imageDir, raw).readBytes()).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
                    assertEquals(t.size, expected.remaining())
                    for (i in t.indices) if (t[i] != expected.get(i)) { failures.add("$tag: raw float32 value $i"); break }
                }
            }
        }
        if (failures.isNotEmpty()) fail("${failures.size} of ${cases.size} cases differ:\n" + failures.joinToString("\n"))
        println("PreprocessTest: ${cases.size} (image, resolution, filter) cases match Python byte for byte")
    }

    @Test
    fun normalizationMatchesTorchFloat32() {
        val table = Vectors.json("normalize.json")
        @Suppress("UNCHECKED_CAST")
        val unit = (table["unit"] as Map<String, Any?>)["values"] as List<Any?>
        for (b in 0 until 256) assertEquals("unit $b", J.double(unit[b], "u").toFloat(), b.toFloat() / 255f, 0f)
        for (set in listOf("zero_one", "openai")) {
            @Suppress("UNCHECKED_CAST")
            val t = table[set] as Map<String, Any?>
            val mean = FloatArray(3) { J.double((t["mean"] as List<*>)[it], "mean").toFloat() }
            val std = FloatArray(3) { J.double((t["std"] as List<*>)[it], "std").toFloat() }
            val values = t["values"] as List<*>
            // one 1x1 crop per byte value through the real function
            for (b in 0 until 256) {
                val img = CroppedImage(1, byteArrayOf(b.toByte(), b.toByte(), b.toByte()))
                val out = Preprocess.toNormalizedChw(img, mean, std)
                for (c in 0 until 3) {
                    val exp = J.double((values[c] as List<*>)[b], "v").toFloat()
                    if (exp != out[c]) fail("$set c=$c b=$b: expected $exp got ${out[c]}")
                }
            }
        }
    }

    @Test
    fun exifOrientationsMatchPil() {
        val o = Vectors.json("orientation.json")
        @Suppress("UNCHECKED_CAST")
        val input = o["input"] as Map<String, Any?>
        val size = J.ints(input["size"], "size")
        val px = (input["pixels"] as List<*>).map { J.ints(it, "px") }
        val img = RgbImage(size[0], size[1], IntArray(px.size) { (0xFF shl 24) or (px[it][0] shl 16) or (px[it][1] shl 8) or px[it][2] })
        for (case in Vectors.objs(o["cases"])) {
            val orient = J.int(case["orientation"], "orientation")
            val out = ExifOrientation.apply(img, orient)
            val es = J.ints(case["size"], "size")
            assertEquals("orientation $orient width", es[0], out.width)
            assertEquals("orientation $orient height", es[1], out.height)
            val exp = (case["pixels"] as List<*>).map { J.ints(it, "px") }
            for (i in exp.indices) {
                val p = out.pixels[i]
                assertArrayEquals("orientation $orient pixel $i", exp[i], intArrayOf((p shr 16) and 0xFF, (p shr 8) and 0xFF, p and 0xFF))
            }
        }
        for (f in Vectors.objs(o["files"])) {
            val name = f["file"] as String
            assertEquals("orientation tag of $name", J.int(f["orientation"], "o"), ExifOrientation.read(File(imageDir, name).readBytes()))
        }
        assertEquals(1, ExifOrientation.read(ByteArray(0)))
        assertEquals(1, ExifOrientation.read(byteArrayOf(0xFF.toByte(), 0xD8.toByte(), 0xFF.toByte())))
    }

    @Test
    fun centerCropNeverSquashes() {
        // a 512 x 256 image whose left and right eighths are red: after shortest-side resize to 224
        // (448 x 224) the center crop (x 112..336) keeps only blue, where a squash would keep red.
        val w = 512
        val h = 256
        val px = IntArray(w * h) { val x = it % w; if (x < 64 || x >= 448) 0xFFFF0000.toInt() else 0xFF0000FF.toInt() }
        val crop = Preprocess.resizeCrop(RgbImage(w, h, px), 224, Interpolation.BILINEAR)
        for (y in 0 until 224) for (x in 0 until 224) assertEquals(0, crop.u8(0, y, x))
        assertTrue(crop.u8(2, 100, 100) == 255)
    }

    @Test
    fun badImagesAreRejectedClearly() {
        try {
            RgbImage(0, 10, IntArray(0))
            fail("expected an error")
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!.contains("no pixels"))
        }
        try {
            Interpolation.parse("lanczos")
            fail("expected an error")
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!.contains("not supported"))
        }
    }

    /** mean / max absolute difference and share of differing bytes between two crops of the same size. */
    private fun deviation(a: CroppedImage, b: CroppedImage): DoubleArray {
        var sum = 0.0
        var max = 0
        var n = 0
        for (i in a.rgb.indices) {
            val d = Math.abs((a.rgb[i].toInt() and 0xFF) - (b.rgb[i].toInt() and 0xFF))
            sum += d
            if (d > max) max = d
            if (d > 0) n++
        }
        return doubleArrayOf(sum / a.rgb.size, max.toDouble(), 100.0 * n / a.rgb.size)
    }

    /** A large deterministic photo stand-in: gradients, discs, hard edges, fine stripes (worst case for aliasing). */
    private fun bigPicture(w: Int, h: Int): RgbImage {
        val px = IntArray(w * h)
        for (y in 0 until h) for (x in 0 until w) {
            var r = 255 * x / (w - 1)
            var g = 255 * y / (h - 1)
            var b = (127.5 + 127.5 * Math.sin((x + 2.0 * y) / 37.0)).toInt()
            val dx = x - w * 0.6
            val dy = y - h * 0.4
            if (dx * dx + dy * dy < (h * 0.2) * (h * 0.2)) { r = 230; g = 40; b = 60 }
            if (x in (w * 2 / 5) until (w * 11 / 20) && y > h * 3 / 5) { val v = if ((x + y) % 2 == 0) 255 else 0; r = v; g = v; b = v }
            px[y * w + x] = (0xFF shl 24) or (r shl 16) or (g shl 8) or b
        }
        return RgbImage(w, h, px)
    }

    /**
     * Bounded decoding (DecodePlan): a photo decoded subsampled is no longer Python's input. Measured here with
     * models of the decoders' subsampling against the exact crop (= Python's, proven above): on the vector
     * images (R = 48, so that a 2x subsample still downsizes) and on a 4000 x 3000 picture with hard edges and
     * 1-pixel stripes at R = 256, 2x and 4x. Printed for examples/README.md; bounded so that a change shows.
     */
    @Test
    fun boundedDecodingDeviation() {
        val report = StringBuilder()
        val worstMean = HashMap<String, Double>()
        for (img in Vectors.objs(images["images"])) {
            val name = img["file"] as String
            if (!name.endsWith(".png")) continue
            val file = File(imageDir, name)
            val up = ExifOrientation.apply(readPng(file), ExifOrientation.read(file.readBytes()))
            val exact = Preprocess.resizeCrop(up, 48, Interpolation.BILINEAR)
            for ((kind, sub) in listOf("box" to DecodePlan.subsampleBox(up, 2), "nearest" to DecodePlan.subsampleNearest(up, 2))) {
                val d = deviation(exact, Preprocess.resizeCrop(sub, 48, Interpolation.BILINEAR))
                worstMean[kind] = Math.max(worstMean[kind] ?: 0.0, d[0])
                report.append(String.format(java.util.Locale.ROOT, "bounded-decode vectors %s R=48 s=2 %s: mean %.2f max %.0f levels, %.1f%% bytes differ%n",
                    name, kind, d[0], d[1], d[2]))
            }
        }
        val big = bigPicture(4000, 3000)
        val exact = Preprocess.resizeCrop(big, 256, Interpolation.BILINEAR)
        for (s in listOf(2, 4)) for ((kind, sub) in listOf("box" to DecodePlan.subsampleBox(big, s), "nearest" to DecodePlan.subsampleNearest(big, s))) {
            val d = deviation(exact, Preprocess.resizeCrop(sub, 256, Interpolation.BILINEAR))
            report.append(String.format(java.util.Locale.ROOT, "bounded-decode 4000x3000 R=256 s=%d %s: mean %.2f max %.0f levels, %.1f%% bytes differ%n",
                s, kind, d[0], d[1], d[2]))
            if (kind == "box") assertTrue(report.toString(), d[0] < 2.0)
        }
        print(report)
        // box (JPEG's scaled IDCT): within 2 levels on average; point sampling (PNG) aliases fine detail badly
        assertTrue(report.toString(), worstMean.getValue("box") < 2.0 && worstMean.getValue("nearest") < 20.0)
    }
}
