// Versions: Gradle 8.11.1 (gradle/wrapper), Android Gradle Plugin 8.7.3, Kotlin 2.1.0 (+ Compose compiler plugin),
// compileSdk 35 / minSdk 26, Jetpack Compose BOM 2024.12.01, CameraX 1.4.1; runtimes in gradle.properties.
plugins {
    id("com.android.application") version "8.7.3" apply false
    id("org.jetbrains.kotlin.android") version "2.1.0" apply false
    id("org.jetbrains.kotlin.jvm") version "2.1.0" apply false
    id("org.jetbrains.kotlin.plugin.compose") version "2.1.0" apply false
}
