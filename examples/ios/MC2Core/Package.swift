// swift-tools-version:5.9
// MC2Core: the pure-logic part of the iOS sample app (tokenizer, preprocessing, bundle config, zero-shot
// math, photo index, benchmark document), Foundation only, mirrored line by line from the Kotlin code in
// examples/android/shared (which is tested here against examples/shared/vectors on the JVM).
// `swift test` runs the same vector tests on a Mac (Xcode 15+); see examples/ios/README.md.
import PackageDescription

let package = Package(
    name: "MC2Core",
    platforms: [.iOS(.v17), .macOS(.v14)],
    products: [.library(name: "MC2Core", targets: ["MC2Core"])],
    targets: [
        .target(name: "MC2Core"),
        .testTarget(name: "MC2CoreTests", dependencies: ["MC2Core"]),
    ]
)
