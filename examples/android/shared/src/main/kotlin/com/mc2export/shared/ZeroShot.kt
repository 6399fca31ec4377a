package com.mc2export.shared

/** Result of parsing the user's label field. [error] is shown on screen when set (labels is then empty). */
class LabelParse(val labels: List<String>, val error: String?)

/** One prompt of the ensemble and whether it had to be truncated to the context length. */
class Prompt(val label: String, val text: String, val tokens: TokenizedText)

/** Prompts for a set of labels, with the truncation report the UI shows. */
class PromptSet(val labels: List<String>, val templates: List<String>, val prompts: List<Prompt>) {
    val truncated: List<Prompt> get() = prompts.filter { it.tokens.truncated }

    /** A warning for the screen, or null. */
    fun warning(contextLength: Int): String? {
        val cut = truncated
        if (cut.isEmpty()) return null
        val first = cut[0].text
        val shown = if (first.length > 60) first.substring(0, 60) + "..." else first
        return "${cut.size} prompt(s) longer than $contextLength tokens were truncated (as in Python), e.g. \"$shown\""
    }
}

/** Labels, prompt templates and the zero-shot math (the CLIP recipe of mc2export.zeroshot). */
object ZeroShot {
    /** OpenAI CLIP's 80 ImageNet templates (mc2export.zeroshot.OPENAI_TEMPLATES, same order). */
    val OPENAI_TEMPLATES: List<String> = listOf(
        "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
        "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
        "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
        "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
        "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
        "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
        "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
        "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
        "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
        "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
        "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
        "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
        "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
        "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
        "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
        "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
        "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
        "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
        "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
        "a photo of a small {}.", "a tattoo of the {}."
    )

    /** The 7-template subset (mc2export.zeroshot.SIMPLE_TEMPLATES): the apps' default, 10x cheaper. */
    val SIMPLE_TEMPLATES: List<String> = listOf(
        "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
        "a {} in a video game.", "art of the {}.", "a photo of the small {}."
    )

    const val MAX_LABELS = 1000

    /**
     * Labels from the text field: separated by commas or new lines, trimmed, empty ones dropped.
     * Errors (shown on screen): no label at all, a label given twice, too many labels.
     */
    fun parseLabels(text: String): LabelParse {
        val labels = text.split(',', '\n').map { TextCleaner.collapseWhitespace(it) }.filter { it.isNotEmpty() }
        if (labels.isEmpty()) return LabelParse(emptyList(), "Type at least one label, e.g. \"cat, dog, car\".")
        val seen = HashSet<String>()
        for (l in labels) {
            if (!seen.add(l)) return LabelParse(emptyList(), "The label \"$l\" appears twice: give each class once.")
        }
        if (labels.size > MAX_LABELS) return LabelParse(emptyList(), "Too many labels (${labels.size}; at most $MAX_LABELS).")
        return LabelParse(labels, null)
    }

    /** Every template applied to every label (label-major order, as Python), tokenized. */
    fun prompts(labels: List<String>, templates: List<String>, tokenizer: ClipTokenizer): PromptSet {
        val out = ArrayList<Prompt>(labels.size * templates.size)
        for (l in labels) for (t in templates) {
            val text = t.replace("{}", l)
            out.add(Prompt(l, text, tokenizer.tokenize(text)))
        }
        return PromptSet(labels, templates, out)
    }

    fun l2normalize(v: FloatArray): FloatArray {
        var s = 0.0
        for (x in v) s += x.toDouble() * x
        val n = Math.sqrt(s)
        if (n == 0.0) return v.copyOf()
        return FloatArray(v.size) { (v[it] / n).toFloat() }
    }

    fun dot(a: FloatArray, b: FloatArray): Float {
        require(a.size == b.size) { "embedding sizes differ: ${a.size} vs ${b.size}" }
        var s = 0.0
        for (i in a.indices) s += a[i].toDouble() * b[i]
        return s.toFloat()
    }

    fun cosine(a: FloatArray, b: FloatArray): Float = dot(l2normalize(a), l2normalize(b))

    /** Per class: the renormalized mean of its normalized prompt embeddings. */
    fun classEmbedding(promptEmbeddings: List<FloatArray>): FloatArray {
        require(promptEmbeddings.isNotEmpty()) { "no prompt embeddings" }
        val d = promptEmbeddings[0].size
        val acc = DoubleArray(d)
        for (e in promptEmbeddings) {
            val u = l2normalize(e)
            for (i in 0 until d) acc[i] += u[i].toDouble()
        }
        return l2normalize(FloatArray(d) { (acc[it] / promptEmbeddings.size).toFloat() })
    }

    /** softmax(logitScale * cos(image, class)) over the classes. */
    fun probabilities(image: FloatArray, classes: List<FloatArray>, logitScale: Float): FloatArray {
        val u = l2normalize(image)
        val logits = DoubleArray(classes.size) { logitScale.toDouble() * dot(u, classes[it]) }
        var m = Double.NEGATIVE_INFINITY
        for (x in logits) if (x > m) m = x
        var sum = 0.0
        val e = DoubleArray(logits.size) { Math.exp(logits[it] - m).also { v -> sum += v } }
        return FloatArray(e.size) { (e[it] / sum).toFloat() }
    }

    /** Indices of the k largest values, largest first (ties: lower index first). */
    fun topK(values: FloatArray, k: Int): IntArray {
        val idx = values.indices.sortedWith(Comparator { a, b ->
            val c = values[b].compareTo(values[a])
            if (c != 0) c else a.compareTo(b)
        })
        return idx.take(minOf(k, values.size)).toIntArray()
    }
}
