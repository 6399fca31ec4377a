package com.mc2export.demo

import android.content.ContentUris
import android.content.Context
import android.net.Uri
import android.os.Build
import android.util.Size
import android.provider.MediaStore
import com.mc2export.shared.BundleException
import com.mc2export.shared.CroppedImage
import com.mc2export.shared.BundleRules
import com.mc2export.shared.IndexHeader
import com.mc2export.shared.IndexingOutcome
import com.mc2export.shared.IndexingRun
import com.mc2export.shared.LibraryItem
import com.mc2export.shared.PhotoIndex
import com.mc2export.shared.Preprocess
import com.mc2export.shared.PromptSet
import com.mc2export.shared.RgbImage
import com.mc2export.shared.SearchHit
import com.mc2export.shared.VerifyReport
import com.mc2export.shared.VerifyVectors
import com.mc2export.shared.ZeroShot
import java.io.File

/** One classification: labels with probabilities (best first) and any warning for the screen. */
class Classification(val ranked: List<Pair<String, Float>>, val warning: String?, val imageMs: Double)

/** Zero-shot classification and photo search on a loaded bundle. Not thread-safe: call from one worker thread. */
class Engine(val bundle: LoadedBundle) {
    private val cfg = bundle.config
    /** prompt text -> normalized text embedding (typing a new label only encodes the new label's prompts). */
    private val promptCache = HashMap<String, FloatArray>()
    private var classKey: String? = null
    private var classes: List<FloatArray> = emptyList()
    private var promptSet: PromptSet? = null

    private fun requireText() = bundle.text ?: throw BundleException("this bundle has no text model (exported with --towers image)")
    private fun requireImage() = bundle.image ?: throw BundleException("this bundle has no image model (exported with --towers text)")

    fun embedText(text: String): FloatArray {
        val tok = bundle.tokenizer ?: throw BundleException("this bundle has no tokenizer files")
        return ZeroShot.l2normalize(requireText().embed(tok.tokenize(text).row))
    }

    fun embedImage(img: RgbImage, orientation: Int): FloatArray =
        ZeroShot.l2normalize(embedCrop(Preprocess.prepare(img, orientation, cfg.resolution, cfg.interpolation)))

    /** The image model's output for a crop (as the model returns it: what verify/ expects). */
    fun embedCrop(crop: CroppedImage): FloatArray = requireImage().embed(ImageInput.modelInput(crop, cfg), cfg.resolution)

    /** The text model's output for a token row. */
    fun embedRow(row: IntArray): FloatArray = requireText().embed(row)

    /** The bundle's verification vectors through these models (VerifyVectors: never throws). */
    fun runVerify(): VerifyReport = VerifyVectors.run(cfg, { rel -> BundleRules.inside(bundle.dir, rel, "verify/ file").takeIf { it.isFile }?.readBytes() },
        runImage = { embedCrop(it) }, runText = { embedRow(it) })

    /** Class embeddings for [labels] (cached per prompt). */
    fun prepareLabels(labels: List<String>, templates: List<String>): PromptSet {
        val key = labels.joinToString("\u0000") + "\u0001" + templates.joinToString("\u0000")
        promptSet?.let { if (key == classKey) return it }
        val tok = bundle.tokenizer ?: throw BundleException("this bundle has no tokenizer files")
        val text = requireText()
        val set = ZeroShot.prompts(labels, templates, tok)
        val byLabel = LinkedHashMap<String, MutableList<FloatArray>>()
        for (p in set.prompts) {
            val e = promptCache.getOrPut(p.text) { ZeroShot.l2normalize(text.embed(p.tokens.row)) }
            byLabel.getOrPut(p.label) { ArrayList() }.add(e)
        }
        classes = labels.map { ZeroShot.classEmbedding(byLabel.getValue(it)) }
        classKey = key
        promptSet = set
        return set
    }

    fun classify(img: RgbImage, orientation: Int, labels: List<String>, templates: List<String>, topK: Int = 5): Classification {
        val set = prepareLabels(labels, templates)
        val t0 = System.nanoTime()
        val e = embedImage(img, orientation)
        val ms = (System.nanoTime() - t0) / 1e6
        val p = ZeroShot.probabilities(e, classes, cfg.logitScale)
        val ranked = ZeroShot.topK(p, topK).map { labels[it] to p[it] }
        return Classification(ranked, set.warning(cfg.contextLength), ms)
    }

    // -- photo search ------------------------------------------------------------------------------------------
    // The index is the shared .mc2i journal (docs/app_index.md; PhotoIndex in shared/): appended durably per
    // batch, never rewritten on the indexing path. Foreground indexing (the "Index photos" button, this engine)
    // and background indexing (IndexWorker, WorkManager) share one file; [IndexLock] keeps them from appending
    // at the same time.

