package com.mc2export.shared

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File
import java.io.RandomAccessFile
import java.nio.file.Files
import java.util.Random
import java.util.concurrent.TimeUnit

/** The `.mc2i` photo index (docs/app_index.md): format, replay, torn tails, compaction, search, a killed writer. */
class IndexTest {
    private val sha = "ab".repeat(32)
    private val header = IndexHeader("mobileclip2-s0", "fp32", sha, 4)

    private fun tmpDir(): File = Files.createTempDirectory("mc2-index-test").toFile().also { it.deleteOnExit() }

    @Test
    fun fp16Conversion() {
        val cases = mapOf(1f to 0x3C00, -2f to 0xC000, 65504f to 0x7BFF, 65520f to 0x7C00, 0.1f to 0x2E66,
            5.9604645e-8f to 0x0001, 2.9802322e-8f to 0x0000, 4.4703484e-8f to 0x0001, 6.1035156e-5f to 0x0400,
            1.0004883f to 0x3C00, 1.0014648f to 0x3C02, 0f to 0, -0f to 0x8000)  // ties go to even
        for ((f, h) in cases) assertEquals("fp16($f)", h, Fp16.fromFloat(f).toInt() and 0xFFFF)
        for (h in 0 until 0x7C00) {  // every finite positive half: exact round trip
            assertEquals(h, Fp16.fromFloat(Fp16.toFloat(h.toShort())).toInt() and 0xFFFF)
            assertEquals(Fp16.toFloat(h.toShort()), Fp16.TABLE[h], 0f)
        }
        assertTrue(Fp16.toFloat(0x7E00.toShort()).isNaN())
    }

    @Test
    fun replayAppendReopenAndSearch() {
        val f = File(tmpDir(), "library.mc2i")
        PhotoIndex.open(f, header).use { idx ->
            idx.append(listOf(IndexOp.put("a", 1, floatArrayOf(1f, 0f, 0f, 0f)), IndexOp.put("b", 2, floatArrayOf(0f, 3f, 0f, 0f)),
                IndexOp.put("c", 3, floatArrayOf(1f, 1f, 0f, 0f))))
            idx.append(listOf(IndexOp.put("b", 4, floatArrayOf(1f, 0f, 0f, 0f)), IndexOp.delete("a"), IndexOp.delete("zz"),
                IndexOp.put("d", 5, floatArrayOf(0f, 0f, 1f, 0f))))
            idx.append(listOf(IndexOp.put("a", 6, floatArrayOf(0f, 0f, 0f, 2f))))
            idx.append(emptyList())
            assertEquals(listOf("b", "c", "d", "a"), idx.keys())
        }
        PhotoIndex.open(f, header).use { idx ->
            assertEquals(0L, idx.droppedBytes)
            assertEquals(listOf("b", "c", "d", "a"), idx.keys())  // replaced b keeps its place; a re-added at the end
            assertTrue(idx.contains("b", 4) && !idx.contains("b", 2))
            assertEquals(6L, idx.stamp("a"))
            val hits = idx.search(floatArrayOf(5f, 0f, 0f, 0f), 3)
            assertEquals(listOf("b", "c"), hits.take(2).map { it.key })
            assertEquals(1f, hits[0].score, 0f)
            assertEquals(0.70703125f, hits[1].score, 0f)  // fp16(1/sqrt 2), not renormalized
            // equal scores (a zero query: all 0): index order
            assertEquals(listOf("b", "c", "d", "a"), idx.search(floatArrayOf(0f, 0f, 0f, 0f), 10).map { it.key })
            // dead: b's first PUT, a's PUT and its tombstone, the tombstone of the unknown zz
            assertEquals((24 + 24 + 16 + 17).toDouble() / idx.fileLength, idx.deadFraction, 1e-12)
            try {
                idx.append(listOf(IndexOp.put("x", 0, floatArrayOf(1f))))
                fail("expected an error")
            } catch (e: IllegalArgumentException) {
                assertTrue(e.message!!.contains("4-d"))
            }
        }
    }

