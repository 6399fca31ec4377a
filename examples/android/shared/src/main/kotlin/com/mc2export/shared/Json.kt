package com.mc2export.shared

/**
 * A small JSON reader/writer (RFC 8259) so the shared code needs no library: the bundle's config.json,
 * vocab.json, the test vectors and the benchmark report.
 *
 * Objects become LinkedHashMap<String, Any?> (key order kept), arrays List<Any?>, integers Long,
 * other numbers Double, plus String, Boolean and null.
 */
object Json {
    class ParseError(message: String) : Exception(message)

    fun parse(text: String): Any? {
        val p = Parser(text)
        p.skipWs()
        val v = p.value()
        p.skipWs()
        if (p.pos != text.length) throw p.error("unexpected text after the JSON value")
        return v
    }

    /** Deeper nesting is refused (no StackOverflowError from a hostile file); no real bundle nests past 6. */
    const val MAX_DEPTH = 64

    private class Parser(val s: String) {
        var pos = 0
        var depth = 0

        fun error(msg: String): ParseError {
            var line = 1
            var col = 1
            for (i in 0 until minOf(pos, s.length)) {
                if (s[i] == '\n') { line++; col = 1 } else col++
            }
            return ParseError("$msg at line $line, column $col")
        }

        fun skipWs() {
            while (pos < s.length) {
                val c = s[pos]
                if (c == ' ' || c == '\n' || c == '\r' || c == '\t') pos++ else break
            }
        }

        fun value(): Any? {
            if (pos >= s.length) throw error("unexpected end of JSON")
            return when (s[pos]) {
                '{', '[' -> {
                    if (++depth > MAX_DEPTH) throw error("nested deeper than $MAX_DEPTH levels")
                    val v = if (s[pos] == '{') obj() else arr()
                    depth--
                    v
                }
                '"' -> str()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> num()
            }
        }

        fun literal(word: String, v: Any?): Any? {
            if (!s.startsWith(word, pos)) throw error("invalid literal")
            pos += word.length
            return v
        }

        fun obj(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            pos++
            skipWs()
            if (pos < s.length && s[pos] == '}') { pos++; return out }
            while (true) {
                skipWs()
                if (pos >= s.length || s[pos] != '"') throw error("expected a string key")
                val k = str()
                skipWs()
                if (pos >= s.length || s[pos] != ':') throw error("expected ':'")
                pos++
                skipWs()
                out[k] = value()
                skipWs()
                if (pos >= s.length) throw error("unterminated object")
                val c = s[pos++]
                if (c == '}') return out
                if (c != ',') throw error("expected ',' or '}'")
            }
        }

        fun arr(): List<Any?> {
            val out = ArrayList<Any?>()
            pos++
            skipWs()
            if (pos < s.length && s[pos] == ']') { pos++; return out }
            while (true) {
                skipWs()
                out.add(value())
                skipWs()
                if (pos >= s.length) throw error("unterminated array")
                val c = s[pos++]
                if (c == ']') return out
                if (c != ',') throw error("expected ',' or ']'")
            }
        }

        fun str(): String {
            pos++
            val sb = StringBuilder()
            while (true) {
                if (pos >= s.length) throw error("unterminated string")
                val c = s[pos++]
                when {
                    c == '"' -> return sb.toString()
                    c == '\\' -> {
                        if (pos >= s.length) throw error("unterminated escape")
                        when (val e = s[pos++]) {
                            '"' -> sb.append('"')
                            '\\' -> sb.append('\\')
                            '/' -> sb.append('/')
                            'b' -> sb.append('\b')
                            'f' -> sb.append('\u000C')
                            'n' -> sb.append('\n')
                            'r' -> sb.append('\r')
                            't' -> sb.append('\t')
                            'u' -> {
                                if (pos + 4 > s.length) throw error("bad \\u escape")
                                val code = s.substring(pos, pos + 4).toIntOrNull(16) ?: throw error("bad \\u escape")
                                sb.append(code.toChar())
                                pos += 4
                            }
                            else -> throw error("bad escape '\\$e'")
                        }
                    }
                    else -> sb.append(c)
                }
            }
        }

        fun num(): Any {
            val start = pos
            if (pos < s.length && s[pos] == '-') pos++
            var isInt = true
            while (pos < s.length) {
                val c = s[pos]
                if (c in '0'..'9') pos++
                else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') { isInt = false; pos++ }
                else break
            }
            val t = s.substring(start, pos)
            if (t.isEmpty() || t == "-") throw error("unexpected character '${s[start]}'")
            if (isInt) {
                val l = t.toLongOrNull()
                if (l != null) return l
            }
            val d = t.toDoubleOrNull() ?: throw error("bad number '$t'")
            if (d.isInfinite()) throw error("number '${t.take(40)}' is out of range")  // 1e999: no infinities from files
            return d
        }
    }

    // -- writing ------------------------------------------------------------------------------------------

