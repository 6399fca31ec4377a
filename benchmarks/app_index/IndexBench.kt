// The photo index benchmark on the JVM (benchmarks/app_index_search.py compiles and runs it on one core):
// search p50 of the shared Kotlin PhotoIndex / VectorStore over synthetic 512-d vectors, interleaved with an exact
// float32 baseline (the same rows kept as float32, full sort) for recall and a paired timing; then appending N
// embeddings through PhotoIndex.append with the peak heap growth over the vectors' own bytes.
//
//   java -cp ... IndexBenchKt search N QUERIES ROUNDS K   -> one JSON line
//   java -cp ... IndexBenchKt append N BATCH DIR          -> one JSON line
import com.mc2export.shared.Fp16
import com.mc2export.shared.IndexHeader
import com.mc2export.shared.IndexOp
import com.mc2export.shared.Json
import com.mc2export.shared.PhotoIndex
import com.mc2export.shared.VectorStore
import java.io.File
import java.lang.management.ManagementFactory
import java.lang.management.MemoryType
import java.util.Random

private fun unit(rng: Random, dim: Int, out: FloatArray) {
    var s = 0.0
    for (i in 0 until dim) { val x = rng.nextGaussian().toFloat(); out[i] = x; s += x.toDouble() * x }
    val n = Math.sqrt(s).toFloat()
    for (i in 0 until dim) out[i] /= n
}

private fun search(n: Int, queries: Int, rounds: Int, k: Int) {
    val dim = 512
    val rng = Random(1)
    val store = VectorStore(dim)
    val v = FloatArray(dim)
    val bits = ShortArray(dim)
    // the exact baseline holds float32 rows (only where it fits: up to 200k rows here)
    val exact = if (n <= 200_000) FloatArray(n * dim) else null
    for (i in 0 until n) {
        unit(rng, dim, v)
        for (j in 0 until dim) bits[j] = Fp16.fromFloat(v[j])
        store.put("content://media/external/images/media/$i", i.toLong(), bits, 0)
        if (exact != null) System.arraycopy(v, 0, exact, i * dim, dim)
    }
    // queries: stored photos' vectors plus noise (a realistic "near" query has a few clear winners)
    val qs = Array(queries) { q ->
        val pick = Random(100L + q)
        val row = pick.nextInt(minOf(n, 1000))
        val r2 = Random(1)
        val base = FloatArray(dim)
        for (i in 0..row) unit(r2, dim, base)  // the generator again up to that row: the stored photo's vector
        FloatArray(dim) { base[it] + 0.05f * pick.nextGaussian().toFloat() }
    }
    fun exactTop(q: FloatArray): List<Int> {
        val e = exact!!
        var s = 0.0
        for (x in q) s += x * x
        val nq = Math.sqrt(s).toFloat()
        val scores = FloatArray(n) { r -> var d = 0f; val o = r * dim; for (j in 0 until dim) d += q[j] / nq * e[o + j]; d }
        return (0 until n).sortedWith(Comparator { a, b -> val c = scores[b].compareTo(scores[a]); if (c != 0) c else a.compareTo(b) }).take(k)
    }
    for (w in 0 until 3) store.search(qs[w % queries], k)  // JIT warm-up
    val ours = ArrayList<Double>()
    val base = ArrayList<Double>()
    var recallHits = 0
    var recallTotal = 0
    for (r in 0 until rounds) {
        for ((qi, q) in qs.withIndex()) {
            val t0 = System.nanoTime()
            val hits = store.search(q, k)
            ours.add((System.nanoTime() - t0) / 1e6)
            if (exact != null && r == 0) {
                val t1 = System.nanoTime()
                val want = exactTop(q)
                base.add((System.nanoTime() - t1) / 1e6)
                val got = hits.map { it.key.substringAfterLast('/').toInt() }.toSet()
                recallHits += want.count { it in got }
                recallTotal += want.size
            } else if (exact != null && qi == 0) {
                val t1 = System.nanoTime()
                exactTop(q)
                base.add((System.nanoTime() - t1) / 1e6)
            }
        }
    }
    fun p50(x: List<Double>) = x.sorted().let { if (it.isEmpty()) null else it[it.size / 2] }
    println(Json.write(linkedMapOf("what" to "search", "n" to n, "dim" to dim, "k" to k, "queries" to queries, "rounds" to rounds,
        "p50_ms" to p50(ours), "min_ms" to ours.min(), "max_ms" to ours.max(), "samples" to ours.size,
        "baseline" to "float32 rows, plain dot, full sort (exact)", "baseline_p50_ms" to p50(base),
        "recall_at_k_vs_exact_fp32" to if (recallTotal > 0) recallHits.toDouble() / recallTotal else null,
        "storage" to "fp16 bits in ShortArray blocks of ${VectorStore.BLOCK} rows, widened by bit moves"), pretty = false))
}

