package com.mc2export.shared

/**
 * An 8-bit image as packed 0xAARRGGBB ints (Android's Bitmap.getPixels layout), row-major.
 * [hasAlpha] = false means the alpha byte is ignored (opaque image).
 */
class RgbImage(val width: Int, val height: Int, val pixels: IntArray, val hasAlpha: Boolean = false) {
    init {
        require(width >= 1 && height >= 1) { "image has no pixels (size ${width}x$height)" }
        require(pixels.size == width * height) { "pixel array holds ${pixels.size} values, expected ${width * height}" }
    }

    companion object {
        /** From interleaved bytes: RGB (3 per pixel) or RGBA (4 per pixel). */
        fun fromBytes(width: Int, height: Int, data: ByteArray, channels: Int): RgbImage {
            require(channels == 3 || channels == 4) { "channels must be 3 or 4" }
            require(data.size == width * height * channels) { "byte array holds ${data.size} values, expected ${width * height * channels}" }
            val px = IntArray(width * height)
            for (i in px.indices) {
                val o = i * channels
                val r = data[o].toInt() and 0xFF
                val g = data[o + 1].toInt() and 0xFF
                val b = data[o + 2].toInt() and 0xFF
                val a = if (channels == 4) data[o + 3].toInt() and 0xFF else 0xFF
                px[i] = (a shl 24) or (r shl 16) or (g shl 8) or b
            }
            return RgbImage(width, height, px, channels == 4)
        }
    }
}

/** PIL's resampling filters (Pillow's Resample.c): support 1 (bilinear) and 2 (bicubic, a = -0.5). */
enum class Interpolation(val id: String, val support: Double) {
    BILINEAR("bilinear", 1.0),
    BICUBIC("bicubic", 2.0);

    fun filter(x0: Double): Double {
        var x = x0
        if (x < 0.0) x = -x
        return when (this) {
            BILINEAR -> if (x < 1.0) 1.0 - x else 0.0
            BICUBIC -> {
                val a = -0.5
                when {
                    x < 1.0 -> ((a + 2.0) * x - (a + 3.0)) * x * x + 1
                    x < 2.0 -> (((x - 5) * x + 8) * x - 4) * a
                    else -> 0.0
                }
            }
        }
    }

    companion object {
        fun parse(name: String): Interpolation = when (name.trim()) {
            "bilinear", "BILINEAR" -> BILINEAR
            "bicubic", "BICUBIC" -> BICUBIC
            else -> throw IllegalArgumentException("interpolation '$name' is not supported (bilinear or bicubic)")
        }
    }
}

/**
 * Pillow's 8-bit two-pass resize (ImagingResample, 8bpc): separable filter whose support grows with
 * the downscale factor (antialiasing), coefficients in 22-bit fixed point (rounded half away from zero),
 * horizontal pass first, each pass rounded and clipped to 8 bits. Ported line by line so that the
 * output equals `PIL.Image.resize(size, BILINEAR|BICUBIC)` byte for byte.
 */
object PilResample {
    private const val PRECISION_BITS = 32 - 8 - 2

    private class Coeffs(val ksize: Int, val bounds: IntArray, val kk: IntArray)

