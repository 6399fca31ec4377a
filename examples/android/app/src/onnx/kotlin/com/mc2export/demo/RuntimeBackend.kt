package com.mc2export.demo

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import java.io.File
import java.nio.FloatBuffer
import java.nio.IntBuffer

/**
 * ONNX Runtime Android (com.microsoft.onnxruntime:onnxruntime-android, the full build: the bundle's opset-18
 * .onnx files run as they are; the reduced "ORT format" mobile build would need its operator list regenerated).
 * Inputs as exported by mc2export: image float32 [1,3,R,R] (u8/255, normalized inside the model), tokens int32
 * [1,77]; output "embedding" float32 [1,D].
 */
object RuntimeBackend : Backend {
    override val bundleRuntime = "onnx"
    override val reportName = "onnxruntime"
    override val version: String = BuildConfig.RUNTIME_VERSION
    private val env: OrtEnvironment by lazy { OrtEnvironment.getEnvironment() }

    private fun session(file: File, threads: Int?): OrtSession {
        val opts = OrtSession.SessionOptions()
        if (threads != null && threads > 0) opts.setIntraOpNumThreads(threads)
        opts.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT)
        return env.createSession(file.absolutePath, opts)
    }

    @Suppress("UNCHECKED_CAST")
    private fun first(result: OrtSession.Result): FloatArray = (result[0].value as Array<FloatArray>)[0]

    /** The session run on a tensor made once; only [run] is timed by the benchmark. */
    private class OrtCall(private val s: OrtSession, name: String, private val tensor: OnnxTensor) : PreparedCall {
        private val feeds = mapOf(name to tensor)
        override fun run() = s.run(feeds).close()
        override fun close() = tensor.close()
    }

    private class OrtImage(private val s: OrtSession, private val env: OrtEnvironment) : ImageTower {
        private val name = s.inputNames.first()
        private fun tensor(input: FloatArray, resolution: Int) =
            OnnxTensor.createTensor(env, FloatBuffer.wrap(input), longArrayOf(1, 3, resolution.toLong(), resolution.toLong()))

        override fun embed(input: FloatArray, resolution: Int): FloatArray {
            tensor(input, resolution).use { t -> s.run(mapOf(name to t)).use { return first(it) } }
        }

        override fun prepare(input: FloatArray, resolution: Int): PreparedCall = OrtCall(s, name, tensor(input, resolution))
        override val ioNames get() = s.inputNames.toList() to s.outputNames.toList()
        override fun close() = s.close()
    }

    private class OrtText(private val s: OrtSession, private val env: OrtEnvironment) : TextTower {
        private val name = s.inputNames.first()
        private fun tensor(tokens: IntArray) = OnnxTensor.createTensor(env, IntBuffer.wrap(tokens), longArrayOf(1, tokens.size.toLong()))

        override fun embed(tokens: IntArray): FloatArray {
            tensor(tokens).use { t -> s.run(mapOf(name to t)).use { return first(it) } }
        }

        override fun prepare(tokens: IntArray): PreparedCall = OrtCall(s, name, tensor(tokens))
        override val ioNames get() = s.inputNames.toList() to s.outputNames.toList()
        override fun close() = s.close()
    }

    override fun openImage(file: File, threads: Int?): ImageTower = OrtImage(session(file, threads), env)
    override fun openText(file: File, threads: Int?): TextTower = OrtText(session(file, threads), env)
}
