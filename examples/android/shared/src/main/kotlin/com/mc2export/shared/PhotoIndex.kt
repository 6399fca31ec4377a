package com.mc2export.shared

import java.io.BufferedInputStream
import java.io.Closeable
import java.io.EOFException
import java.io.File
import java.io.FileInputStream
import java.io.IOException
import java.io.InputStream
import java.io.RandomAccessFile
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel
import java.nio.charset.CharacterCodingException
import java.nio.charset.CodingErrorAction
import java.nio.file.AtomicMoveNotSupportedException
import java.nio.file.Files
import java.nio.file.StandardCopyOption
import java.nio.file.StandardOpenOption
import java.util.zip.CRC32

/** One operation of a batch: a photo's embedding (any scale: L2-normalized here) or a tombstone (vector null). */
class IndexOp(val key: String, val stamp: Long, val vector: FloatArray?) {
    companion object {
        fun put(key: String, stamp: Long, vector: FloatArray) = IndexOp(key, stamp, vector)
        fun delete(key: String, stamp: Long = 0L) = IndexOp(key, stamp, null)
    }
}

/** What replaying a file found: the header, the live state, where the whole records end, what was dropped. */
class Replay(val header: IndexHeader, val store: VectorStore, val validLength: Long, val fileLength: Long,
             val records: Long, val deadBytes: Long) {
    val droppedBytes: Long get() = fileLength - validLength
}

/**
 * The `.mc2i` photo index (docs/app_index.md) open for searching and appending. Every [append] is one write of
 * the whole batch followed by FileChannel.force: once it returns, the batch survives a crash; a crash during
 * it leaves a torn tail that the next [open] drops (truncating the file to its last whole record).
 * Not thread-safe: one indexing worker appends; searches must not run concurrently with appends.
 */