    @Test
    fun tornTailsAndCorruptRecordsKeepEveryWholeRecord() {
        val f = File(tmpDir(), "t.mc2i")
        val lengths = ArrayList<Long>()
        PhotoIndex.open(f, header).use { idx ->
            lengths.add(idx.fileLength)
            for (i in 0 until 5) {
                idx.append(listOf(IndexOp.put("photo-$i", i.toLong(), floatArrayOf(1f, i.toFloat(), 0f, 0f))))
                lengths.add(idx.fileLength)
            }
        }
        val whole = f.readBytes()
        val dir = tmpDir()
        for (cut in lengths[4] + 1 until lengths[5]) {  // every cut inside the last record
            val g = File(dir, "cut.mc2i")
            g.writeBytes(whole.copyOf(cut.toInt()))
            val r = PhotoIndex.read(g, header)
            assertEquals(4, r.store.size)
            assertEquals(lengths[4], r.validLength)
            assertEquals(cut - lengths[4], r.droppedBytes)
        }
        // a flipped byte anywhere in record 3 (CRC, or kind / klen): records 0..2 kept, later ones not trusted
        for (at in lengths[3] until lengths[4]) {
            val g = File(dir, "bad.mc2i")
            val b = whole.copyOf()
            b[at.toInt()] = (b[at.toInt()].toInt() xor 0x5A).toByte()
            g.writeBytes(b)
            val r = PhotoIndex.read(g, header)
            assertEquals("flip at $at", 3, r.store.size)
            assertEquals(lengths[3], r.validLength)
        }
        // open() truncates the torn tail before appending, so the new record is not hidden behind garbage
        f.writeBytes(whole.copyOf(lengths[5].toInt() - 7))
        PhotoIndex.open(f, header).use { idx ->
            assertEquals(lengths[5] - 7 - lengths[4], idx.droppedBytes)
            assertEquals(lengths[4], f.length())
            idx.append(listOf(IndexOp.put("new", 9, floatArrayOf(0f, 0f, 0f, 1f))))
        }
        assertEquals(listOf("photo-0", "photo-1", "photo-2", "photo-3", "new"), PhotoIndex.read(f, header).store.liveKeys())
    }

    @Test
    fun anotherModelsIndexAndNonIndexesAreRefused() {
        val f = File(tmpDir(), "m.mc2i")
        PhotoIndex.open(f, header).close()
        for (other in listOf(IndexHeader("mobileclip2-s2", "fp32", sha, 4), IndexHeader("mobileclip2-s0", "int8", sha, 4),
                IndexHeader("mobileclip2-s0", "fp32", "cd".repeat(32), 4), IndexHeader("mobileclip2-s0", "fp32", sha, 8))) {
            try {
                PhotoIndex.open(f, other)
                fail("expected a refusal")
            } catch (e: IndexException) {
                assertTrue(e.message!!, e.message!!.contains("another model"))
            }
        }
        val bad = mapOf("not a photo index" to "hello".toByteArray(), "version" to (String(IndexFormat.MAGIC) + "\u0002\u0000\u0000\u0000\u0001\u0000\u0000\u0000{").toByteArray(),
            "header length" to header.encode().copyOf(16).also { it[12] = 0 })
        for ((what, bytes) in bad) {
            File(dir(f), "x.mc2i").writeBytes(bytes)
            try {
                PhotoIndex.read(File(dir(f), "x.mc2i"))
                fail("expected a refusal")
            } catch (e: IndexException) {
                assertTrue(e.message!!, e.message!!.contains(what))
            }
        }
        for (json in listOf("{", "[]", """{"variant":"a","precision":"b","bundle_sha256":"$sha","dim":0,"vector_dtype":"float16"}""",
                """{"variant":"a","precision":"b","bundle_sha256":"$sha","dim":4,"vector_dtype":"float32"}""",
                """{"variant":"a","precision":"b","bundle_sha256":"$sha","dim":4}""")) {
            try {
                IndexHeader.fromJson(json)
                fail("expected a refusal of $json")
            } catch (e: IndexException) {
                assertFalse(e.message!!.contains("\n"))
            }
        }
    }

    private fun dir(f: File) = f.absoluteFile.parentFile

