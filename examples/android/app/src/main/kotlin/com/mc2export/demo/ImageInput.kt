package com.mc2export.demo

import android.content.Context
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.net.Uri
import androidx.exifinterface.media.ExifInterface
import com.mc2export.shared.BundleConfig
import com.mc2export.shared.CroppedImage
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
        return RgbImage(bmp.width, bmp.height, px, bmp.hasAlpha())
    }

    /** EXIF orientation of a camera frame from CameraX's rotationDegrees (rotate clockwise to be upright). */
    fun orientationForRotation(degrees: Int): Int = when (((degrees % 360) + 360) % 360) {
        90 -> 6
        180 -> 3
        270 -> 8
        else -> 1
    }

    class Decoded(val image: RgbImage, val orientation: Int)

    /**
     * Decode a photo. [minShortSide] > 0 lets the decoder subsample (inSampleSize) while the short side stays
     * >= minShortSide -- fast for indexing thousands of photos, but not pixel-identical to Python; 0 decodes at
     * full size (what classification of a picked photo does, to match Python exactly).
     */
    fun decode(ctx: Context, uri: Uri, minShortSide: Int = 0): Decoded {
        val bytes = ctx.contentResolver.openInputStream(uri)?.use { it.readBytes() }
            ?: throw IOException("cannot open $uri")
        val orientation = try {
            ExifInterface(bytes.inputStream()).getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL)
        } catch (e: IOException) {
            1
        }
        val opts = BitmapFactory.Options()
        if (minShortSide > 0) {
            opts.inJustDecodeBounds = true
            BitmapFactory.decodeByteArray(bytes, 0, bytes.size, opts)
            var sample = 1
            val short = minOf(opts.outWidth, opts.outHeight)
            while (short / (sample * 2) >= minShortSide) sample *= 2
            opts.inJustDecodeBounds = false
            opts.inSampleSize = sample
        }
        opts.inPreferredConfig = Bitmap.Config.ARGB_8888
        // Keep transparent pixels' colours as stored (getPixels of a premultiplied bitmap would round them):
        // the shared code premultiplies exactly as Pillow does before resizing.
        opts.inPremultiplied = false
        val bmp = BitmapFactory.decodeByteArray(bytes, 0, bytes.size, opts) ?: throw IOException("not an image: $uri")
        return Decoded(fromBitmap(bmp), if (orientation in 1..8) orientation else 1)
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
