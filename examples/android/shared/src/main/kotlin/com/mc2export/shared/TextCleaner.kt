package com.mc2export.shared

import java.text.Normalizer
import java.util.Locale

/**
 * The "portable" part of open_clip's text cleaning (mc2export.tokenizer.clean_text), mirrored from
 * `mc2export/appvectors.py:portable_clean` -- that Python function is the reference, and the vectors'
 * `exact` flag says for which strings it equals the full Python cleaning.
 *
 * Python: ftfy.fix_text -> html.unescape x2 -> strip -> collapse whitespace -> lower-case.
 * Here, step by step like ftfy (line by line; HTML unescaping off for good from the first line containing
 * '<'; each line fixed until nothing changes):
 *  - HTML entities: [ENTITIES] (a common subset of ftfy's 2,231) and numeric &#N; / &#xH; (semicolon
 *    required; html.unescape also decodes a few legacy names without ';' -- not here);
 *  - Latin ligatures (ftfy's table), character width (U+3000 -> space, U+FF01..U+FFEF -> NFKC),
 *    curly quotes -> ' and ", ANSI terminal escapes removed, ftfy's control characters removed, NFC;
 *  - then the entity subset twice more, strip + collapse Python's whitespace set, lower-case (full
 *    Unicode mapping, locale-independent, as Python's str.lower()).
 * Not ported (python-only): mojibake repair (ftfy.fix_encoding, e.g. "cafÃ©" -> "café"), C1 control
 * characters read as Windows-1252, surrogate repair, the rarer HTML entities.
 * Unicode tables: the platform's (JVM / Android ICU) -- characters newer than the platform's Unicode
 * version may classify differently from Python.
 *
 * Kotlin 1.3-compatible on purpose (the JVM tests compile with kotlinc 1.3).
 */
object TextCleaner {
    val ENTITIES: Map<String, String> = linkedMapOf(
        "amp" to "&", "lt" to "<", "gt" to ">", "quot" to "\"", "apos" to "'", "nbsp" to "\u00a0", "copy" to "\u00a9",
        "reg" to "\u00ae", "trade" to "\u2122", "hellip" to "\u2026", "mdash" to "\u2014", "ndash" to "\u2013",
        "lsquo" to "\u2018", "rsquo" to "\u2019", "ldquo" to "\u201c", "rdquo" to "\u201d", "laquo" to "\u00ab",
        "raquo" to "\u00bb", "deg" to "\u00b0", "times" to "\u00d7", "divide" to "\u00f7", "middot" to "\u00b7",
        "bull" to "\u2022", "euro" to "\u20ac", "pound" to "\u00a3", "yen" to "\u00a5", "cent" to "\u00a2",
        "sect" to "\u00a7", "para" to "\u00b6", "plusmn" to "\u00b1", "frac12" to "\u00bd", "frac14" to "\u00bc",
        "frac34" to "\u00be", "iexcl" to "\u00a1", "iquest" to "\u00bf", "szlig" to "\u00df",
        "aacute" to "\u00e1", "agrave" to "\u00e0", "acirc" to "\u00e2", "auml" to "\u00e4", "atilde" to "\u00e3",
        "aring" to "\u00e5", "aelig" to "\u00e6", "ccedil" to "\u00e7", "eacute" to "\u00e9", "egrave" to "\u00e8",
        "ecirc" to "\u00ea", "euml" to "\u00eb", "iacute" to "\u00ed", "igrave" to "\u00ec", "icirc" to "\u00ee",
        "iuml" to "\u00ef", "ntilde" to "\u00f1", "oacute" to "\u00f3", "ograve" to "\u00f2", "ocirc" to "\u00f4",
        "ouml" to "\u00f6", "otilde" to "\u00f5", "oslash" to "\u00f8", "uacute" to "\u00fa", "ugrave" to "\u00f9",
        "ucirc" to "\u00fb", "uuml" to "\u00fc", "yacute" to "\u00fd", "yuml" to "\u00ff",
        "Aacute" to "\u00c1", "Agrave" to "\u00c0", "Acirc" to "\u00c2", "Auml" to "\u00c4", "Atilde" to "\u00c3",
        "Aring" to "\u00c5", "AElig" to "\u00c6", "Ccedil" to "\u00c7", "Eacute" to "\u00c9", "Egrave" to "\u00c8",
        "Ecirc" to "\u00ca", "Euml" to "\u00cb", "Iacute" to "\u00cd", "Igrave" to "\u00cc", "Icirc" to "\u00ce",
        "Iuml" to "\u00cf", "Ntilde" to "\u00d1", "Oacute" to "\u00d3", "Ograve" to "\u00d2", "Ocirc" to "\u00d4",
        "Ouml" to "\u00d6", "Otilde" to "\u00d5", "Oslash" to "\u00d8", "Uacute" to "\u00da", "Ugrave" to "\u00d9",
        "Ucirc" to "\u00db", "Uuml" to "\u00dc"
    )

