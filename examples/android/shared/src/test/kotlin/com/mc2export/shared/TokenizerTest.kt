package com.mc2export.shared

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File

class TokenizerTest {
    private val vectors = Vectors.json("text.json")
    private val texts = Vectors.objs(vectors["texts"])
    private val tok = Vectors.tokenizer

    private fun describe(t: Map<String, Any?>): String {
        val sb = StringBuilder()
        val s = t["text"] as String
        var i = 0
        while (i < s.length) {
            val cp = s.codePointAt(i)
            if (cp < 0x20 || cp > 0x7E) sb.append(String.format("\\u%04x", cp)) else sb.appendCodePoint(cp)
            i += Character.charCount(cp)
        }
        return "\"$sb\" (${t["note"]})"
    }

    @Test
    fun exactStringsMatchPythonIdForId() {
        val failures = ArrayList<String>()
        var n = 0
        for (t in texts) {
            if (t["exact"] != true) continue
            n++
            val text = t["text"] as String
            val expected = J.ints(t["ids"], "ids")
            val got = tok.tokenize(text)
            if (!got.ids().contentEquals(expected)) {
                failures.add("${describe(t)}: expected ${expected.toList()} got ${got.ids().toList()} " +
                    "(clean python '${t["clean"]}' ours '${TextCleaner.clean(text)}')")
            }
            if (got.nTokens != J.int(t["n_tokens"], "n_tokens")) failures.add("${describe(t)}: n_tokens ${got.nTokens}")
            if (got.truncated != (t["truncated"] == true)) failures.add("${describe(t)}: truncated flag ${got.truncated}")
            if (got.row.size != 77) failures.add("${describe(t)}: row length ${got.row.size}")
        }
        assertTrue("no exact vectors", n > 100)
        if (failures.isNotEmpty()) fail("${failures.size} of $n exact strings differ:\n" + failures.joinToString("\n"))
        println("TokenizerTest: $n exact strings match Python id for id")
    }

    @Test
    fun cleaningMatchesTheReference() {
        val failures = ArrayList<String>()
        for (t in texts) {
            val text = t["text"] as String
            val expected = if (t["exact"] == true) t["clean"] as String else t["portable_clean"] as String
            val got = TextCleaner.clean(text)
            if (got != expected) failures.add("${describe(t)}: expected '$expected' got '$got'")
        }
        if (failures.isNotEmpty()) fail(failures.joinToString("\n"))
    }

    @Test
    fun pythonOnlyStringsGiveThePortableIds() {
        var n = 0
        val failures = ArrayList<String>()
        for (t in texts) {
            if (t["exact"] == true) continue
            n++
            val expected = J.ints(t["portable_ids"], "portable_ids")
            val got = tok.tokenize(t["text"] as String)
            if (!got.ids().contentEquals(expected)) failures.add("${describe(t)}: expected ${expected.toList()} got ${got.ids().toList()}")
            if (got.truncated != (t["portable_truncated"] == true)) failures.add("${describe(t)}: truncated flag")
        }
        assertTrue("expected some python-only vectors", n > 0)
        if (failures.isNotEmpty()) fail(failures.joinToString("\n"))
        println("TokenizerTest: $n python-only strings give the documented portable ids")
    }

    @Test
    fun truncationKeepsFirstIdsAndEndsWithEot() {
        val long = texts.filter { it["truncated"] == true }
        assertTrue("vectors must hold truncated prompts", long.size >= 3)
        for (t in long) {
            val r = tok.tokenize(t["text"] as String)
            assertTrue(r.truncated)
            assertEquals(77, r.ids().size)
            assertEquals(ClipTokenizer.SOT, r.row[0])
            assertEquals(ClipTokenizer.EOT, r.row[76])
        }
        val fits = tok.tokenize(("word ".repeat(75)).trim())
        assertFalse(fits.truncated)
        assertEquals(77, fits.nTokens)
        val cut = tok.tokenize(("word ".repeat(76)).trim())
        assertTrue(cut.truncated)
        assertEquals(78, cut.nTokens)
    }

    @Test
    fun templatesAreThePythonOnes() {
        @Suppress("UNCHECKED_CAST")
        val tpl = vectors["templates"] as Map<String, Any?>
        assertEquals(tpl["openai"], ZeroShot.OPENAI_TEMPLATES)
        assertEquals(tpl["simple"], ZeroShot.SIMPLE_TEMPLATES)
        // and the vectors of the openai templates applied to "dog" are the same prompts
        val prompts = texts.filter { it["note"] == "openai template" }.map { it["text"] }
        assertEquals(ZeroShot.OPENAI_TEMPLATES.map { it.replace("{}", "dog") }, prompts)
    }

    @Test
    fun portableTablesAreTheReferenceOnes() {
        val p = Vectors.json("portable.json")
        assertEquals(p["entities"], TextCleaner.ENTITIES)
        @Suppress("UNCHECKED_CAST")
        val cr = (p["control_char_ranges"] as List<List<Long>>).map { listOf(it[0].toInt(), it[1].toInt()) }
        assertEquals(cr, TextCleaner.CONTROL_RANGES.map { listOf(it[0], it[1]) })
        @Suppress("UNCHECKED_CAST")
        val lig = (p["ligatures"] as Map<String, String>).entries.associate { it.key.codePointAt(0) to it.value }
        assertEquals(lig, TextCleaner.LIGATURES)
        assertArrayEquals(J.ints(p["python_whitespace"], "ws"), TextCleaner.PYTHON_WHITESPACE)
        assertArrayEquals(J.ints(p["single_quotes"], "sq"), TextCleaner.SINGLE_QUOTES)
        assertArrayEquals(J.ints(p["double_quotes"], "dq"), TextCleaner.DOUBLE_QUOTES)
    }

    @Test
    fun bundleFilesAndDerivedVocabularyAgree() {
        val vd = Vectors.vocabDir ?: return  // only when the runner exported vocab.json / merges.txt
        val mergesText = File(vd, "merges.txt").readText(Charsets.UTF_8)
        val derived = ClipTokenizer.deriveVocab(ClipTokenizer.parseMerges(mergesText))
        val vocab = J.obj(Json.parse(File(vd, "vocab.json").readText(Charsets.UTF_8)), "vocab")
        assertEquals(ClipTokenizer.VOCAB_SIZE, vocab.size)
        for ((i, token) in derived.withIndex()) {
            assertEquals("token $i", i.toLong(), vocab[token])
        }
        val fromMerges = ClipTokenizer.fromMerges(ClipTokenizer.parseMerges(mergesText))
        for (t in texts) {
            val s = t["text"] as String
            assertArrayEquals(s, tok.tokenize(s).row, fromMerges.tokenize(s).row)
        }
    }

    @Test
    fun badTokenizerFilesGiveClearErrors() {
        try {
            ClipTokenizer.parseMerges("no header\na b\n")
            fail("expected an error")
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!, e.message!!.contains("#version"))
        }
        try {
            ClipTokenizer.parseMerges("#version: 0.2\na b\n")
            fail("expected an error")
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!, e.message!!.contains("expected 48894"))
        }
    }

    @Test
    fun decodeRoundTrips() {
        val r = tok.tokenize("a photo of a cat")
        assertEquals("<start_of_text>a photo of a cat <end_of_text>", tok.decode(r.ids()))
    }
}
