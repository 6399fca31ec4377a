package com.mc2export.shared

import java.io.BufferedReader
import java.io.InputStream
import java.io.InputStreamReader
import java.util.zip.GZIPInputStream

/** One tokenized text: the model row and what happened on the way. */
class TokenizedText(
    /** `[SOT, ids..., EOT, 0, ...]`, exactly contextLength ints (int32 model input). */
    val row: IntArray,
    /** Length of `[SOT] + ids + [EOT]` before truncation. */
    val nTokens: Int,
    /** True when the text did not fit: the row keeps its first contextLength ids and ends with EOT. */
    val truncated: Boolean
) {
    /** The row without padding: `[SOT, ids..., EOT]` (truncated). */
    fun ids(): IntArray = row.copyOf(minOf(nTokens, row.size))
}

/**
 * CLIP byte-level BPE tokenizer, a port of mc2export.tokenizer (= open_clip's SimpleTokenizer):
 * cleaning ([TextCleaner], the portable subset), pre-tokenization with CLIP's pattern
 * `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` (case-insensitive),
 * UTF-8 bytes mapped to GPT-2's printable stand-ins, `</w>` on the last symbol, merges lowest rank first.
 * Rows: `[49406, ids..., 49407, 0...]`; a row longer than contextLength keeps its first contextLength ids
 * and its last id becomes 49407, exactly as Python.
 */