    /** Inclusive code point ranges ftfy's remove_control_chars deletes. */
    val CONTROL_RANGES: Array<IntArray> = arrayOf(
        intArrayOf(0x00, 0x08), intArrayOf(0x0B, 0x0B), intArrayOf(0x0E, 0x1F), intArrayOf(0x7F, 0x7F),
        intArrayOf(0x206A, 0x206F), intArrayOf(0xFEFF, 0xFEFF), intArrayOf(0xFFF9, 0xFFFC)
    )

    val LIGATURES: Map<Int, String> = linkedMapOf(
        0x0132 to "IJ", 0x0133 to "ij", 0x0149 to "\u02bcn", 0x01f1 to "DZ", 0x01f2 to "Dz", 0x01f3 to "dz",
        0x01c4 to "D\u017d", 0x01c5 to "D\u017e", 0x01c6 to "d\u017e", 0x01c7 to "LJ", 0x01c8 to "Lj",
        0x01c9 to "lj", 0x01ca to "NJ", 0x01cb to "Nj", 0x01cc to "nj", 0xfb00 to "ff", 0xfb01 to "fi",
        0xfb02 to "fl", 0xfb03 to "ffi", 0xfb04 to "ffl", 0xfb05 to "\u017ft", 0xfb06 to "st"
    )

    /** Python's str.isspace() set: what str.split() and str.strip() use. */
    val PYTHON_WHITESPACE: IntArray = intArrayOf(
        0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680,
        0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A,
        0x2028, 0x2029, 0x202F, 0x205F, 0x3000
    )
    val SINGLE_QUOTES: IntArray = intArrayOf(0x02BC, 0x2018, 0x2019, 0x201A, 0x201B)
    val DOUBLE_QUOTES: IntArray = intArrayOf(0x201C, 0x201D, 0x201E, 0x201F)