    private fun precompute(inSize: Int, outSize: Int, f: Interpolation): Coeffs {
        val in0 = 0.0
        val in1 = inSize.toDouble()
        val scale = (in1 - in0) / outSize
        var filterscale = scale
        if (filterscale < 1.0) filterscale = 1.0
        val support = f.support * filterscale
        val ksize = Math.ceil(support).toInt() * 2 + 1
        val pre = DoubleArray(outSize * ksize)
        val bounds = IntArray(outSize * 2)
        for (xx in 0 until outSize) {
            val center = in0 + (xx + 0.5) * scale
            var ww = 0.0
            val ss = 1.0 / filterscale
            var xmin = (center - support + 0.5).toInt()  // C (int): truncation toward zero
            if (xmin < 0) xmin = 0
            var xmax = (center + support + 0.5).toInt()
            if (xmax > inSize) xmax = inSize
            xmax -= xmin
            val base = xx * ksize
            for (x in 0 until xmax) {
                val w = f.filter(((x + xmin) - center + 0.5) * ss)
                pre[base + x] = w
                ww += w
            }
            for (x in 0 until xmax) if (ww != 0.0) pre[base + x] /= ww
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        val kk = IntArray(pre.size)
        val one = (1 shl PRECISION_BITS).toDouble()
        for (i in pre.indices) {
            val v = pre[i]
            kk[i] = if (v < 0) (-0.5 + v * one).toInt() else (0.5 + v * one).toInt()
        }
        return Coeffs(ksize, bounds, kk)
    }

    private fun clip8(v: Int): Int {
        val s = v shr PRECISION_BITS
        return if (s < 0) 0 else if (s > 255) 255 else s
    }

    /**
     * Resize interleaved 8-bit channels ([nch] per pixel, unsigned bytes) from w x h to outW x outH.
     * Bytes, not ints: a 48 MP RGBA photo is 192 MB here instead of 768 MB.
     */
    fun resizeChannels(src: ByteArray, w: Int, h: Int, nch: Int, outW: Int, outH: Int, f: Interpolation): ByteArray {
        require(outW >= 1 && outH >= 1) { "target size must be positive" }
        require(src.size == w * h * nch) { "channel data holds ${src.size} bytes, expected ${w * h * nch}" }
        val needH = outW != w
        val needV = outH != h
        val horiz = precompute(w, outW, f)
        val vert = precompute(h, outH, f)
        var cur = src
        var curW = w
        var vBounds = vert.bounds
        if (needH) {
            // Only the rows the vertical pass reads (Pillow does the same; the result is identical).
            val yFirst = vert.bounds[0]
            val yLast = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1]
            val rows = if (needV) yLast - yFirst else h
            val off = if (needV) yFirst else 0
            val tmp = ByteArray(outW * rows * nch)
            val ss = IntArray(nch)
            for (yy in 0 until rows) {
                val rowIn = (yy + off) * w * nch
                for (xx in 0 until outW) {
                    val xmin = horiz.bounds[xx * 2]
                    val xmax = horiz.bounds[xx * 2 + 1]
                    val kb = xx * horiz.ksize
                    for (c in 0 until nch) ss[c] = 1 shl (PRECISION_BITS - 1)
                    for (x in 0 until xmax) {
                        val k = horiz.kk[kb + x]
                        val p = rowIn + (x + xmin) * nch
                        for (c in 0 until nch) ss[c] += (src[p + c].toInt() and 0xFF) * k
                    }
                    val o = (yy * outW + xx) * nch
                    for (c in 0 until nch) tmp[o + c] = clip8(ss[c]).toByte()
                }
            }
            cur = tmp
            curW = outW
            if (needV) {
                vBounds = vert.bounds.copyOf()
                for (i in 0 until outH) vBounds[i * 2] -= off
            }
        }
        if (!needV) return if (cur === src) src.copyOf() else cur
        val out = ByteArray(curW * outH * nch)
        val ss = IntArray(nch)
        for (yy in 0 until outH) {
            val ymin = vBounds[yy * 2]
            val ymax = vBounds[yy * 2 + 1]
            val kb = yy * vert.ksize
            for (xx in 0 until curW) {
                for (c in 0 until nch) ss[c] = 1 shl (PRECISION_BITS - 1)
                for (y in 0 until ymax) {
                    val k = vert.kk[kb + y]
                    val p = ((y + ymin) * curW + xx) * nch
                    for (c in 0 until nch) ss[c] += (cur[p + c].toInt() and 0xFF) * k
                }
                val o = (yy * curW + xx) * nch
                for (c in 0 until nch) out[o + c] = clip8(ss[c]).toByte()
            }
        }
        return out
    }
}

/** The square model input after resize + center crop: R x R x 3 bytes (HWC, RGB). */
class CroppedImage(val size: Int, val rgb: ByteArray) {
    fun u8(c: Int, y: Int, x: Int): Int = rgb[(y * size + x) * 3 + c].toInt() and 0xFF
}

/**
 * The inference preprocessing of mc2export.preprocess (= open_clip's, plus EXIF orientation first):
 * orientation -> shortest side to R (long side int(R * long / short)) with PIL's filter -> center crop
 * (left = round((W - R) / 2), top = round((H - R) / 2), Python's round: half to even) -> RGB -> /255
 * -> (x - mean) / std. Center crop, never squash. RGBA images are resized in premultiplied alpha
 * (what Pillow does) and the alpha is then dropped.
 */
object Preprocess {
    /** (width, height) after resizing the shortest side of (w, h) to r. */
    fun resizedSize(w: Int, h: Int, r: Int): IntArray =
        if (w <= h) intArrayOf(r, (r.toLong() * h / w.toDouble()).toInt()) else intArrayOf((r.toLong() * w / h.toDouble()).toInt(), r)