    @Test
    fun compactionRewritesTheLiveStateExactly() {
        val f = File(tmpDir(), "c.mc2i")
        val rng = Random(1)
        PhotoIndex.open(f, header).use { idx ->
            for (round in 0 until 6) {
                idx.append((0 until 20).map { i ->
                    if (i % 7 == 3) IndexOp.delete("k${rng.nextInt(40)}")
                    else IndexOp.put("k${rng.nextInt(40)}", round * 100L + i, FloatArray(4) { rng.nextGaussian().toFloat() })
                })
            }
            val keys = idx.keys()
            val bits = keys.map { idx.vectorBits(it)!! }
            val stamps = keys.map { idx.stamp(it) }
            val before = idx.fileLength
            assertTrue(idx.compactionDue)
            idx.compact(chunkBytes = 64)  // several chunks
            assertFalse(File(f.path + ".tmp").exists())
            assertTrue(idx.fileLength < before && idx.fileLength == f.length())
            assertFalse(idx.compactionDue)
            idx.append(listOf(IndexOp.put("after", 1, floatArrayOf(1f, 2f, 3f, 4f))))  // appending goes on in the new file
            val back = PhotoIndex.read(f, header)
            assertEquals(keys + "after", back.store.liveKeys())
            for ((i, k) in keys.withIndex()) {
                assertArrayEquals(bits[i], back.store.vectorBits(k))
                assertEquals(stamps[i], back.store.stamp(k))
            }
            assertEquals(0L, back.deadBytes)
        }
    }

    @Test
    fun topKEqualsAFullSortOnRandomData() {
        val rng = Random(7)
        val dim = 33
        val store = VectorStore(dim)
        val n = VectorStore.BLOCK + 500  // two blocks
        val bits = ShortArray(dim)
        for (i in 0 until n) {
            for (j in 0 until dim) bits[j] = Fp16.fromFloat((rng.nextInt(5) - 2) / 4f)  // many exact ties
            store.put("p$i", i.toLong(), bits, 0)
            if (i % 11 == 0) store.delete("p${i / 2}")
        }
        val q = FloatArray(dim) { (rng.nextInt(3) - 1).toFloat() }
        val qn = ZeroShot.l2normalize(q)
        val all = ArrayList<Pair<Float, Int>>()
        val keys = store.liveKeys()
        for ((pos, k) in keys.withIndex()) {
            val v = store.vectorBits(k)!!
            var s0 = 0f; var s1 = 0f; var s2 = 0f; var s3 = 0f
            var i = 0
            while (i < dim - dim % 4) { s0 += qn[i] * Fp16.toFloat(v[i]); s1 += qn[i + 1] * Fp16.toFloat(v[i + 1]); s2 += qn[i + 2] * Fp16.toFloat(v[i + 2]); s3 += qn[i + 3] * Fp16.toFloat(v[i + 3]); i += 4 }
            while (i < dim) { s0 += qn[i] * Fp16.toFloat(v[i]); i++ }
            all.add(((s0 + s1) + (s2 + s3)) to pos)
        }
        val want = all.sortedWith(Comparator { a, b -> val c = b.first.compareTo(a.first); if (c != 0) c else a.second.compareTo(b.second) })
        for (k in listOf(1, 5, 24, 100)) {
            val got = store.search(q, k)
            assertEquals(want.take(k).map { keys[it.second] }, got.map { it.key })
        }
        assertEquals(store.size, store.search(q, n * 2).size)
    }

    @Test
    fun indexingRunsResumeWhereTheyStoppedAndDeleteWhatIsGone() {
        val f = File(tmpDir(), "run.mc2i")
        val library = (0 until 250).map { LibraryItem("content://media/$it", 1000L + it) }
        val calls = ArrayList<Int>()
        val embed = { batch: List<LibraryItem> ->
            calls.add(batch.size)
            batch.map { p -> if (p.key.endsWith("/13")) null else FloatArray(4) { j -> (p.stamp % 7 + j).toFloat() } }
        }
        var batches = 0
        val first = PhotoIndex.open(f, header).use { IndexingRun(it, batchSize = 32).run(library, embed, shouldStop = { batches++ >= 3 }) }
        assertTrue(first.stopped)
        assertEquals(listOf(32, 32, 32), calls)
        assertEquals(95, first.added)  // photo 13 failed: skipped, retried next run
        assertEquals(1, first.skipped)
        assertEquals(250 - 96, first.remaining)
        // resumed in a new process (reopened): only what is missing is embedded
        calls.clear()
        val progress = ArrayList<Int>()
        val second = PhotoIndex.open(f, header).use { IndexingRun(it, batchSize = 32).run(library, embed, progress = { d, _ -> progress.add(d) }) }
        assertFalse(second.stopped)
        assertEquals(155, calls.sum())  // 154 never tried + photo 13 again
        assertEquals(154, second.added)
        assertEquals(progress.last(), 155)
        // the library changes: 10 photos deleted, 5 edited -> 10 tombstones, 5 re-embedded
        val changed = library.filter { !it.key.endsWith("0") || it.key.endsWith("00") }.map {
            if (it.key.endsWith("7")) LibraryItem(it.key, it.stamp + 1) else it }
        calls.clear()
        PhotoIndex.open(f, header).use { idx ->
            val third = IndexingRun(idx, batchSize = 32).run(changed, embed)
            assertEquals(23, third.removed)  // keys ending in 0 (25) but not the two ending in 00
            assertEquals(changed.count { it.key.endsWith("7") } + 1, calls.sum())
            assertEquals(changed.map { it.key }.filter { !it.endsWith("/13") }.toSet(), idx.keys().toSet())
        }
    }

