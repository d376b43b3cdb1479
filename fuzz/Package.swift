// swift-tools-version:6.0
import PackageDescription

// A package of its own, so the root package's `swift build` and `swift test` never see the fuzz
// target (it links only with `--sanitize fuzzer`). Built by scripts/fuzz.sh.
let package = Package(
    name: "tributary-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "tributary", path: ".."),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    ],
    targets: [
        // The aggregator's request decoding: headers, size limits, gzip/zstd, protobuf, BatchCodec.
        .executableTarget(
            name: "FuzzSyncRequest",
            dependencies: [
                .product(name: "TributaryWire", package: "tributary"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: [.enableUpcomingFeature("ExistentialAny")]),
    ]
)
