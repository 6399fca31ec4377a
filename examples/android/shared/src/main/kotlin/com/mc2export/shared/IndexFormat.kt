package com.mc2export.shared

import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.util.zip.CRC32

/** An index file that cannot be used as asked (not an index, another model, a damaged header). One line. */
class IndexException(message: String) : Exception(message)

/**
 * The header of an `.mc2i` photo index (docs/app_index.md): the bundle it belongs to. An index is valid only for
 * the model that built it: [sameModel] compares everything that names the embedding space.
 */
class IndexHeader(val variant: String, val precision: String, val bundleSha256: String, val dim: Int,
                  val vectorDtype: String = "float16") {
    init {
        if (dim !in 1..8192) throw IndexException("index header: dim $dim is outside 1..8192")
        if (!SHA256.matches(bundleSha256)) throw IndexException("index header: bundle_sha256 must be 64 lowercase hex digits")
        if (vectorDtype != "float16") throw IndexException("index header: vector_dtype \"$vectorDtype\" is not supported (float16 only)")
    }

    fun sameModel(o: IndexHeader): Boolean =
        variant == o.variant && precision == o.precision && bundleSha256 == o.bundleSha256 && dim == o.dim

    override fun toString() = "$variant $precision (config ${bundleSha256.take(12)}, $dim-d)"

    /** The header JSON as the Python reference writes it (json.dumps: sorted keys, compact, ASCII escapes). */
    fun json(): String = "{\"bundle_sha256\":${ascii(bundleSha256)},\"dim\":$dim,\"precision\":${ascii(precision)}," +
        "\"variant\":${ascii(variant)},\"vector_dtype\":${ascii(vectorDtype)}}"

    /** magic, version, hlen, JSON: the first bytes of every index file. */
    fun encode(): ByteArray {
        val js = json().toByteArray(Charsets.UTF_8)
        val bb = ByteBuffer.allocate(16 + js.size).order(ByteOrder.LITTLE_ENDIAN)
        bb.put(IndexFormat.MAGIC).putInt(IndexFormat.VERSION).putInt(js.size).put(js)
        return bb.array()
    }

    companion object {
        private val SHA256 = Regex("[0-9a-f]{64}")

        /** A JSON string as Python's json.dumps writes it (ensure_ascii): byte-identical headers across ports. */
        fun ascii(s: String): String {
            val sb = StringBuilder("\"")
            for (c in s) when {
                c == '"' -> sb.append("\\\"")
                c == '\\' -> sb.append("\\\\")
                c == '\n' -> sb.append("\\n")
                c == '\r' -> sb.append("\\r")
                c == '\t' -> sb.append("\\t")
                c == '\b' -> sb.append("\\b")
                c == '\u000c' -> sb.append("\\f")
                c < ' ' || c > '~' -> sb.append(String.format("\\u%04x", c.toInt()))
                else -> sb.append(c)
            }
            return sb.append('"').toString()
        }

        /** The header JSON's object (every field required, of its type). */
        fun fromJson(text: String): IndexHeader {
            val m = try {
                J.obj(Json.parse(text), "index header")
            } catch (e: Json.ParseError) {
                throw IndexException("index header is not valid JSON: ${e.message}")
            } catch (e: IllegalArgumentException) {
                throw IndexException(e.message ?: "index header is not a JSON object")
            }
            try {
                for (f in listOf("variant", "precision", "bundle_sha256", "dim", "vector_dtype")) {
                    if (!m.containsKey(f)) throw IndexException("index header: $f is missing")
                }
                return IndexHeader(J.str(m["variant"], "index header variant"), J.str(m["precision"], "index header precision"),
                    J.str(m["bundle_sha256"], "index header bundle_sha256"), J.int(m["dim"], "index header dim"),
                    J.str(m["vector_dtype"], "index header vector_dtype"))
            } catch (e: IllegalArgumentException) {
                throw IndexException(e.message ?: "index header has a field of the wrong type")
            }
        }
    }
}