    // -- the shared conformance vectors (examples/shared/vectors/index, written by mc2export.appindex) ---------

    private val vdir: File get() = File(Vectors.dir, "index")
    private fun expected() = J.obj(Json.parse(File(vdir, "expected.json").readText(Charsets.UTF_8)), "expected.json")
    private fun headerOf(m: Any?): IndexHeader = IndexHeader.fromJson(Json.write(m, pretty = false))

    @Test
    fun sharedVectorsLibraryReplaysAndSearchesAsPython() {
        val e = expected()
        val h = headerOf(e["header"])
        val r = PhotoIndex.read(File(vdir, "library.mc2i"), h)
        val live = Vectors.objs(e["live"])
        assertEquals(live.map { it["key"] as String }, r.store.liveKeys())
        for (x in live) assertEquals(x["stamp"] as Long, r.store.stamp(x["key"] as String))
        assertEquals((e["records"] as Long), r.records)
        assertEquals((e["valid_length"] as Long), r.validLength)
        assertEquals(0L, r.droppedBytes)
        val bitsWant = J.list(e["first_vector_bits"], "first_vector_bits")
        val floatsWant = J.list(e["first_vectors"], "first_vectors")
        for (i in bitsWant.indices) {
            val got = r.store.vectorBits(live[i]["key"] as String)!!
            assertArrayEquals(J.ints(bitsWant[i], "bits"), IntArray(got.size) { got[it].toInt() and 0xFFFF })
            val fl = J.list(floatsWant[i], "floats")
            for (j in got.indices) assertEquals(J.double(fl[j], "f").toFloat(), Fp16.toFloat(got[j]), 0f)
        }
        val all = java.io.ByteArrayOutputStream()
        for (k in r.store.liveKeys()) for (b in r.store.vectorBits(k)!!) { all.write(b.toInt() and 0xFF); all.write((b.toInt() shr 8) and 0xFF) }
        assertEquals(e["vectors_sha256"], Vectors.sha256(all.toByteArray()))
        val tol = J.double(e["score_tolerance"], "score_tolerance").toFloat()
        var n = 0
        for (s in Vectors.objs(e["searches"])) {
            val q = J.list(s["query"], "query").map { J.double(it, "q").toFloat() }.toFloatArray()
            val hits = r.store.search(q, J.int(s["k"], "k"))
            assertEquals(J.list(s["keys"], "keys"), hits.map { it.key })
            val scores = J.list(s["scores"], "scores")
            for (i in hits.indices) assertEquals(J.double(scores[i], "score").toFloat(), hits[i].score, tol)
            n++
        }
        println("index-vectors: ${live.size} live photos, $n searches as Python")
    }

    @Test
    fun sharedVectorsTornCorruptAndOtherModel() {
        val e = expected()
        val h = headerOf(e["header"])
        for (name in listOf("torn", "corrupt")) {
            val t = J.obj(e[name], name)
            val f = File(vdir, t["file"] as String)
            val r = PhotoIndex.read(f, h)
            assertEquals(name, J.int(t["live"], "live"), r.store.size)
            assertEquals(name, t["records"] as Long, r.records)
            assertEquals(name, t["valid_length"] as Long, r.validLength)
            assertEquals(name, t["dropped"] as Long, r.droppedBytes)
            val copy = File(tmpDir(), "$name.mc2i")  // opening for append truncates (the shared file stays as it is)
            f.copyTo(copy)
            PhotoIndex.open(copy, h).use { assertEquals(t["valid_length"] as Long, copy.length()) }
        }
        val o = J.obj(e["other_model"], "other_model")
        try {
            PhotoIndex.read(File(vdir, o["file"] as String), h)
            fail("another model's index must be refused")
        } catch (x: IndexException) {
            assertTrue(x.message!!, x.message!!.contains("another model"))
        }
        assertEquals("mobileclip2-s2", PhotoIndex.read(File(vdir, o["file"] as String)).header.variant)
    }