    /** (left, top) of the R x R center crop of a (w, h) image. */
    fun cropOrigin(w: Int, h: Int, r: Int): IntArray =
        intArrayOf(Math.rint((w - r) / 2.0).toInt(), Math.rint((h - r) / 2.0).toInt())

    private fun muldiv255(a: Int, b: Int): Int {
        val t = a * b + 128
        return ((t shr 8) + t) shr 8
    }

    /** Resize (shortest side -> r) and center-crop an upright image: R x R x 3 bytes. */
    fun resizeCrop(img: RgbImage, r: Int, interpolation: Interpolation): CroppedImage {
        require(r >= 1) { "resolution must be positive" }
        val w = img.width
        val h = img.height
        val size = resizedSize(w, h, r)
        val nch = if (img.hasAlpha) 4 else 3
        var data = ByteArray(w * h * nch)
        for (i in 0 until w * h) {
            val p = img.pixels[i]
            val a = (p ushr 24) and 0xFF
            var rr = (p shr 16) and 0xFF
            var gg = (p shr 8) and 0xFF
            var bb = p and 0xFF
            if (img.hasAlpha && (size[0] != w || size[1] != h)) {  // RGBA -> RGBa before resizing
                rr = muldiv255(rr, a); gg = muldiv255(gg, a); bb = muldiv255(bb, a)
            }
            data[i * nch] = rr.toByte()
            data[i * nch + 1] = gg.toByte()
            data[i * nch + 2] = bb.toByte()
            if (nch == 4) data[i * nch + 3] = a.toByte()
        }
        var cw = w
        if (size[0] != w || size[1] != h) {
            data = PilResample.resizeChannels(data, w, h, nch, size[0], size[1], interpolation)
            cw = size[0]
            if (nch == 4) {  // RGBa -> RGBA
                for (i in 0 until size[0] * size[1]) {
                    val o = i * 4
                    val a = data[o + 3].toInt() and 0xFF
                    if (a != 255 && a != 0) {
                        for (c in 0 until 3) data[o + c] = Math.min(255, (255 * (data[o + c].toInt() and 0xFF)) / a).toByte()
                    }
                }
            }
        }
        val origin = cropOrigin(size[0], size[1], r)
        val out = ByteArray(r * r * 3)
        for (y in 0 until r) {
            for (x in 0 until r) {
                val s = ((y + origin[1]) * cw + (x + origin[0])) * nch
                val o = (y * r + x) * 3
                out[o] = data[s]
                out[o + 1] = data[s + 1]
                out[o + 2] = data[s + 2]
            }
        }
        return CroppedImage(r, out)
    }

    /** Orientation, resize and crop in one call. */
    fun prepare(img: RgbImage, exifOrientation: Int, r: Int, interpolation: Interpolation): CroppedImage =
        resizeCrop(ExifOrientation.apply(img, exifOrientation), r, interpolation)

    /** float32 [3, R, R] = u8 / 255: the input of the ONNX / ExecuTorch image models (they normalize inside). */
    fun toUnitChw(img: CroppedImage): FloatArray {
        val r = img.size
        val out = FloatArray(3 * r * r)
        for (c in 0 until 3) for (y in 0 until r) for (x in 0 until r) {
            out[(c * r + y) * r + x] = img.u8(c, y, x).toFloat() / 255f
        }
        return out
    }

    /** float32 [3, R, R] = (u8 / 255 - mean) / std in float32 (open_clip's tensor). */
    fun toNormalizedChw(img: CroppedImage, mean: FloatArray, std: FloatArray): FloatArray {
        require(mean.size == 3 && std.size == 3) { "mean and std need 3 values" }
        val r = img.size
        val out = FloatArray(3 * r * r)
        for (c in 0 until 3) {
            val m = mean[c]
            val s = std[c]
            for (y in 0 until r) for (x in 0 until r) {
                out[(c * r + y) * r + x] = (img.u8(c, y, x).toFloat() / 255f - m) / s
            }
        }
        return out
    }
}