private fun heapUsed(): Long {
    var s = 0L
    for (p in ManagementFactory.getMemoryPoolMXBeans()) if (p.type == MemoryType.HEAP) s += p.usage.used
    return s
}

private fun heapPeak(): Long {
    var s = 0L
    for (p in ManagementFactory.getMemoryPoolMXBeans()) if (p.type == MemoryType.HEAP) s += p.peakUsage.used
    return s
}

private fun append(n: Int, batch: Int, dir: File) {
    val dim = 512
    val f = File(dir, "bench.mc2i")
    f.delete()
    val header = IndexHeader("mobileclip2-s0", "fp32", "ab".repeat(32), dim)
    val rng = Random(2)
    System.gc(); Thread.sleep(200); System.gc()
    val before = heapUsed()
    for (p in ManagementFactory.getMemoryPoolMXBeans()) if (p.type == MemoryType.HEAP) p.resetPeakUsage()
    val t0 = System.nanoTime()
    var keyBytes = 0L
    var liveMax = 0L
    var batches = 0
    PhotoIndex.open(f, header).use { idx ->
        var i = 0
        while (i < n) {
            if (batches++ % 40 == 0) { System.gc(); liveMax = maxOf(liveMax, heapUsed()) }
            val m = minOf(batch, n - i)
            idx.append((0 until m).map { j ->
                val key = "content://media/external/images/media/${i + j}"
                keyBytes += key.length
                IndexOp.put(key, (i + j).toLong(), FloatArray(dim).also { unit(rng, dim, it) })
            })
            i += m
        }
        val secs = (System.nanoTime() - t0) / 1e9
        val peak = heapPeak()
        System.gc()
        liveMax = maxOf(liveMax, heapUsed())
        val vectors = n.toLong() * dim * 2
        println(Json.write(linkedMapOf("what" to "append", "n" to n, "dim" to dim, "batch" to batch, "seconds" to secs,
            "heap_before_mb" to before / 1e6, "heap_peak_mb" to peak / 1e6, "vectors_mb" to vectors / 1e6,
            "peak_growth_beyond_vectors_mb" to (peak - before - vectors) / 1e6,
            "live_after_gc_max_mb" to liveMax / 1e6, "live_growth_beyond_vectors_mb" to (liveMax - before - vectors) / 1e6,
            "max_heap_mb" to Runtime.getRuntime().maxMemory() / 1e6,
            "file_bytes" to f.length(), "n_dim_2_plus_keys" to vectors + keyBytes,
            "file_ratio_to_n_dim_2_plus_keys" to f.length().toDouble() / (vectors + keyBytes),
            "file_ratio_to_n_dim_2" to f.length().toDouble() / vectors, "live" to idx.size,
            "gc" to ManagementFactory.getRuntimeMXBean().inputArguments.filter { it.startsWith("-X") }), pretty = false))
    }
    f.delete()
}

fun main(args: Array<String>) {
    when (args[0]) {
        "search" -> search(args[1].toInt(), args[2].toInt(), args[3].toInt(), args[4].toInt())
        "append" -> append(args[1].toInt(), args[2].toInt(), File(args[3]))
        else -> error("search | append")
    }
}
