package com.mc2export.shared

/** One search hit: the photo's key (content URI / asset id) and its score (cosine). */
class SearchHit(val key: String, val score: Float)

/**
 * The index's live state in memory: per slot (first-insertion order) the key, stamp, a liveness flag and the fp16
 * vector bits. Vectors sit in fixed-size blocks of [BLOCK] rows (one ShortArray each): contiguous for the search
 * loop, and growing never copies what is there (no 2x peak while a 100k-photo library is appended).
 */
class VectorStore(val dim: Int) {
    private val blocks = ArrayList<ShortArray>()
    private val keys = ArrayList<String>()
    private var stamps = LongArray(1024)
    private var alive = BooleanArray(1024)
    private val slotOf = HashMap<String, Int>()

    /** Slots ever used (live + dead). */
    var slots = 0
        private set
    /** Live photos. */
    val size: Int get() = slotOf.size

    fun slot(key: String): Int? = slotOf[key]
    fun stamp(key: String): Long? = slotOf[key]?.let { stamps[it] }
    fun contains(key: String, stamp: Long): Boolean = slotOf[key]?.let { stamps[it] == stamp } ?: false

    /** PUT: a new key takes the next slot; a known key is replaced in place (keeps its position). */
    fun put(key: String, stamp: Long, bits: ShortArray, offset: Int) {
        var s = slotOf[key]
        if (s == null) {
            s = slots
            if (s % BLOCK == 0) blocks.add(ShortArray(BLOCK * dim))
            if (s == stamps.size) {
                stamps = stamps.copyOf(s * 2)
                alive = alive.copyOf(s * 2)
            }
            keys.add(key)
            slotOf[key] = s
            slots++
        }
        stamps[s] = stamp
        alive[s] = true
        System.arraycopy(bits, offset, blocks[s / BLOCK], (s % BLOCK) * dim, dim)
    }

    /** DELETE: the key's slot dies (a later PUT of it takes a new slot, at the end). Unknown keys: nothing. */
    fun delete(key: String): Boolean {
        val s = slotOf.remove(key) ?: return false
        alive[s] = false
        return true
    }

    /** Live keys in index order. */
    fun liveKeys(): List<String> = (0 until slots).filter { alive[it] }.map { keys[it] }

    /** The fp16 bits of the live [key] (a copy). */
    fun vectorBits(key: String): ShortArray? {
        val s = slotOf[key] ?: return null
        return blocks[s / BLOCK].copyOfRange((s % BLOCK) * dim, (s % BLOCK + 1) * dim)
    }

    internal fun forEachLive(f: (key: String, stamp: Long, block: ShortArray, offset: Int) -> Unit) {
        for (s in 0 until slots) if (alive[s]) f(keys[s], stamps[s], blocks[s / BLOCK], (s % BLOCK) * dim)
    }

    /**
     * The [k] live photos of highest dot(q, v), best first, equal scores in index order. [query] is
     * L2-normalized here. One pass over the fp16 blocks, each value widened by bit moves (no table), summed in
     * float32 with four accumulators; a bounded min-heap of k (no sort of the whole library).
     */
    fun search(query: FloatArray, k: Int): List<SearchHit> {
        require(query.size == dim) { "query has ${query.size} values, the index holds $dim-d vectors" }
        if (k <= 0 || size == 0) return emptyList()
        // fp16 -> float32 without a table: the half's sign / exponent / mantissa bits moved into float32's place give
        // the value times 2^-112 (exact for every finite half, subnormals included); the 2^112 goes into the query
        // instead (a power of two: every product and sum rounds exactly as with the widened value).
        val qn = ZeroShot.l2normalize(query)
        val q = FloatArray(dim) { qn[it] * TWO_112 }
        val heap = TopK(minOf(k, size))
        val d4 = dim - dim % 4
        for (b in blocks.indices) {
            val block = blocks[b]
            val first = b * BLOCK
            val rows = minOf(BLOCK, slots - first)
            for (r in 0 until rows) {
                if (!alive[first + r]) continue
                val o = r * dim
                var s0 = 0f; var s1 = 0f; var s2 = 0f; var s3 = 0f
                var i = 0
                while (i < d4) {
                    s0 += q[i] * widen(block[o + i].toInt())
                    s1 += q[i + 1] * widen(block[o + i + 1].toInt())
                    s2 += q[i + 2] * widen(block[o + i + 2].toInt())
                    s3 += q[i + 3] * widen(block[o + i + 3].toInt())
                    i += 4
                }
                while (i < dim) { s0 += q[i] * widen(block[o + i].toInt()); i++ }
                heap.offer((s0 + s1) + (s2 + s3), first + r)
            }
        }
        return heap.drain().map { SearchHit(keys[it.second], it.first) }
    }

    companion object {
        const val BLOCK = 4096
        private const val TWO_112 = 5.192296858534828e33f  // 2^112

        /** An fp16 pattern (finite) as float32 times 2^-112. */
        @Suppress("NOTHING_TO_INLINE")
        private inline fun widen(h: Int): Float = java.lang.Float.intBitsToFloat(((h and 0x8000) shl 16) or ((h and 0x7FFF) shl 13))
    }
}

/**
 * The k best (score, slot) pairs of a stream offered in slot order: a min-heap whose root is the worst kept
 * (lowest score; among equal scores the later slot). A later slot with an equal score never displaces.
 */
class TopK(private val k: Int) {
    private val scores = FloatArray(k)
    private val slots = IntArray(k)
    private var n = 0

    private fun worse(a: Int, b: Int): Boolean = scores[a] < scores[b] || (scores[a] == scores[b] && slots[a] > slots[b])

    fun offer(score: Float, slot: Int) {
        if (n < k) {
            scores[n] = score; slots[n] = slot
            var i = n++
            while (i > 0) {
                val p = (i - 1) / 2
                if (!worse(i, p)) break
                swap(i, p); i = p
            }
        } else if (score > scores[0]) {
            scores[0] = score; slots[0] = slot
            var i = 0
            while (true) {
                val l = 2 * i + 1
                val r = l + 1
                var m = i
                if (l < n && worse(l, m)) m = l
                if (r < n && worse(r, m)) m = r
                if (m == i) break
                swap(i, m); i = m
            }
        }
    }

    private fun swap(a: Int, b: Int) {
        val s = scores[a]; scores[a] = scores[b]; scores[b] = s
        val t = slots[a]; slots[a] = slots[b]; slots[b] = t
    }

    /** Best first (k items: sorting them is O(k log k)). */
    fun drain(): List<Pair<Float, Int>> =
        (0 until n).map { scores[it] to slots[it] }.sortedWith(Comparator { a, b ->
            val c = b.first.compareTo(a.first)
            if (c != 0) c else a.second.compareTo(b.second)
        })
}
