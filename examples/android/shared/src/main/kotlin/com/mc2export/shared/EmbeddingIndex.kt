package com.mc2export.shared

import java.io.DataInputStream
import java.io.DataOutputStream
import java.io.IOException
import java.io.InputStream
import java.io.OutputStream

/** One search hit: the photo's key (content URI / asset id), its score (cosine) and rank. */
class SearchHit(val key: String, val score: Float)

/**
 * The on-device photo index: one L2-normalized image embedding per photo, searched by cosine with a
 * text embedding (brute force: 10k photos x 512-d is 5M multiply-adds, ~ms on a phone).
 *
 * Stored as a small binary file (big-endian, java.io.Data*Stream): "MC2IDX" v1, the bundle's variant,
 * runtime and precision (an index is only valid for the model that built it), the dimension, then per
 * photo: key (UTF), modified-time (long, for incremental updates) and the floats.
 */
class EmbeddingIndex(val variant: String, val runtime: String, val precision: String, val dim: Int) {
    private val keys = ArrayList<String>()
    private val stamps = ArrayList<Long>()
    private val vectors = ArrayList<FloatArray>()
    private val position = HashMap<String, Int>()

    val size: Int get() = keys.size

    fun contains(key: String, modified: Long): Boolean {
        val i = position[key] ?: return false
        return stamps[i] == modified
    }

    /** Add or replace the embedding of [key] (normalized here). */
    fun put(key: String, modified: Long, embedding: FloatArray) {
        require(embedding.size == dim) { "embedding has ${embedding.size} values, the index holds $dim-d vectors" }
        val v = ZeroShot.l2normalize(embedding)
        val i = position[key]
        if (i != null) {
            stamps[i] = modified
            vectors[i] = v
        } else {
            position[key] = keys.size
            keys.add(key)
            stamps.add(modified)
            vectors.add(v)
        }
    }

    /** Keep only the keys for which [keep] is true (photos deleted since indexing go away). */
    fun retain(keep: (String) -> Boolean) {
        val ks = ArrayList(keys)
        val ss = ArrayList(stamps)
        val vs = ArrayList(vectors)
        keys.clear(); stamps.clear(); vectors.clear(); position.clear()
        for (i in ks.indices) if (keep(ks[i])) {
            position[ks[i]] = keys.size
            keys.add(ks[i]); stamps.add(ss[i]); vectors.add(vs[i])
        }
    }

    /** The [k] photos closest to [query] (any scale; normalized here), best first. */
    fun search(query: FloatArray, k: Int): List<SearchHit> {
        require(query.size == dim) { "query has ${query.size} values, the index holds $dim-d vectors" }
        val q = ZeroShot.l2normalize(query)
        val scores = FloatArray(vectors.size) { ZeroShot.dot(q, vectors[it]) }
        return ZeroShot.topK(scores, k).map { SearchHit(keys[it], scores[it]) }
    }

    fun write(out: OutputStream) {
        val d = DataOutputStream(out)
        d.writeBytes(MAGIC)
        d.writeInt(VERSION)
        d.writeUTF(variant); d.writeUTF(runtime); d.writeUTF(precision)
        d.writeInt(dim)
        d.writeInt(keys.size)
        for (i in keys.indices) {
            d.writeUTF(keys[i])
            d.writeLong(stamps[i])
            for (x in vectors[i]) d.writeFloat(x)
        }
        d.flush()
    }

    companion object {
        private const val MAGIC = "MC2IDX"
        private const val VERSION = 1

        /** Read an index; null when the file is not an index, is damaged, or was built by another model. */
        fun read(input: InputStream, variant: String, runtime: String, precision: String, dim: Int): EmbeddingIndex? {
            return try {
                val d = DataInputStream(input)
                val magic = ByteArray(MAGIC.length)
                d.readFully(magic)
                if (String(magic, Charsets.US_ASCII) != MAGIC || d.readInt() != VERSION) return null
                val v = d.readUTF(); val r = d.readUTF(); val p = d.readUTF()
                val n = d.readInt()
                if (v != variant || r != runtime || p != precision || n != dim) return null
                val count = d.readInt()
                if (count < 0) return null
                val idx = EmbeddingIndex(v, r, p, n)
                for (i in 0 until count) {
                    val key = d.readUTF()
                    val stamp = d.readLong()
                    val vec = FloatArray(n) { d.readFloat() }
                    idx.put(key, stamp, vec)
                }
                idx
            } catch (e: IOException) {
                null
            }
        }
    }
}