/** EXIF orientation: reading the tag from JPEG / PNG bytes and turning the pixels upright. */
object ExifOrientation {
    /**
     * The upright image for EXIF orientation 1..8 (PIL's ImageOps.exif_transpose: 2 mirror, 3 rotate
     * 180, 4 flip, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise).
     * Other values leave the image as is.
     */
    fun apply(img: RgbImage, orientation: Int): RgbImage {
        if (orientation < 2 || orientation > 8) return img
        val w = img.width
        val h = img.height
        val swap = orientation >= 5
        val ow = if (swap) h else w
        val oh = if (swap) w else h
        val out = IntArray(ow * oh)
        for (y in 0 until oh) for (x in 0 until ow) {
            val sx: Int
            val sy: Int
            when (orientation) {
                2 -> { sx = w - 1 - x; sy = y }
                3 -> { sx = w - 1 - x; sy = h - 1 - y }
                4 -> { sx = x; sy = h - 1 - y }
                5 -> { sx = y; sy = x }
                6 -> { sx = y; sy = h - 1 - x }
                7 -> { sx = w - 1 - y; sy = h - 1 - x }
                else -> { sx = w - 1 - y; sy = x }  // 8
            }
            out[y * ow + x] = img.pixels[sy * w + sx]
        }
        return RgbImage(ow, oh, out, img.hasAlpha)
    }

    /** The orientation tag (1..8) of a JPEG or PNG file; 1 when there is none or it cannot be read. */
    fun read(bytes: ByteArray): Int = try {
        when {
            bytes.size > 3 && u8(bytes, 0) == 0xFF && u8(bytes, 1) == 0xD8 -> readJpeg(bytes)
            bytes.size > 8 && u8(bytes, 0) == 0x89 && u8(bytes, 1) == 0x50 && u8(bytes, 2) == 0x4E && u8(bytes, 3) == 0x47 -> readPng(bytes)
            else -> 1
        }
    } catch (e: IndexOutOfBoundsException) {
        1
    }

    private fun u8(b: ByteArray, i: Int): Int = b[i].toInt() and 0xFF
    private fun be16(b: ByteArray, i: Int): Int = (u8(b, i) shl 8) or u8(b, i + 1)
    private fun be32(b: ByteArray, i: Int): Int = (be16(b, i) shl 16) or be16(b, i + 2)

    private fun readJpeg(b: ByteArray): Int {
        var i = 2
        while (i + 4 <= b.size) {
            if (u8(b, i) != 0xFF) return 1
            val marker = u8(b, i + 1)
            if (marker == 0xFF) { i++; continue }
            if (marker == 0xD9 || marker == 0xDA) return 1  // end of image / start of scan: no EXIF before
            if (marker == 0x01 || marker in 0xD0..0xD7) { i += 2; continue }
            val len = be16(b, i + 2)
            val start = i + 4
            if (marker == 0xE1 && len >= 8 && b.size >= start + 6 &&
                u8(b, start) == 0x45 && u8(b, start + 1) == 0x78 && u8(b, start + 2) == 0x69 && u8(b, start + 3) == 0x66 &&
                u8(b, start + 4) == 0 && u8(b, start + 5) == 0) {
                return readTiff(b, start + 6, i + 2 + len)
            }
            i += 2 + len
        }
        return 1
    }

    private fun readPng(b: ByteArray): Int {
        var i = 8
        while (i + 8 <= b.size) {
            val len = be32(b, i)
            if (len < 0) return 1
            val type = String(b, i + 4, 4, Charsets.ISO_8859_1)
            val start = i + 8
            if (type == "eXIf") {
                var t = start
                if (len >= 6 && u8(b, t) == 0x45 && u8(b, t + 1) == 0x78 && u8(b, t + 2) == 0x69 && u8(b, t + 3) == 0x66) t += 6
                return readTiff(b, t, start + len)
            }
            if (type == "IEND") return 1
            i = start + len + 4
        }
        return 1
    }

    /** Orientation (tag 0x0112) of IFD0 of a TIFF block at [off] (end exclusive [end]). */
    private fun readTiff(b: ByteArray, off: Int, end: Int): Int {
        if (off + 8 > end) return 1
        val little = u8(b, off) == 0x49 && u8(b, off + 1) == 0x49
        val big = u8(b, off) == 0x4D && u8(b, off + 1) == 0x4D
        if (!little && !big) return 1
        fun r16(i: Int): Int = if (little) u8(b, i) or (u8(b, i + 1) shl 8) else be16(b, i)
        fun r32(i: Int): Int = if (little) r16(i) or (r16(i + 2) shl 16) else be32(b, i)
        if (r16(off + 2) != 42) return 1
        val ifd = off + r32(off + 4)
        if (ifd < off || ifd + 2 > end) return 1
        val n = r16(ifd)
        for (k in 0 until n) {
            val e = ifd + 2 + k * 12
            if (e + 12 > end) return 1
            if (r16(e) == 0x0112) {
                val type = r16(e + 2)
                val v = if (type == 3) r16(e + 8) else if (type == 4) r32(e + 8) else return 1
                return if (v in 1..8) v else 1
            }
        }
        return 1
    }
}
