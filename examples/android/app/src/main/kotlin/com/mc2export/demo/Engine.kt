package com.mc2export.demo

import android.content.ContentUris
import android.content.Context
import android.provider.MediaStore
import com.mc2export.shared.BundleException
import com.mc2export.shared.CroppedImage
import com.mc2export.shared.EmbeddingIndex
import com.mc2export.shared.Preprocess
import com.mc2export.shared.PromptSet
import com.mc2export.shared.RgbImage
import com.mc2export.shared.SearchHit
import com.mc2export.shared.VerifyReport
import com.mc2export.shared.VerifyVectors
import com.mc2export.shared.ZeroShot
import java.io.File
import java.io.IOException

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
    fun runVerify(): VerifyReport = VerifyVectors.run(cfg, { rel -> File(bundle.dir, rel).takeIf { it.isFile }?.readBytes() },
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

    private fun indexFile(ctx: Context) = File(ctx.filesDir, "index-${cfg.variant}-${cfg.runtime}-${cfg.precision}.bin")

    fun loadIndex(ctx: Context): EmbeddingIndex {
        val f = indexFile(ctx)
        if (f.isFile) {
            f.inputStream().buffered().use { input ->
                EmbeddingIndex.read(input, cfg.variant, cfg.runtime, cfg.precision, cfg.embedDim)?.let { return it }
            }
        }
        return EmbeddingIndex(cfg.variant, cfg.runtime, cfg.precision, cfg.embedDim)
    }

    fun saveIndex(ctx: Context, index: EmbeddingIndex) {
        val f = indexFile(ctx)
        val tmp = File(f.path + ".tmp")
        tmp.outputStream().buffered().use { index.write(it) }
        if (!tmp.renameTo(f)) throw IOException("cannot write ${f.path}")
    }

    /**
     * Embed every photo of the gallery not yet in the index (MediaStore; new or modified ones), drop deleted
     * ones, save. [progress] gets (done, total); return false from it to stop early (the index keeps what is done).
     * A photo that fails for any reason (unreadable, damaged, too large, a runtime error) is skipped and
     * counted, and retried on the next run. Returns (added, skipped).
     */
    fun updateIndex(ctx: Context, index: EmbeddingIndex, progress: (Int, Int) -> Boolean): Pair<Int, Int> {
        val uris = ArrayList<Pair<String, Long>>()
        val cols = arrayOf(MediaStore.Images.Media._ID, MediaStore.Images.Media.DATE_MODIFIED)
        ctx.contentResolver.query(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, cols, null, null,
            "${MediaStore.Images.Media.DATE_ADDED} DESC")?.use { c ->
            val id = c.getColumnIndexOrThrow(MediaStore.Images.Media._ID)
            val mod = c.getColumnIndexOrThrow(MediaStore.Images.Media.DATE_MODIFIED)
            while (c.moveToNext()) {
                val uri = ContentUris.withAppendedId(MediaStore.Images.Media.EXTERNAL_CONTENT_URI, c.getLong(id))
                uris.add(uri.toString() to c.getLong(mod))
            }
        }
        val present = uris.map { it.first }.toHashSet()
        index.retain { it in present }
        var added = 0
        var skipped = 0
        val todo = uris.filter { !index.contains(it.first, it.second) }
        for ((i, item) in todo.withIndex()) {
            if (!progress(i, todo.size)) break
            try {
                val d = ImageInput.decode(ctx, android.net.Uri.parse(item.first), minShortSide = cfg.resolution * 2, maxPixels = 0L)
                index.put(item.first, item.second, embedImage(d.image, d.orientation))
                added++
                if (added % 200 == 0) saveIndex(ctx, index)
            } catch (e: Exception) {
                skipped++  // any failure of one photo: skipped, retried next time; the run goes on
            } catch (e: OutOfMemoryError) {
                skipped++
            }
        }
        saveIndex(ctx, index)
        progress(todo.size, todo.size)
        return added to skipped
    }

    fun search(index: EmbeddingIndex, query: String, k: Int): Pair<List<SearchHit>, Boolean> {
        val tok = bundle.tokenizer ?: throw BundleException("this bundle has no tokenizer files")
        val truncated = tok.tokenize(query).truncated
        return index.search(embedText(query), k) to truncated
    }
}
