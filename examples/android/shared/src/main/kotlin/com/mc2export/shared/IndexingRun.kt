package com.mc2export.shared

/** A photo of the library as the gallery lists it: its key (content URI) and modification time. */
class LibraryItem(val key: String, val stamp: Long)

/** What a run did. [stopped]: paused between batches (constraints lost, the user's request); run again to resume. */
class IndexingOutcome(val added: Int, val removed: Int, val skipped: Int, val remaining: Int, val stopped: Boolean)

/**
 * Indexing a photo library into a [PhotoIndex] with bounded memory and resumable progress -- the platform-free
 * half of the Android app's WorkManager worker (the iOS twin lives in MC2Core).
 *
 * Resume bookkeeping is the index itself: a photo whose key and stamp are in the index is done, so a run
 * killed at any moment, or stopped between batches, starts again with exactly the photos not yet appended.
 * Photos gone from the library become tombstones in the first batch. Each batch: the photos' embeddings
 * ([embedBatch]: one model batch where the bundle has a batch dimension, else a tight loop -- the caller
 * decides; a photo that fails comes back null and is retried on the next run), one durable append, then
 * progress. At most one batch of embeddings is held.
 */
class IndexingRun(private val index: PhotoIndex, private val batchSize: Int = 32) {
    init {
        require(batchSize >= 1) { "batch size must be >= 1" }
    }

    /** Photos to embed (new or changed, in library order) and keys to delete (gone from the library). */
    fun plan(library: List<LibraryItem>): Pair<List<LibraryItem>, List<String>> {
        val present = HashSet<String>(library.size * 2)
        for (p in library) present.add(p.key)
        val todo = library.filter { !index.contains(it.key, it.stamp) }
        val gone = index.keys().filter { it !in present }
        return todo to gone
    }

    /**
     * Run until done or until [shouldStop] says stop (checked before each batch). [progress] gets (done, total)
     * after each durable batch.
     */
    fun run(library: List<LibraryItem>, embedBatch: (List<LibraryItem>) -> List<FloatArray?>,
            shouldStop: () -> Boolean = { false }, progress: (Int, Int) -> Unit = { _, _ -> }): IndexingOutcome {
        val (todo, gone) = plan(library)
        var added = 0
        var skipped = 0
        var done = 0
        var removed = 0
        if (gone.isNotEmpty() && !shouldStop()) {
            index.append(gone.map { IndexOp.delete(it) })
            removed = gone.size
        }
        var i = 0
        while (i < todo.size) {
            if (shouldStop()) return IndexingOutcome(added, removed, skipped, todo.size - i, stopped = true)
            val batch = todo.subList(i, minOf(i + batchSize, todo.size))
            val vectors = embedBatch(batch)
            require(vectors.size == batch.size) { "embedBatch returned ${vectors.size} results for ${batch.size} photos" }
            val ops = ArrayList<IndexOp>(batch.size)
            for ((j, item) in batch.withIndex()) {
                val v = vectors[j]
                if (v == null || v.size != index.dim || v.any { it.isNaN() || it.isInfinite() } || v.all { it == 0f }) skipped++
                else ops.add(IndexOp.put(item.key, item.stamp, v))
            }
            index.append(ops)
            added += ops.size
            i += batch.size
            done += batch.size
            progress(done, todo.size)
        }
        return IndexingOutcome(added, removed, skipped, 0, stopped = false)
    }
}
