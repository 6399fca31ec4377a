import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
    id("org.jetbrains.kotlin.plugin.compose")
}

// -Pmc2.runtime=executorch (default) | onnx | litert: which runtime (and which bundle format) the app is built for.
val mc2Runtime = (project.findProperty("mc2.runtime") as String? ?: "executorch").trim()
require(mc2Runtime in listOf("executorch", "onnx", "litert")) {
    "mc2.runtime must be executorch, onnx or litert, got '$mc2Runtime'"
}
// LiteRT only: -Pmc2.litert.accelerator=cpu (default, XNNPACK) | gpu (LiteRT's GPU accelerator, fp16 compute)
val litertAccelerator = (project.findProperty("mc2.litert.accelerator") as String? ?: "cpu").trim()
require(litertAccelerator == "cpu" || litertAccelerator == "gpu") {
    "mc2.litert.accelerator must be cpu or gpu, got '$litertAccelerator'"
}
val runtimeVersion = project.property(mapOf("executorch" to "executorch.version", "onnx" to "onnxruntime.version",
    "litert" to "litert.version").getValue(mc2Runtime)) as String

android {
    namespace = "com.mc2export.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "com.mc2export.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        buildConfigField("String", "MC2_RUNTIME", "\"$mc2Runtime\"")
        buildConfigField("String", "RUNTIME_VERSION", "\"$runtimeVersion\"")
        buildConfigField("String", "LITERT_ACCELERATOR", "\"$litertAccelerator\"")
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
    }

    sourceSets["main"].java.srcDirs("src/main/kotlin", "src/$mc2Runtime/kotlin")

    buildTypes {
        // debug is debuggable (what `adb shell run-as` needs to read the benchmark JSON: mc2export bench --app);
        // release is not -- the manifest never hard-codes android:debuggable (release lint makes that fatal).
        release {
            isMinifyEnabled = false
        }
    }
    buildFeatures {
        compose = true
        buildConfig = true
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    // Bundles can be packaged as assets (app/src/main/assets/bundle/): keep the model files uncompressed.
    androidResources { noCompress += listOf("pte", "onnx", "tflite", "json", "txt") }
    packaging { jniLibs { useLegacyPackaging = true } }
}

// JVM target 17 on whatever JDK runs Gradle (>= 17; Android Studio's bundled one works): no toolchain needed.
kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

dependencies {
    implementation(project(":shared"))

    implementation(platform("androidx.compose:compose-bom:2024.12.01"))
    implementation("androidx.compose.ui:ui")
    implementation("androidx.compose.material3:material3")
    implementation("androidx.compose.ui:ui-tooling-preview")
    implementation("androidx.activity:activity-compose:1.9.3")
    implementation("androidx.lifecycle:lifecycle-runtime-compose:2.8.7")
    implementation("androidx.lifecycle:lifecycle-viewmodel-ktx:2.8.7")  // state survives rotation (MainViewModel)
    implementation("androidx.exifinterface:exifinterface:1.3.7")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
    implementation("androidx.work:work-runtime-ktx:2.10.0")  // background photo indexing (IndexWorker)

    val camerax = "1.4.1"
    implementation("androidx.camera:camera-core:$camerax")
    implementation("androidx.camera:camera-camera2:$camerax")
    implementation("androidx.camera:camera-lifecycle:$camerax")
    implementation("androidx.camera:camera-view:$camerax")

    if (mc2Runtime == "executorch") {
        // From Maven Central; its POM brings fbjni and soloader. With a locally built executorch.aar use
        // implementation(files("libs/executorch.aar")) and add those two as ExecuTorch's Android docs say.
        implementation("org.pytorch:executorch-android:${project.property("executorch.version")}")
    } else if (mc2Runtime == "onnx") {
        implementation("com.microsoft.onnxruntime:onnxruntime-android:$runtimeVersion")
    } else {
        // LiteRT 2.x: the CompiledModel Kotlin API (CPU / XNNPACK); litert-gpu for -Pmc2.litert.accelerator=gpu
        implementation("com.google.ai.edge.litert:litert:$runtimeVersion")
        if (litertAccelerator == "gpu") implementation("com.google.ai.edge.litert:litert-gpu:$runtimeVersion")
    }
    debugImplementation("androidx.compose.ui:ui-tooling")
}
