package com.mc2export.shared

/** A bundle problem the app shows as one line on screen (missing bundle, wrong format, bad config). */
class BundleException(message: String) : Exception(message)

/** How the image model wants its input. */
enum class ImageInputKind {
    /** float32 [1, 3, R, R] RGB in [0, 1] (u8 / 255); the model normalizes with mean/std inside (ONNX, ExecuTorch). */
    UNIT_NCHW,
    /** float32 [1, 3, R, R] already normalized with the config's mean/std (bundles that say so). */
    NORMALIZED_NCHW,
    /** Core ML ImageType: an R x R pixel buffer; scale/bias are in the model. */
    PIXEL_BUFFER
}

/**
 * What the apps read from a bundle's `config.json` (written by `mc2export onnx|executorch|coreml`;
 * format in docs/bundle.md). Keys used, with the fallbacks accepted:
 *
 *  - `format` == "mc2export-bundle"; `bundle_version` == [SUPPORTED_VERSION] (BundleRules: the reading rules;
 *    [BundleRules.loadConfig] reads a bundle folder under all of them)
 *  - `runtime`: "onnx" | "executorch" | "coreml"   (checked against the app's runtime)
 *  - `variant`, `name`, `precision`, `batch` (must be 1)
 *  - `preprocess.resolution` (or top-level `resolution`), `preprocess.interpolation` (bilinear|bicubic),
 *    `preprocess.resize` ("shortest"), `preprocess.crop` ("center"), `preprocess.mean`, `preprocess.std`
 *  - `tokenizer.context_length` (or top-level `context_length`, default 77), `tokenizer.vocab` /
 *    `tokenizer.merges` (default vocab.json / merges.txt)
 *  - `embed_dim`, `logit_scale` (null -> 100), `output_normalized`
 *  - `models.image.file`, `models.text.file` (either may be absent: image-only / text-only bundles),
 *    `models.image.input` (the input contract: `type` ImageType, or `normalization`/`range`)
 *  - `weights.random_weights` (shown as a warning), `versions` (shown in benchmark reports), `files`
 */
