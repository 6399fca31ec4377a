package com.mc2export.demo

import java.io.File

/** A model call on an input converted to the runtime's tensor once (the benchmark times [run] alone). */
interface PreparedCall : AutoCloseable {
    fun run()
}

/** The image tower: float32 [1, 3, R, R] in, embedding out. */
interface ImageTower : AutoCloseable {
    fun embed(input: FloatArray, resolution: Int): FloatArray
    fun prepare(input: FloatArray, resolution: Int): PreparedCall
    /** (input names, output names) as the runtime reports them (checked against config.json); null: not exposed. */
    val ioNames: Pair<List<String>, List<String>>? get() = null
}

/** The text tower: int32 [1, contextLength] token row in, embedding out. */
interface TextTower : AutoCloseable {
    fun embed(tokens: IntArray): FloatArray
    fun prepare(tokens: IntArray): PreparedCall
    val ioNames: Pair<List<String>, List<String>>? get() = null
}

/**
 * What each runtime source set provides (src/executorch/kotlin, src/onnx/kotlin or src/litert/kotlin, chosen by the Gradle
 * property mc2.runtime): an object named RuntimeBackend with these members.
 */
interface Backend {
    /** The bundle runtime this build runs ("executorch" | "onnx" | "litert"), checked against config.json. */
    val bundleRuntime: String
    /** The runtime's name in benchmark documents ("executorch" | "onnxruntime" | "litert"). */
    val reportName: String
    val version: String
    fun openImage(file: File, threads: Int?): ImageTower
    fun openText(file: File, threads: Int?): TextTower
}
