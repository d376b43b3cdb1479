// swift-tools-version:6.0
import PackageDescription

// One setting list for every target, as hummingbird does.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "tributary",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "tributary-agent", targets: ["tributary-agent"]),
        .executable(name: "tributary-aggregator", targets: ["tributary-aggregator"]),
        .executable(name: "tributaryctl", targets: ["tributaryctl"]),
        .executable(name: "tributary-sim", targets: ["tributary-sim"]),
        .executable(name: "tributary-bench", targets: ["tributary-bench"]),
        // For the fuzz package in fuzz/, which can reach this package's code only through a product.
        .library(name: "TributaryWire", targets: ["TributaryWire"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // Already built for hummingbird: the HTTP parts the aggregator's request timers watch.
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        // Already built for hummingbird's dependencies; the aggregator reads gateway ids from
        // client certificates with it.
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        // Also already built (swift-certificates needs it): SHA-256 for the batch hash chain.
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
    ],
    targets: [
        // C libraries: each is imported by exactly one Swift module.
        .systemLibrary(
            name: "CMosquitto", pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]),
        .systemLibrary(
            name: "CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(
            name: "CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "CZstd", pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]),
        // glibc's mallopt, for the agent's executable alone (its malloc arenas).
        .systemLibrary(name: "CMalloc"),

        // Plain domain types and pure logic: readings, topic templates, payload decoding. No I/O.
        .target(name: "TributaryCore", swiftSettings: swiftSettings),
        // What a running process needs, not the domain: the wall and monotonic clocks, latency
        // histograms, Prometheus text, the port a server bound.
        .target(name: "TributaryRuntime", swiftSettings: swiftSettings),
        // The admin API's JSON (GET /v1/fleet, /v1/gateways/ID): what the aggregator serves and
        // tributaryctl reads.
        .target(name: "TributaryAdminAPI", dependencies: ["TributaryCore"], swiftSettings: swiftSettings),
        // The wire contract: generated protobuf code, batch encoding, compression.
        .target(
            name: "TributaryWire",
            dependencies: [
                "TributaryCore", "CZlib", "CZstd",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings),
        // Sparkplug B: its generated protobuf code, the host application's session state (the
        // agent's `sparkplug` format) and an edge node's (the simulator).
        .target(
            name: "TributarySparkplug",
            dependencies: ["TributaryCore", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: swiftSettings),
        // Reading YAML configuration files: every key named in errors, unknown keys rejected.
        .target(
            name: "TributaryConfig",
            dependencies: ["TributaryCore", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings),
        // The only module that imports libsqlite3.
        .target(name: "TributarySQLite", dependencies: ["CSQLite", .product(name: "NIOPosix", package: "swift-nio")], swiftSettings: swiftSettings),
        // The only module that imports libmosquitto.
        .target(
            name: "TributaryMQTT",
            dependencies: ["CMosquitto", "TributaryCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        // The only module that speaks ClickHouse's HTTP interface: used by the aggregator's sink
        // and by `tributary-sim verify`.
        .target(
            name: "TributaryClickHouse",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings),
        // TLS settings from PEM files, checked at start (the aggregator's server side, and the
        // clients that talk to it: agent, fleet simulator, tributaryctl), and the batches' hash
        // chain. Kept out of TributaryWire so the fuzz build does not compile BoringSSL.
        .target(
            name: "TributaryCrypto",
            dependencies: [
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: swiftSettings),
        // Log output for the executables: text, or one JSON object per line.
        .target(
            name: "TributaryLogging",
            dependencies: ["TributaryCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        // The one client of the wire contract (answers, backoff, the in-flight window): the
        // agent, the fleet simulator, the benchmark and next the relay send through it.
        .target(
            name: "TributarySync",
            dependencies: [
                "TributaryRuntime", "TributaryCore", "TributaryWire", "TributaryCrypto",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings),
        // Where the aggregator writes (SQLite, ClickHouse): each sink with its dedup ledger, the
        // factory from a sink URL, and a reader next to each writer for tools (`tributary-sim verify`).
        .target(
            name: "TributarySinks",
            dependencies: [
                "TributaryCore", "TributaryAdminAPI", "TributarySQLite", "TributaryClickHouse", "TributaryWire",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        // The agent's durable buffer: readings in, sealed batches out.
        .target(
            name: "TributaryBuffer",
            dependencies: ["TributaryRuntime", "TributaryCore", "TributaryWire", "TributarySQLite", "TributaryCrypto"],
            swiftSettings: swiftSettings),
        .target(
            name: "TributaryAgent",
            dependencies: [
                "TributaryRuntime", "TributaryCore", "TributaryWire", "TributarySQLite", "TributaryMQTT", "TributaryConfig", "TributaryLogging",
                "TributarySparkplug", "TributaryCrypto", "TributarySync", "TributaryBuffer",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "TributaryAggregator",
            dependencies: [
                "TributaryRuntime", "TributaryCore", "TributaryWire", "TributarySQLite", "TributaryConfig", "TributaryClickHouse", "TributaryLogging",
                "TributaryCrypto", "TributaryAdminAPI", "TributarySinks", "TributarySync",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings),
        // tributaryctl's logic: fetching the fleet view and rendering it.
        .target(
            name: "TributaryCtl",
            dependencies: [
                "TributaryRuntime", "TributaryCore", "TributaryConfig", "TributaryAdminAPI", "TributaryCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "TributarySimulator",
            dependencies: [
                "TributaryRuntime", "TributaryConfig", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                "TributaryCore", "TributaryMQTT", "TributaryClickHouse", "TributaryWire", "TributarySparkplug",
                // The fleet simulator's virtual gateways send as agents do; `verify` reads the
                // sinks and the agents' buffers through their own readers.
                "TributarySync", "TributaryCrypto", "TributarySinks", "TributaryBuffer",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "simulators/TributarySimulator",
            swiftSettings: swiftSettings),
        // Test support shared by every test target: real brokers on free ports, temp dirs.
        .target(
            name: "TributaryTesting",
            dependencies: ["TributaryCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),

        // Thin executables: parse arguments, call into a library.
        .executableTarget(
            name: "tributary-agent",
            dependencies: [
                "TributaryAgent", "TributaryLogging", "CMalloc",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Executables/tributary-agent",
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "tributary-aggregator",
            dependencies: [
                "TributaryAggregator", "TributaryLogging",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Executables/tributary-aggregator",
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "tributaryctl",
            dependencies: [
                "TributaryCtl",
            ],
            path: "Sources/Executables/tributaryctl",
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "tributary-sim",
            dependencies: ["TributarySimulator"],
            path: "simulators/tributary-sim",
            swiftSettings: swiftSettings),
        // `make bench`: ratios against baselines measured in the same run. It imports CSQLite
        // for one reason: its SQLite baseline must be the bare C API.
        .executableTarget(
            name: "tributary-bench",
            dependencies: [
                "TributaryRuntime", "TributaryBuffer", "TributarySync", "TributaryAggregator", "TributarySinks", "TributaryClickHouse", "TributaryCore", "TributaryWire",
                "TributaryMQTT", "TributarySQLite", "TributarySimulator", "TributaryTesting", "CSQLite",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "bench/tributary-bench",
            swiftSettings: swiftSettings),

        .testTarget(
            name: "TributaryCoreTests", dependencies: ["TributaryCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TributaryRuntimeTests", dependencies: ["TributaryRuntime"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TributaryMQTTTests", dependencies: ["TributaryMQTT"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TributaryWireTests",
            dependencies: ["TributaryWire", "TributaryCore", "TributaryTesting"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TributaryAgentTests",
            dependencies: ["TributaryAgent", "TributaryBuffer", "TributaryTesting", "TributaryCore", "TributaryWire", "TributaryCrypto"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "TributaryBufferTests",
            dependencies: ["TributaryRuntime", "TributaryBuffer", "TributaryTesting", "TributaryCore", "TributaryWire", "TributaryCrypto", "TributarySQLite"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "TributarySyncTests",
            dependencies: ["TributarySync", "TributaryCore", "TributaryWire", "TributaryTesting"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "TributaryAggregatorTests",
            dependencies: [
                "TributaryAggregator", "TributarySinks", "TributaryTesting", "TributaryCore", "TributaryWire", "TributaryClickHouse", "TributaryCrypto",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "TributarySQLiteTests", dependencies: ["TributarySQLite", "TributaryTesting"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TributaryCryptoTests", dependencies: ["TributaryCrypto", "TributaryTesting"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TributaryClickHouseTests", dependencies: ["TributaryClickHouse"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TributarySinksTests",
            dependencies: ["TributarySinks", "TributaryTesting", "TributaryCore", "TributaryClickHouse", "TributarySQLite", "TributaryAdminAPI"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "TributarySparkplugTests",
            dependencies: ["TributarySparkplug", "TributaryCore"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TributaryCtlTests", dependencies: ["TributaryCtl", "TributaryCore", "TributaryAdminAPI", "TributaryTesting"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TributaryConfigTests", dependencies: ["TributaryConfig", "TributaryTesting"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TributaryLoggingTests",
            dependencies: ["TributaryLogging", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "TributarySimulatorTests",
            dependencies: ["TributarySimulator", "TributaryCore", "TributarySparkplug"], swiftSettings: swiftSettings),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "TributaryRuntime", "TributaryAgent", "TributaryBuffer", "TributarySync", "TributaryAggregator", "TributarySinks", "TributarySimulator", "TributaryTesting",
                "TributaryAdminAPI",
                "TributaryCtl", "TributaryCore", "TributaryMQTT", "TributarySQLite", "TributaryClickHouse", "TributaryWire",
                "TributaryCrypto", "TributarySparkplug",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
    ]
)