    private val ENTITY_RE = Regex("&(#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
    private val ANSI_RE = Regex("\u001b\\[((?:\\p{Nd}|;)*)([a-zA-Z])")

    fun isPythonSpace(cp: Int): Boolean {
        if (cp < 0x09 || (cp > 0x20 && cp < 0x85)) return false
        for (w in PYTHON_WHITESPACE) if (w == cp) return true
        return false
    }

    private fun numericOk(cp: Int): Boolean {
        if (cp == 0x09 || cp == 0x0A || cp == 0x0D) return true
        if ((cp in 0x20..0x7E) || (cp in 0xA0..0xD7FF)) return true
        if (cp in 0xE000..0xFFFD) return cp !in 0xFDD0..0xFDEF
        return cp in 0x10000..0x10FFFF && (cp and 0xFFFF) < 0xFFFE
    }

    /** One pass of HTML unescaping: [ENTITIES] and numeric references, semicolon required. */
    fun unescape(text: String): String {
        if (text.indexOf('&') < 0) return text
        return ENTITY_RE.replace(text) { m ->
            val body = m.groupValues[1]
            if (body[0] == '#') {
                val hex = body.length > 1 && (body[1] == 'x' || body[1] == 'X')
                val cp = if (hex) body.substring(2).toInt(16) else body.substring(1).toInt()
                if (numericOk(cp)) String(Character.toChars(cp)) else m.value
            } else {
                ENTITIES[body] ?: m.value
            }
        }
    }

    private inline fun mapCodePoints(text: String, f: (Int, StringBuilder) -> Unit): String {
        val sb = StringBuilder(text.length)
        var i = 0
        while (i < text.length) {
            val cp = text.codePointAt(i)
            f(cp, sb)
            i += Character.charCount(cp)
        }
        return sb.toString()
    }

    private fun isControl(cp: Int): Boolean {
        for (r in CONTROL_RANGES) if (cp >= r[0] && cp <= r[1]) return true
        return false
    }

    private fun fixSegment(segment: String, unescapeHtml: Boolean): String {
        var seg = segment
        while (true) {
            val orig = seg
            if (unescapeHtml) seg = unescape(seg)
            seg = mapCodePoints(seg) { cp, sb ->
                val lig = LIGATURES[cp]
                if (lig != null) sb.append(lig) else sb.appendCodePoint(cp)
            }
            seg = mapCodePoints(seg) { cp, sb ->
                when {
                    cp == 0x3000 -> sb.append(' ')
                    cp in 0xFF01..0xFFEF -> sb.append(Normalizer.normalize(String(Character.toChars(cp)), Normalizer.Form.NFKC))
                    else -> sb.appendCodePoint(cp)
                }
            }
            seg = mapCodePoints(seg) { cp, sb ->
                when {
                    SINGLE_QUOTES.contains(cp) -> sb.append('\'')
                    DOUBLE_QUOTES.contains(cp) -> sb.append('"')
                    else -> sb.appendCodePoint(cp)
                }
            }
            if (seg.indexOf('\u001b') >= 0) seg = ANSI_RE.replace(seg, "")
            seg = mapCodePoints(seg) { cp, sb -> if (!isControl(cp)) sb.appendCodePoint(cp) }
            seg = Normalizer.normalize(seg, Normalizer.Form.NFC)
            if (seg == orig) return seg
        }
    }

    /** strip + split on Python whitespace + join with one space. */
    fun collapseWhitespace(text: String): String {
        val sb = StringBuilder(text.length)
        var pendingSpace = false
        var i = 0
        while (i < text.length) {
            val cp = text.codePointAt(i)
            if (isPythonSpace(cp)) {
                pendingSpace = sb.isNotEmpty()
            } else {
                if (pendingSpace) sb.append(' ')
                pendingSpace = false
                sb.appendCodePoint(cp)
            }
            i += Character.charCount(cp)
        }
        return sb.toString()
    }

    /** Python's str.lower(): full Unicode lower-case mapping, no locale (Turkish phones included). */
    @Suppress("PLATFORM_CLASS_MAPPED_TO_KOTLIN")
    fun lower(text: String): String = (text as java.lang.String).toLowerCase(Locale.ROOT)

    /** The portable cleaning (see the class comment). */
    fun clean(text: String): String {
        val out = StringBuilder(text.length)
        var unescapeHtml = true
        var pos = 0
        while (pos < text.length) {
            val nl = text.indexOf('\n', pos)
            val end = if (nl < 0) text.length else nl + 1
            val seg = text.substring(pos, end)
            if (unescapeHtml && seg.indexOf('<') >= 0) unescapeHtml = false
            out.append(fixSegment(seg, unescapeHtml))
            pos = end
        }
        val unescaped = unescape(unescape(out.toString()))
        return lower(collapseWhitespace(unescaped))
    }
}
