package com.mc2export.demo

import android.content.Context
import com.mc2export.shared.BundleConfig
import com.mc2export.shared.BundleException
import com.mc2export.shared.BundleRules
import com.mc2export.shared.ClipTokenizer
import java.io.File
import java.io.IOException

/** A bundle opened in this build's runtime: config, tokenizer and towers (either may be absent). */
class LoadedBundle(
    val dir: File,
    val config: BundleConfig,
    val configText: String,
    val tokenizer: ClipTokenizer?,
    val image: ImageTower?,
    val text: TextTower?,
    val loadMs: Map<String, Double>
) : AutoCloseable {
    override fun close() {
        image?.close()
        text?.close()
    }
}

/**
 * Where bundles come from, first found wins:
 *  1. a folder given by the benchmark intent (mc2export bench --device android --app ...);
 *  2. /sdcard/Android/data/com.mc2export.demo/files/bundle  (`adb push BUNDLE/. <that folder>/`);
 *  3. app/src/main/assets/bundle packaged in the APK (copied once to the app's files folder, because the
 *     runtimes load models from a file path).
 */
object BundleLoader {
    const val ASSET_DIR = "bundle"

    fun externalDir(ctx: Context): File? = ctx.getExternalFilesDir(null)?.let { File(it, "bundle") }
    fun internalDir(ctx: Context): File = File(ctx.filesDir, "bundle")

    fun candidates(ctx: Context, explicit: String?): List<File> {
        val out = ArrayList<File>()
        explicit?.let { out.add(File(it)) }
        externalDir(ctx)?.let { out.add(it) }
        out.add(internalDir(ctx))
        return out
    }

    /** Copy assets/bundle into the files folder when the APK carries a bundle (again if its config changed). */
    fun installFromAssets(ctx: Context) {
        val names = try { ctx.assets.list(ASSET_DIR) } catch (e: IOException) { null } ?: return
        if ("config.json" !in names) return
        val target = internalDir(ctx)
        val packaged = ctx.assets.open("$ASSET_DIR/config.json").use { it.readBytes() }
        val current = File(target, "config.json")
        if (current.isFile && current.readBytes().contentEquals(packaged)) return
        target.deleteRecursively()
        copyAssetTree(ctx, ASSET_DIR, target)
    }

    private fun copyAssetTree(ctx: Context, path: String, to: File) {
        val children = ctx.assets.list(path) ?: emptyArray()
        if (children.isEmpty()) {  // a file
            to.parentFile?.mkdirs()
            ctx.assets.open(path).use { input -> to.outputStream().use { input.copyTo(it) } }
            return
        }
        to.mkdirs()
        for (c in children) copyAssetTree(ctx, "$path/$c", File(to, c))
    }

    /** Open the first bundle found; every problem is a BundleException with a message for the screen. */
    fun load(ctx: Context, explicit: String?, threads: Int?): LoadedBundle {
        val tried = candidates(ctx, explicit)
        val dir = tried.firstOrNull { File(it, "config.json").isFile }
            ?: throw BundleException(
                "No bundle found (looked in ${tried.joinToString { it.path }}). Export one with " +
                    "`mc2export ${RuntimeBackend.bundleRuntime} --variant s0 --out mc2-s0` and copy it: " +
                    "`adb push mc2-s0/. ${externalDir(ctx)?.path ?: "/sdcard/Android/data/com.mc2export.demo/files/bundle"}/`")
        // The reading rules (BundleRules): bundle_version 2, config.json.sha256, every path inside the folder
        val (cfg, text) = try {
            BundleRules.loadConfig(dir, RuntimeBackend.bundleRuntime) to File(dir, "config.json").readText(Charsets.UTF_8)
        } catch (e: IOException) {
            throw BundleException("cannot read ${dir.path}/config.json: ${e.message}")
        } catch (e: SecurityException) {
            throw BundleException("the app may not read ${dir.path}: copy the bundle to ${externalDir(ctx)?.path}")
        }
        val missing = cfg.missingFiles { File(dir, it).exists() }
        if (missing.isNotEmpty()) throw BundleException("the bundle in ${dir.path} lacks ${missing.joinToString()}: copy the whole folder")
        val loadMs = LinkedHashMap<String, Double>()
        val tokenizer = if (cfg.hasText) {
            try {
                ClipTokenizer.fromFiles(BundleRules.inside(dir, cfg.vocabFile, "tokenizer.vocab").readText(Charsets.UTF_8),
                    BundleRules.inside(dir, cfg.mergesFile, "tokenizer.merges").readText(Charsets.UTF_8), cfg.contextLength)
            } catch (e: IllegalArgumentException) {
                throw BundleException("tokenizer files: ${e.message}")
            }
        } else null
        var image: ImageTower? = null
        var textTower: TextTower? = null
        try {
            cfg.imageModelFile?.let { f ->
                val t0 = System.nanoTime()
                image = RuntimeBackend.openImage(BundleRules.inside(dir, f, "models.image.file"), threads)
                loadMs["image"] = (System.nanoTime() - t0) / 1e6
            }
            cfg.textModelFile?.let { f ->
                val t0 = System.nanoTime()
                textTower = RuntimeBackend.openText(BundleRules.inside(dir, f, "models.text.file"), threads)
                loadMs["text"] = (System.nanoTime() - t0) / 1e6
            }
            // R6: the app feeds by name: what the runtime reports must be what config.json says
            for ((tower, names) in listOf("image" to image?.ioNames, "text" to textTower?.ioNames)) {
                val io = cfg.ioNames[tower] ?: continue
                if (names == null) continue  // this runtime does not expose them (ExecuTorch)
                BundleRules.checkNames(tower, "inputs", io.first, names.first)
                BundleRules.checkNames(tower, "outputs", io.second, names.second)
            }
        } catch (e: BundleException) {
            image?.close()
            textTower?.close()
            throw e
        } catch (e: Exception) {  // the runtimes throw their own exception types for damaged/incompatible files
            image?.close()
            textTower?.close()
            throw BundleException("${RuntimeBackend.reportName} ${RuntimeBackend.version} cannot load the models in ${dir.path}: " +
                "${e.message ?: e.javaClass.simpleName} (exported by ${cfg.versions[RuntimeBackend.bundleRuntime] ?: "?"}; " +
                "the runtime must be at least as new as the exporter)")
        }
        return LoadedBundle(dir, cfg, text, tokenizer, image, textTower, loadMs)
    }
}
