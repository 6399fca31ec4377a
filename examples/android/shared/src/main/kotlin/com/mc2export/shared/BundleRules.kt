package com.mc2export.shared

import java.io.File
import java.io.IOException
import java.security.MessageDigest

/**
 * The bundle reading rules (docs/bundle.md, "Reading a bundle safely"; the same rules as mc2export/export/reading.py
 * and the web app's mc2/config.js): nothing a bundle's files say is trusted.
 *
 *  - R0 `bundle_version` must be [BUNDLE_VERSION]; the verify/ manifest `version` must be 1.
 *  - R1 config.json's bytes, read once, must hash to `config.json.sha256` ([checkConfigSha256]).
 *  - R2 every path from a file is a relative POSIX path that resolves inside the bundle folder, symlinks
 *    included ([safeRelative], [inside]: canonical paths, which follow symlinks on Android and the JVM).
 *  - R3 tolerances come from the precision tier in this code ([TIERS], [TOLERANCES]), never from the manifest.
 *  - R5 typed fields in range; JSON numbers finite; nesting bounded (Json.parse).
 *  - R6 the model's input / output names equal config.json's `models.<tower>.inputs/outputs` ([checkNames]).
 */
object BundleRules {
    const val BUNDLE_VERSION = 2
    const val MANIFEST_VERSION = 1
    const val CONFIG = "config.json"
    const val CONFIG_SHA256 = "config.json.sha256"
    const val MAX_CONFIG_BYTES = 16 shl 20

    /** precision -> tolerance tier (mc2export.export.reading.TIERS); a precision not named here is refused. */
    val TIERS: Map<String, String> = mapOf("fp32" to "fp32", "fp16" to "fp16", "bf16" to "bf16", "int8" to "compressed",
        "int8-static" to "compressed", "int8-bf16" to "compressed", "pal6" to "compressed", "pal4" to "compressed",
        "auto" to "compressed")

    /** tier -> tolerance (mc2export.export.validate.TOLERANCES). */
    val TOLERANCES: Map<String, Map<String, Double>> = mapOf(
        "fp32" to linkedMapOf("cosine_min" to 0.99999, "max_abs_over_std" to 1e-4),
        "fp16" to linkedMapOf("cosine_min" to 0.999), "bf16" to linkedMapOf("cosine_min" to 0.999),
        "compressed" to linkedMapOf("cosine_min" to 0.99))

    const val MAX_ROWS = 10000

    fun tierOf(precision: String?, what: String): String =
        TIERS[precision] ?: throw BundleException("$what: precision ${J.describe(precision)} is not one this app knows: update the app")

    fun sha256Hex(bytes: ByteArray): String {
        val md = MessageDigest.getInstance("SHA-256").digest(bytes)
        val sb = StringBuilder(64)
        for (b in md) sb.append(Character.forDigit((b.toInt() shr 4) and 0xF, 16)).append(Character.forDigit(b.toInt() and 0xF, 16))
        return sb.toString()
    }

    /** R1: [sha256File] must be exactly "<sha256 of configBytes>  config.json\n" (sha256sum -c's line). */
    fun checkConfigSha256(configBytes: ByteArray, sha256File: ByteArray?) {
        val want = "${sha256Hex(configBytes)}  $CONFIG\n".toByteArray(Charsets.US_ASCII)
        if (sha256File == null || !sha256File.contentEquals(want)) {
            throw BundleException("config.json does not match config.json.sha256: the bundle was edited or damaged (re-export it)")
        }
    }

    /** R2 (text): a relative POSIX path: not empty, not absolute, no backslash / NUL / drive, no "", ".", ".." part. */
    fun safeRelative(rel: Any?, field: String): String {
        val why = when {
            rel !is String || rel.isEmpty() -> "is not a relative path"
            rel.startsWith("/") || rel.contains('\\') || rel.contains('\u0000') || Regex("^[A-Za-z]:").containsMatchIn(rel) ->
                "is not a relative POSIX path"
            rel.split('/').any { it.isEmpty() || it == "." || it == ".." } -> "has an empty, '.' or '..' component"
            else -> null
        }
        if (why != null) throw BundleException("$field ${J.describe(rel)} $why: the bundle is refused")
        return rel as String
    }

    /** R2 (files): [rel] checked and resolved; its canonical path (symlinks followed) must stay inside [dir]. */
    fun inside(dir: File, rel: Any?, field: String): File {
        val r = safeRelative(rel, field)
        val root = try { dir.canonicalFile } catch (e: IOException) { throw BundleException("cannot read the bundle folder: ${e.message}") }
        val f = File(root, r)
        val real = try { f.canonicalFile } catch (e: IOException) { throw BundleException("$field ${J.describe(rel)}: ${e.message}") }
        if (real != root && !real.path.startsWith(root.path + File.separator)) {
            throw BundleException("$field ${J.describe(rel)} leaves the bundle folder (a symlink out of it): the bundle is refused")
        }
        return f
    }

    /** R6: the names the runtime reports for a loaded model against config.json's (when config.json lists them). */
    fun checkNames(tower: String, side: String, expected: List<String>?, actual: List<String>) {
        if (expected == null) return
        if (expected != actual) {
            throw BundleException("the $tower model's $side are $actual, but config.json says $expected: the bundle is refused (re-export it)")
        }
    }

    /**
     * Read a bundle folder's config.json under every rule (R0, R1, R2 for every path it names, R5), bytes read
     * once. [expectedRuntime]: the runtime this app build runs (null: any).
     */
    fun loadConfig(dir: File, expectedRuntime: String? = null): BundleConfig {
        val cfgFile = inside(dir, CONFIG, CONFIG)
        if (!cfgFile.isFile) throw BundleException("${dir.path} is not an mc2export bundle (no config.json)")
        if (cfgFile.length() > MAX_CONFIG_BYTES) throw BundleException("config.json is larger than ${MAX_CONFIG_BYTES shr 20} MB: not a bundle's")
        val bytes = cfgFile.readBytes()
        val shaFile = File(dir, CONFIG_SHA256)
        val sha = if (shaFile.isFile) { inside(dir, CONFIG_SHA256, CONFIG_SHA256); shaFile.readBytes().take(200).toByteArray() } else null
        // version first: an older bundle has no checksum file, and "re-export it" is the useful message
        val text = String(bytes, Charsets.UTF_8)
        val cfg = BundleConfig.parse(text, expectedRuntime)
        checkConfigSha256(bytes, sha)
        for (rel in cfg.paths()) inside(dir, rel.second, rel.first)
        return cfg
    }
}