    /** JSON text of maps, lists, arrays, strings, numbers, booleans and null (2-space indent when [pretty]). */
    fun write(value: Any?, pretty: Boolean = true): String {
        val sb = StringBuilder()
        writeTo(sb, value, if (pretty) 0 else -1)
        if (pretty) sb.append('\n')
        return sb.toString()
    }

    private fun newline(sb: StringBuilder, indent: Int) {
        if (indent < 0) return
        sb.append('\n')
        for (i in 0 until indent) sb.append("  ")
    }

    private fun writeTo(sb: StringBuilder, v: Any?, indent: Int) {
        val inner = if (indent < 0) -1 else indent + 1
        when (v) {
            null -> sb.append("null")
            is String -> quote(sb, v)
            is Boolean -> sb.append(if (v) "true" else "false")
            is Int, is Long, is Short, is Byte -> sb.append(v.toString())
            is Float -> number(sb, v.toDouble())
            is Double -> number(sb, v)
            is Map<*, *> -> {
                if (v.isEmpty()) { sb.append("{}"); return }
                sb.append('{')
                var first = true
                for ((k, x) in v) {
                    if (!first) sb.append(',')
                    first = false
                    newline(sb, inner)
                    quote(sb, k.toString())
                    sb.append(if (indent < 0) ":" else ": ")
                    writeTo(sb, x, inner)
                }
                newline(sb, indent)
                sb.append('}')
            }
            is Iterable<*> -> writeList(sb, v.toList(), indent)
            is DoubleArray -> writeList(sb, v.toList(), indent, flat = true)
            is FloatArray -> writeList(sb, v.toList(), indent, flat = true)
            is IntArray -> writeList(sb, v.toList(), indent, flat = true)
            is LongArray -> writeList(sb, v.toList(), indent, flat = true)
            is Array<*> -> writeList(sb, v.toList(), indent)
            else -> quote(sb, v.toString())
        }
    }

    private fun writeList(sb: StringBuilder, items: List<Any?>, indent: Int, flat: Boolean = false) {
        if (items.isEmpty()) { sb.append("[]"); return }
        val simple = flat || items.all { it == null || it is Number || it is Boolean }
        sb.append('[')
        val inner = if (indent < 0) -1 else indent + 1
        for ((i, x) in items.withIndex()) {
            if (i > 0) sb.append(if (simple && indent >= 0) ", " else ",")
            if (!simple) newline(sb, inner)
            writeTo(sb, x, inner)
        }
        if (!simple) newline(sb, indent)
        sb.append(']')
    }

    private fun number(sb: StringBuilder, d: Double) {
        if (d.isNaN() || d.isInfinite()) { sb.append("null"); return }
        if (d == Math.rint(d) && Math.abs(d) < 1e15) sb.append(d.toLong().toString()).append(".0")
        else sb.append(d.toString())
    }

    private fun quote(sb: StringBuilder, s: String) {
        sb.append('"')
        for (c in s) {
            when (c) {
                '"' -> sb.append("\\\"")
                '\\' -> sb.append("\\\\")
                '\n' -> sb.append("\\n")
                '\r' -> sb.append("\\r")
                '\t' -> sb.append("\\t")
                else -> if (c < ' ') sb.append(String.format("\\u%04x", c - '\u0000')) else sb.append(c)
            }
        }
        sb.append('"')
    }
}

/** Typed access to parsed JSON with readable errors ("config.json: preprocess.mean must be ..."). */
internal object J {
    fun obj(v: Any?, what: String): Map<String, Any?> {
        @Suppress("UNCHECKED_CAST")
        return v as? Map<String, Any?> ?: throw IllegalArgumentException("$what must be a JSON object")
    }

    fun list(v: Any?, what: String): List<Any?> = v as? List<Any?> ?: throw IllegalArgumentException("$what must be a JSON array")

    fun int(v: Any?, what: String): Int = when (v) {
        is Long -> if (v >= Int.MIN_VALUE && v <= Int.MAX_VALUE) v.toInt() else throw IllegalArgumentException("$what is out of range")
        is Double -> if (v == Math.rint(v)) v.toInt() else throw IllegalArgumentException("$what must be an integer, got $v")
        else -> throw IllegalArgumentException("$what must be an integer, got ${describe(v)}")
    }

    fun double(v: Any?, what: String): Double = when (v) {
        is Long -> v.toDouble()
        is Double -> v
        else -> throw IllegalArgumentException("$what must be a number, got ${describe(v)}")
    }

    fun str(v: Any?, what: String): String = v as? String ?: throw IllegalArgumentException("$what must be a string, got ${describe(v)}")

    fun bool(v: Any?, what: String): Boolean = v as? Boolean ?: throw IllegalArgumentException("$what must be true or false, got ${describe(v)}")

    fun ints(v: Any?, what: String): IntArray {
        val l = list(v, what)
        return IntArray(l.size) { int(l[it], "$what[$it]") }
    }

    fun describe(v: Any?): String = when (v) {
        null -> "null"
        is String -> "\"" + (if (v.length > 40) v.substring(0, 40) + "..." else v) + "\""
        is Map<*, *> -> "an object"
        is List<*> -> "an array"
        else -> v.toString()
    }
}
