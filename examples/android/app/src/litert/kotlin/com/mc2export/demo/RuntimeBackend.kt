package com.mc2export.demo

import com.google.ai.edge.litert.Accelerator
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.TensorBuffer
import java.io.File

/**
 * LiteRT (com.google.ai.edge.litert:litert, the CompiledModel Kotlin API) running the .tflite files of
 * `mc2export litert` bundles. Each model has one signature, serving_default: input "image" float32 [1,3,R,R]
 * (u8/255, NCHW as the ONNX bundles: the same buffer the shared preprocessing makes; normalized inside the model)
 * or "tokens" int32 [1,77]; output "embedding" float32 [1,D].
 *
 * Accelerator: CPU (XNNPACK) by default; GPU with the Gradle property -Pmc2.litert.accelerator=gpu (LiteRT's GPU
 * accelerator computes in fp16: export the bundle with --precision fp16, or fp32, which it runs in fp16 too).
 * The thread count is XNNPACK's own choice here (the CompiledModel Kotlin API of LiteRT 2.3 takes no thread
 * count in its basic options), as in the ExecuTorch build.
 */
object RuntimeBackend : Backend {
    override val bundleRuntime = "litert"
    override val reportName = "litert"
    override val version: String = BuildConfig.RUNTIME_VERSION
    private val env: Environment by lazy { Environment.create() }
    private val accelerator: Accelerator =
        if (BuildConfig.LITERT_ACCELERATOR == "gpu") Accelerator.GPU else Accelerator.CPU

    private fun compile(file: File): CompiledModel =
        CompiledModel.create(file.absolutePath, CompiledModel.Options(accelerator), env)

    /** A compiled model with its input and output buffers, made once and reused for every call. */
    private class Runner(private val model: CompiledModel) : AutoCloseable {
        val inputs: List<TensorBuffer> = model.createInputBuffers()
        val outputs: List<TensorBuffer> = model.createOutputBuffers()
        fun run(): FloatArray {
            model.run(inputs, outputs)
            return outputs[0].readFloat()
        }
        override fun close() {
            inputs.forEach { it.close() }
            outputs.forEach { it.close() }
            model.close()
        }
    }

    /** The benchmark times [run] alone: the input was written into the model's buffer by [prepare]. */
    private class LiteRtCall(private val r: Runner) : PreparedCall {
        override fun run() { r.run() }
        override fun close() {}
    }

    private class LiteRtImage(private val r: Runner) : ImageTower {
        override fun embed(input: FloatArray, resolution: Int): FloatArray {
            r.inputs[0].writeFloat(input)
            return r.run()
        }

        override fun prepare(input: FloatArray, resolution: Int): PreparedCall {
            r.inputs[0].writeFloat(input)
            return LiteRtCall(r)
        }

        override fun close() = r.close()
    }

    private class LiteRtText(private val r: Runner) : TextTower {
        override fun embed(tokens: IntArray): FloatArray {
            r.inputs[0].writeInt(tokens)
            return r.run()
        }

        override fun prepare(tokens: IntArray): PreparedCall {
            r.inputs[0].writeInt(tokens)
            return LiteRtCall(r)
        }

        override fun close() = r.close()
    }

    override fun openImage(file: File, threads: Int?): ImageTower = LiteRtImage(Runner(compile(file)))
    override fun openText(file: File, threads: Int?): TextTower = LiteRtText(Runner(compile(file)))
}
