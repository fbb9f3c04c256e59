// swift-tools-version:5.9
// Ember's Swift package: the generated Swift bindings (Sources/Ember/Generated, made by
// scripts/build-ios.sh), a hand-written AsyncThrowingStream layer (Sources/Ember/EmberStream.swift)
// and the native library as a binary XCFramework (ember_ffiFFI.xcframework, also made by
// scripts/build-ios.sh on macOS). For a release, upload the zipped XCFramework and swap the
// binaryTarget for `.binaryTarget(name:url:checksum:)`.
import PackageDescription

let package = Package(
    name: "Ember",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Ember", targets: ["Ember"]),
    ],
    targets: [
        // Module name must match the generated code's `import ember_ffiFFI`.
        .binaryTarget(name: "ember_ffiFFI", path: "ember_ffiFFI.xcframework"),
        .target(name: "Ember", dependencies: ["ember_ffiFFI"], path: "Sources/Ember"),
    ]
)