class ClipTokenizer private constructor(
    private val encoder: Map<String, Int>,
    private val ranks: Map<String, Int>,
    val contextLength: Int
) {
    private val cache = HashMap<String, IntArray>()

    companion object {
        const val SOT = 49406
        const val EOT = 49407
        const val PAD = 0
        const val VOCAB_SIZE = 49408
        const val N_MERGES = 49152 - 256 - 2
        const val SOT_TEXT = "<start_of_text>"
        const val EOT_TEXT = "<end_of_text>"
        private const val CACHE_LIMIT = 50000

        /** GPT-2/CLIP byte table: index = byte value, value = its stand-in character. */
        val BYTE_ENCODER: Array<String>
        /** Byte stand-ins in vocabulary order (printable bytes first, then the other 68). */
        val BYTE_SYMBOLS: List<String>

        init {
            val printable = ArrayList<Int>()
            printable.addAll(0x21..0x7E)
            printable.addAll(0xA1..0xAC)
            printable.addAll(0xAE..0xFF)
            val table = arrayOfNulls<String>(256)
            for (b in printable) table[b] = String(Character.toChars(b))
            var extra = 0
            for (b in 0 until 256) {
                if (table[b] == null) {
                    table[b] = String(Character.toChars(256 + extra))
                    extra++
                }
            }
            @Suppress("UNCHECKED_CAST")
            BYTE_ENCODER = table as Array<String>
            val ordered = ArrayList<String>()
            for (b in printable) ordered.add(table[b]!!)
            val printableSet = printable.toHashSet()
            for (b in 0 until 256) if (b !in printableSet) ordered.add(table[b]!!)
            BYTE_SYMBOLS = ordered
        }

        /** Merge lines (`left right`) of merges.txt, skipping exactly the first (header) line. */
        fun parseMerges(text: String): List<Pair<String, String>> {
            val lines = text.split('\n')
            if (lines.isEmpty() || !lines[0].startsWith("#version")) {
                throw IllegalArgumentException("merges.txt must start with the '#version: 0.2' header line")
            }
            val out = ArrayList<Pair<String, String>>(N_MERGES)
            for (i in 1 until lines.size) {
                val line = lines[i].trimEnd('\r')
                if (line.isEmpty()) continue
                val sp = line.indexOf(' ')
                if (sp <= 0 || sp == line.length - 1 || line.indexOf(' ', sp + 1) >= 0) {
                    throw IllegalArgumentException("merges.txt line ${i + 1} is not 'left right': '$line'")
                }
                out.add(Pair(line.substring(0, sp), line.substring(sp + 1)))
                if (out.size == N_MERGES) break
            }
            if (out.size != N_MERGES) {
                throw IllegalArgumentException("merges.txt holds ${out.size} merges, expected $N_MERGES (damaged or not CLIP's)")
            }
            return out
        }

        private fun rankTable(merges: List<Pair<String, String>>): Map<String, Int> {
            val ranks = HashMap<String, Int>(merges.size * 2)
            for ((i, m) in merges.withIndex()) ranks[m.first + " " + m.second] = i
            return ranks
        }

        /** The vocabulary Python derives from the merges (the order vocab.json is written in). */
        fun deriveVocab(merges: List<Pair<String, String>>): List<String> {
            val vocab = ArrayList<String>(VOCAB_SIZE)
            vocab.addAll(BYTE_SYMBOLS)
            for (s in BYTE_SYMBOLS) vocab.add("$s</w>")
            for (m in merges) vocab.add(m.first + m.second)
            vocab.add(SOT_TEXT)
            vocab.add(EOT_TEXT)
            return vocab
        }

        /** From a bundle's `vocab.json` and `merges.txt` texts (what the apps load). */
        fun fromFiles(vocabJson: String, mergesTxt: String, contextLength: Int = 77): ClipTokenizer {
            val merges = parseMerges(mergesTxt)
            val parsed = try {
                Json.parse(vocabJson)
            } catch (e: Json.ParseError) {
                throw IllegalArgumentException("vocab.json is not valid JSON: ${e.message}")
            }
            val obj = J.obj(parsed, "vocab.json")
            val encoder = HashMap<String, Int>(obj.size * 2)
            for ((k, v) in obj) encoder[k] = J.int(v, "vocab.json[\"$k\"]")
            if (encoder.size != VOCAB_SIZE) throw IllegalArgumentException("vocab.json holds ${encoder.size} tokens, expected $VOCAB_SIZE")
            if (encoder[SOT_TEXT] != SOT || encoder[EOT_TEXT] != EOT) {
                throw IllegalArgumentException("vocab.json: $SOT_TEXT / $EOT_TEXT must be $SOT / $EOT")
            }
            // Every symbol BPE can produce must have an id -- the byte symbols (alone or word-final) and every
            // merge -- so that [bpe] cannot meet an unknown symbol on a validated vocabulary.
            for (s in BYTE_SYMBOLS) {
                if (!encoder.containsKey(s) || !encoder.containsKey("$s</w>")) {
                    throw IllegalArgumentException("vocab.json lacks the byte symbol '$s': not CLIP's vocabulary")
                }
            }
            for (m in merges) {
                if (!encoder.containsKey(m.first + m.second)) {
                    throw IllegalArgumentException("merges.txt and vocab.json do not belong together (merge '${m.first} ${m.second}')")
                }
            }
            return ClipTokenizer(encoder, rankTable(merges), checkContext(contextLength))
        }

        /** From merges alone (vocabulary derived as Python does). */
        fun fromMerges(merges: List<Pair<String, String>>, contextLength: Int = 77): ClipTokenizer {
            val vocab = deriveVocab(merges)
            val encoder = HashMap<String, Int>(vocab.size * 2)
            for ((i, t) in vocab.withIndex()) encoder[t] = i
            if (encoder.size != VOCAB_SIZE) throw IllegalArgumentException("merges give ${encoder.size} distinct tokens, expected $VOCAB_SIZE")
            return ClipTokenizer(encoder, rankTable(merges), checkContext(contextLength))
        }

        /** From CLIP's original `bpe_simple_vocab_16e6.txt.gz` (mc2export/assets/). */
        fun fromClipGzip(stream: InputStream, contextLength: Int = 77): ClipTokenizer {
            val text = BufferedReader(InputStreamReader(GZIPInputStream(stream), Charsets.UTF_8)).use { it.readText() }
            val lines = text.split('\n')
            val merges = ArrayList<Pair<String, String>>(N_MERGES)
            for (i in 1..N_MERGES) {
                val parts = lines[i].split(' ')
                merges.add(Pair(parts[0], parts[1]))
            }
            return fromMerges(merges, contextLength)
        }

        private fun checkContext(n: Int): Int {
            if (n < 2) throw IllegalArgumentException("context length must be >= 2 (room for start and end tokens), got $n")
            return n
        }

        private fun isLetter(cp: Int): Boolean = Character.isLetter(cp)

        private fun isNumber(cp: Int): Boolean {
            val t = Character.getType(cp)
            return t == Character.DECIMAL_DIGIT_NUMBER.toInt() || t == Character.LETTER_NUMBER.toInt() ||
                t == Character.OTHER_NUMBER.toInt()
        }

        private val LITERALS = arrayOf(SOT_TEXT, EOT_TEXT, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d")

        /** Case-insensitive match of an ASCII literal at [pos] (regex IGNORECASE: simple case folding,
         *  under which U+017F LATIN SMALL LETTER LONG S equals 's'). Returns the end index or -1. */
        private fun matchLiteral(s: String, pos: Int, lit: String): Int {
            var i = pos
            for (k in 0 until lit.length) {
                if (i >= s.length) return -1
                val cp = s.codePointAt(i)
                val p = lit.codePointAt(k)  // ASCII
                val ok = cp == p || (cp in 0x41..0x5A && cp + 32 == p) || (p == 0x73 && cp == 0x17F)
                if (!ok) return -1
                i += Character.charCount(cp)
            }
            return i
        }

        /** CLIP's pre-tokenization of cleaned text (Python: `_PATTERN.findall`). */
        fun preTokenize(cleaned: String): List<String> {
            val out = ArrayList<String>()
            var i = 0
            val n = cleaned.length
            outer@ while (i < n) {
                for (lit in LITERALS) {
                    val end = matchLiteral(cleaned, i, lit)
                    if (end >= 0) {
                        out.add(cleaned.substring(i, end))
                        i = end
                        continue@outer
                    }
                }
                val cp = cleaned.codePointAt(i)
                val len = Character.charCount(cp)
                when {
                    isLetter(cp) -> {
                        var j = i + len
                        while (j < n) {
                            val c = cleaned.codePointAt(j)
                            if (!isLetter(c)) break
                            j += Character.charCount(c)
                        }
                        out.add(cleaned.substring(i, j))
                        i = j
                    }
                    isNumber(cp) -> {
                        out.add(cleaned.substring(i, i + len))
                        i += len
                    }
                    TextCleaner.isPythonSpace(cp) -> i += len
                    else -> {
                        var j = i + len
                        while (j < n) {
                            val c = cleaned.codePointAt(j)
                            if (isLetter(c) || isNumber(c) || TextCleaner.isPythonSpace(c)) break
                            j += Character.charCount(c)
                        }
                        out.add(cleaned.substring(i, j))
                        i = j
                    }
                }
            }
            return out
        }
    }

    /** BPE ids of one pre-tokenized piece. */
    private fun bpe(piece: String): IntArray {
        cache[piece]?.let { return it }
        val special = encoder[piece]
        if ((piece == SOT_TEXT || piece == EOT_TEXT) && special != null) return intArrayOf(special)
        val bytes = piece.toByteArray(Charsets.UTF_8)
        val word = ArrayList<String>(bytes.size)
        for (b in bytes) word.add(BYTE_ENCODER[b.toInt() and 0xFF])
        word[word.size - 1] = word[word.size - 1] + "</w>"
        var symbols: List<String> = word
        while (symbols.size > 1) {
            var bestRank = Int.MAX_VALUE
            var bestFirst: String? = null
            var bestSecond: String? = null
            for (k in 0 until symbols.size - 1) {
                val r = ranks[symbols[k] + " " + symbols[k + 1]]
                if (r != null && r < bestRank) {
                    bestRank = r
                    bestFirst = symbols[k]
                    bestSecond = symbols[k + 1]
                }
            }
            if (bestFirst == null) break
            val merged = ArrayList<String>(symbols.size)
            var k = 0
            while (k < symbols.size) {
                if (k < symbols.size - 1 && symbols[k] == bestFirst && symbols[k + 1] == bestSecond) {
                    merged.add(bestFirst + bestSecond)
                    k += 2
                } else {
                    merged.add(symbols[k])
                    k += 1
                }
            }
            symbols = merged
        }
        val ids = IntArray(symbols.size) { encoder[symbols[it]] ?: throw IllegalStateException("BPE symbol '${symbols[it]}' is not in the vocabulary") }
        if (cache.size >= CACHE_LIMIT) cache.clear()
        cache[piece] = ids
        return ids
    }

    /** BPE ids of already-cleaned text (no start/end tokens). */
    fun encodeCleaned(cleaned: String): IntArray {
        val out = ArrayList<Int>()
        for (piece in preTokenize(cleaned)) for (id in bpe(piece)) out.add(id)
        return out.toIntArray()
    }

    /** BPE ids of [text] after the portable cleaning (no start/end tokens). */
    fun encode(text: String): IntArray = encodeCleaned(TextCleaner.clean(text))

    /** The model row for [text] (cleaned with [TextCleaner]). */
    fun tokenize(text: String): TokenizedText = rowFor(encode(text))

    /** The model row for already-cleaned text. */
    fun tokenizeCleaned(cleaned: String): TokenizedText = rowFor(encodeCleaned(cleaned))

    private fun rowFor(ids: IntArray): TokenizedText {
        val n = ids.size + 2
        val row = IntArray(contextLength)
        row[0] = SOT
        if (n > contextLength) {
            System.arraycopy(ids, 0, row, 1, contextLength - 1)
            row[contextLength - 1] = EOT
        } else {
            System.arraycopy(ids, 0, row, 1, ids.size)
            row[ids.size + 1] = EOT
        }
        return TokenizedText(row, n, n > contextLength)
    }

    /** Text of ids, the way open_clip decodes them (for display/debugging). */
    fun decode(ids: IntArray): String {
        val decoder = HashMap<Int, String>(encoder.size * 2)
        for ((k, v) in encoder) decoder[v] = k
        val byteDecoder = HashMap<String, Int>()
        for (b in 0 until 256) byteDecoder[BYTE_ENCODER[b]] = b
        val sb = StringBuilder()
        for (id in ids) sb.append(decoder[id] ?: "")
        val all = sb.toString()
        val bytes = java.io.ByteArrayOutputStream()
        var i = 0
        while (i < all.length) {
            val cp = all.codePointAt(i)
            val b = byteDecoder[String(Character.toChars(cp))]
            if (b != null) bytes.write(b)
            i += Character.charCount(cp)
        }
        return String(bytes.toByteArray(), Charsets.UTF_8).replace("</w>", " ")
    }
}