    /** The header of this bundle's index: another model's (or another export's) index is refused, never mixed. */
    fun indexHeader(): IndexHeader = IndexHeader(cfg.variant, cfg.precision,
        BundleRules.sha256Hex(File(bundle.dir, "config.json").readBytes()), cfg.embedDim)

    fun indexFile(ctx: Context) = File(ctx.filesDir, "photos-${cfg.variant}-${cfg.precision}.mc2i")

    /** Open this model's index (created when absent). IndexException: another model's index (ask, then [newIndex]). */
    fun openIndex(ctx: Context): PhotoIndex = PhotoIndex.open(indexFile(ctx), indexHeader())

    /** Replace whatever index file is there with an empty one for this model (after the user agreed). */
    fun newIndex(ctx: Context): PhotoIndex = PhotoIndex.create(indexFile(ctx), indexHeader())

    /** The gallery (MediaStore), newest first: key = content URI, stamp = DATE_MODIFIED in ms. */
    fun library(ctx: Context): List<LibraryItem> {
        val out = ArrayList<LibraryItem>()
        val cols = arrayOf(MediaStore.Images.Media._ID, MediaStore.Images.Media.DATE_MODIFIED)
        ctx.contentResolver.query(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, cols, null, null,
            "${MediaStore.Images.Media.DATE_ADDED} DESC")?.use { c ->
            val id = c.getColumnIndexOrThrow(MediaStore.Images.Media._ID)
            val mod = c.getColumnIndexOrThrow(MediaStore.Images.Media.DATE_MODIFIED)
            while (c.moveToNext()) {
                val uri = ContentUris.withAppendedId(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, c.getLong(id))
                out.add(LibraryItem(uri.toString(), c.getLong(mod) * 1000L))
            }
        }
        return out
    }

    /**
     * A photo decoded at about the model's size: ContentResolver.loadThumbnail (API 29+; MediaStore serves it
     * from its thumbnail cache, upright) asked for 2R x 2R, so a photo up to 2:1 keeps a short side >= R; older
     * systems decode subsampled (ImageInput.decode, bounded). Never the full-size original.
     */
    private fun thumbnail(ctx: Context, uri: Uri): Pair<RgbImage, Int> {
        val r = cfg.resolution
        if (Build.VERSION.SDK_INT >= 29) {
            val bmp = ctx.contentResolver.loadThumbnail(uri, Size(2 * r, 2 * r), null)
            try {
                return ImageInput.fromBitmap(bmp) to 1
            } finally {
                bmp.recycle()
            }
        }
        val d = ImageInput.decode(ctx, uri, minShortSide = r, maxPixels = 0L)
        return d.image to d.orientation
    }

    /**
     * One batch for the index: each photo decoded small, preprocessed, run through the image model in a tight
     * loop (the apps' bundles have batch 1), the output copied off at once (the runtime wrappers return a fresh
     * FloatArray and close their tensors). A photo that fails is null: skipped now, retried next run.
     */
    fun embedBatch(ctx: Context, batch: List<LibraryItem>): List<FloatArray?> = batch.map { item ->
        try {
            val (img, orientation) = thumbnail(ctx, Uri.parse(item.key))
            embedImage(img, orientation)
        } catch (e: Exception) {
            null
        } catch (e: OutOfMemoryError) {
            null
        }
    }

    /** Index new / changed photos, tombstone deleted ones; [shouldStop] is checked between batches. */
    fun updateIndex(ctx: Context, index: PhotoIndex, shouldStop: () -> Boolean, progress: (Int, Int) -> Unit): IndexingOutcome {
        if (!IndexLock.lock.tryLock()) throw IllegalStateException("the background indexer is running: it will finish the job")
        try {
            return IndexingRun(index, BATCH).run(library(ctx), { embedBatch(ctx, it) }, shouldStop, progress)
        } finally {
            IndexLock.lock.unlock()
        }
    }

    fun search(index: PhotoIndex, query: String, k: Int): Pair<List<SearchHit>, Boolean> {
        val tok = bundle.tokenizer ?: throw BundleException("this bundle has no tokenizer files")
        val truncated = tok.tokenize(query).truncated
        return index.search(embedText(query), k) to truncated
    }

    companion object {
        /** Photos per durable append (and per progress report). */
        const val BATCH = 32
    }
}

/** One appender per index file in this process (foreground run or IndexWorker). */
object IndexLock {
    val lock = java.util.concurrent.locks.ReentrantLock()
}
