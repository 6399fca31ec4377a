package com.mc2export.shared

/**
 * How large a photo the apps decode: full size (Python's pixels exactly) up to [MAX_EXACT_PIXELS]; beyond, the
 * decoder subsamples by a power of two (Android's BitmapFactory inSampleSize, iOS's ImageIO thumbnail size)
 * so that a 48 / 108 / 200 MP photo never needs gigabytes, and after an out-of-memory error the decode is
 * retried at the next sample size. A subsampled photo is no longer Python's input pixel for pixel: the
 * deviation is measured on the JVM against [subsampleBox] / [subsampleNearest], models of what the decoders
 * do (JPEG: scaled IDCT ~ the mean of each s x s block; PNG/WebP: one pixel per block), in
 * PreprocessTest.boundedDecodingDeviation (figures in examples/README.md).
 */
object DecodePlan {
    /** Full-size decoding up to 16 MP (~11 bytes per pixel in flight: bitmap, pixels, resize buffers). */
    const val MAX_EXACT_PIXELS = 16_000_000L

    /** Largest power-of-two sample size that keeps the short side >= [minShortSide] (1 when none does). */
    private fun maxSample(w: Int, h: Int, minShortSide: Int): Int {
        var s = 1
        val short = Math.min(w, h)
        while (short / (s * 2) >= minShortSide) s *= 2
        return s
    }

    /**
     * The sample size to decode a w x h photo with: 1 (full size) when it has at most [maxPixels] pixels, else
     * the smallest power of two that brings it under, never letting the short side fall below [minShortSide]
     * (the model's resolution: the resize then still downsamples, as in Python).
     */
    fun sampleSize(w: Int, h: Int, minShortSide: Int, maxPixels: Long = MAX_EXACT_PIXELS): Int {
        require(w >= 1 && h >= 1) { "image has no pixels (size ${w}x$h)" }
        var s = 1
        val cap = maxSample(w, h, minShortSide)
        while (s < cap && (w.toLong() / s) * (h.toLong() / s) > maxPixels) s *= 2
        return s
    }

    /** The sample size to retry with after an OutOfMemoryError at [current], or 0 when none is left. */
    fun afterOutOfMemory(current: Int, w: Int, h: Int, minShortSide: Int): Int =
        if (current * 2 <= maxSample(w, h, minShortSide)) current * 2 else 0

    /** Model of a JPEG decoder's subsampling: the mean of each s x s block (rounded), partial blocks included. */
    fun subsampleBox(img: RgbImage, s: Int): RgbImage {
        if (s <= 1) return img
        val ow = (img.width + s - 1) / s
        val oh = (img.height + s - 1) / s
        val out = IntArray(ow * oh)
        for (oy in 0 until oh) for (ox in 0 until ow) {
            val acc = IntArray(4)
            var n = 0
            for (y in oy * s until Math.min((oy + 1) * s, img.height)) for (x in ox * s until Math.min((ox + 1) * s, img.width)) {
                val p = img.pixels[y * img.width + x]
                acc[0] += (p ushr 24) and 0xFF; acc[1] += (p shr 16) and 0xFF; acc[2] += (p shr 8) and 0xFF; acc[3] += p and 0xFF
                n++
            }
            out[oy * ow + ox] = ((acc[0] + n / 2) / n shl 24) or ((acc[1] + n / 2) / n shl 16) or ((acc[2] + n / 2) / n shl 8) or ((acc[3] + n / 2) / n)
        }
        return RgbImage(ow, oh, out, img.hasAlpha)
    }

    /** Model of a PNG/WebP decoder's subsampling (Skia's sampler): the pixel at the middle of each s x s block. */
    fun subsampleNearest(img: RgbImage, s: Int): RgbImage {
        if (s <= 1) return img
        val ow = img.width / s
        val oh = img.height / s
        val out = IntArray(ow * oh) { i -> img.pixels[((i / ow) * s + s / 2) * img.width + (i % ow) * s + s / 2] }
        return RgbImage(ow, oh, out, img.hasAlpha)
    }
}