    @Test
    fun sharedVectorsWriterIsByteIdenticalToPython() {
        val w = J.obj(Json.parse(File(vdir, "writer.json").readText(Charsets.UTF_8)), "writer.json")
        val h = headerOf(w["header"])
        val f = File(tmpDir(), "written.mc2i")
        val ops = Vectors.objs(w["operations"]).map { o ->
            if (o["op"] == "put") IndexOp.put(o["key"] as String, o["stamp"] as Long,
                J.list(o["vector"], "vector").map { J.double(it, "v").toFloat() }.toFloatArray())
            else IndexOp.delete(o["key"] as String)
        }
        PhotoIndex.create(f, h).use { idx ->
            idx.append(ops.subList(0, 7))  // batches of any size give the same bytes
            for (op in ops.subList(7, ops.size)) idx.append(listOf(op))
        }
        assertEquals(w["bytes"] as Long, f.length())
        assertEquals(w["sha256"], Vectors.sha256(f.readBytes()))
    }

    /**
     * A child JVM appends batches in a loop and reports each one after append() returned; it is killed with
     * SIGKILL (destroyForcibly) mid-run. Reopened, the file is valid and holds every reported batch: at most the
     * batch in flight is lost (its records that reached the file whole are kept, a torn last one dropped).
     */
    @Test
    fun killedDuringAppendLosesAtMostTheBatchInFlight() {
        val f = File(tmpDir(), "killed.mc2i")
        val java = File(System.getProperty("java.home"), "bin/java").path
        val batch = 64
        val dim = 512
        for (round in 0 until 3) {  // each round reopens what the previous kill left
            val p = ProcessBuilder(java, "-Xmx256m", "-cp", System.getProperty("java.class.path"),
                "com.mc2export.shared.IndexAppendChild", f.path, batch.toString(), dim.toString(), round.toString())
                .redirectErrorStream(true).start()
            val out = p.inputStream.bufferedReader()
            var reported = -1
            val target = 15 + round * 7
            while (reported < target) {
                val line = out.readLine() ?: fail("the child ended early").let { "" }
                if (line.startsWith("batch ")) reported = line.removePrefix("batch ").trim().toInt()
            }
            p.destroyForcibly()
            assertTrue(p.waitFor(30, TimeUnit.SECONDS))
            val r = PhotoIndex.read(f)
            assertEquals(dim, r.header.dim)
            val live = r.store.size
            val keys = r.store.liveKeys().toHashSet()
            for (b in 0..reported) for (i in 0 until batch) assertTrue("reported batch $b lost", "r$round-$b-$i" in keys)
            val batchesThisRound = keys.count { it.startsWith("r$round-") } / batch.toDouble()
            PhotoIndex.open(f, r.header).use { assertEquals(live, it.size) }  // truncates any torn tail; appending resumes
            println("kill-during-append round $round: ${reported + 1} batches reported, ${"%.2f".format(batchesThisRound)} in the file, " +
                "${r.droppedBytes} torn bytes dropped")
        }
    }
}

/** The child of IndexTest.killedDuringAppend...: appends batches of random vectors forever, reporting each. */
object IndexAppendChild {
    @JvmStatic
    fun main(args: Array<String>) {
        val f = File(args[0])
        val batch = args[1].toInt()
        val dim = args[2].toInt()
        val round = args[3]
        val header = IndexHeader("mobileclip2-s0", "fp32", "ab".repeat(32), dim)
        val rng = Random(round.hashCode().toLong())
        PhotoIndex.open(f, header).use { idx ->
            var b = 0
            while (true) {
                idx.append((0 until batch).map { IndexOp.put("r$round-$b-$it", b.toLong(), FloatArray(dim) { rng.nextGaussian().toFloat() }) })
                println("batch $b")
                System.out.flush()
                b++
            }
        }
    }
}
