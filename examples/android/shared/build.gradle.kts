// Plain Kotlin/JVM module: the tokenizer, preprocessing, bundle config, zero-shot math, photo index and
// benchmark document of the app, with no Android imports -- tested on the JVM against ../shared/vectors
// (`./gradlew :shared:test`, or without Gradle: ./run_jvm_tests.sh with kotlinc).
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("org.jetbrains.kotlin.jvm")
}

// A JVM *target*, not a toolchain: any JDK >= 17 builds it -- Android Studio's bundled JDK (17 or 21) included.
// (jvmToolchain(17) made Gradle look for exactly a JDK 17 and fail without one or a toolchain resolver.)
java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}
kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

dependencies {
    testImplementation("junit:junit:4.13.2")
}

tasks.test {
    systemProperty("mc2.vectors", rootProject.file("../shared/vectors").absolutePath)
    // vocab.json + merges.txt of any bundle (optional; otherwise the CLIP merges asset of the Python package)
    (project.findProperty("mc2.vocab") as String?)?.let { systemProperty("mc2.vocab", it) }
    workingDir = rootProject.projectDir
    testLogging { events("passed", "failed"); showStandardStreams = true }
}