class PhotoIndex private constructor(val file: File, val header: IndexHeader, private val store: VectorStore,
                                     private var length: Long, private var deadBytes: Long,
                                     /** Bytes of torn tail dropped when this index was opened. */
                                     val droppedBytes: Long) : Closeable {
    private var channel: FileChannel? = null

    val size: Int get() = store.size
    val fileLength: Long get() = length
    val dim: Int get() = header.dim

    fun contains(key: String, stamp: Long) = store.contains(key, stamp)
    fun keys(): List<String> = store.liveKeys()
    fun vectorBits(key: String): ShortArray? = store.vectorBits(key)
    fun stamp(key: String): Long? = store.stamp(key)
    fun search(query: FloatArray, k: Int): List<SearchHit> = store.search(query, k)

    /** Share of the file held by replaced PUTs and tombstones: compaction is due above 1/4 (the spec's rule). */
    val deadFraction: Double get() = if (length == 0L) 0.0 else deadBytes.toDouble() / length
    val compactionDue: Boolean get() = deadFraction > 0.25

    /**
     * Append [ops] durably: encoded into one buffer, written with one write, forced to the device, then applied
     * in memory. An empty batch does nothing.
     */
    fun append(ops: List<IndexOp>) {
        if (ops.isEmpty()) return
        val dim = header.dim
        val keyBytes = ops.map { IndexFormat.keyBytes(it.key) }
        var total = 0
        for ((i, op) in ops.withIndex()) {
            if (op.vector != null) require(op.vector.size == dim) { "embedding has ${op.vector.size} values, the index holds $dim-d vectors" }
            total += IndexFormat.recordBytes(if (op.vector != null) IndexFormat.PUT else IndexFormat.DELETE, keyBytes[i].size, dim)
        }
        val bits = ShortArray(ops.count { it.vector != null } * dim)
        var v = 0
        for (op in ops) if (op.vector != null) { encodeVector(op.vector, bits, v * dim); v++ }
        val bb = ByteBuffer.allocate(total).order(ByteOrder.LITTLE_ENDIAN)
        v = 0
        for ((i, op) in ops.withIndex()) {
            if (op.vector != null) {
                IndexFormat.putRecord(bb, IndexFormat.PUT, keyBytes[i], op.stamp, bits, v * dim, dim); v++
            } else {
                IndexFormat.putRecord(bb, IndexFormat.DELETE, keyBytes[i], op.stamp, null, 0, dim)
            }
        }
        bb.flip()
        val ch = openChannel()
        ch.position(length)
        while (bb.hasRemaining()) ch.write(bb)
        ch.force(false)
        length += total
        v = 0
        for ((i, op) in ops.withIndex()) {
            if (op.vector != null) {
                val old = store.slot(op.key)
                if (old != null) deadBytes += IndexFormat.recordBytes(IndexFormat.PUT, keyBytes[i].size, dim)
                store.put(op.key, op.stamp, bits, v * dim); v++
            } else {
                if (store.delete(op.key)) deadBytes += IndexFormat.recordBytes(IndexFormat.PUT, keyBytes[i].size, dim)
                deadBytes += IndexFormat.recordBytes(IndexFormat.DELETE, keyBytes[i].size, dim)
            }
        }
    }

    private fun openChannel(): FileChannel {
        channel?.let { return it }
        val ch = FileChannel.open(file.toPath(), StandardOpenOption.WRITE)
        channel = ch
        return ch
    }

    /**
     * Rewrite the live state (header, one PUT per live key in index order, bits and stamps as they are) into
     * `<name>.tmp`, force it, rename it over the index, force the folder. Run between indexing runs or in the
     * background, never on the indexing path. The tmp file is written in [chunkBytes] pieces (bounded memory).
     */
    fun compact(chunkBytes: Int = 1 shl 20) {
        close()
        val tmp = File(file.path + ".tmp")
        var written = 0L
        FileChannel.open(tmp.toPath(), StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
            StandardOpenOption.WRITE).use { ch ->
            val head = header.encode()
            ch.write(ByteBuffer.wrap(head))
            written += head.size
            val maxRecord = IndexFormat.recordBytes(IndexFormat.PUT, IndexFormat.MAX_KEY, header.dim)
            val bb = ByteBuffer.allocate(maxOf(chunkBytes, maxRecord)).order(ByteOrder.LITTLE_ENDIAN)
            store.forEachLive { key, stamp, block, offset ->
                val kb = key.toByteArray(Charsets.UTF_8)
                if (bb.remaining() < IndexFormat.recordBytes(IndexFormat.PUT, kb.size, header.dim)) {
                    bb.flip(); while (bb.hasRemaining()) ch.write(bb); bb.clear()
                }
                val before = bb.position()
                IndexFormat.putRecord(bb, IndexFormat.PUT, kb, stamp, block, offset, header.dim)
                written += bb.position() - before
            }
            bb.flip(); while (bb.hasRemaining()) ch.write(bb)
            ch.force(true)
        }
        try {
            Files.move(tmp.toPath(), file.toPath(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING)
        } catch (e: AtomicMoveNotSupportedException) {
            tmp.delete()
            throw IOException("cannot replace ${file.path} atomically: ${e.message}")
        }
        forceFolder(file.absoluteFile.parentFile)
        length = written
        deadBytes = 0
    }

    override fun close() {
        channel?.close()
        channel = null
    }

    companion object {
        /**
         * One embedding as the format stores it, bit for bit as the Python reference: the norm summed in double,
         * rounded to float, the division in float32, then fp16 (nearest even). Zero or non-finite: refused.
         */
        fun encodeVector(v: FloatArray, out: ShortArray, offset: Int) {
            var s = 0.0
            for (x in v) s += x.toDouble() * x
            val n = Math.sqrt(s).toFloat()
            require(n > 0f && !n.isInfinite() && !n.isNaN()) { "embedding is zero or not finite: nothing to index" }
            for (i in v.indices) out[offset + i] = Fp16.fromFloat(v[i] / n)
        }

        /**
         * Open (or create) the index of the model [expected] at [file] for searching and appending. A file of
         * another model is refused (IndexException; the caller asks the user before [create] replaces it); a
         * torn tail is dropped and the file truncated to its last whole record before anything is appended.
         */
        fun open(file: File, expected: IndexHeader): PhotoIndex {
            if (!file.exists()) return create(file, expected)
            val r = FileInputStream(file).use { replay(it, file.length(), expected) }
            if (r.droppedBytes > 0) {
                RandomAccessFile(file, "rw").use { raf -> raf.channel.truncate(r.validLength); raf.channel.force(true) }
            }
            return PhotoIndex(file, r.header, r.store, r.validLength, r.deadBytes, r.droppedBytes)
        }

        /** A new empty index (header only, written via tmp + rename) replacing whatever [file] was. */
        fun create(file: File, header: IndexHeader): PhotoIndex {
            val tmp = File(file.path + ".tmp")
            val head = header.encode()
            FileChannel.open(tmp.toPath(), StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE).use { ch -> ch.write(ByteBuffer.wrap(head)); ch.force(true) }
            Files.move(tmp.toPath(), file.toPath(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING)
            forceFolder(file.absoluteFile.parentFile)
            return PhotoIndex(file, header, VectorStore(header.dim), head.size.toLong(), 0L, 0L)
        }

        /** Read-only replay of a whole file (null [expected]: any model). */
        fun read(file: File, expected: IndexHeader? = null): Replay = FileInputStream(file).use { replay(it, file.length(), expected) }

        private fun forceFolder(dir: File?) {
            if (dir == null) return
            try {
                FileChannel.open(dir.toPath(), StandardOpenOption.READ).use { it.force(true) }
            } catch (e: IOException) {
                // Not every platform opens folders (the rename itself is atomic already)
            }
        }

        /**
         * Replay [input] ([fileLength] bytes): the header (refused: not an index, unknown version, bad JSON,
         * another model than [expected]), then records until the end or the first damaged one (incomplete,
         * unknown kind, klen 0 or > 4096, key not UTF-8, CRC mismatch) -- everything before it is the index.
         */
        fun replay(input: InputStream, fileLength: Long, expected: IndexHeader?): Replay {
            val inp = if (input is BufferedInputStream) input else BufferedInputStream(input, 1 shl 16)
            val fixed = ByteArray(16)
            if (readUpTo(inp, fixed, 0, 16) < 16 || !fixed.copyOfRange(0, 8).contentEquals(IndexFormat.MAGIC)) {
                throw IndexException("not a photo index (no MC2INDEX header)")
            }
            val hb = ByteBuffer.wrap(fixed).order(ByteOrder.LITTLE_ENDIAN)
            val version = hb.getInt(8)
            if (version != IndexFormat.VERSION) {
                throw IndexException("photo index version ${version.toLong() and 0xFFFFFFFFL} is not supported (this app reads version ${IndexFormat.VERSION})")
            }
            val hlen = hb.getInt(12)
            if (hlen < 1 || hlen > IndexFormat.MAX_HEADER) throw IndexException("photo index header length $hlen is outside 1..${IndexFormat.MAX_HEADER}")
            val hjson = ByteArray(hlen)
            if (readUpTo(inp, hjson, 0, hlen) < hlen) throw IndexException("photo index header is cut short")
            val header = IndexHeader.fromJson(decodeUtf8(hjson) ?: throw IndexException("photo index header is not UTF-8"))
            if (expected != null && !expected.sameModel(header)) {
                throw IndexException("this photo index was built by another model ($header), not the loaded one ($expected)")
            }
            val dim = header.dim
            val store = VectorStore(dim)
            var pos = 16L + hlen
            var records = 0L
            var dead = 0L
            val rec = ByteArray(IndexFormat.recordBytes(IndexFormat.PUT, IndexFormat.MAX_KEY, dim))
            val bits = ShortArray(dim)
            val crc = CRC32()
            while (true) {
                val got = readUpTo(inp, rec, 0, 3)
                if (got < 3) break  // end (0) or torn inside the record's start
                val kind = rec[0].toInt() and 0xFF
                val klen = (rec[1].toInt() and 0xFF) or ((rec[2].toInt() and 0xFF) shl 8)
                if ((kind != IndexFormat.PUT && kind != IndexFormat.DELETE) || klen < 1 || klen > IndexFormat.MAX_KEY) break
                val n = IndexFormat.recordBytes(kind, klen, dim)
                if (readUpTo(inp, rec, 3, n - 3) < n - 3) break
                crc.reset()
                crc.update(rec, 0, n - 4)
                val bb = ByteBuffer.wrap(rec, 0, n).order(ByteOrder.LITTLE_ENDIAN)
                if (bb.getInt(n - 4) != crc.value.toInt()) break
                val key = decodeUtf8(rec.copyOfRange(3, 3 + klen)) ?: break
                val stamp = bb.getLong(3 + klen)
                if (kind == IndexFormat.PUT) {
                    bb.position(3 + klen + 8)
                    bb.asShortBuffer().get(bits, 0, dim)
                    store.slot(key)?.let { dead += IndexFormat.recordBytes(IndexFormat.PUT, klen, dim) }
                    store.put(key, stamp, bits, 0)
                } else {
                    if (store.delete(key)) dead += IndexFormat.recordBytes(IndexFormat.PUT, klen, dim)
                    dead += n
                }
                pos += n
                records++
            }
            return Replay(header, store, pos, fileLength, records, dead)
        }

        private fun decodeUtf8(b: ByteArray): String? = try {
            Charsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(b)).toString()
        } catch (e: CharacterCodingException) {
            null
        }

        /** Read up to [n] bytes (fewer only at the end of the stream). */
        private fun readUpTo(inp: InputStream, b: ByteArray, off: Int, n: Int): Int {
            var got = 0
            while (got < n) {
                val r = try { inp.read(b, off + got, n - got) } catch (e: EOFException) { -1 }
                if (r < 0) break
                got += r
            }
            return got
        }
    }
}
