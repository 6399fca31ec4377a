// MobileCLIP / MobileCLIP2 sample app (Kotlin, Jetpack Compose, CameraX; ExecuTorch or ONNX Runtime).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "MC2Demo"
include(":app", ":shared")
