package com.mc2export.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.net.Uri
import androidx.exifinterface.media.ExifInterface
import com.mc2export.shared.BundleConfig
import com.mc2export.shared.CroppedImage
import com.mc2export.shared.DecodePlan
import com.mc2export.shared.ImageInputKind
import com.mc2export.shared.Preprocess
import com.mc2export.shared.RgbImage
import java.io.IOException

/** Android images -> the shared preprocessing (pixel-exact port of mc2export.preprocess). */
object ImageInput {
    /** An ARGB_8888 bitmap as packed ARGB ints (getPixels: non-premultiplied, sRGB). */
    fun fromBitmap(b: Bitmap): RgbImage {
        val bmp = if (b.config == Bitmap.Config.ARGB_8888) b else b.copy(Bitmap.Config.ARGB_8888, false)
        val px = IntArray(bmp.width * bmp.height)
        bmp.getPixels(px, 0, bmp.width, 0, 0, bmp.width, bmp.height)
        val img = RgbImage(bmp.width, bmp.height, px, bmp.hasAlpha())
        if (bmp !== b) bmp.recycle()
        return img
    }

    /** EXIF orientation of a camera frame from CameraX's rotationDegrees (rotate clockwise to be upright). */
    fun orientationForRotation(degrees: Int): Int = when (((degrees % 360) + 360) % 360) {
        90 -> 6
        180 -> 3
        270 -> 8
        else -> 1
    }

    /** A decoded photo; [sampleSize] > 1: decoded subsampled (bounded), so not Python's pixels exactly. */
    class Decoded(val image: RgbImage, val orientation: Int, val sampleSize: Int, val width: Int, val height: Int)

    /**
     * Decode a photo, bounded (DecodePlan): full size -- Python's pixels -- up to [maxPixels]; larger photos are
     * subsampled by a power of two (inSampleSize) with the short side kept >= [minShortSide], and an
     * OutOfMemoryError retries at the next sample size instead of crashing. Picked photos use the 16 MP bound;
     * the photo index passes maxPixels = 0 (subsample as far as the short side allows: fast, for thousands of
     * photos). The deviation from Python's pixels this implies is measured in PreprocessTest.boundedDecodingDeviation.
     */
    fun decode(ctx: Context, uri: Uri, minShortSide: Int, maxPixels: Long = DecodePlan.MAX_EXACT_PIXELS): Decoded {
        val bytes = ctx.contentResolver.openInputStream(uri)?.use { it.readBytes() }
            ?: throw IOException("cannot open $uri")
        val orientation = try {
            ExifInterface(bytes.inputStream()).getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL)
        } catch (e: IOException) {
            1
        }
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        BitmapFactory.decodeByteArray(bytes, 0, bytes.size, bounds)
        val w = bounds.outWidth
        val h = bounds.outHeight
        if (w <= 0 || h <= 0) throw IOException("not an image: $uri")
        var sample = DecodePlan.sampleSize(w, h, minShortSide, maxPixels)
        while (true) {
            try {
                val opts = BitmapFactory.Options()
                opts.inSampleSize = sample
                opts.inPreferredConfig = Bitmap.Config.ARGB_8888
                // Keep transparent pixels' colours as stored (getPixels of a premultiplied bitmap would round them):
                // the shared code premultiplies exactly as Pillow does before resizing.
                opts.inPremultiplied = false
                val bmp = BitmapFactory.decodeByteArray(bytes, 0, bytes.size, opts) ?: throw IOException("not an image: $uri")
                val image = try { fromBitmap(bmp) } finally { bmp.recycle() }
                return Decoded(image, if (orientation in 1..8) orientation else 1, sample, w, h)
            } catch (e: OutOfMemoryError) {
                sample = DecodePlan.afterOutOfMemory(sample, w, h, minShortSide)
                if (sample == 0) throw IOException("the photo (${w}x$h) is too large to decode in this app's memory")
            }
        }
    }

    /** The float tensor the model wants (ONNX / ExecuTorch: u8/255, normalized inside the model). */
    fun modelInput(crop: CroppedImage, cfg: BundleConfig): FloatArray = when (cfg.imageInput) {
        ImageInputKind.NORMALIZED_NCHW -> Preprocess.toNormalizedChw(crop, cfg.mean, cfg.std)
        else -> Preprocess.toUnitChw(crop)
    }

    /** A crop as a bitmap (to show what the model sees). */
    fun toBitmap(crop: CroppedImage): Bitmap {
        val n = crop.size
        val px = IntArray(n * n) { i ->
            val o = i * 3
            (0xFF shl 24) or ((crop.rgb[o].toInt() and 0xFF) shl 16) or ((crop.rgb[o + 1].toInt() and 0xFF) shl 8) or
                (crop.rgb[o + 2].toInt() and 0xFF)
        }
        return Bitmap.createBitmap(px, n, n, Bitmap.Config.ARGB_8888)
    }
}
