package com.mc2export.demo

import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import java.io.File

/**
 * ExecuTorch (org.pytorch:executorch-android): the bundle's image.pte / text.pte, XNNPACK-delegated, run with
 * Module.forward. Inputs as exported by mc2export: image float32 [1,3,R,R] (u8/255, normalized inside the
 * model), tokens int32 [1,77]; output float32 [1,D]. XNNPACK picks its thread count itself (the big cores).
 */
object RuntimeBackend : Backend {
    override val bundleRuntime = "executorch"
    override val reportName = "executorch"
    override val version: String = BuildConfig.RUNTIME_VERSION

    /** forward() on an EValue made once; only [run] is timed by the benchmark. */
    private class EtCall(private val module: Module, private val input: EValue) : PreparedCall {
        override fun run() {
            module.forward(input)
        }

        override fun close() {}
    }

    private class EtImage(private val module: Module) : ImageTower {
        private fun evalue(x: FloatArray, r: Int) = EValue.from(Tensor.fromBlob(x, longArrayOf(1, 3, r.toLong(), r.toLong())))
        override fun embed(input: FloatArray, resolution: Int): FloatArray =
            module.forward(evalue(input, resolution))[0].toTensor().dataAsFloatArray

        override fun prepare(input: FloatArray, resolution: Int): PreparedCall = EtCall(module, evalue(input, resolution))
        override fun close() = module.destroy()
    }

    private class EtText(private val module: Module) : TextTower {
        private fun evalue(tokens: IntArray) = EValue.from(Tensor.fromBlob(tokens, longArrayOf(1, tokens.size.toLong())))
        override fun embed(tokens: IntArray): FloatArray = module.forward(evalue(tokens))[0].toTensor().dataAsFloatArray
        override fun prepare(tokens: IntArray): PreparedCall = EtCall(module, evalue(tokens))
        override fun close() = module.destroy()
    }

    private fun load(file: File): Module {
        val m = Module.load(file.absolutePath)
        m.loadMethod("forward")  // load (and delegate-initialize) now, so it is not timed as the first call
        return m
    }

    override fun openImage(file: File, threads: Int?): ImageTower = EtImage(load(file))
    override fun openText(file: File, threads: Int?): TextTower = EtText(load(file))
}
