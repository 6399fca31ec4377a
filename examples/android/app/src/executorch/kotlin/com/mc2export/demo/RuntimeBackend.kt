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

    private class EtImage(private val module: Module) : ImageTower {
        override fun embed(input: FloatArray, resolution: Int): FloatArray {
            val t = Tensor.fromBlob(input, longArrayOf(1, 3, resolution.toLong(), resolution.toLong()))
            return module.forward(EValue.from(t))[0].toTensor().dataAsFloatArray
        }

        override fun close() = module.destroy()
    }

    private class EtText(private val module: Module) : TextTower {
        override fun embed(tokens: IntArray): FloatArray {
            val t = Tensor.fromBlob(tokens, longArrayOf(1, tokens.size.toLong()))
            return module.forward(EValue.from(t))[0].toTensor().dataAsFloatArray
        }

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
