// swift-tools-version:6.0
// MC2Core: the pure-logic part of the iOS sample app (tokenizer, preprocessing, bundle reader, zero-shot
// math, photo index, benchmark document), Foundation only, mirrored from the Kotlin code in
// examples/android/shared. Swift 6 language mode (complete concurrency checking). Compiled and tested on
// Linux by examples/ios/swift_linux.sh (tests/test_swift.py, in CI); `swift test` on a Mac runs the same.
// mc2-index-tool: the index's crash test child (append until killed) and its search / append benchmark.
import PackageDescription

let package = Package(
    name: "MC2Core",
    platforms: [.iOS(.v17), .macOS(.v14)],
    products: [.library(name: "MC2Core", targets: ["MC2Core"])],
    targets: [
        .target(name: "MC2Core"),
        .executableTarget(name: "mc2-index-tool", dependencies: ["MC2Core"]),
        .testTarget(name: "MC2CoreTests", dependencies: ["MC2Core"]),
    ],
    swiftLanguageModes: [.v6]
)