/** Byte layout constants and the record codec shared by the reader, the appender and compaction. */
object IndexFormat {
    val MAGIC = "MC2INDEX".toByteArray(Charsets.US_ASCII)
    const val VERSION = 1
    const val MAX_HEADER = 65536
    const val MAX_KEY = 4096
    const val PUT: Int = 1
    const val DELETE: Int = 2

    /** Bytes of a record with a [klen]-byte key (PUT with [dim]-d vector, or DELETE). */
    fun recordBytes(kind: Int, klen: Int, dim: Int): Int = 1 + 2 + klen + 8 + (if (kind == PUT) 2 * dim else 0) + 4

    /**
     * Append one record to [bb] (little-endian, enough room): kind, klen, key, stamp, fp16 vector bits (PUT), CRC.
     * [vector] holds [dim] fp16 bits starting at [offset].
     */
    fun putRecord(bb: ByteBuffer, kind: Int, key: ByteArray, stamp: Long, vector: ShortArray?, offset: Int, dim: Int) {
        val start = bb.position()
        bb.put(kind.toByte()).putShort(key.size.toShort()).put(key).putLong(stamp)
        if (kind == PUT) for (i in 0 until dim) bb.putShort(vector!![offset + i])
        val crc = CRC32()
        crc.update(bb.array(), bb.arrayOffset() + start, bb.position() - start)
        bb.putInt(crc.value.toInt())
    }

    /** The key's UTF-8 bytes, refused (one line) where the format cannot hold it. */
    fun keyBytes(key: String): ByteArray {
        val b = key.toByteArray(Charsets.UTF_8)
        if (b.isEmpty() || b.size > MAX_KEY) throw IllegalArgumentException("an index key must be 1..$MAX_KEY UTF-8 bytes, got ${b.size}")
        return b
    }
}

/** IEEE 754 binary16 <-> float32 (round to nearest even, as numpy's astype(float16)). */
object Fp16 {
    /** Every fp16 bit pattern widened: search widens through this table (256 KB, stays in cache). */
    val TABLE: FloatArray by lazy { FloatArray(65536) { toFloat(it.toShort()) } }

    fun toFloat(h: Short): Float {
        val bits = h.toInt() and 0xFFFF
        val sign = (bits and 0x8000) shl 16
        val exp = (bits ushr 10) and 0x1F
        var mant = bits and 0x3FF
        return when {
            exp == 0x1F -> java.lang.Float.intBitsToFloat(sign or 0x7F800000 or (mant shl 13))
            exp != 0 -> java.lang.Float.intBitsToFloat(sign or ((exp + 112) shl 23) or (mant shl 13))
            mant == 0 -> java.lang.Float.intBitsToFloat(sign)
            else -> {  // subnormal: normalize
                var e = 113
                while (mant and 0x400 == 0) { mant = mant shl 1; e-- }
                java.lang.Float.intBitsToFloat(sign or (e shl 23) or ((mant and 0x3FF) shl 13))
            }
        }
    }

    fun fromFloat(f: Float): Short {
        val x = java.lang.Float.floatToRawIntBits(f)
        val sign = (x ushr 16) and 0x8000
        val exp = (x ushr 23) and 0xFF
        val mant = x and 0x7FFFFF
        if (exp == 0xFF) return (sign or 0x7C00 or (if (mant != 0) 0x200 or (mant ushr 13) else 0)).toShort()
        val e = exp - 127 + 15
        if (e >= 0x1F) return (sign or 0x7C00).toShort()  // overflow: infinity
        if (e <= 0) {  // subnormal or zero in fp16
            if (e < -10) return sign.toShort()
            val m = mant or 0x800000
            val shift = 14 - e
            var h = m ushr shift
            val rem = m and ((1 shl shift) - 1)
            val half = 1 shl (shift - 1)
            if (rem > half || (rem == half && (h and 1) == 1)) h++
            return (sign or h).toShort()
        }
        var h = (e shl 10) or (mant ushr 13)
        val rem = mant and 0x1FFF
        if (rem > 0x1000 || (rem == 0x1000 && (h and 1) == 1)) h++  // a carry into the exponent is still right
        return (sign or h).toShort()
    }
}