class BundleConfig(
    val runtime: String,
    val variant: String,
    val name: String,
    val precision: String,
    val resolution: Int,
    val interpolation: Interpolation,
    val mean: FloatArray,
    val std: FloatArray,
    val contextLength: Int,
    val embedDim: Int,
    val logitScale: Float,
    val logitScaleFromBundle: Boolean,
    val outputNormalized: Boolean,
    val imageModelFile: String?,
    val textModelFile: String?,
    val imageInput: ImageInputKind,
    val vocabFile: String,
    val mergesFile: String,
    val randomWeights: Boolean,
    val versions: Map<String, String>,
    /** config.json's file table: path -> sha256 (verify/ files are checked against it). */
    val fileSha256: Map<String, String>,
    /** The models' input / output names as config.json lists them (null: not listed), checked at model load (R6). */
    val ioNames: Map<String, Pair<List<String>?, List<String>?>> = emptyMap()
) {
    val listedFiles: Set<String> get() = fileSha256.keys

    val hasImage: Boolean get() = imageModelFile != null
    val hasText: Boolean get() = textModelFile != null

    /** Files the app needs that [exists] says are missing (model files, tokenizer files). */
    fun missingFiles(exists: (String) -> Boolean): List<String> {
        val need = ArrayList<String>()
        imageModelFile?.let { need.add(it) }
        textModelFile?.let { need.add(it); need.add(vocabFile); need.add(mergesFile) }
        return need.filter { !exists(it) }
    }

    /** (field, path) of every path config.json names: each must stay inside the bundle (BundleRules.inside). */
    fun paths(): List<Pair<String, String>> {
        val out = ArrayList<Pair<String, String>>()
        imageModelFile?.let { out.add("models.image.file" to it) }
        textModelFile?.let { out.add("models.text.file" to it) }
        if (hasText) { out.add("tokenizer.vocab" to vocabFile); out.add("tokenizer.merges" to mergesFile) }
        for (f in fileSha256.keys) out.add("files" to f)
        return out
    }

    /** The tolerance tier of this bundle's precision (from code: BundleRules.TIERS). */
    val tier: String get() = BundleRules.TIERS.getValue(precision)

    /** One-line summary for the screen. */
    fun summary(): String = "$name ($runtime, $precision, ${resolution}px ${interpolation.id}, ${embedDim}-d)" +
        if (randomWeights) " - RANDOM WEIGHTS: results are meaningless" else ""

    companion object {
        const val FORMAT = "mc2export-bundle"
        const val SUPPORTED_VERSION = BundleRules.BUNDLE_VERSION
        val RUNTIMES = listOf("onnx", "executorch", "litert", "coreml")
        private val EXTENSIONS = mapOf("onnx" to ".onnx", "executorch" to ".pte", "litert" to ".tflite",
            "coreml" to ".mlpackage")
        private val EXPORT_CMD = mapOf("onnx" to "mc2export onnx", "executorch" to "mc2export executorch",
            "litert" to "mc2export litert", "coreml" to "mc2export coreml")

        /**
         * Parse config.json text. [expectedRuntime]: the runtime this app build runs (null: any).
         * Throws [BundleException] with a message meant for the user.
         */
        fun parse(text: String, expectedRuntime: String? = null): BundleConfig {
            val root = try {
                Json.parse(text)
            } catch (e: Json.ParseError) {
                throw BundleException("config.json is not valid JSON (${e.message}): re-export the bundle")
            }
            try {
                return fromJson(J.obj(root, "config.json"), expectedRuntime)
            } catch (e: IllegalArgumentException) {
                throw BundleException("config.json: ${e.message}")
            }
        }

        private fun fromJson(c: Map<String, Any?>, expectedRuntime: String?): BundleConfig {
            val format = c["format"]
            if (format != FORMAT) {
                throw BundleException("this folder is not an mc2export bundle (config.json format is ${J.describe(format)}, " +
                    "expected \"$FORMAT\"): export one with `mc2export executorch|onnx|coreml --variant s0 --out DIR`")
            }
            val version = J.int(c["bundle_version"] ?: throw IllegalArgumentException("bundle_version is missing"), "bundle_version")
            if (version > SUPPORTED_VERSION) {
                throw BundleException("bundle version $version is newer than this app understands ($SUPPORTED_VERSION): update the app")
            }
            if (version != SUPPORTED_VERSION) {
                throw BundleException("bundle_version $version: written by an older mc2export; re-export the bundle with this one")
            }
            val runtime = J.str(c["runtime"], "runtime")
            if (runtime !in RUNTIMES) throw BundleException("config.json: unknown runtime \"$runtime\" (expected one of ${RUNTIMES.joinToString()})")
            if (expectedRuntime != null && runtime != expectedRuntime) {
                throw BundleException("this app runs $expectedRuntime bundles (${EXTENSIONS[expectedRuntime]} models), but this is a " +
                    "$runtime bundle: export one with `${EXPORT_CMD[expectedRuntime]} --variant s0 --out DIR`")
            }
            val variant = J.str(c["variant"], "variant")
            val name = (c["name"] as? String) ?: variant
            val precision = J.str(c["precision"], "precision")
            BundleRules.tierOf(precision, "config.json")
            val batch = if (c["batch"] == null) 1 else J.int(c["batch"], "batch")
            if (batch != 1) throw BundleException("the bundle was exported with --batch $batch: the apps need --batch 1")

            val pre = J.obj(c["preprocess"] ?: throw IllegalArgumentException("preprocess is missing"), "preprocess")
            val resolution = J.int(pre["resolution"] ?: c["resolution"] ?: pre["size"], "preprocess.resolution")
            if (resolution < 1 || resolution > 4096) throw IllegalArgumentException("preprocess.resolution $resolution is out of range")
            val interp = Interpolation.parse(J.str(pre["interpolation"], "preprocess.interpolation"))
            val resize = (pre["resize"] ?: pre["resize_mode"] ?: "shortest") as? String
            if (resize != "shortest") throw IllegalArgumentException("preprocess.resize \"$resize\" is not supported (only \"shortest\")")
            val crop = (pre["crop"] ?: "center") as? String
            if (crop != "center") throw IllegalArgumentException("preprocess.crop \"$crop\" is not supported (only \"center\")")
            val mean = triple(pre["mean"], "preprocess.mean")
            val std = triple(pre["std"], "preprocess.std")
            if (std.any { it == 0f }) throw IllegalArgumentException("preprocess.std must not contain 0")

            val tok = c["tokenizer"] as? Map<*, *>
            val ctxRaw = tok?.get("context_length") ?: c["context_length"]
            val contextLength = if (ctxRaw == null) 77 else J.int(ctxRaw, "context_length")
            if (contextLength < 2 || contextLength > 1024) throw IllegalArgumentException("context_length $contextLength is outside 2..1024")
            val vocab = BundleRules.safeRelative(tok?.get("vocab") ?: "vocab.json", "config.json tokenizer.vocab")
            val merges = BundleRules.safeRelative(tok?.get("merges") ?: "merges.txt", "config.json tokenizer.merges")

            val embedDim = J.int(c["embed_dim"], "embed_dim")
            if (embedDim < 1 || embedDim > 8192) throw IllegalArgumentException("embed_dim $embedDim is outside 1..8192")
            val ls = c["logit_scale"]
            val logitScale = if (ls == null) 100f else J.double(ls, "logit_scale").toFloat()
            if (!(logitScale > 0f) || logitScale.isInfinite()) throw IllegalArgumentException("logit_scale must be a positive number, got $ls")
            val normalized = if (c["output_normalized"] == null) true else J.bool(c["output_normalized"], "output_normalized")

            val models = c["models"] as? Map<*, *> ?: throw IllegalArgumentException("models is missing (no model files listed)")
            val image = models["image"] as? Map<*, *>
            val text = models["text"] as? Map<*, *>
            if (image == null && text == null) throw IllegalArgumentException("models lists neither an image nor a text model")
            val ext = EXTENSIONS.getValue(runtime)
            val imageFile = image?.let { modelFile(it, "models.image", ext) }
            val textFile = text?.let { modelFile(it, "models.text", ext) }

            val contract = image?.get("input") as? Map<*, *>
            val kind = when {
                contract == null -> if (runtime == "coreml") ImageInputKind.PIXEL_BUFFER else ImageInputKind.UNIT_NCHW
                contract["type"] == "ImageType" -> ImageInputKind.PIXEL_BUFFER
                else -> {
                    val norm = contract["normalization"] as? String
                    val range = contract["range"] as? List<*>
                    when {
                        norm != null && (norm.startsWith("inside") || norm.startsWith("none")) -> ImageInputKind.UNIT_NCHW
                        norm == null && range != null && range.size == 2 -> ImageInputKind.UNIT_NCHW
                        norm == null && range == null -> ImageInputKind.UNIT_NCHW
                        else -> ImageInputKind.NORMALIZED_NCHW
                    }
                }
            }
            val weights = c["weights"] as? Map<*, *>
            val rw = weights?.get("random_weights")
            val random = if (rw == null) false else J.bool(rw, "weights.random_weights")
            val versions = LinkedHashMap<String, String>()
            (c["versions"] as? Map<*, *>)?.forEach { (k, v) -> if (k is String && v != null) versions[k] = v.toString() }
            val files = LinkedHashMap<String, String>()
            val table = J.obj(c["files"] ?: throw IllegalArgumentException("files is missing (the table of the bundle's files)"), "files")
            for ((k, v) in table) {
                val e = v as? Map<*, *>
                val sha = e?.get("sha256") as? String
                val n = e?.get("bytes")
                if (sha == null || !HEX64.matches(sha) || n !is Long || n < 0) {
                    throw IllegalArgumentException("files[${J.describe(k)}] must be {sha256: 64 hex digits, bytes: an integer}")
                }
                files[BundleRules.safeRelative(k, "config.json files")] = sha
            }
            val io = LinkedHashMap<String, Pair<List<String>?, List<String>?>>()
            for ((tower, m) in listOf("image" to image, "text" to text)) if (m != null) {
                io[tower] = names(m["inputs"], "models.$tower.inputs") to names(m["outputs"], "models.$tower.outputs")
            }
            return BundleConfig(runtime, variant, name, precision, resolution, interp, mean, std, contextLength, embedDim,
                logitScale, ls != null, normalized, imageFile, textFile, kind, vocab, merges, random, versions, files, io)
        }

        private val HEX64 = Regex("[0-9a-f]{64}")

        /** models.<tower>.inputs / outputs: a list of {name, dtype, shape}; the names, or null when not listed. */
        private fun names(v: Any?, what: String): List<String>? {
            if (v == null) return null
            val l = J.list(v, what)
            return l.mapIndexed { i, x -> J.str((x as? Map<*, *>)?.get("name"), "$what[$i].name") }
        }

        private fun modelFile(m: Map<*, *>, what: String, ext: String): String {
            val f = BundleRules.safeRelative(m["file"] ?: throw IllegalArgumentException("$what.file is missing"), "config.json $what.file")
            if (!f.endsWith(ext)) {
                throw BundleException("$what.file \"$f\" is not a $ext model: this bundle does not match its runtime")
            }
            return f
        }

        private fun triple(v: Any?, what: String): FloatArray {
            val l = J.list(v ?: throw IllegalArgumentException("$what is missing"), what)
            if (l.size != 3) throw IllegalArgumentException("$what must hold 3 numbers, got ${l.size}")
            return FloatArray(3) { J.double(l[it], "$what[$it]").toFloat() }
        }
    }
}
